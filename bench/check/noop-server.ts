/**
 * The throughput floor: a grpc-js Authorization/Check server, loaded from the
 * same protos as Passgate, that decodes each request and answers one constant
 * OK. Whatever Passgate does beyond this is the cost of deciding.
 *
 *   node --import tsx bench/check/noop-server.ts --port 50051 [--transport grpc-js|h2]
 *
 * `--transport h2` hosts the same handler on Passgate's own transport
 * (ext-authz/src/transport): the transport's floor.
 */
import * as grpc from '@grpc/grpc-js';
import { loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';
import { H2GrpcServer } from '../../ext-authz/src/transport/server.js';

const i = process.argv.indexOf('--port');
const port = Number(i === -1 ? NaN : process.argv[i + 1]);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write('noop-server: --port <n> is required\n');
  process.exit(2);
}

const t = process.argv.indexOf('--transport');
const transport = t === -1 ? 'grpc-js' : process.argv[t + 1];
const OK: CheckResponse = Object.freeze({ status: { code: 0 }, ok_response: {} });
const check = (_call: grpc.ServerUnaryCall<unknown, CheckResponse>, callback: grpc.sendUnaryData<CheckResponse>) => callback(null, OK);
const fail = (err: Error) => {
  process.stderr.write(`noop-server: cannot listen on 127.0.0.1:${port}: ${err.message}\n`);
  process.exit(1);
};
let stop: () => void;
if (transport === 'h2') {
  const server = new H2GrpcServer({ maxMessageBytes: 4 * 1024 * 1024 });
  server.addService(loadAuthorizationService().service, { Check: check });
  server.listen('127.0.0.1', port).catch(fail);
  stop = () => server.tryShutdown(() => process.exit(0));
} else {
  const server = new grpc.Server({ 'grpc.keepalive_permit_without_calls': 1 });
  server.addService(loadAuthorizationService().service, { Check: check });
  server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => err && fail(err));
  stop = () => server.tryShutdown(() => process.exit(0));
}
process.on('SIGTERM', () => stop());
process.on('SIGINT', () => stop());
