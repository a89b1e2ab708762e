/**
 * Drives ExternalProcessor/Process streams over loopback the way Envoy does:
 * one message per phase, waiting for the answer before the next one, stopping
 * at an ImmediateResponse.
 */
import * as grpc from '@grpc/grpc-js';
import { createExtProcClient, type ExtProcClient, type ProcessingRequest, type ProcessingResponse } from '../../ext-authz/src/e2ee/ext-proc-proto.js';

export function extProcClient(port: number): ExtProcClient {
  return createExtProcClient(`127.0.0.1:${port}`);
}

/** Request headers as Envoy >= 1.27 sends them (values in raw_value). */
export function requestHeaders(headers: Record<string, string>, endOfStream = false): ProcessingRequest {
  return {
    request_headers: {
      headers: { headers: Object.entries(headers).map(([key, v]) => ({ key, raw_value: Buffer.from(v, 'latin1') })) },
      end_of_stream: endOfStream,
    },
  };
}

export function requestBody(body: Uint8Array): ProcessingRequest {
  return { request_body: { body: Buffer.from(body), end_of_stream: true } };
}

/**
 * Sends `steps` in order; each step is a message or a function of the answers so far
 * (returning undefined stops). Stops at an immediate response. Resolves with every answer.
 */
export function drive(
  client: ExtProcClient,
  steps: Array<ProcessingRequest | ((answers: ProcessingResponse[]) => ProcessingRequest | undefined)>,
  deadlineMs = 5_000,
): Promise<ProcessingResponse[]> {
  return new Promise((resolve, reject) => {
    const call = client.Process(new grpc.Metadata(), { deadline: Date.now() + deadlineMs });
    const answers: ProcessingResponse[] = [];
    let i = 0;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      call.end();
      resolve(answers);
    };
    const next = () => {
      if (i >= steps.length) return finish();
      const step = steps[i++]!;
      const msg = typeof step === 'function' ? step(answers) : step;
      if (msg === undefined) return finish();
      call.write(msg);
    };
    call.on('data', (res: ProcessingResponse) => {
      answers.push(res);
      if (res.immediate_response !== undefined) return finish();
      next();
    });
    call.on('error', (err) => {
      if (!finished) reject(err);
    });
    next();
  });
}

/** The header mutation of an answer as a plain map (raw_value or value). */
export function setHeaders(res: ProcessingResponse | undefined, phase: 'request_headers' | 'request_body' | 'response_body'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of res?.[phase]?.response?.header_mutation?.set_headers ?? []) {
    const raw = h.header?.raw_value;
    out[h.header!.key!] = raw !== undefined && raw.length > 0 ? Buffer.from(raw).toString('latin1') : (h.header?.value ?? '');
  }
  return out;
}
