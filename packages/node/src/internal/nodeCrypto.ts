/** @internal */
import * as CryptoBackend from "@comms-dht/core/CryptoBackend"
import * as Ed25519 from "@comms-dht/core/Ed25519"
import { hchacha } from "@noble/ciphers/chacha.js"
import { ed25519 } from "@noble/curves/ed25519.js"
import * as NodeCrypto from "node:crypto"

/**
 * @internal
 * How many imported keys each cache keeps. Identities and peers repeat, so their KeyObjects are built once; the
 * per-message ephemeral keys are built fresh and never displace them.
 */
export interface CacheSizes {
  readonly ownKeys: number
  readonly peerKeys: number
}

/** @internal */
export const defaultCacheSizes: CacheSizes = { ownKeys: 1024, peerKeys: 16_384 }

// Keys are imported as JWK rather than the PKCS#8/SPKI DER of SPEC §4's table: the same raw bytes reach OpenSSL
// either way (the vectors prove the outputs identical), but OpenSSL 3's DER decoder costs ~400 µs per private key
// and ~100 µs per public key on our machine, against ~40 µs and ~15 µs for JWK — more than a whole X25519 or
// Ed25519 operation, paid on every message for the ephemeral keys.
const b64 = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64url")

const privateKey = (curve: "Ed25519" | "X25519", secret: Uint8Array): NodeCrypto.KeyObject =>
  // `x` is required by the JWK parser but ignored for a private key: OpenSSL derives the public key from `d`
  NodeCrypto.createPrivateKey({ key: { kty: "OKP", crv: curve, d: b64(secret), x: "" }, format: "jwk" })

const publicKey = (curve: "Ed25519" | "X25519", key: Uint8Array): NodeCrypto.KeyObject =>
  NodeCrypto.createPublicKey({ key: { kty: "OKP", crv: curve, x: b64(key) }, format: "jwk" })

const rawPublicKey = (key: NodeCrypto.KeyObject): Uint8Array => {
  const x = NodeCrypto.createPublicKey(key).export({ format: "jwk" }).x
  return Uint8Array.from(Buffer.from(x ?? "", "base64url"))
}

/** a copy, so that no caller holds a view into a pooled Buffer */
const bytes = (buffer: Uint8Array): Uint8Array => new Uint8Array(buffer)

// A digest is read as a latin1 ("binary") string and copied into 64 bytes, which V8 keeps inside its heap: 0.7 µs
// against 1.1 µs for a Buffer. A Buffer's bytes live outside the heap, and while the collector marks with external
// memory over V8's mark, each allocation outside the heap makes the allocating call do a step of marking: in the
// 3000-node simulation's join a hash as a Buffer cost 7.6 µs, against 2.6 µs at 1000 nodes (docs/performance.md,
// session 28).
const fromLatin1 = (s: string): Uint8Array => {
  const out = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i)
  return out
}

// `crypto.hash`, where the Node version has it (20.12 on)
const blake2bOneShot: ((data: Uint8Array) => Uint8Array) | undefined = typeof NodeCrypto.hash === "function"
  ? (data) => fromLatin1(NodeCrypto.hash("blake2b512", data, "binary"))
  : undefined

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString("hex")

const memoized = <V>(cache: CryptoBackend.Cache<V>, make: (key: Uint8Array) => V) => (key: Uint8Array): V => {
  const id = hex(key)
  const hit = cache.get(id)
  if (hit !== undefined) return hit
  const value = make(key)
  cache.set(id, value)
  return value
}

// HChaCha20's constants as the host-order words noble's `hchacha` expects (what it derives from the same bytes)
const SIGMA = new Uint32Array(Uint8Array.from(Buffer.from("expand 32-byte k", "ascii")).buffer)

/** @internal HChaCha20(key, nonce[0..16]): the XChaCha20 subkey (SPEC §4.5) */
export const subkey = (key: Uint8Array, nonce16: Uint8Array): Uint8Array => {
  const k = new Uint8Array(32)
  k.set(key)
  const n = new Uint8Array(16)
  n.set(nonce16)
  const out = new Uint32Array(8)
  hchacha(SIGMA, new Uint32Array(k.buffer), new Uint32Array(n.buffer), out)
  return new Uint8Array(out.buffer)
}

/** IETF ChaCha20-Poly1305's 12-byte nonce for XChaCha20: `00000000 || nonce[16..24]` */
const ietfNonce = (nonce: Uint8Array): Uint8Array => {
  const iv = new Uint8Array(12)
  iv.set(nonce.subarray(16, 24), 4)
  return iv
}

/**
 * @internal
 * The primitives on `node:crypto` (OpenSSL), with fresh caches. Ed25519→X25519 conversions and HChaCha20 come from
 * noble: node:crypto has neither.
 */
export const makePrimitives = (sizes: CacheSizes = defaultCacheSizes): CryptoBackend.Primitives => {
  const signingKeys = CryptoBackend.makeCache<NodeCrypto.KeyObject>(sizes.ownKeys)
  const agreementKeys = CryptoBackend.makeCache<NodeCrypto.KeyObject>(sizes.ownKeys)
  // `false` remembers a key that failed the key check, so a bad key costs its square root once
  const verifyingKeys = CryptoBackend.makeCache<NodeCrypto.KeyObject | false>(sizes.peerKeys)
  const recipientKeys = CryptoBackend.makeCache<NodeCrypto.KeyObject>(sizes.peerKeys)

  const signingKey = memoized(signingKeys, (secret) => privateKey("Ed25519", secret))
  const agreementKey = memoized(agreementKeys, (scalar) => privateKey("X25519", scalar))
  const recipientKey = memoized(recipientKeys, (u) => publicKey("X25519", u))
  const verifyingKey = memoized(
    verifyingKeys,
    (key): NodeCrypto.KeyObject | false => Ed25519.checkPublicKey(key) && publicKey("Ed25519", key)
  )

  return {
    backend: "node",
    randomBytes: (n) => NodeCrypto.randomFillSync(new Uint8Array(n)),
    blake2b512: (chunks) => {
      // one chunk (every framing whose fields fit inline: nearly all) in one call, without a Hash object to build
      // and release: 1.5 µs instead of 3.1 for a 600-byte input
      if (chunks.length === 1 && blake2bOneShot !== undefined) return blake2bOneShot(chunks[0]!)
      const h = NodeCrypto.createHash("blake2b512")
      for (const c of chunks) h.update(c)
      return fromLatin1(h.digest("binary"))
    },
    publicKeyOf: (secret) => rawPublicKey(signingKey(secret)),
    sign: (secret, message) => bytes(NodeCrypto.sign(null, message, signingKey(secret))),
    verify: (key, signature, message) => {
      if (key.length !== 32 || signature.length !== 64) return false
      const r = signature.subarray(0, 32)
      const s = signature.subarray(32, 64)
      // Ed25519.preCheck, with the key's part (the costly point decoding) remembered per key
      if (!Ed25519.isCanonicalScalar(s) || !Ed25519.hasCanonicalY(r) || Ed25519.isSmallOrderEncoding(r)) return false
      const keyObject = verifyingKey(key)
      // OpenSSL's equation is the cofactorless one of check 4
      return keyObject !== false && NodeCrypto.verify(null, message, keyObject, signature)
    },
    x25519PublicKey: (secret) => rawPublicKey(privateKey("X25519", secret)),
    x25519: (secret, u, side) => {
      const privateKeyObject = side === "recipient" ? agreementKey(secret) : privateKey("X25519", secret)
      const publicKeyObject = side === "sender" ? recipientKey(u) : publicKey("X25519", u)
      return bytes(NodeCrypto.diffieHellman({ privateKey: privateKeyObject, publicKey: publicKeyObject }))
    },
    toMontgomery: (key) => ed25519.utils.toMontgomery(key),
    toMontgomerySecret: (secret) => ed25519.utils.toMontgomerySecret(secret),
    seal: (key, nonce, plaintext) => {
      const cipher = NodeCrypto.createCipheriv(
        "chacha20-poly1305",
        subkey(key, nonce.subarray(0, 16)),
        ietfNonce(nonce),
        { authTagLength: 16 }
      )
      const out = new Uint8Array(24 + plaintext.length + 16)
      out.set(nonce.subarray(0, 24), 0)
      const head = cipher.update(plaintext)
      out.set(head, 24)
      out.set(cipher.final(), 24 + head.length)
      out.set(cipher.getAuthTag(), 24 + plaintext.length)
      return out
    },
    open: (key, sealed) => {
      const nonce = sealed.subarray(0, 24)
      const decipher = NodeCrypto.createDecipheriv(
        "chacha20-poly1305",
        subkey(key, nonce.subarray(0, 16)),
        ietfNonce(nonce),
        { authTagLength: 16 }
      )
      decipher.setAuthTag(sealed.subarray(sealed.length - 16))
      const out = new Uint8Array(sealed.length - 40)
      const head = decipher.update(sealed.subarray(24, sealed.length - 16))
      out.set(head, 0)
      out.set(decipher.final(), head.length) // throws on a failed tag
      return out
    }
  }
}
