/**
 * Our node:crypto HPKE receiver against @hpke/core as the sender (the oracle):
 * base and auth modes, both AEADs, exporter, and refusals (wrong info, tag,
 * small-order enc).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { Aes128Gcm, Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { AEAD_AES_128_GCM, AEAD_AES_256_GCM, HpkeOpenError, openOnce, rawPublicKey, x25519PublicKey, type AeadId } from '../../ext-authz/src/e2ee/hpke.js';
import { createPublicKey } from 'node:crypto';

const te = new TextEncoder();

describe('e2ee: HPKE receiver (node:crypto) interoperates with @hpke/core', () => {
  const server = generateKeyPairSync('x25519');
  const recipient = { privateKey: server.privateKey, publicKey: rawPublicKey(server.publicKey) };

  for (const [name, aeadId, aead] of [['AES-128-GCM', AEAD_AES_128_GCM, new Aes128Gcm()], ['AES-256-GCM', AEAD_AES_256_GCM, new Aes256Gcm()]] as const) {
    for (const mode of ['base', 'auth'] as const) {
      it(`${mode} mode, ${name}: opens, and the exporter agrees`, async () => {
        const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead });
        const pkR = await suite.kem.deserializePublicKey(recipient.publicKey.buffer.slice(recipient.publicKey.byteOffset, recipient.publicKey.byteOffset + 32) as ArrayBuffer);
        const senderKp = await suite.kem.generateKeyPair();
        const info = te.encode('passgate test info');
        const aad = te.encode('aad');
        const ctx = await suite.createSenderContext({ recipientPublicKey: pkR, info, ...(mode === 'auth' ? { senderKey: senderKp } : {}) });
        const pt = te.encode('x'.repeat(1000));
        const ct = new Uint8Array(await ctx.seal(pt, aad));
        const exported = Buffer.from(await ctx.export(te.encode('label'), 32));
        const senderRaw = Buffer.from(await suite.kem.serializePublicKey(senderKp.publicKey));
        const sender = mode === 'auth' ? { key: x25519PublicKey(senderRaw), raw: senderRaw } : undefined;
        const opened = openOnce(aeadId as AeadId, recipient, new Uint8Array(ctx.enc), info, aad, ct, sender);
        assert.deepEqual(new Uint8Array(opened.plaintext), pt);
        assert.deepEqual(opened.exportSecret(te.encode('label'), 32), exported);
        assert.throws(() => openOnce(aeadId as AeadId, recipient, new Uint8Array(ctx.enc), te.encode('other info'), aad, ct, sender), HpkeOpenError);
        const flipped = Uint8Array.from(ct);
        flipped[0]! ^= 1;
        assert.throws(() => openOnce(aeadId as AeadId, recipient, new Uint8Array(ctx.enc), info, aad, flipped, sender), HpkeOpenError);
        if (mode === 'auth') {
          const otherRaw = rawPublicKey(createPublicKey(generateKeyPairSync('x25519').privateKey));
          assert.throws(() => openOnce(aeadId as AeadId, recipient, new Uint8Array(ctx.enc), info, aad, ct, { key: x25519PublicKey(otherRaw), raw: otherRaw }), HpkeOpenError);
        }
      });
    }
  }

  it('refuses a small-order (all-zero) enc as HpkeOpenError, not a crypto exception', () => {
    assert.throws(() => openOnce(AEAD_AES_128_GCM, recipient, new Uint8Array(32), new Uint8Array(), new Uint8Array(), new Uint8Array(32)), HpkeOpenError);
  });
});
