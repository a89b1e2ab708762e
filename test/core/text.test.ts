/**
 * pipeline/text.ts: digests and key parts of text keep every distinction the JS string makes (UTF-8
 * alone merges lone surrogates into U+FFFD), and well-formed text hashes as its UTF-8, as before.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { asciiLower, digestText, isSafeFieldValue, isWellFormed } from '../../ext-authz/src/pipeline/text.js';
import { hostWithoutPort, lowercaseKeys } from '../../ext-authz/src/pipeline/request-view.js';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { keySubject } from '../../ext-authz/src/fds/subjects.js';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

describe('text leaving the process as bytes', () => {
  const merged = ['\ud800', '\udc00', '\udbff', '\ufffd', 'a\ud800', 'a\ufffd', '\ud800\ud800', '\ud83d\ude00', '\ude00\ud83d'];

  it('gives every distinct string its own digest, lone surrogates included', () => {
    assert.equal(new Set(merged.map((s) => sha(s))).size < merged.length, true, 'plain UTF-8 merges some of them');
    assert.equal(new Set(merged.map((s) => digestText(s, 'hex'))).size, merged.length);
  });

  it('hashes well-formed text as its UTF-8, so existing keys and digests keep their names', () => {
    for (const s of ['', 'alice', 'Zoë', '\ud83d\ude00', '\ufffd', 'x'.repeat(300)]) assert.equal(digestText(s, 'hex'), sha(s));
    assert.equal(digestText('alice', 'base64url'), createHash('sha256').update('alice').digest('base64url'));
  });

  it('gives every distinct FDS subject its own key part, and no literal subject spells a hashed one', () => {
    const long = 'u'.repeat(257);
    const subjects = [...merged, long, `sha256:${sha(long)}`, 'sha256', 'sha256x', 'alice'];
    assert.equal(new Set(subjects.map(keySubject)).size, subjects.length);
    assert.equal(keySubject('alice'), 'alice', 'ordinary subjects stay readable');
    assert.equal(keySubject(long), `sha256:${sha(long)}`, 'long subjects keep their earlier key');
    for (const s of subjects) assert.ok(isWellFormed(keySubject(s)), `${JSON.stringify(s)} becomes a well-formed key part`);
  });

  it('tells header values that can go out as they are from those that cannot', () => {
    for (const ok of ['', 'a b', 'a\tb', 'é', '\ud83d\ude00', '\u0080\u00ff', '"quoted"']) assert.equal(isSafeFieldValue(ok), true, JSON.stringify(ok));
    for (const bad of ['a\nb', 'a\rb', '\u0000', '\u001f', '\u007f', '\ud800', '\udfff']) assert.equal(isSafeFieldValue(bad), false, JSON.stringify(bad));
  });

  it('lowercases ASCII only: the Kelvin sign and other letters that fold into ASCII keep their spelling', () => {
    assert.equal(asciiLower('Kibana.Example.COM'), 'kibana.example.com');
    assert.equal(asciiLower('\u212Aibana'), '\u212Aibana');
    assert.equal(asciiLower('\u212AIBANA'), '\u212Aibana');
    assert.equal(asciiLower('\u0130'), '\u0130');
    assert.equal(hostWithoutPort('\u212AIBANA.example.com'), '\u212Aibana.example.com');
    const headers = lowercaseKeys(Object.assign(Object.create(null), { 'X-Trace': '1', 'coo\u212Aie': 'a=1' }) as Record<string, string>);
    assert.deepEqual(Object.keys(headers).sort(), ['coo\u212Aie', 'x-trace']);
  });

  it('reads an absolute host name (trailing dot) as the host, with or without a port; config hosts must not end in a dot', () => {
    for (const a of ['admin.example.com', 'admin.example.com.', 'ADMIN.example.com.:443', 'admin.example.com:8443']) assert.equal(hostWithoutPort(a), 'admin.example.com', a);
    assert.equal(hostWithoutPort('[::1]:443'), '[::1]');
    assert.equal(hostWithoutPort('.'), '.');
    const yaml = (host: string) => `gateways:\n  g:\n    kind: public\n    routes: [{ name: r, match: { hosts: ["${host}"] }, stages: [allow] }]\n`;
    assert.throws(() => parseConfigText(yaml('admin.example.com.'), 't.yaml'), /routes\[0\]\.match\.hosts\[0\]: must not end in "\."/);
    assert.throws(() => parseConfigText(yaml('a..example.com'), 't.yaml'), /empty label/);
    assert.doesNotThrow(() => parseConfigText(yaml('*.example.com'), 't.yaml'));
  });
});
