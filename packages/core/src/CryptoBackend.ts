/**
 * What every `Crypto` backend shares (SPEC §4): a backend supplies raw primitives, which may throw, and `make`
 * turns them into the `Crypto` service — the DSH framing, the verification memo, the layer's randomness (a CSPRNG
 * or the DRBG of SPEC §19), the Ed25519→X25519 conversion caches, the all-zero shared-secret check and the typed
 * errors. The portable backend is `Crypto.layerNoble`; `@comms-dht/node` builds its `node:crypto` one from here.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { CryptoService, DshLabel } from "./Crypto.js"
import { DecryptionFailed, EncryptionFailed } from "./DhtError.js"
import type { Drbg } from "./Drbg.js"
import * as Ed25519 from "./Ed25519.js"
import { isZero } from "./internal/bytes.js"
import { dshWith } from "./internal/dsh.js"
import * as Hex from "./internal/hex.js"
import * as Lru from "./internal/lru.js"
import type { PublicKey, SecretKey } from "./NodeId.js"
import * as VerifyMemo from "./VerifyMemo.js"

/**
 * The raw operations of a backend. Any of them may throw on malformed input; `make` catches where input is
 * untrusted. Byte arrays passed in are never mutated, and returned ones are fresh.
 *
 * @since 0.1.0
 * @category models
 */
export interface Primitives {
  readonly backend: string
  /** A CSPRNG. */
  readonly randomBytes: (n: number) => Uint8Array
  /**
   * Unkeyed BLAKE2b-512 over the concatenation of `chunks`. The chunks are valid only during the call (the DSH
   * framing reuses their buffer): read them, do not keep them.
   */
  readonly blake2b512: (chunks: ReadonlyArray<Uint8Array>) => Uint8Array
  /** Ed25519 public key of a 32-byte seed. */
  readonly publicKeyOf: (secret: Uint8Array) => Uint8Array
  /** Pure Ed25519 (RFC 8032). */
  readonly sign: (secret: Uint8Array, message: Uint8Array) => Uint8Array
  /** The whole predicate of SPEC §4.3 (pre-checks and equation). */
  readonly verify: VerifyMemo.Predicate
  /** `X25519.publicKey(secret)`. */
  readonly x25519PublicKey: (secret: Uint8Array) => Uint8Array
  /**
   * `X25519(secret, u)`; may throw on a low-order `u` or a zero result. `side` says which input is long-lived, for
   * a backend that caches imported keys: the sender pairs a fresh ephemeral secret with a recipient's `u`, the
   * recipient its own scalar with a fresh ephemeral `u`.
   */
  readonly x25519: (secret: Uint8Array, u: Uint8Array, side: "sender" | "recipient") => Uint8Array
  /** Edwards public key → Montgomery u-coordinate. */
  readonly toMontgomery: (publicKey: Uint8Array) => Uint8Array
  /** Ed25519 seed → clamped X25519 scalar. */
  readonly toMontgomerySecret: (secret: Uint8Array) => Uint8Array
  /** XChaCha20-Poly1305, empty AD, 32-byte key, 24-byte nonce: `nonce || ciphertext || tag`. */
  readonly seal: (key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array) => Uint8Array
  /** Inverse of `seal` on input of at least 40 bytes; throws on a failed tag. */
  readonly open: (key: Uint8Array, sealed: Uint8Array) => Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Entries of the verification memo (default 65,536; 0 disables it). */
  readonly verifyMemoCapacity?: number | undefined
  /** Randomness from this DRBG instead of the CSPRNG; makes the layer `deterministic`. */
  readonly drbg?: Drbg | undefined
}

/**
 * Peer keys whose Montgomery form is kept (one square root each, saved on every message to that peer).
 *
 * @since 0.1.0
 * @category constants
 */
export const CONVERSION_CACHE_CAPACITY = 4096

/**
 * A bounded least-recently-used map, for a backend's own caches (imported keys). Synchronous and mutable: touch it
 * only from inside the effects of the service that owns it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Cache<V> {
  readonly capacity: number
  readonly get: (key: string) => V | undefined
  readonly set: (key: string, value: V) => void
  readonly size: () => number
}

/**
 * A cache holding at most `capacity` entries (0 holds none).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeCache: <V>(capacity: number) => Cache<V> = Lru.make

/**
 * `SPEC §4.1`'s framing over a BLAKE2b-512 of chunks.
 *
 * @since 0.1.0
 * @category utils
 */
export const dshFrom = (
  blake2b512: (chunks: ReadonlyArray<Uint8Array>) => Uint8Array
): (label: DshLabel, outLen: number, fields: ReadonlyArray<Uint8Array>) => Uint8Array => dshWith(blake2b512)

const cached = (cache: Lru.Lru<Uint8Array>, f: (bytes: Uint8Array) => Uint8Array) => (bytes: Uint8Array) => {
  const key = Hex.encode(bytes)
  const hit = cache.get(key)
  if (hit !== undefined) return hit
  const value = f(bytes)
  cache.set(key, value)
  return value
}

/**
 * The `Crypto` service over a backend's primitives. Builds a fresh verification memo and caches, so a layer built
 * once and shared by many nodes shares them too.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (primitives: Primitives, options: Options = {}): Effect.Effect<CryptoService> =>
  Effect.gen(function*() {
    const dsh = dshWith(primitives.blake2b512)
    const memo = yield* VerifyMemo.make({ capacity: options.verifyMemoCapacity, dsh })
    const drbg = options.drbg
    const montgomery = cached(Lru.make(CONVERSION_CACHE_CAPACITY), primitives.toMontgomery)
    const montgomerySecret = cached(Lru.make(CONVERSION_CACHE_CAPACITY), primitives.toMontgomerySecret)

    const randomBytes = (n: number): Effect.Effect<Uint8Array> => {
      const size = Math.max(0, Math.floor(n))
      return drbg !== undefined ? drbg.bytes(size) : Effect.sync(() => primitives.randomBytes(size))
    }
    const sealWithNonce = primitives.seal

    const sharedSecret = (
      secret: () => Uint8Array,
      u: () => Uint8Array,
      side: "sender" | "recipient"
    ): Uint8Array | string => {
      try {
        const ss = primitives.x25519(secret(), u(), side)
        // belt and braces (SPEC §4.4): the only zero check, whatever the library does
        return isZero(ss) ? "all-zero shared secret" : ss
      } catch {
        return "key exchange failed"
      }
    }

    return {
      backend: primitives.backend,
      deterministic: drbg !== undefined,
      randomBytes,
      // 32 bytes by construction, which is all the brand states
      generateSecretKey: Effect.map(randomBytes(32), (bytes) => bytes as SecretKey),
      publicKeyOf: (secret) => primitives.publicKeyOf(secret) as PublicKey,
      checkPublicKey: Ed25519.checkPublicKey,
      blake2b512: (data) => primitives.blake2b512([data]),
      dsh,
      sign: primitives.sign,
      verify: (publicKey, signature, message) => memo.verify(publicKey, signature, message, primitives.verify),
      unsafeVerify: (publicKey, signature, message, labels) =>
        memo.unsafeVerify(publicKey, signature, message, primitives.verify, labels),
      x25519PublicKey: primitives.x25519PublicKey,
      ephemeralKeyPair: Effect.map(randomBytes(32), (secret) => ({
        secret,
        publicKey: primitives.x25519PublicKey(secret)
      })),
      sharedSecretToRecipient: (ephemeralSecret, recipient) => {
        const ss = sharedSecret(() => ephemeralSecret, () => montgomery(recipient), "sender")
        return typeof ss === "string" ? Either.left(new EncryptionFailed({ reason: ss })) : Either.right(ss)
      },
      sharedSecretFromEphemeral: (ownSecret, ephemeralPublicKey) => {
        const ss = sharedSecret(() => montgomerySecret(ownSecret), () => ephemeralPublicKey, "recipient")
        return typeof ss === "string" ? Either.left(new DecryptionFailed({ reason: ss })) : Either.right(ss)
      },
      seal: (key, plaintext) => Effect.map(randomBytes(24), (nonce) => sealWithNonce(key, nonce, plaintext)),
      sealWithNonce,
      open: (key, sealed) => {
        if (sealed.length < 24 + 16) {
          return Either.left(new DecryptionFailed({ reason: `sealed input of ${sealed.length} bytes` }))
        }
        try {
          return Either.right(primitives.open(key, sealed))
        } catch {
          return Either.left(new DecryptionFailed({ reason: "authentication failed" }))
        }
      }
    }
  })
