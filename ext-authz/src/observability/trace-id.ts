/**
 * The id users quote to support: the W3C trace id when a valid traceparent
 * came in, else Envoy's x-request-id, else Envoy's stream id.
 */
const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}/;
const ZERO_TRACE = '00000000000000000000000000000000';
const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function traceIdOf(headers: Readonly<Record<string, string>>, streamId: string): string {
  const tp = headers['traceparent'];
  if (tp !== undefined) {
    const m = TRACEPARENT.exec(tp);
    if (m && m[1] !== ZERO_TRACE) return m[1]!;
  }
  const rid = headers['x-request-id'];
  // Only echo ids that are safe to put in a header and a JSON body.
  if (rid !== undefined && SAFE_ID.test(rid)) return rid;
  return SAFE_ID.test(streamId) ? streamId : '';
}
