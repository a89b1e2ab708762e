import assert from 'node:assert/strict';
import { canonicalCidr, canonicalIp, normalizeSubject } from '../../ext-authz/src/fds/subjects.js';
import { CidrSet } from '../../ext-authz/src/fds/cidr.js';
import { parseDuration } from '../../ext-authz/src/fds/config.js';
import { ConfigError } from '../../ext-authz/src/config/load.js';
import type { BlockRecord, CounterOp } from '../../ext-authz/src/fds/store/store.js';
import { isExempt, withoutExempt } from '../../ext-authz/src/fds/exempt.js';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { config } from './helpers.js';

const rec = (subject: string, expiresAt: number | null = null): BlockRecord => ({
  kind: 'ip',
  subject,
  reason: 't',
  createdBy: 'admin:test',
  createdAt: 0,
  ttlMs: null,
  expiresAt,
});

describe('fds subjects and CIDR', () => {
  it('canonicalizes IPv4, IPv6 and IPv4-mapped addresses', () => {
    assert.equal(canonicalIp('10.1.2.3'), '10.1.2.3');
    assert.equal(canonicalIp('2001:DB8:0:0::1'), '2001:db8::1');
    assert.equal(canonicalIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
    assert.equal(canonicalIp('::ffff:192.0.2.5'), '192.0.2.5');
    assert.equal(canonicalIp('::1'), '::1');
    assert.equal(canonicalIp('fe80::1%eth0'), 'fe80::1');
  });

  it('canonicalizes any IPv6 spelling like the WHATWG URL parser (RFC 5952), property-based', () => {
    const group = fc.integer({ min: 0, max: 0xffff });
    const zeroish = fc.oneof(group, fc.constant(0), fc.constant(0));
    fc.assert(
      fc.property(fc.array(zeroish, { minLength: 8, maxLength: 8 }), fc.boolean(), (g, upper) => {
        if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return; // IPv4-mapped: we return plain IPv4 on purpose
        const long = g.map((x) => x.toString(16).padStart(upper ? 4 : 1, '0')).join(':');
        const text = upper ? long.toUpperCase() : long;
        const expected = new URL(`http://[${long}]/`).hostname.slice(1, -1);
        assert.equal(canonicalIp(text), expected);
        assert.equal(canonicalIp(expected), expected, 'canonical form is a fixed point');
      }),
      { numRuns: 500 },
    );
  });

  it('rejects malformed addresses', () => {
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-1', 'a.b.c.d', '1::2::3', '12345::1', 'gggg::1', '1.2.3.4 ', 'localhost']) {
      assert.equal(canonicalIp(bad), undefined, bad);
    }
  });

  it('canonicalizes CIDR ranges (host bits zeroed, /32 and /128 become addresses)', () => {
    assert.equal(canonicalCidr('10.1.2.3/8'), '10.0.0.0/8');
    assert.equal(canonicalCidr('10.1.2.3/32'), '10.1.2.3');
    assert.equal(canonicalCidr('0.0.0.0/0'), '0.0.0.0/0');
    assert.equal(canonicalCidr('2001:db8:abcd::1/32'), '2001:db8::/32');
    assert.equal(canonicalCidr('2001:db8::1/128'), '2001:db8::1');
    assert.equal(canonicalCidr('2001:db8::/129'), undefined);
    assert.equal(canonicalCidr('10.0.0.0/33'), undefined);
    assert.equal(canonicalCidr('10.0.0.0/x'), undefined);
  });

  it('matches IPv4 and IPv6 ranges, most specific first, ignoring expired ones', () => {
    const set = new CidrSet([rec('10.0.0.0/8'), rec('10.1.0.0/16'), rec('2001:db8::/32'), rec('192.168.0.0/24', 1000), rec('0.0.0.0/1')]);
    assert.equal(set.match('10.1.2.3')?.subject, '10.1.0.0/16');
    assert.equal(set.match('10.200.2.3')?.subject, '10.0.0.0/8');
    assert.equal(set.match('11.0.0.1')?.subject, '0.0.0.0/1');
    assert.equal(set.match('200.0.0.1'), undefined);
    assert.equal(set.match('192.168.0.7', 2000), undefined, 'expired range no longer matches');
    assert.equal(set.match('192.168.0.7', 500)?.subject, '192.168.0.0/24');
    assert.equal(set.match('2001:db8:ffff::9')?.subject, '2001:db8::/32');
    assert.equal(set.match('2001:db9::1'), undefined);
    assert.equal(set.match('not-an-ip'), undefined);
  });

  it('normalizes subjects per kind with precise errors', () => {
    assert.deepEqual(normalizeSubject('cert', 'AB:CD:EF'), { ok: true, subject: 'abcdef' });
    assert.equal(normalizeSubject('cert', 'xyz').ok, false);
    const bad = normalizeSubject('ip', '999.1.1.1');
    assert.ok(!bad.ok && bad.error.includes('not an IPv4 or IPv6 address'));
    assert.equal(normalizeSubject('user', '  ').ok, false);
    assert.equal(normalizeSubject('user', 'a\nb').ok, false);
  });

  it('one spelling per subject: serials without leading zeros, fingerprints with theirs, other kinds exactly as Checks report them, mapped ranges as IPv4', () => {
    assert.deepEqual(normalizeSubject('cert', '0A:1B:2C'), { ok: true, subject: 'a1b2c' });
    assert.deepEqual(normalizeSubject('cert', '00'), { ok: true, subject: '0' });
    const fp = `00${'ab'.repeat(31)}`;
    assert.deepEqual(normalizeSubject('cert', fp.toUpperCase()), { ok: true, subject: fp });
    assert.deepEqual(normalizeSubject('user', 'mallory '), { ok: true, subject: 'mallory ' });
    assert.deepEqual(normalizeSubject('ip', ' 10.0.0.1 '), { ok: true, subject: '10.0.0.1' });
    assert.equal(canonicalCidr('::ffff:203.0.113.0/120'), '203.0.113.0/24');
    assert.equal(canonicalCidr('::ffff:cb00:7100/120'), '203.0.113.0/24');
    assert.equal(canonicalCidr('::ffff:203.0.113.7/128'), '203.0.113.7');
    assert.equal(canonicalCidr('2001:db8::/32'), '2001:db8::/32');
  });

  it('parses durations', () => {
    assert.equal(parseDuration('15m'), 900_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration(2500), 2500);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('soon'), undefined);
    assert.equal(parseDuration(-1), undefined);
  });
});

describe('fds config', () => {
  const route = [{ name: 'r', prefix: '/', stages: ['fds', 'allow'] }];
  function problems(fds: Record<string, unknown>): string[] {
    try {
      config(fds, route);
      return [];
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return [...err.problems];
    }
  }

  it('accepts the documented example', () => {
    assert.deepEqual(
      problems({
        store: 'redis',
        redis: { mode: 'single', url: 'redis://127.0.0.1:6379', keyPrefix: 'pg:fds:', commandTimeoutMs: 40 },
        clientIp: { source: 'xff', xffTrustedHops: 1 },
        rules: [
          { name: 'user-auth', events: ['auth_failure'], subject: 'user', threshold: 5, window: '60s', block: '15m', escalate: { ttls: ['1h', '1d'], memory: '1d' } },
          { name: 'ip-failures', events: ['auth_failure'], subject: 'ip', threshold: 100, window: '60s', block: '1h' },
        ],
      }),
      [],
    );
  });

  it('names the key for typos, absurd TTLs, bad modes and duplicates', () => {
    assert.ok(problems({ stroe: 'redis' }).some((p) => p.includes('fds') && p.includes('"stroe"')));
    assert.ok(problems({ rules: [{ name: 'a', events: ['auth_failure'], subject: 'user', threshold: 5, window: '60s', block: '900y' }] }).some((p) => p.startsWith('fds.rules[0].block:')));
    assert.ok(problems({ rules: [{ name: 'a', events: ['auth_failure'], subject: 'user', threshold: 5, window: '60s', block: '5000d' }] }).some((p) => p.startsWith('fds.rules[0].block:') && p.includes('out of range')));
    assert.ok(problems({ rules: [{ name: 'a', events: ['x'], subject: 'planet', threshold: 5, window: '60s', block: '1h' }] }).some((p) => p.startsWith('fds.rules[0].subject')));
    assert.ok(problems({ store: 'redis' }).some((p) => p.startsWith('fds.redis')));
    assert.ok(problems({ redis: { mode: 'sentinel' } }).some((p) => p.startsWith('fds.redis.sentinels')));
    assert.ok(problems({ redis: { mode: 'cluster' } }).some((p) => p.startsWith('fds.redis.nodes')));
    const dup = { name: 'a', events: ['auth_failure'], subject: 'user', threshold: 5, window: '60s', block: '1h' };
    assert.ok(problems({ rules: [dup, dup] }).some((p) => p.startsWith('fds.rules[1].name')));
  });

  it('fds.exempt.ip: addresses and ranges, canonical; a bad entry names its key', () => {
    assert.ok(problems({ exempt: { ip: ['127.0.0.0/8', '::1', '10.1.2.3/32'] } }).length === 0);
    const bad = problems({ exempt: { ip: ['127.0.0.0/8', 'localhost'] } });
    assert.ok(bad.some((p) => p.startsWith('fds.exempt.ip[1]') && p.includes('"localhost" is not an IP address or CIDR range')), bad.join('\n'));
    const entries = ['127.0.0.0/8', '::1', '10.1.2.3'];
    assert.ok(isExempt('127.9.9.9', entries) && isExempt('::1', entries) && isExempt('10.1.2.3', entries));
    assert.ok(!isExempt('128.0.0.1', entries) && !isExempt('10.1.2.4', entries) && !isExempt('::2', entries));
    const op = (kind: string, subject: string) => ({ rule: 'r', kind, subject, increment: 1, windowMs: 1, threshold: 1, ttls: [1], memoryMs: 1 }) as unknown as CounterOp;
    const ops = [op('ip', '127.0.0.1'), op('ip', '203.0.113.7'), op('user', '127.0.0.1')];
    assert.deepEqual(withoutExempt(ops, entries).map((o) => `${o.kind}:${o.subject}`), ['ip:203.0.113.7', 'user:127.0.0.1']);
    assert.equal(withoutExempt(ops, []), ops);
  });

  it('validates the fds: example in docs/fds.md', () => {
    const doc = readFileSync(new URL('../../docs/fds.md', import.meta.url), 'utf8');
    const block = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.startsWith('fds:'));
    assert.ok(block, 'docs/fds.md has a yaml block starting with fds:');
    const yaml = `${block}\ngateways:\n  edge:\n    kind: public\n    routes:\n      - { name: login, stages: [fds, allow] }\n`;
    const cfg = parseConfigText(yaml, 'docs/fds.md');
    assert.equal(cfg.fds?.rules.length, 3);
    assert.deepEqual(cfg.fds?.rules[0]?.escalate?.ttls, [3_600_000, 86_400_000]);
  });
});
