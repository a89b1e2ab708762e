/**
 * XFCC parser: Envoy's grammar (contract §3), element choice by forwarding
 * mode, and a property-based fuzz proving the parser never throws.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatXfccElement, parseXfcc, selectClientElement, urlEncodePem, type XfccElement } from '../../ext-authz/src/identity/xfcc.js';

function one(header: string): XfccElement {
  const r = parseXfcc(header);
  assert.ok(r.ok, r.ok ? '' : r.error);
  assert.equal(r.elements.length, 1);
  return r.elements[0]!;
}

function error(header: string, opts?: Parameters<typeof parseXfcc>[1]): string {
  const r = parseXfcc(header, opts);
  assert.ok(!r.ok, `expected a parse error for ${JSON.stringify(header.slice(0, 80))}`);
  return r.error;
}

describe('identity: XFCC parser', () => {
  it("parses Envoy's documented example with By, Hash, Subject, URI and DNS", () => {
    const e = one(
      'By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com;DNS=lyft.com;DNS=www.lyft.com',
    );
    assert.deepEqual(e.by, ['http://frontend.lyft.com']);
    assert.equal(e.hash, '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688');
    assert.equal(e.subject, '/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client');
    assert.deepEqual(e.uri, ['http://testclient.lyft.com']);
    assert.deepEqual(e.dns, ['lyft.com', 'www.lyft.com']);
    assert.equal(e.cert, '');
  });

  it('keeps commas, semicolons and = inside a quoted Subject, and keeps it verbatim (Envoy\'s RFC 2253 string, escapes included)', () => {
    const e = one('Hash=ab;Subject="CN=a\\"b\\\\,O=Acme\\, Inc.;x=y";URI=');
    assert.equal(e.subject, 'CN=a\\"b\\\\,O=Acme\\, Inc.;x=y');
    assert.deepEqual(e.uri, []);
  });

  it('keys are case-insensitive; repeated URI and By are collected; unknown keys are skipped', () => {
    const e = one('by=spiffe://a;BY=spiffe://b;HASH=00;uri=spiffe://x;Uri=spiffe://y;dns=d;Future="v,w"');
    assert.deepEqual(e.by, ['spiffe://a', 'spiffe://b']);
    assert.deepEqual(e.uri, ['spiffe://x', 'spiffe://y']);
    assert.deepEqual(e.dns, ['d']);
    assert.equal(e.hash, '00');
  });

  it('keeps Cert and Chain URL-encoded (decoded later, cached by the encoded form)', () => {
    const e = one('Hash=1;Cert="-----BEGIN%20CERTIFICATE-----%0AMII%2B%3D%0A";Chain="a%0Ab"');
    assert.equal(e.cert, '-----BEGIN%20CERTIFICATE-----%0AMII%2B%3D%0A');
    assert.equal(e.chain, 'a%0Ab');
  });

  it('splits elements on commas outside quotes (APPEND_FORWARD) and tolerates spaces around separators', () => {
    const r = parseXfcc('Hash=1;Subject="CN=a,O=b";URI=spiffe://a , Hash=2;URI=spiffe://b,Hash=3');
    assert.ok(r.ok);
    assert.deepEqual(
      r.elements.map((e) => [e.hash, e.uri[0]]),
      [
        ['1', 'spiffe://a'],
        ['2', 'spiffe://b'],
        ['3', undefined],
      ],
    );
    assert.equal(r.elements[0]!.subject, 'CN=a,O=b');
  });

  it('rejects malformed input with a message saying where', () => {
    assert.match(error(''), /empty/);
    assert.match(error('Hash'), /without "="/);
    assert.match(error('Hash=1;'), /trailing ";"/);
    assert.match(error('Hash=1,'), /trailing ","/);
    assert.match(error('Subject="CN=a'), /unbalanced quote opened at offset 8/);
    assert.match(error('Subject="CN=a\\"'), /unbalanced quote/);
    assert.match(error('Subject="a"b;Hash=1'), /after quoted value/);
    assert.match(error('URI=a"b'), /quote inside unquoted value/);
    assert.match(error('URI=a=b'), /"=" inside unquoted value/);
    assert.match(error('=x'), /empty key/);
    assert.match(error('Hash=1;Hash=2'), /repeated Hash in element 1/);
    assert.match(error('Hash=1,Cert="a";Cert="b"'), /repeated Cert in element 2/);
    assert.match(error('Hash=1\r\nX-Evil: 1'), /control character 0x0d at offset 6/);
    assert.match(error('Hash=\u0000'), /control character 0x00/);
    assert.match(error('Hash=\u007f'), /control character 0x7f/);
    assert.match(error(`Subject="${'x'.repeat(70_000)}"`), /over the 16384 limit/);
    assert.match(error(Array.from({ length: 9 }, (_, i) => `Hash=${i}`).join(',')), /more than 8 elements/);
    assert.match(error('Hash=1,Hash=2', { maxElements: 1 }), /more than 1 elements/);
  });

  it('selects the client element by forwarding mode and trusted hops', () => {
    const r = parseXfcc('URI=spiffe://forged,URI=spiffe://client,URI=spiffe://gateway');
    assert.ok(r.ok);
    const pick = (mode: 'sanitize_set' | 'append_forward', hops: number) => {
      const s = selectClientElement(r.elements, mode, hops);
      return 'element' in s ? s.element.uri[0] : s.error;
    };
    assert.match(String(pick('sanitize_set', 1)), /3 elements where the sanitizing proxy writes exactly one/);
    // Exactly what the hops write: the first element is the client's, any other count is refused.
    assert.match(String(pick('append_forward', 1)), /3 elements but 1 trusted hops write exactly 1/);
    assert.match(String(pick('append_forward', 2)), /3 elements but 2 trusted hops/);
    assert.equal(pick('append_forward', 3), 'spiffe://forged');
    assert.match(String(pick('append_forward', 4)), /3 elements but 4 trusted hops/);
    const single = parseXfcc('URI=spiffe://only');
    assert.ok(single.ok);
    const s = selectClientElement(single.elements, 'sanitize_set', 1);
    assert.ok('element' in s && s.element.uri[0] === 'spiffe://only');
  });

  it('fuzz: 10,000+ generated headers never make the parser throw, and results are well-formed', () => {
    const token = fc.constantFrom('By', 'Hash', 'Cert', 'Chain', 'Subject', 'URI', 'DNS', 'uri', 'HASH', 'x', '');
    const piece = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.constantFrom('=', ';', ',', '"', '\\"', '\\', ' ', '%0A', '%', '\u0000', '\r\n', '\u00e9', '\ud800'),
      token,
      fc.string({ unit: 'binary', maxLength: 10 }),
    );
    const structured = fc
      .array(
        fc.array(
          fc.tuple(token, fc.oneof(fc.stringMatching(/^[A-Za-z0-9:/.%-]{0,20}$/), fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 }).map((s) => `"${s}"`)), fc.boolean()),
          { minLength: 1, maxLength: 6 },
        ),
        { minLength: 1, maxLength: 4 },
      )
      .map((els) => els.map((pairs) => pairs.map(([k, v, q]) => `${k}=${q ? v.replace(/"/g, '\\"') : v}`).join(';')).join(','));
    const header = fc.oneof(
      { arbitrary: fc.array(piece, { maxLength: 40 }).map((p) => p.join('')), weight: 2 },
      { arbitrary: structured, weight: 3 },
      { arbitrary: fc.string({ unit: 'binary' }), weight: 1 },
    );
    let parsed = 0;
    fc.assert(
      fc.property(header, (h) => {
        const r = parseXfcc(h);
        // Any control character other than tab, anywhere, is refused.
        if (/[\x00-\x08\x0a-\x1f\x7f]/.test(h)) assert.ok(!r.ok && /control character/.test(r.error), `accepted ${JSON.stringify(h)}`);
        if (r.ok) {
          parsed++;
          assert.ok(r.elements.length >= 1 && r.elements.length <= 8);
          for (const e of r.elements) {
            assert.equal(typeof e.hash, 'string');
            assert.ok(Array.isArray(e.uri) && Array.isArray(e.dns) && Array.isArray(e.by));
          }
        } else {
          assert.equal(typeof r.error, 'string');
          assert.ok(r.error.length > 0);
        }
        for (const mode of ['sanitize_set', 'append_forward'] as const) {
          if (r.ok) selectClientElement(r.elements, mode, 2);
        }
      }),
      { numRuns: 12_000 },
    );
    // The structured arbitrary must actually reach the success path, or the fuzz proves little.
    assert.ok(parsed > 500, `only ${parsed} headers parsed`);
  });
  it('formatXfccElement writes Envoy\'s layout, and the parser reads back every field (round trip, 2,000 generated elements)', () => {
    assert.equal(
      formatXfccElement({ by: ['spiffe://gw'], hash: 'ab', cert: 'C%0A', chain: 'D%0A', subject: 'O=Acme\\, Inc.,CN=a', uri: [], dns: ['a.example', 'b.example'] }),
      'By=spiffe://gw;Hash=ab;Cert="C%0A";Chain="D%0A";Subject="O=Acme\\, Inc.,CN=a";URI=;DNS=a.example;DNS=b.example',
    );
    assert.equal(formatXfccElement({ hash: 'ab', uri: ['spiffe://x', 'spiffe://y'] }), 'Hash=ab;URI=spiffe://x;URI=spiffe://y');
    assert.equal(urlEncodePem('-----BEGIN X-----\nab+/c= d\n'), '-----BEGIN%20X-----%0Aab%2B%2Fc%3D%20d%0A');

    const plain = fc.stringMatching(/^[A-Za-z0-9:/._%-]{1,20}$/);
    // RFC 2253 text as Envoy prints it: `"` and `\` only ever appear escaped.
    const subject = fc.array(fc.constantFrom('CN=', 'O=', 'a', 'Z', ',', ';', '=', ' ', '+', '#', '\\"', '\\\\', '\\,', '\\C3\\AB'), { maxLength: 12 }).map((p) => p.join(''));
    const fields = fc.record({
      by: fc.array(plain, { maxLength: 2 }),
      hash: fc.option(plain, { nil: undefined }),
      cert: fc.option(plain, { nil: undefined }),
      chain: fc.option(plain, { nil: undefined }),
      subject: fc.option(subject, { nil: undefined }),
      uri: fc.array(plain, { maxLength: 3 }),
      dns: fc.array(plain, { maxLength: 3 }),
    });
    fc.assert(
      fc.property(fc.array(fields, { minLength: 1, maxLength: 3 }), (els) => {
        const r = parseXfcc(els.map(formatXfccElement).join(','));
        assert.ok(r.ok, r.ok ? '' : r.error);
        assert.deepEqual(
          r.elements,
          els.map((f) => ({ by: f.by, hash: f.hash ?? '', cert: f.cert ?? '', chain: f.chain ?? '', subject: f.subject ?? '', uri: f.uri, dns: f.dns })),
        );
      }),
      { numRuns: 2_000 },
    );
  });
});
