#!/usr/bin/env node
/**
 * `npm start`: the whole Passgate chain on one machine, for development and
 * testing only (the local gateway is NOT a production proxy):
 *   Passgate service (with --dev, which `npm start` passes: the embedded
 *   default config: memory FDS store, static Passport users, generated signing
 *   key; or `npm start -- --config FILE`)  +  echo upstream  +  local gateway
 *   (HTTPS with client certificates, HTTP, sanitize/trace wasm filters, ext_authz).
 * Creates `.dev-certs/` on first run and prints curl commands to paste.
 * As in production, SIGHUP and edits of the config file reload the service's
 * config (the gateway and upstream keep running); SIGINT/SIGTERM stop it all.
 *
 * Environment overrides: PASSGATE_GRPC_PORT (9001), PASSGATE_ADMIN_PORT (9090),
 * GATEWAY_HTTPS_PORT (8443), GATEWAY_HTTP_PORT (8080), UPSTREAM_PORT (8081), GATEWAY_APP_PORT (8082),
 * GATEWAY_HOST (127.0.0.1), PASSGATE_DEV_CONFIG, PASSGATE_DEV_CERTS (.dev-certs),
 * PASSGATE_FDS_ADMIN_TOKEN (made up when unset), SSO_PROVIDER_PORT (8082) and
 * SSO_GATEWAY_PORT (8083) for the single sign-on demo (dev-sso.ts).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile } from '../../ext-authz/src/config/load.js';
import { DEV_CONFIG_WARNING } from '../../ext-authz/src/cli/serve.js';
import { createLogger } from '../../ext-authz/src/observability/logger.js';
import { DEV_TOOL_NOTICE } from './gateway.js';
import { e2eeBanner } from './dev-e2ee.js';
import { APP_DEMO_BODY, appDemoLines } from './app-demo.js';
import { DEV_CONFIG_PATH, REPO_ROOT, ensureDevCerts, ensureWasmBuilt, startStack, type Stack } from './stack.js';
import { startSsoDemo, type SsoDemo } from './dev-sso.js';

function port(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    process.stderr.write(`npm start: ${name}=${v} is not a port number (0-65535); unset it or fix it\n`);
    process.exit(2);
  }
  return n;
}

const say = (line: string) => process.stdout.write(`${line}\n`);

/** GET /orders with the demo client certificate, twice at most; the status (or 0 when unreachable). */
async function warmUp(httpsPort: number, certDir: string): Promise<number> {
  const tls = { ca: readFileSync(join(certDir, 'ca.pem')), cert: readFileSync(join(certDir, 'client.pem')), key: readFileSync(join(certDir, 'client-key.pem')) };
  const once = () =>
    new Promise<number>((done) => {
      const req = httpsRequest({ host: 'localhost', port: httpsPort, path: '/orders', ...tls, agent: false }, (res) => {
        res.resume();
        res.on('end', () => done(res.statusCode ?? 0));
      });
      req.on('error', () => done(0));
      req.end();
    });
  const first = await once();
  return first === 200 ? first : once();
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({ args: process.argv.slice(2), options: { config: { type: 'string' }, dev: { type: 'boolean' } }, strict: true, allowPositionals: false });
  } catch (err) {
    process.stderr.write(`npm start: ${(err as Error).message}\nusage: npm start [-- --config FILE]   (npm start passes --dev: without a FILE, the embedded development config)\n`);
    process.exit(2);
  }
  const chosen = args.values.config ?? (process.env['PASSGATE_DEV_CONFIG'] || undefined);
  if (chosen === undefined && !args.values.dev) {
    process.stderr.write('npm start: no config: pass --config FILE, set PASSGATE_DEV_CONFIG, or --dev for the embedded development config\n');
    process.exit(2);
  }
  const configPath = resolve(chosen ?? DEV_CONFIG_PATH);
  say(`\n  ${DEV_TOOL_NOTICE}\n`);
  const certDir = process.env['PASSGATE_DEV_CERTS'] || join(REPO_ROOT, '.dev-certs');
  const tokenWasSet = !!process.env['PASSGATE_FDS_ADMIN_TOKEN'];
  // The FDS admin API needs a token; a throwaway one is fine for a dev run.
  if (!tokenWasSet) process.env['PASSGATE_FDS_ADMIN_TOKEN'] = randomBytes(24).toString('base64url');
  const token = process.env['PASSGATE_FDS_ADMIN_TOKEN']!;

  let config;
  try {
    config = loadConfigFile(configPath);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`npm start: ${err.message}\nNothing was started. Fix the file and start again.\n`);
      process.exit(2);
    }
    throw err;
  }
  ensureWasmBuilt(say);
  const certs = await ensureDevCerts(certDir, say);
  const host = process.env['GATEWAY_HOST'] || '127.0.0.1';
  const logger = createLogger(config.logging.level);
  let stack: Stack;
  try {
    stack = await startStack({
      config,
      configPath,
      certs,
      host,
      ports: {
        grpc: port('PASSGATE_GRPC_PORT', config.server.grpc.port),
        admin: port('PASSGATE_ADMIN_PORT', config.server.admin.port),
        https: port('GATEWAY_HTTPS_PORT', 8443),
        http: port('GATEWAY_HTTP_PORT', 8080),
        upstream: port('UPSTREAM_PORT', 8081),
        app: port('GATEWAY_APP_PORT', 8082),
      },
      serviceLogger: logger,
      gatewayLogger: logger.child({ component: 'local-gateway' }),
      extAuthz: { withRequestBody: APP_DEMO_BODY },
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(
      `npm start: cannot start: ${e.message}\n` +
        (e.code === 'EADDRINUSE' ? 'A port is taken: stop the other process or pick ports with PASSGATE_GRPC_PORT, PASSGATE_ADMIN_PORT, GATEWAY_HTTPS_PORT, GATEWAY_HTTP_PORT, UPSTREAM_PORT.\n' : ''),
    );
    process.exit(1);
  }

  if (chosen === undefined) logger.warn({ config: configPath }, DEV_CONFIG_WARNING);

  // The demo blocked user: mallory (blocked.pem) is in the FDS block list until restart.
  const blocked = await fetch(`http://127.0.0.1:${stack.service.adminPort}/admin/fds/blocks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'user', subject: 'mallory', reason: 'npm start demo: a blocked user', ttl: 'none', createdBy: 'npm-start' }),
  }).then(
    (r) => (r.ok ? '' : `FDS admin API answered ${r.status}`),
    (e: unknown) => `FDS admin API unreachable: ${String(e)}`,
  );

  // One request through the whole chain before the banner: it warms every cold path (TLS, WASM
  // filters, certificate decoding, the first Passport signature, the JIT) that shares this one event
  // loop with the gateway, so the user's first curl is not judged against a cold 200 ms ext_authz timeout.
  const selfCheck = await warmUp(stack.httpsPort, certs.dir);
  const sso = await ssoDemo(host, stack, logger);

  const d = relative(process.cwd(), certs.dir) || '.';
  const h = `https://localhost:${stack.httpsPort}`;
  const tls = (name: string) => `--cacert ${d}/ca.pem --cert ${d}/${name}.pem --key ${d}/${name}-key.pem`;
  say('');
  say('  Passgate local chain is up (development and test only):');
  say(`    service    gRPC 127.0.0.1:${stack.service.grpcPort}   admin http://127.0.0.1:${stack.service.adminPort}  (JWKS /.well-known/jwks.json, FDS /admin/fds/)`);
  say(`    gateway    ${h} (client certificates, gateway=secure)   http://${host}:${stack.httpPort} (gateway=public)`);
  say(`    upstream   echo http://${host}:${stack.echo.port}`);
  say(`    config     ${relative(process.cwd(), configPath) || configPath}   (edit it or send SIGHUP: the service reloads it)   certificates ${d}/`);
  say('');
  say('  Try:');
  say('    # with a client certificate: 200, the echo shows the verified Passport and x-trace-id comes back');
  say(`    curl -si ${tls('client')} ${h}/orders`);
  say('    # without a client certificate: 401');
  say(`    curl -si --cacert ${d}/ca.pem ${h}/orders`);
  say('    # a blocked user (mallory, blocked in FDS at start): 403');
  say(`    curl -si ${tls('blocked')} ${h}/orders`);
  say('    # public gateway over plain HTTP');
  say(`    curl -si http://${host}:${stack.httpPort}/public/hello`);
  say('    # web flow: a single-use request JWT (npm run proof); the second curl with the same proof gets 401 proof_replayed');
  say(`    P=$(npm run -s proof -- http://localhost:${stack.httpPort}/web/hello); for i in 1 2; do curl -si -H "request-jwt: $P" http://localhost:${stack.httpPort}/web/hello; echo; done`);
  e2eeBanner(stack, host, say);
  for (const line of await appDemoLines(stack.service.adminPort, stack.httpPort)) say(line);
  if (blocked) say(`\n  note: could not block mallory (${blocked}); the 403 example will answer 200`);
  if (selfCheck !== 200) say(`\n  note: the start-up self-check (GET /orders with client.pem) answered ${selfCheck}; see the log above`);
  const bearer = tokenWasSet ? '$PASSGATE_FDS_ADMIN_TOKEN' : token;
  const admin = `http://127.0.0.1:${stack.service.adminPort}`;
  say(`\n  FDS admin: curl -s -H "authorization: Bearer ${bearer}" ${admin}/admin/fds/blocks`);
  const exempt = config.fds?.exempt.ip ?? [];
  say(exempt.length > 0 ? `  FDS never auto-blocks ${exempt.join(', ')} (fds.exempt.ip).` : '  FDS may auto-block your own IP after repeated 401s (see fds.rules).');
  say('  Locked out? Unblock (an IP, or user/device/client/cert):');
  say(`    PASSGATE_FDS_ADMIN_TOKEN=${bearer} npm run passgate -- fds unblock ip 127.0.0.1 --url ${admin}`);
  if (sso !== undefined) {
    say('');
    for (const line of sso.banner) say(line);
  }
  say('  Ctrl-C stops everything.\n');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    say(`\n  ${signal}: stopping the local chain ...`);
    const hard = setTimeout(() => process.exit(1), 5_000);
    hard.unref();
    Promise.all([stack.stop(), sso?.stop()]).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  // SIGHUP reloads the service's config as in production; a bad file keeps the old one (the service logs why).
  process.on('SIGHUP', () => {
    void stack.service.reload().then((ok) => say(ok ? '  SIGHUP: config reloaded' : '  SIGHUP: config NOT reloaded (see the log line above); the previous config keeps serving'));
  });
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/** The SSO demo beside the chain; a failure (a port taken) only skips it. */
async function ssoDemo(host: string, stack: Stack, logger: ReturnType<typeof createLogger>): Promise<SsoDemo | undefined> {
  try {
    return await startSsoDemo({ host, providerPort: port('SSO_PROVIDER_PORT', 8082), gatewayPort: port('SSO_GATEWAY_PORT', 8083), upstreamPort: stack.echo.port, logger });
  } catch (err) {
    say(`\n  note: the single sign-on demo did not start (${(err as Error).message}); set SSO_PROVIDER_PORT / SSO_GATEWAY_PORT`);
    return undefined;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`npm start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
