/** oidc stage options the config check refuses at start, naming the key. */
import assert from 'node:assert/strict';
import { ConfigError, parseConfigText } from '../../ext-authz/src/config/load.js';
import { ssoConfig } from './support.js';

function configWith(edit: (c: Record<string, any>) => void): string {
  const c = JSON.parse(ssoConfig({ issuer: 'https://op.example', keyPrefix: 'test:oidc:config:' })) as Record<string, any>;
  edit(c);
  return JSON.stringify(c);
}

function refusal(text: string): string {
  try {
    parseConfigText(text, 'sso.json');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('the config was accepted');
}

describe('oidc: config checks', () => {
  it('accepts the tests\' config (identity headers listed as internal)', () => {
    parseConfigText(configWith(() => undefined), 'sso.json');
  });

  it('refuses identity headers that are not internal headers (a client could send its own copy)', () => {
    const msg = refusal(configWith((c) => (c['headers'].internal = ['x-passport', 'x-auth-request-user'])));
    assert.match(msg, /identityHeaders "x-auth-request-email", "x-auth-request-groups": list them in headers\.internal/);
    assert.match(msg, /gateways\.tools/);
  });

  it('accepts identity headers under an internal prefix', () => {
    parseConfigText(
      configWith((c) => {
        c['headers'] = { internal: ['x-passport'], internalPrefixes: ['x-auth-request-'] };
      }),
      'sso.json',
    );
  });
});
