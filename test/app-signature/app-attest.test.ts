/** App Attest assertion checks on generated data: a key, authenticatorData and a CBOR assertion made here as a device would. */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { decodeAssertion, verifyAppAttestAssertion } from '../../ext-authz/src/app-signature/app-attest.js';

const APP_ID = 'TEAM123456.com.example.app';
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });

/** CBOR head for a major type and length (lengths up to 65535 here). */
const head = (major: number, len: number) => (len < 24 ? Buffer.from([(major << 5) | len]) : len < 256 ? Buffer.from([(major << 5) | 24, len]) : Buffer.from([(major << 5) | 25, len >> 8, len & 255]));
const text = (s: string) => Buffer.concat([head(3, Buffer.byteLength(s)), Buffer.from(s)]);
const bytes = (b: Buffer) => Buffer.concat([head(2, b.length), b]);

function assertion(counter: number, clientData: Buffer, appId = APP_ID, key = privateKey): Buffer {
  const authData = Buffer.alloc(37);
  createHash('sha256').update(appId).digest().copy(authData, 0);
  authData[32] = 0x40;
  authData.writeUInt32BE(counter, 33);
  const nonce = createHash('sha256').update(authData).update(createHash('sha256').update(clientData).digest()).digest();
  const signature = sign('sha256', nonce, { key, dsaEncoding: 'der' });
  return Buffer.concat([head(5, 2), text('signature'), bytes(signature), text('authenticatorData'), bytes(authData)]);
}

describe('app-signature: App Attest assertions (generated data)', () => {
  const clientData = Buffer.from('"@method": GET\n"@signature-params": ("@method");created=1');

  it('accepts a fresh assertion and returns its counter', () => {
    assert.deepEqual(verifyAppAttestAssertion({ assertion: assertion(5, clientData), clientData, key: publicKey, appId: APP_ID, lastCounter: 4 }), { ok: true, counter: 5 });
  });

  it('refuses a counter that does not grow, another app, another key, other client data and malformed CBOR', () => {
    const reason = (o: Partial<Parameters<typeof verifyAppAttestAssertion>[0]>) =>
      (verifyAppAttestAssertion({ assertion: assertion(5, clientData), clientData, key: publicKey, appId: APP_ID, lastCounter: 4, ...o }) as { reason?: string }).reason;
    assert.equal(reason({ lastCounter: 5 }), 'assertion_counter_backwards');
    assert.equal(reason({ assertion: assertion(5, clientData, 'TEAM123456.com.other') }), 'assertion_wrong_app');
    assert.equal(reason({ key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey }), 'assertion_bad_signature');
    assert.equal(reason({ clientData: Buffer.from('other') }), 'assertion_bad_signature');
    for (const junk of [Buffer.alloc(0), Buffer.from([0xa1]), assertion(5, clientData).subarray(0, 40), Buffer.concat([assertion(5, clientData), Buffer.from([0])])]) {
      assert.equal(reason({ assertion: junk }), 'assertion_malformed');
    }
    assert.equal(decodeAssertion(Buffer.from([0xbf])), undefined);
  });
});
