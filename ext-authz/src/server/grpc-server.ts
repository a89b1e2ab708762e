/**
 * The gRPC side: Authorization/Check v3, grpc.health.v1 and server
 * reflection (so `grpcurl` works without proto files).
 */
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import * as protoLoader from '@grpc/proto-loader';
import type { Logger } from 'pino';
import type { PackageDefinition } from '@grpc/proto-loader';
import { AUTHORIZATION_SERVICE_NAME, loadAuthorizationService } from '../proto/load.js';
import { createCheckRequestDecoder } from '../proto/check-decoder.js';
import { deniedResponse, internalErrorResponse, okResponse } from '../check/response.js';
import { buildCheckRequest } from '../proto/check-request.js';
import { toRequestView } from '../pipeline/request-view.js';
import type { CheckRequest, CheckResponse } from '../proto/types.js';
import type { Checker } from '../check/checker.js';
import type { Metrics } from '../observability/metrics.js';
import { addReflection } from './reflection.js';
import { H2GrpcServer, type ServiceHost } from '../transport/server.js';

export type Transport = 'h2' | 'grpc-js';

/** What GrpcServer needs of a transport; grpc.Server and H2GrpcServer both have it. */
interface Host extends ServiceHost {
  tryShutdown(callback: (err?: Error) => void): void;
  forceShutdown(): void;
}

export interface DeadlinePolicy {
  readonly defaultMs: number;
  readonly marginMs: number;
}

/**
 * The longest a Check may take, whatever deadline the caller sends (the largest server.defaultDeadlineMs
 * allowed). A client's `grpc-timeout` can say days; every stage budget and timer derives from this one
 * deadline, and Node's timers fire at once past ~24.8 days.
 */
export const MAX_CHECK_MS = 60_000;

/** Epoch ms by which to answer: the caller's deadline (or our default, at most MAX_CHECK_MS away) less the safety margin. */
export function answerBy(callDeadline: grpc.Deadline, policy: DeadlinePolicy, now = Date.now()): number {
  const raw = callDeadline instanceof Date ? callDeadline.getTime() : callDeadline;
  const deadline = Number.isFinite(raw) ? Math.min(raw, now + MAX_CHECK_MS) : now + policy.defaultMs;
  return deadline - policy.marginMs;
}

/** A capability's service, resolved for this server (see CapabilityGrpcService). */
export interface ExtraGrpcService {
  readonly name: string;
  readonly service: grpc.ServiceDefinition;
  readonly packageDefinition: PackageDefinition;
  readonly implementation: grpc.UntypedServiceImplementation;
}

export class GrpcServer {
  private readonly server: Host;
  private readonly listenOn: (address: string, host: string, port: number) => Promise<number>;
  readonly health: HealthImplementation;
  private inFlight = 0;
  /** Open grpc.health.v1 Watch calls. */
  private readonly watches = new Set<grpc.ServerWritableStream<unknown, unknown>>();
  private readonly checkMethod: grpc.MethodDefinition<CheckRequest, CheckResponse>;

  constructor(
    private readonly checker: () => Checker,
    private readonly deadlines: () => DeadlinePolicy,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    maxMessageBytes: number,
    private readonly extra: readonly ExtraGrpcService[] = [],
    readonly transport: Transport = 'h2',
  ) {
    if (transport === 'h2') {
      const h2 = new H2GrpcServer({
        maxMessageBytes,
        onHandlerError: (path, err) => logger.error({ path, err: err instanceof Error ? err.message : String(err) }, 'gRPC handler threw; answered UNKNOWN'),
      });
      this.server = h2;
      this.listenOn = (_address, host, port) => h2.listen(host, port);
    } else {
      const server = new grpc.Server({
        'grpc.max_receive_message_length': maxMessageBytes,
        // Envoy keeps long-lived HTTP/2 connections; answer its keepalive pings.
        'grpc.keepalive_permit_without_calls': 1,
        'grpc.http2.min_ping_interval_without_data_ms': 5_000,
      });
      this.server = server;
      this.listenOn = (address) =>
        new Promise((resolve, reject) =>
          server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
        );
    }
    const { service: loaded, packageDefinition } = loadAuthorizationService();
    // The served Check decodes with the hot-path decoder (proto/check-decoder.ts); the loaded definition
    // stays as it is for clients and reflection.
    this.checkMethod = { ...(loaded['Check'] as grpc.MethodDefinition<CheckRequest, CheckResponse>), requestDeserialize: createCheckRequestDecoder() };
    const service: grpc.ServiceDefinition = { ...loaded, Check: this.checkMethod };
    this.server.addService(service, { Check: this.handleCheck });
    for (const x of extra) this.server.addService(x.service, x.implementation);
    const statuses: Record<string, 'NOT_SERVING'> = { '': 'NOT_SERVING', [AUTHORIZATION_SERVICE_NAME]: 'NOT_SERVING' };
    for (const x of extra) statuses[x.name] = 'NOT_SERVING';
    this.health = new HealthImplementation(statuses);
    // addToServer only calls addService, which both transports have. Watch calls are kept, so a drain can end them.
    const host = this.server;
    const watches = this.watches;
    // grpc-health-check keeps a Set of watchers per service name asked for and never drops an emptied
    // one: Watch calls for ever new names would grow it without bound. Emptied sets go when a call ends.
    const watchers = (this.health as unknown as { watchers?: Map<string, Set<unknown>> }).watchers;
    const forget = (call: grpc.ServerWritableStream<unknown, unknown>) => {
      watches.delete(call);
      const name = (call.request as { service?: unknown } | undefined)?.service;
      // After the library's own listener removed this call's watcher (it listens first).
      setImmediate(() => {
        if (typeof name === 'string' && watchers instanceof Map && watchers.get(name)?.size === 0) watchers.delete(name);
      });
    };
    this.health.addToServer({
      addService(service: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation) {
        const watch = impl['watch'] as grpc.handleServerStreamingCall<unknown, unknown> | undefined;
        if (watch === undefined) return host.addService(service, impl);
        host.addService(service, {
          ...impl,
          watch: (call: grpc.ServerWritableStream<unknown, unknown>) => {
            watches.add(call);
            call.on('error', () => undefined); // a write after the drain ended the call is not an error to raise
            call.once('cancelled', () => forget(call));
            call.once('finish', () => forget(call));
            watch(call);
          },
        });
      },
    } as unknown as grpc.Server);
    addReflection(this.server, [packageDefinition, protoLoader.loadSync(healthProtoPath), ...extra.map((x) => x.packageDefinition)]);
  }

  private readonly handleCheck = (
    call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>,
    callback: grpc.sendUnaryData<CheckResponse>,
  ): void => {
    this.inFlight++;
    this.metrics.inFlight.inc();
    const done = (response: CheckResponse) => {
      this.inFlight--;
      this.metrics.inFlight.dec();
      callback(null, response);
    };
    // Checker.check never throws and never rejects; the guard is for the impossible.
    const result = this.checker().check(call.request, answerBy(call.getDeadline(), this.deadlines()));
    if (result instanceof Promise) {
      result.then(done, (err) => {
        this.logger.error({ err: String(err) }, 'checker rejected; answering 503');
        done(internalErrorResponse());
      });
    } else {
      done(result);
    }
  };

  /**
   * Start-up warm-up: JIT of the Check codecs, the request view and route
   * selection on synthetic requests. No stage runs and nothing is counted or
   * logged, so it changes nothing a real Check sees.
   */
  warmCodecs(rounds = 200): void {
    const checker = this.checker();
    const gateways = Object.keys(checker.table.config.gateways);
    const requests = (gateways.length > 0 ? gateways : ['']).map((gateway, i) =>
      this.checkMethod.requestSerialize(
        buildCheckRequest({
          path: `/warm-up/${i}?q=1`,
          headers: { 'x-request-id': `warm-up-${i}`, accept: '*/*', 'x-forwarded-for': '192.0.2.1', 'x-forwarded-client-cert': 'Hash=00' },
          ...(gateway ? { gateway } : {}),
        }),
      ),
    );
    const ok = okResponse([['x-warm-up', '1']], ['x-warm-up'], []);
    const denied = deniedResponse({ status: 403, reason: 'warm_up' }, '00000000000000000000000000000000', 'Bearer');
    for (let i = 0; i < rounds; i++) {
      const view = toRequestView(this.checkMethod.requestDeserialize(requests[i % requests.length]!));
      const gateway = checker.table.selectGateway(view);
      if (gateway !== undefined) checker.table.selectRoute(gateway, view);
      this.checkMethod.responseSerialize(i % 2 === 0 ? ok : denied);
    }
  }

  setServing(serving: boolean): void {
    const status = serving ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', status);
    this.health.setStatus(AUTHORIZATION_SERVICE_NAME, status);
    for (const x of this.extra) this.health.setStatus(x.name, status);
  }

  async listen(host: string, port: number): Promise<number> {
    const address = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
    try {
      return await this.listenOn(address, host, port);
    } catch (err) {
      throw new Error(`cannot listen for gRPC on ${address}: ${(err as Error).message}`);
    }
  }

  get checksInFlight(): number {
    return this.inFlight;
  }

  /**
   * Stop taking new calls, let running ones finish within `graceMs`, then force. Health Watch
   * streams never end by themselves (kubelet, Envoy health checkers): they have seen NOT_SERVING,
   * so they are ended with OK first, and only Checks and capability streams are waited for.
   */
  async shutdown(graceMs: number): Promise<void> {
    for (const call of this.watches) {
      try {
        call.end();
      } catch {
        // Already gone.
      }
    }
    this.watches.clear();
    const graceful = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    const timer = new Promise<'timeout'>((resolve) => setTimeout(resolve, graceMs, 'timeout').unref());
    if ((await Promise.race([graceful, timer])) === 'timeout') {
      this.logger.warn({ inFlight: this.inFlight }, 'grace period over; closing remaining gRPC calls');
      this.server.forceShutdown();
    }
  }
}
