/**
 * The `Crypto` service (SPEC §4): every primitive comms-dht uses, behind one tag, so that a portable backend
 * (`@noble/*`, here) and a fast one (`node:crypto`, in `@comms-dht/node`) are interchangeable and proven
 * bit-identical by the same test vectors. The constructions built from these primitives (challenge, key
 * derivation, padding, message encryption) live in `MessageCrypto`, once, for every backend.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import type * as MetricLabel from "effect/MetricLabel"
import * as CryptoBackend from "./CryptoBackend.js"
import type { DecryptionFailed, EncryptionFailed } from "./DhtError.js"
import * as Noble from "./internal/noble.js"
import type { PublicKey, SecretKey } from "./NodeId.js"

/**
 * The exact DSH labels of SPEC §4.1.
 *
 * @since 0.1.0
 * @category models
 */
export type DshLabel =
  | "challenge"
  | "key_message"
  | "key_signature"
  | "dedup"
  | "identity_signature"
  | "noise_static"
  | "verify_memo"
  | "sim_identity"
  | "sim_drbg"
  | "receipt"

/**
 * An X25519 key pair (raw 32-byte scalar and u-coordinate).
 *
 * @since 0.1.0
 * @category models
 */
export interface X25519KeyPair {
  readonly secret: Uint8Array
  readonly publicKey: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface CryptoService {
  /** Which implementation this is, for logs and benchmarks. */
  readonly backend: string
  /** True for the seeded layers: `comms-dht run` refuses them (SPEC §4). */
  readonly deterministic: boolean

  /** `n` bytes from the layer's randomness (a CSPRNG, or the DRBG of SPEC §19 when seeded). */
  readonly randomBytes: (n: number) => Effect.Effect<Uint8Array>
  /** A fresh identity seed from the layer's randomness. */
  readonly generateSecretKey: Effect.Effect<SecretKey>
  /** The Ed25519 public key of a seed. */
  readonly publicKeyOf: (secret: SecretKey) => PublicKey
  /** The key check of SPEC §4.3: 32 bytes, canonical y, on the curve, not small-order. */
  readonly checkPublicKey: (bytes: Uint8Array) => bytes is PublicKey

  /** Unkeyed BLAKE2b-512 (64 bytes). */
  readonly blake2b512: (data: Uint8Array) => Uint8Array
  /** Domain-separated hash of SPEC §4.1. `outLen` in 1..64. */
  readonly dsh: (label: DshLabel, outLen: number, fields: ReadonlyArray<Uint8Array>) => Uint8Array

  /** Pure Ed25519 (RFC 8032) signature, 64 bytes. */
  readonly sign: (secret: SecretKey, message: Uint8Array) => Uint8Array
  /**
   * libsodium's acceptance predicate (SPEC §4.3) through the verification memo; never fails: anything malformed
   * is `false`. Counts `comms_dht_crypto_verify_total{result}`.
   */
  readonly verify: (publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array) => Effect.Effect<boolean>
  /**
   * `verify` answered in the caller's step and counted under `labels` (its fiber's metric labels), for code already
   * inside a fiber's step: a peer's claims are verified each time the peer is relayed, hundreds of thousands of
   * times in a large network's join, nearly all answered by the memo. Optional, so that a service made by hand
   * (a test's) need not have it; callers fall back to `verify`.
   */
  readonly unsafeVerify?: (
    publicKey: Uint8Array,
    signature: Uint8Array,
    message: Uint8Array,
    labels: ReadonlyArray<MetricLabel.MetricLabel>
  ) => boolean

  /** `X25519.publicKey(secret)`. */
  readonly x25519PublicKey: (secret: Uint8Array) => Uint8Array
  /** A fresh ephemeral X25519 key pair from the layer's randomness (SPEC §4.4 step 1). */
  readonly ephemeralKeyPair: Effect.Effect<X25519KeyPair>
  /**
   * Sender side: `X25519(e, toMontgomery(recipient))`; a throw or an all-zero result is `Left`. The pure primitives
   * answer with an `Either` (an Effect too, so `yield*` works): the pipelines call them in plain functions, without
   * a step of the fiber each.
   */
  readonly sharedSecretToRecipient: (
    ephemeralSecret: Uint8Array,
    recipient: PublicKey
  ) => Either.Either<Uint8Array, EncryptionFailed>
  /** Recipient side: `X25519(toMontgomerySecret(ownSeed), E)`; a throw or an all-zero result is `Left`. */
  readonly sharedSecretFromEphemeral: (
    ownSecret: SecretKey,
    ephemeralPublicKey: Uint8Array
  ) => Either.Either<Uint8Array, DecryptionFailed>

  /** XChaCha20-Poly1305 with a fresh random 24-byte nonce, empty AD: `nonce || ciphertext || tag`. */
  readonly seal: (key: Uint8Array, plaintext: Uint8Array) => Effect.Effect<Uint8Array>
  /** As `seal` with a given nonce (test vectors and the benchmark). */
  readonly sealWithNonce: (key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array) => Uint8Array
  /** Opens `nonce || ciphertext || tag`; too short or a failed tag is `DecryptionFailed`. */
  readonly open: (key: Uint8Array, sealed: Uint8Array) => Either.Either<Uint8Array, DecryptionFailed>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Crypto extends Context.Tag("@comms-dht/core/Crypto")<Crypto, CryptoService>() {}

/**
 * Options of every `Crypto` layer.
 *
 * @since 0.1.0
 * @category models
 */
export interface LayerOptions {
  /** Entries of the verification memo (SPEC §4; default 65,536, `verifyMemoCapacity` of §17.1). 0 disables it. */
  readonly verifyMemoCapacity?: number | undefined
}

/**
 * The portable backend (`@noble/*`, CSPRNG randomness). Each run builds a fresh verification memo.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeNoble = (options: LayerOptions = {}): Effect.Effect<CryptoService> =>
  CryptoBackend.make(Noble.primitives, { verifyMemoCapacity: options.verifyMemoCapacity })

/**
 * `Crypto` on `@noble/curves`, `@noble/hashes` and `@noble/ciphers`: runs wherever JavaScript runs.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNoble = (options: LayerOptions = {}): Layer.Layer<Crypto> => Layer.effect(Crypto, makeNoble(options))
