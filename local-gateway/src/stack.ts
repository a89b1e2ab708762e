/**
 * Composes the whole local chain (development and test tool): the Passgate
 * service in-process, the echo upstream and the local gateway in front, with
 * the sanitize and trace proxy-wasm filters. Used by `npm start` (dev.ts),
 * the e2e tests and the e2e benchmark.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { pino, type Logger } from 'pino';
import type { PassgateConfig } from '../../ext-authz/src/config/schema.js';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import { loadBuiltFilter } from '../../wasm-filters/host/index.js';
import { LocalGateway, type ExtAuthzOptions, type WasmFilterOptions } from './gateway.js';
import { EchoUpstream } from './echo-upstream.js';
import type { ExtProcOptions } from './ext-proc.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** `npm start` serves the service's embedded default config. */
export { DEFAULT_CONFIG_PATH as DEV_CONFIG_PATH } from '../../ext-authz/src/config/load.js';

export interface DevCerts {
  readonly dir: string;
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
}

/** Builds the wasm filters when `npm run build:wasm` has not run yet. */
export function ensureWasmBuilt(log: (line: string) => void = () => {}): void {
  const dir = join(REPO_ROOT, 'wasm-filters', 'build');
  if (existsSync(join(dir, 'sanitize.wasm')) && existsSync(join(dir, 'trace.wasm'))) return;
  log('building the proxy-wasm filters (npm run build:wasm) ...');
  execFileSync(process.execPath, [join(REPO_ROOT, 'wasm-filters', 'scripts', 'build.mjs')], { cwd: REPO_ROOT, stdio: 'inherit' });
}

/** The sanitize and trace filters, in Passgate's AUTHN-phase order (sanitize first). */
export function defaultFilters(): WasmFilterOptions[] {
  return [
    { name: 'passgate-sanitize', wasm: loadBuiltFilter('sanitize'), config: {} },
    { name: 'passgate-trace', wasm: loadBuiltFilter('trace'), config: {} },
  ];
}

/**
 * Dev certificates in `dir` (default `.dev-certs/`): made with `npm run certs`
 * (ext-authz/src/devcerts/cli.ts) when missing, plus `blocked.pem` for the
 * FDS demo user mallory.
 */
export async function ensureDevCerts(dir = join(REPO_ROOT, '.dev-certs'), log: (line: string) => void = () => {}): Promise<DevCerts> {
  const need = ['ca.pem', 'ca-key.pem', 'server.pem', 'server-key.pem', 'client.pem', 'client-key.pem'];
  if (!need.every((f) => existsSync(join(dir, f)))) {
    log(`creating development certificates in ${dir} (npm run certs) ...`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    execFileSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'ext-authz', 'src', 'devcerts', 'cli.ts'), '--out', dir], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  }
  if (!existsSync(join(dir, 'blocked.pem'))) {
    const { loadCa, issueCertificate } = await import('../../ext-authz/src/devcerts/generate.js');
    const ca = await loadCa(readFileSync(join(dir, 'ca.pem'), 'utf8'), readFileSync(join(dir, 'ca-key.pem'), 'utf8'));
    const c = await issueCertificate({
      ca,
      subject: 'CN=mallory,O=Acme',
      sans: { uri: ['spiffe://partners.example.com/org/acme/user/mallory'] },
      notAfter: new Date(Date.now() + 90 * 86_400_000),
    });
    writeFileSync(join(dir, 'blocked.pem'), c.chainPem);
    writeFileSync(join(dir, 'blocked-key.pem'), c.keyPem, { mode: 0o600 });
  }
  return {
    dir,
    ca: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    serverCert: readFileSync(join(dir, 'server.pem'), 'utf8'),
    serverKey: readFileSync(join(dir, 'server-key.pem'), 'utf8'),
  };
}

export interface StackOptions {
  readonly config: PassgateConfig;
  /** The file `config` came from: the service then reloads it on SIGHUP (via `service.reload()`) and on file change. */
  readonly configPath?: string;
  readonly certs: Pick<DevCerts, 'ca' | 'serverCert' | 'serverKey'>;
  /** 0 = chosen by the OS. */
  readonly ports?: { grpc?: number; admin?: number; https?: number; http?: number; upstream?: number; app?: number };
  readonly host?: string;
  /** false = no wasm filters (benchmark baseline). */
  readonly filters?: boolean;
  /** false = no ext_authz (benchmark baseline); otherwise Envoy settings. */
  readonly extAuthz?: false | Omit<ExtAuthzOptions, 'target'>;
  /**
   * The app gateway listener (HTTP, gateway=app) with the ext_proc filter before ext_authz, calling
   * Passgate's e2ee processor. Default: on when the config has an `e2ee` section; false = off.
   */
  readonly extProc?: false | Omit<ExtProcOptions, 'target'>;
  readonly serviceLogger?: Logger;
  readonly gatewayLogger?: Logger;
  /** Verify Passports in the echo upstream against the service's JWKS (default true when passport is configured). */
  readonly verifyPassports?: boolean;
}

export interface Stack {
  readonly service: PassgateService;
  readonly echo: EchoUpstream;
  readonly gateway: LocalGateway;
  readonly httpsPort: number;
  readonly httpPort: number;
  /** The app gateway listener (ext_proc + ext_authz); 0 when off. */
  readonly appPort: number;
  stop(): Promise<void>;
}

export async function startStack(o: StackOptions): Promise<Stack> {
  const ports = o.ports ?? {};
  const host = o.host ?? '127.0.0.1';
  const service = await PassgateService.start({
    config: o.config,
    grpcPort: ports.grpc ?? 0,
    adminPort: ports.admin ?? 0,
    processMetrics: false,
    ...(o.configPath ? { configPath: o.configPath, watchConfig: true } : { watchConfig: false }),
    logger: o.serviceLogger ?? pino({ level: 'silent' }),
  });
  let echo: EchoUpstream | undefined;
  try {
    const pp = o.config.passport;
    const jwksPath = pp?.jwks.path ?? '/.well-known/jwks.json';
    const audience = pp === undefined ? undefined : Array.isArray(pp.audience) ? pp.audience[0] : pp.audience;
    echo = await EchoUpstream.start({
      host,
      port: ports.upstream ?? 0,
      ...(pp && audience && o.verifyPassports !== false
        ? { passport: { jwksUrl: `http://127.0.0.1:${service.adminPort}${jwksPath}`, issuer: pp.issuer, audience, header: pp.header } }
        : {}),
    });
    const extProc = o.extProc === false || (o.extProc === undefined && o.config.e2ee === undefined) ? undefined : { target: `127.0.0.1:${service.grpcPort}`, ...(o.extProc ?? {}) };
    const gateway = await LocalGateway.start({
      listeners: [
        { name: 'secure', host, port: ports.https ?? 0, tls: { key: o.certs.serverKey, cert: o.certs.serverCert, ca: o.certs.ca }, contextExtensions: { gateway: 'secure' } },
        { name: 'public', host, port: ports.http ?? 0, contextExtensions: { gateway: 'public' } },
        ...(extProc ? [{ name: 'app', host, port: ports.app ?? 0, contextExtensions: { gateway: 'app' }, extProc: true }] : []),
      ],
      ...(extProc ? { extProc } : {}),
      upstream: { host, port: echo.port },
      extAuthz: o.extAuthz === false ? null : { target: `127.0.0.1:${service.grpcPort}`, timeoutMs: 200, statusOnError: 503, ...(o.extAuthz ?? {}) },
      filters: o.filters === false ? [] : defaultFilters(),
      logger: o.gatewayLogger ?? pino({ level: 'silent' }),
    });
    const e = echo;
    return {
      service,
      echo: e,
      gateway,
      httpsPort: gateway.ports['secure']!,
      httpPort: gateway.ports['public']!,
      appPort: gateway.ports['app'] ?? 0,
      async stop() {
        await gateway.stop();
        await e.stop();
        await service.stop(500);
      },
    };
  } catch (err) {
    await echo?.stop();
    await service.stop(500);
    throw err;
  }
}
