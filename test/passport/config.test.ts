/** Config load: the passport section, its cross-checks and key files fail at load with the key named. */
import assert from 'node:assert/strict';
import { ConfigError, validateConfig } from '../../ext-authz/src/config/load.js';
import { loadKeyRing } from '../../ext-authz/src/passport/keys.js';
import { worstCasePassportBytes } from '../../ext-authz/src/passport/claims.js';
import { configWith, keyFiles, passportSection } from './helpers.js';

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  assert.fail('expected a ConfigError');
}

describe('passport config', () => {
  it('accepts a minimal static section and fills defaults', () => {
    const c = configWith(passportSection());
    assert.equal(c.passport?.header, 'x-passport');
    assert.equal(c.passport?.ttlSeconds, 300);
    assert.equal(c.passport?.keys.entries[0]?.alg, 'EdDSA');
  });

  it('configs without a passport section still validate', () => {
    const c = validateConfig({ gateways: { public: { kind: 'public', routes: [{ name: 'a', stages: ['allow'] }] } } });
    assert.equal(c.passport, undefined);
  });

  it('rejects a typo with the key path', () => {
    const p = problems(() => configWith(passportSection({ ttlSecond: 10 })));
    assert.ok(p.some((l) => l.startsWith('passport: unknown key "ttlSecond"')), p.join('\n'));
  });

  it('rejects an active key that names no entry, and duplicate ids', () => {
    const p = problems(() => configWith(passportSection({ keys: { active: 'k9', entries: [{ id: 'k1', generate: true }, { id: 'k1', generate: true }] } })));
    assert.ok(p.some((l) => l.startsWith('passport.keys.active: names no key')), p.join('\n'));
    assert.ok(p.some((l) => l.startsWith('passport.keys.entries[1].id: duplicate key id "k1"')), p.join('\n'));
  });

  it('rejects a key entry with both or neither of file and generate', () => {
    const p = problems(() => configWith(passportSection({ keys: { active: 'k1', entries: [{ id: 'k1' }] } })));
    assert.ok(p.some((l) => l.startsWith('passport.keys.entries[0]: set exactly one of file')), p.join('\n'));
  });

  it('rejects a config whose worst-case Passport exceeds the header limit, naming the limit', () => {
    const p = problems(() => configWith(passportSection({ limits: { maxRoles: 200, maxScopes: 200, maxValueLength: 256, maxHeaderBytes: 8192 } })));
    const line = p.find((l) => l.startsWith('passport.limits.maxHeaderBytes: a worst-case Passport is'));
    assert.ok(line, p.join('\n'));
    assert.match(line, /over the 8192-byte limit/);
  });

  // That it bounds a real signed maximal Passport is checked in stage.test.ts ('a maximal answer signs to no more than...').
  it('the worst-case estimate fits the defaults and grows with the limits', () => {
    const c = configWith(passportSection());
    const bytes = worstCasePassportBytes(c.passport!);
    assert.ok(bytes <= c.passport!.limits.maxHeaderBytes);
    // One role more than the defaults allow must not fit in the bytes computed for the defaults.
    const bigger = configWith(passportSection({ limits: { maxRoles: 17, maxHeaderBytes: 65536 } }));
    assert.ok(worstCasePassportBytes(bigger.passport!) > bytes);
  });

  it('rejects static users over the limits', () => {
    const p = problems(() =>
      configWith(
        passportSection({
          limits: { maxRoles: 1 },
          source: { type: 'static', users: { bob: { roles: ['a', 'b'], scopes: ['has "quote"'] } } },
        }),
      ),
    );
    assert.ok(p.some((l) => l.startsWith('passport.source.users.bob.roles: has 2 roles, over limits.maxRoles (1)')), p.join('\n'));
    assert.ok(p.some((l) => l.startsWith('passport.source.users.bob.scopes[0]: may only contain printable ASCII')), p.join('\n'));
  });

  it('the passport stage needs the passport section', () => {
    const p = problems(() => configWith(undefined, ['passport']));
    assert.ok(p.some((l) => l === 'gateways.public.routes[0].stages[0]: the passport stage needs the top-level "passport" section (issuer, audience, keys, source)'), p.join('\n'));
  });

  it('the passport header must be an internal header (so clients cannot forge it)', () => {
    const p = problems(() => configWith(passportSection({ header: 'x-user-passport' })));
    assert.ok(p.some((l) => l.startsWith('passport.header: "x-user-passport" is not an internal header')), p.join('\n'));
    // Listed → fine.
    configWith(passportSection({ header: 'x-user-passport' }), ['passport'], { headers: { internal: ['x-user-passport'] } });
  });

  it('a relay stage naming an unknown provider, or whose headers are not internal, is rejected', () => {
    const section = passportSection({ relay: { providers: { terms: { url: 'http://127.0.0.1:1/terms/{user}', field: 'accepted' } } } });
    const p = problems(() => configWith(section, [{ type: 'relay', providers: ['term'] }, 'passport']));
    assert.ok(p.some((l) => l.startsWith('gateways.public.routes[0].stages[0]: providers[0]: no relay provider "term" in passport.relay.providers (known: terms)')), p.join('\n'));
    const q = problems(() => configWith(section, [{ type: 'relay', providers: ['terms'] }], { headers: { internalPrefixes: ['x-internal-'] } }));
    assert.ok(q.some((l) => l.includes('must fall under headers.internalPrefixes')), q.join('\n'));
  });

  it('a relay URL must be http(s)', () => {
    const p = problems(() => configWith(passportSection({ relay: { providers: { terms: { url: 'ftp://x/{user}', field: 'a' } } } })));
    assert.ok(p.some((l) => l.startsWith('passport.relay.providers.terms.url: must be an http(s) URL')), p.join('\n'));
  });
});

describe('passport keys', () => {
  const files = keyFiles();
  const keys = (entries: unknown[], active = 'a') => configWith(passportSection({ keys: { active, entries } })).passport!.keys;

  it('loads PEM, JWK and EC keys and publishes only public halves', () => {
    const ring = loadKeyRing(
      keys([
        { id: 'a', file: files.edPem },
        { id: 'b', file: files.edJwk },
        { id: 'c', file: files.ecPem, alg: 'ES256' },
        { id: 'd', file: files.edPublicPem },
      ]),
    );
    assert.equal(ring.active.kid, 'a');
    const jwks = JSON.parse(ring.jwksBody) as { keys: Array<Record<string, string>> };
    assert.deepEqual(jwks.keys.map((k) => [k['kid'], k['alg'], k['crv']]), [
      ['a', 'EdDSA', 'Ed25519'],
      ['b', 'EdDSA', 'Ed25519'],
      ['c', 'ES256', 'P-256'],
      ['d', 'EdDSA', 'Ed25519'],
    ]);
    for (const k of jwks.keys) assert.equal(k['d'], undefined, 'private part leaked into the JWKS');
    assert.equal(ring.byKid.get('d')?.privateKey, undefined);
    assert.match(ring.etag, /^"[A-Za-z0-9_-]+"$/);
  });

  it('a file that is not a key is an error naming the config key and the file', () => {
    assert.throws(
      () => loadKeyRing(keys([{ id: 'a', file: files.garbage }])),
      (e: unknown) => e instanceof ConfigError && e.problems[0]!.startsWith(`passport.keys.entries[0].file: ${files.garbage} is not a PEM or JWK key`),
    );
  });

  it('a missing file, a key of the wrong type and a public-only active key are errors', () => {
    assert.throws(() => loadKeyRing(keys([{ id: 'a', file: `${files.dir}/nope.pem` }])), /passport\.keys\.entries\[0\]\.file: cannot read .*nope\.pem: ENOENT/);
    assert.throws(() => loadKeyRing(keys([{ id: 'a', file: files.ecPem }])), /entries\[0\]\.file: .*holds a ec key, but alg EdDSA needs an Ed25519 key/);
    assert.throws(() => loadKeyRing(keys([{ id: 'a', file: files.edPublicPem }])), /passport\.keys\.active: key "a" .*holds only a public key/);
  });

  it('a reload keeps generated keys (same id and alg) instead of silently rotating them', () => {
    const cfg = keys([{ id: 'a', generate: true }]);
    const first = loadKeyRing(cfg);
    const second = loadKeyRing(cfg, first);
    assert.equal(second.active.privateKey, first.active.privateKey);
    assert.equal(second.etag, first.etag);
    const third = loadKeyRing(keys([{ id: 'a', generate: true, alg: 'ES256' }]), second);
    assert.notEqual(third.etag, first.etag);
  });
});
