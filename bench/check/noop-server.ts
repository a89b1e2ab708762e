/**
 * The throughput floor: a grpc-js Authorization/Check server, loaded from the
 * same protos as Passgate, that decodes each request and answers one constant
 * OK. Whatever Passgate does beyond this is the cost of deciding.
 *
 *   node --import tsx bench/check/noop-server.ts --port 50051
 */
import * as grpc from '@grpc/grpc-js';
import { loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';

const i = process.argv.indexOf('--port');
const port = Number(i === -1 ? NaN : process.argv[i + 1]);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write('noop-server: --port <n> is required\n');
  process.exit(2);
}

const OK: CheckResponse = Object.freeze({ status: { code: 0 }, ok_response: {} });
const server = new grpc.Server({ 'grpc.keepalive_permit_without_calls': 1 });
server.addService(loadAuthorizationService().service, {
  Check: (_call: grpc.ServerUnaryCall<unknown, CheckResponse>, callback: grpc.sendUnaryData<CheckResponse>) => callback(null, OK),
});
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    process.stderr.write(`noop-server: cannot listen on 127.0.0.1:${port}: ${err.message}\n`);
    process.exit(1);
  }
});
const stop = () => server.tryShutdown(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
