/** @internal */
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js"
import { ed25519, x25519 } from "@noble/curves/ed25519.js"
import { bytesToNumberLE } from "@noble/curves/utils.js"
import { blake2b } from "@noble/hashes/blake2.js"
import { sha512 } from "@noble/hashes/sha2.js"
import { randomBytes } from "@noble/hashes/utils.js"
import type { Primitives } from "../CryptoBackend.js"
import * as Ed25519 from "../Ed25519.js"
import { equal } from "./bytes.js"

const Point = ed25519.Point

/**
 * @internal
 * libsodium's `crypto_sign_verify_detached` (SPEC §4.3) in point arithmetic. `ed25519.verify` is not it: its
 * default is ZIP-215 (non-canonical and small-order keys accepted, cofactored equation).
 */
export const verify = (publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array): boolean => {
  if (publicKey.length !== 32 || signature.length !== 64) return false
  const r = signature.subarray(0, 32)
  const s = signature.subarray(32, 64)
  // checks 1–3 with the helpers of Ed25519.preCheck, but decoding A only once (its key check needs the decoding)
  if (!Ed25519.isCanonicalScalar(s) || !Ed25519.hasCanonicalY(r) || Ed25519.isSmallOrderEncoding(r)) return false
  if (!Ed25519.hasCanonicalY(publicKey) || Ed25519.isSmallOrderEncoding(publicKey)) return false
  const a = Point.fromBytes(publicKey, false) // throws when not on the curve: the caller turns that into "reject"
  const h = sha512.create().update(r).update(publicKey).update(message).digest()
  const k = Point.Fn.create(bytesToNumberLE(h))
  const encoded = Point.BASE.multiplyUnsafe(bytesToNumberLE(s)).subtract(a.multiplyUnsafe(k)).toBytes()
  return equal(encoded, r)
}

/** @internal */
export const primitives: Primitives = {
  backend: "noble",
  randomBytes: (n) => randomBytes(n),
  blake2b512: (chunks) => {
    const h = blake2b.create()
    for (const c of chunks) h.update(c)
    return h.digest()
  },
  publicKeyOf: (secret) => ed25519.getPublicKey(secret),
  sign: (secret, message) => ed25519.sign(message, secret),
  verify,
  x25519PublicKey: (secret) => x25519.getPublicKey(secret),
  x25519: (secret, u) => x25519.getSharedSecret(secret, u),
  toMontgomery: (publicKey) => ed25519.utils.toMontgomery(publicKey),
  toMontgomerySecret: (secret) => ed25519.utils.toMontgomerySecret(secret),
  seal: (key, nonce, plaintext) => {
    const out = new Uint8Array(24 + plaintext.length + 16)
    out.set(nonce, 0)
    out.set(xchacha20poly1305(key, nonce).encrypt(plaintext), 24)
    return out
  },
  open: (key, sealed) => xchacha20poly1305(key, sealed.subarray(0, 24)).decrypt(sealed.subarray(24))
}
