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
import { deniedResponse, internalErrorResponse, okResponse } from '../check/response.js';
import { buildCheckRequest } from '../proto/check-request.js';
import { toRequestView } from '../pipeline/request-view.js';
import type { CheckRequest, CheckResponse } from '../proto/types.js';
import type { Checker } from '../check/checker.js';
import type { Metrics } from '../observability/metrics.js';
import { addReflection } from './reflection.js';

export interface DeadlinePolicy {
  readonly defaultMs: number;
  readonly marginMs: number;
}

/** Epoch ms by which to answer: the caller's deadline (or our default) less the safety margin. */
export function answerBy(callDeadline: grpc.Deadline, policy: DeadlinePolicy, now = Date.now()): number {
  const raw = callDeadline instanceof Date ? callDeadline.getTime() : callDeadline;
  const deadline = Number.isFinite(raw) ? raw : now + policy.defaultMs;
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
  readonly server: grpc.Server;
  readonly health: HealthImplementation;
  private inFlight = 0;
  private readonly checkMethod: grpc.MethodDefinition<CheckRequest, CheckResponse>;

  constructor(
    private readonly checker: () => Checker,
    private readonly deadlines: () => DeadlinePolicy,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    maxMessageBytes: number,
    private readonly extra: readonly ExtraGrpcService[] = [],
  ) {
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': maxMessageBytes,
      // Envoy keeps long-lived HTTP/2 connections; answer its keepalive pings.
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    });
    const { service, packageDefinition } = loadAuthorizationService();
    this.checkMethod = service['Check'] as grpc.MethodDefinition<CheckRequest, CheckResponse>;
    this.server.addService(service, { Check: this.handleCheck });
    for (const x of extra) this.server.addService(x.service, x.implementation);
    const statuses: Record<string, 'NOT_SERVING'> = { '': 'NOT_SERVING', [AUTHORIZATION_SERVICE_NAME]: 'NOT_SERVING' };
    for (const x of extra) statuses[x.name] = 'NOT_SERVING';
    this.health = new HealthImplementation(statuses);
    this.health.addToServer(this.server);
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

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const address = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
      this.server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) => {
        if (err) reject(new Error(`cannot listen for gRPC on ${address}: ${err.message}`));
        else resolve(bound);
      });
    });
  }

  get checksInFlight(): number {
    return this.inFlight;
  }

  /** Stop taking new calls, let running ones finish within `graceMs`, then force. */
  async shutdown(graceMs: number): Promise<void> {
    const graceful = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    const timer = new Promise<'timeout'>((resolve) => setTimeout(resolve, graceMs, 'timeout').unref());
    if ((await Promise.race([graceful, timer])) === 'timeout') {
      this.logger.warn({ inFlight: this.inFlight }, 'grace period over; closing remaining gRPC calls');
      this.server.forceShutdown();
    }
  }
}
