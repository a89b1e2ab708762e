/**
 * The ExternalProcessor/Process handler: one bidirectional stream per HTTP
 * request, answering each phase Envoy sends (docs/contracts/ext-proc.md):
 *
 * - request headers: strip any client copy of the facts header; for the
 *   encrypted content type only, `mode_override` asks for the BUFFERED body
 *   (and the buffered response body when responses are encrypted);
 * - request body: decrypt + authenticate (Opener), replace the body, set
 *   `content-length` (Envoy rejects a stale one, envoy#29536), restore the
 *   inner `content-type`, add the facts header for Check;
 * - response headers/body: seal the body with the request's exported key;
 * - anything wrong: an ImmediateResponse with the same JSON body as a Check
 *   denial, never a gRPC error (Envoy would turn that into a 500).
 *
 * The handler never throws: a malformed message or a failing step ends in a
 * deny or a logged, closed stream, with no plaintext or key in the log.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { deniedResponse } from '../check/response.js';
import { DEFAULT_CHALLENGE } from '../config/schema.js';
import type { Denial, DenyStatus } from '../pipeline/decision.js';
import { traceIdOf } from '../observability/trace-id.js';
import type { HeaderValueOption } from '../proto/types.js';
import { FACTS_HEADER, sealFacts } from './facts.js';
import { BodySendMode, CommonStatus, headerValue, HeaderSendMode, type HttpHeaders, type ProcessingRequest, type ProcessingResponse } from './ext-proc-proto.js';
import type { Opened, Opener } from './opener.js';
import type { E2eeConfig } from './config.js';
import { aeadCipher } from './hpke.js';

/** What one config gives the processor (swapped whole on reload). */
export interface ProcessorState {
  readonly config: E2eeConfig | undefined;
  readonly opener: Opener | undefined;
  readonly factsSecret: Buffer;
  readonly outcomes: (result: string) => void;
  /** FDS: an IP known (in process, no I/O) to be blocked; refused before any decryption work. */
  readonly blockedIp?: (ip: string) => boolean;
  /** FDS: counts a refusal's events (one store call, not awaited by the answer). */
  readonly refused?: (reason: string, ip: string, sender: string) => void;
}

const OVERWRITE = Object.freeze({ value: false });

function setHeader(key: string, value: string): HeaderValueOption {
  // raw_value is what Envoy >= 1.27 sends and reads in ext_proc mutations.
  return { header: { key, raw_value: Buffer.from(value, 'latin1') }, append: OVERWRITE, append_action: 2 };
}

const STRIP_FACTS: ProcessingResponse = Object.freeze({
  request_headers: { response: { status: CommonStatus.CONTINUE, header_mutation: { remove_headers: [FACTS_HEADER] } } },
}) as ProcessingResponse;
const CONTINUE_RESPONSE_HEADERS: ProcessingResponse = Object.freeze({ response_headers: { response: { status: CommonStatus.CONTINUE } } }) as ProcessingResponse;

/** The same `{error, reason, trace_id}` JSON body and headers as a Check denial, as an ImmediateResponse. */
export function immediateDenial(status: DenyStatus, reason: string, traceId: string): ProcessingResponse {
  const denial: Denial = { status, reason };
  const denied = deniedResponse(denial, traceId, DEFAULT_CHALLENGE).denied_response!;
  const headers = (denied.headers ?? []).map((h) => setHeader(h.header!.key!, h.header!.value ?? ''));
  return {
    immediate_response: {
      status: { code: status },
      headers: { set_headers: headers },
      body: Buffer.from(denied.body ?? '', 'utf8'),
      details: `passgate_${reason}`,
    },
  };
}

function mediaTypeOf(contentType: string | undefined): string {
  if (contentType === undefined) return '';
  const semi = contentType.indexOf(';');
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

/**
 * The client address: Envoy's `source.address` attribute (request_attributes in
 * the EnvoyFilter), else the last x-forwarded-for hop the gateway appended.
 */
function sourceIp(msg: ProcessingRequest, xff: string): string {
  const attr = (msg.attributes?.['envoy.filters.http.ext_proc'] as { fields?: Record<string, { string_value?: string }> } | undefined)?.fields?.['source.address']?.string_value;
  const v = attr ?? xff.slice(xff.lastIndexOf(',') + 1).trim();
  if (v.startsWith('[')) return v.slice(1, v.indexOf(']'));
  return v.indexOf(':') === v.lastIndexOf(':') && v.includes(':') ? v.slice(0, v.indexOf(':')) : v;
}

interface Phase {
  /** Set after request headers of an encrypted request. */
  expectBody: boolean;
  /** content-length of the encrypted request (-1 = none, chunked). */
  contentLength: number;
  ip: string;
  traceId: string;
  requestId: string;
  opened: Opened | undefined;
  /** The upstream's response content-type (sealed inside the encrypted response). */
  responseType: string;
  done: boolean;
}

export function createProcessHandler(current: () => ProcessorState | undefined, logger: Logger): grpc.handleBidiStreamingCall<ProcessingRequest, ProcessingResponse> {
  return (call) => {
    const phase: Phase = { expectBody: false, contentLength: -1, ip: '', traceId: '', requestId: '', opened: undefined, responseType: '', done: false };
    // Envoy waits for each answer before the next message; the chain keeps order even if it did not.
    let chain: Promise<void> = Promise.resolve();
    const send = (res: ProcessingResponse): void => {
      if (phase.done || call.cancelled || call.destroyed) return;
      try {
        call.write(res);
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'e2ee: cannot write to the ext_proc stream');
      }
    };
    call.on('data', (msg: ProcessingRequest) => {
      chain = chain.then(() => handle(msg)).catch((err: unknown) => {
        // Unreachable by design (every step returns a reason); fail closed without detail.
        logger.error({ err: (err as Error)?.name ?? 'error', traceId: phase.traceId }, 'e2ee: processor step failed; answering 503');
        send(immediateDenial(503, 'e2ee_internal_error', phase.traceId));
      });
    });
    // A stream Envoy resets, or bytes that do not decode, end here: logged, never thrown.
    call.on('error', (err: Error) => {
      logger.debug({ err: err.message, traceId: phase.traceId }, 'e2ee: ext_proc stream error');
    });
    call.on('end', () => {
      void chain.then(() => {
        if (!call.destroyed) call.end();
      });
    });

    const deny = (status: DenyStatus, reason: string, state: ProcessorState | undefined, sender = ''): void => {
      state?.outcomes(reason);
      // The reason and who sent it; never the body, the envelope or a key.
      logger.info({ e2ee: reason, status, traceId: phase.traceId, ip: phase.ip, ...(sender !== '' ? { sender } : {}) }, 'e2ee: request refused');
      if (reason !== 'blocked') state?.refused?.(reason, phase.ip, sender);
      send(immediateDenial(status, reason, phase.traceId));
      phase.done = true; // Envoy ends the request with the local reply; nothing more to answer.
    };

    async function handle(msg: ProcessingRequest): Promise<void> {
      const state = current();
      if (phase.done) return;
      switch (msg.request) {
        case 'request_headers':
          return onRequestHeaders(msg, state);
        case 'request_body':
          return onRequestBody(msg.request_body?.body, msg.request_body?.end_of_stream === true, state);
        case 'response_headers':
          for (const hv of msg.response_headers?.headers?.headers ?? []) {
            if (hv.key?.toLowerCase() === 'content-type') phase.responseType = headerValue(hv);
          }
          return send(CONTINUE_RESPONSE_HEADERS);
        case 'response_body':
          return onResponseBody(msg.response_body?.body, msg.response_body?.end_of_stream === true, state);
        case 'request_trailers':
          return send({ request_trailers: {} });
        case 'response_trailers':
          return send({ response_trailers: {} });
        default:
          // Not a phase we know: refuse the request rather than leave Envoy waiting for the timeout.
          return deny(400, 'e2ee_bad_processing_request', state);
      }
    }

    function onRequestHeaders(msg: ProcessingRequest, state: ProcessorState | undefined): void {
      const h: HttpHeaders = msg.request_headers ?? {};
      let contentType: string | undefined;
      let contentLength: string | undefined;
      let xff = '';
      for (const hv of h.headers?.headers ?? []) {
        const key = hv.key?.toLowerCase();
        if (key === 'content-type') contentType = headerValue(hv);
        else if (key === 'content-length') contentLength = headerValue(hv);
        else if (key === 'x-request-id') phase.requestId = headerValue(hv);
        else if (key === 'traceparent') phase.traceId = traceIdOf({ traceparent: headerValue(hv) }, '');
        else if (key === 'x-forwarded-for') xff = headerValue(hv);
      }
      if (phase.traceId === '') phase.traceId = traceIdOf({}, phase.requestId);
      const config = state?.config;
      if (config === undefined || state?.opener === undefined || mediaTypeOf(contentType) !== config.contentType) return send(STRIP_FACTS);
      phase.ip = sourceIp(msg, xff);
      // A blocked source costs no X25519 work; Check would refuse it anyway.
      if (phase.ip !== '' && state.blockedIp?.(phase.ip) === true) return deny(403, 'blocked', state);
      if (h.end_of_stream === true) return deny(400, 'e2ee_body_missing', state);
      if (contentLength !== undefined) {
        const n = /^\d{1,15}$/.test(contentLength) ? Number(contentLength) : NaN;
        if (!Number.isFinite(n)) return deny(400, 'e2ee_bad_content_length', state);
        if (n > config.maxBodyBytes) return deny(413, 'e2ee_too_large', state);
        phase.contentLength = n;
      }
      phase.expectBody = true;
      send({
        ...STRIP_FACTS,
        mode_override: {
          request_body_mode: BodySendMode.BUFFERED,
          response_header_mode: config.encryptResponses ? HeaderSendMode.SEND : HeaderSendMode.SKIP,
          response_body_mode: config.encryptResponses ? BodySendMode.BUFFERED : BodySendMode.NONE,
        },
      });
    }

    async function onRequestBody(body: Buffer | Uint8Array | undefined, endOfStream: boolean, state: ProcessorState | undefined): Promise<void> {
      const config = state?.config;
      if (!phase.expectBody || config === undefined || state?.opener === undefined) {
        // A body we did not ask for (route config sends bodies anyway): pass it untouched.
        return send({ request_body: { response: { status: CommonStatus.CONTINUE } } });
      }
      phase.expectBody = false;
      const bytes = body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      if (bytes.length > config.maxBodyBytes) return deny(413, 'e2ee_too_large', state);
      // BUFFERED sends the whole body with end_of_stream; anything else is a chunk we cannot decrypt alone.
      if (!endOfStream) return deny(400, 'e2ee_body_not_buffered', state);
      // Envoy's codecs enforce content-length downstream; a processor must not trust that a relay did.
      if (phase.contentLength >= 0 && phase.contentLength !== bytes.length) return deny(400, 'e2ee_content_length_mismatch', state);
      const result = await state.opener.open(bytes);
      if (!result.ok) return deny(result.status, result.reason, state, result.sender ?? '');
      phase.opened = config.encryptResponses ? result : undefined;
      const facts = sealFacts(state.factsSecret, {
        app: result.app,
        sender: result.sender,
        key: result.keyId,
        aead: aeadCipher(result.aead),
        rid: phase.requestId,
        exp: Date.now() + config.factsTtlMs,
      });
      const set = [setHeader('content-length', String(result.payload.length)), setHeader(FACTS_HEADER, facts)];
      const remove: string[] = [];
      if (result.contentType === '') remove.push('content-type');
      else set.push(setHeader('content-type', result.contentType));
      state.outcomes('decrypted');
      send({
        request_body: {
          response: {
            status: CommonStatus.CONTINUE,
            header_mutation: remove.length > 0 ? { set_headers: set, remove_headers: remove } : { set_headers: set },
            body_mutation: { body: result.payload },
          },
        },
      });
    }

    function onResponseBody(body: Buffer | Uint8Array | undefined, endOfStream: boolean, state: ProcessorState | undefined): void {
      const opened = phase.opened;
      const config = state?.config;
      if (opened === undefined || config === undefined) return send({ response_body: { response: { status: CommonStatus.CONTINUE } } });
      if (!endOfStream) return deny(502, 'e2ee_response_not_buffered', state);
      phase.opened = undefined;
      const plain = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
      // The upstream's content-type travels inside the ciphertext; the outer one says "encrypted".
      const sealed = opened.sealResponse(phase.responseType, plain);
      send({
        response_body: {
          response: {
            status: CommonStatus.CONTINUE,
            header_mutation: { set_headers: [setHeader('content-type', config.responseContentType), setHeader('content-length', String(sealed.length))] },
            body_mutation: { body: sealed },
          },
        },
      });
    }
  };
}
