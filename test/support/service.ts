/**
 * Starts a real PassgateService on loopback (ports chosen by the OS) and
 * gives tests a real grpc-js client for it.
 */
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { Writable } from 'node:stream';
import { appendFileSync } from 'node:fs';
import { LOG_TEE_ENV } from './log-lines.js';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { createAuthorizationClient, type AuthorizationClient } from '../../ext-authz/src/proto/load.js';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';
import { buildCheckRequest, type CheckRequestOptions } from '../../ext-authz/src/proto/check-request.js';
import { testCapability, testComposition } from './test-stages.js';

/** Parses a test config with the built-in capabilities plus the test stage types. */
export function testConfig(yaml: string, source = 'test.yaml') {
  return parseConfigText(yaml, source, testComposition());
}

export interface LogCapture {
  readonly logger: Logger;
  readonly lines: Array<Record<string, unknown>>;
}

/** A pino logger whose JSON lines tests can inspect. */
export function captureLogs(level = 'info'): LogCapture {
  const lines: Array<Record<string, unknown>> = [];
  const tee = process.env[LOG_TEE_ENV];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) {
        if (!line.trim()) continue;
        if (tee) appendFileSync(tee, `${line}\n`); // checked after the run (./log-lines.ts)
        lines.push(JSON.parse(line));
      }
      cb();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

export type AuthzClient = AuthorizationClient;

export function authzClient(port: number): AuthzClient {
  return createAuthorizationClient(`127.0.0.1:${port}`);
}

export function check(client: AuthzClient, req: CheckRequest, deadlineMs = 2_000): Promise<CheckResponse> {
  return new Promise((resolve, reject) => {
    client.Check(req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

export interface Running {
  readonly svc: PassgateService;
  readonly client: AuthzClient;
  readonly logs: LogCapture;
  check(req: CheckRequest, deadlineMs?: number): Promise<CheckResponse>;
  stop(): Promise<void>;
}

export async function startService(yaml: string, options: { configPath?: string; watchConfig?: boolean } = {}): Promise<Running> {
  const logs = captureLogs();
  const config = testConfig(yaml);
  const svc = await PassgateService.start({
    config,
    capabilities: [testCapability],
    logger: logs.logger,
    grpcPort: 0,
    adminPort: 0,
    processMetrics: false,
    watchConfig: options.watchConfig ?? false,
    ...(options.configPath ? { configPath: options.configPath } : {}),
  });
  const client = authzClient(svc.grpcPort);
  return {
    svc,
    client,
    logs,
    check: (req, deadlineMs) => check(client, req, deadlineMs),
    async stop() {
      client.close();
      await svc.stop(1_000);
    },
  };
}

/** A CheckRequest as Envoy sends it for an HTTP request (the shared builder). */
export const httpCheck = (opts: CheckRequestOptions): CheckRequest => buildCheckRequest(opts);

export function headerMap(list: Array<{ header?: { key?: string; value?: string } }> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list ?? []) if (h.header?.key) out[h.header.key] = h.header.value ?? '';
  return out;
}
