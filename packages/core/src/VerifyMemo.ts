/**
 * The verification memo of SPEC §4: a bounded LRU map from (publicKey, signature, message) to the outcome of the
 * Ed25519 predicate, keyed by the inputs' bytes where they are short and by `DSH("verify_memo", 32, …)` otherwise
 * (docs/spec-departures.md §9). Verification is a pure function of those three inputs, so a remembered
 * answer is as good as a recomputed one; a flood reaching a node over several links, or a simulation whose nodes
 * share one layer, then pays for one verification. Every `Crypto` backend builds its `verify` on it.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import type * as MetricLabel from "effect/MetricLabel"
import * as DhtMetrics from "./DhtMetrics.js"
import * as Hex from "./internal/hex.js"
import { byteKey } from "./internal/hexKey.js"
import * as Lru from "./internal/lru.js"

/**
 * Entries kept by default (`verifyMemoCapacity`, SPEC §17.1).
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_CAPACITY = 65_536

/**
 * A verification predicate: `true` iff the signature is acceptable. It may throw; a throw counts as rejection.
 *
 * @since 0.1.0
 * @category models
 */
export type Predicate = (publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array) => boolean

/**
 * @since 0.1.0
 * @category models
 */
export interface VerifyMemo {
  /** Most entries ever held; 0 disables the memo (every call verifies). */
  readonly capacity: number
  /** Entries held now, never above `capacity`. */
  readonly size: Effect.Effect<number>
  /**
   * The remembered answer for these inputs, else `predicate`'s (a throw is `false`), remembered. Counts
   * `comms_dht_crypto_verify_total{result=memo|valid|invalid}`.
   */
  readonly verify: (
    publicKey: Uint8Array,
    signature: Uint8Array,
    message: Uint8Array,
    predicate: Predicate
  ) => Effect.Effect<boolean>
  /**
   * `verify` in the caller's step, counted under `labels` (the caller's fiber's metric labels): for code already
   * running inside a step of a fiber, where the Effect around the answer costs more than the lookup.
   *
   * @since 0.1.0
   */
  readonly unsafeVerify: (
    publicKey: Uint8Array,
    signature: Uint8Array,
    message: Uint8Array,
    predicate: Predicate,
    labels: ReadonlyArray<MetricLabel.MetricLabel>
  ) => boolean
}

const memoHit = DhtMetrics.tagged(DhtMetrics.cryptoVerify, "result", "memo")
const valid = DhtMetrics.tagged(DhtMetrics.cryptoVerify, "result", "valid")
const invalid = DhtMetrics.tagged(DhtMetrics.cryptoVerify, "result", "invalid")
const accepted = Effect.succeed(true)
const rejected = Effect.succeed(false)
const acceptedHit = { ok: true, counter: memoHit } as const
const rejectedHit = { ok: false, counter: memoHit } as const
const acceptedNew = { ok: true, counter: valid } as const
const rejectedNew = { ok: false, counter: invalid } as const

// Ed25519's sizes: with both fixed, the bytes of (publicKey, signature, message) side by side name the inputs exactly
const KEY_LENGTH = 32
const SIGNATURE_LENGTH = 64
// messages up to this length are keyed by their bytes; a longer one by a hash, which keeps an entry small
const INLINE_MESSAGE = 64
// One buffer for every key: an array of this size is a store outside V8's heap, 450 ns to allocate where a view
// costs 35, and the key is a string read from it at once.
const keyBytes = new Uint8Array(KEY_LENGTH + SIGNATURE_LENGTH + INLINE_MESSAGE)

/**
 * The entry of (publicKey, signature, message): SPEC §4's `DSH("verify_memo", …)` as hex (64 characters), or, for
 * the usual inputs (a 32-byte challenge), the inputs' own bytes as a string of 96 characters or more. The two kinds
 * never meet (their lengths differ), and the bytes cost a copy where the hash cost a BLAKE2b and hex on every
 * signature a node sees (peer claims arrive hundreds of times each in a join).
 */
const keyOf = (
  dsh: (label: "verify_memo", outLen: number, fields: ReadonlyArray<Uint8Array>) => Uint8Array,
  publicKey: Uint8Array,
  signature: Uint8Array,
  message: Uint8Array
): string => {
  if (publicKey.length !== KEY_LENGTH || signature.length !== SIGNATURE_LENGTH || message.length > INLINE_MESSAGE) {
    return Hex.encode(dsh("verify_memo", 32, [publicKey, signature, message]))
  }
  keyBytes.set(publicKey)
  keyBytes.set(signature, KEY_LENGTH)
  keyBytes.set(message, KEY_LENGTH + SIGNATURE_LENGTH)
  return byteKey(keyBytes.subarray(0, KEY_LENGTH + SIGNATURE_LENGTH + message.length))
}

const attempt = (predicate: Predicate, publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array) => {
  try {
    return predicate(publicKey, signature, message)
  } catch {
    // SPEC §4.3: whatever a library throws on malformed input means "reject"
    return false
  }
}

/**
 * A memo for one layer. `dsh` is the layer's domain-separated hash (any backend's gives the same key).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly capacity?: number | undefined
  readonly dsh: (label: "verify_memo", outLen: number, fields: ReadonlyArray<Uint8Array>) => Uint8Array
}): Effect.Effect<VerifyMemo> =>
  Effect.sync(() => {
    const entries = Lru.make<boolean>(options.capacity ?? DEFAULT_CAPACITY)
    // the answer, and the counter it is counted on
    const answer = (publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array, predicate: Predicate) => {
      if (entries.capacity > 0) {
        const key = keyOf(options.dsh, publicKey, signature, message)
        const known = entries.get(key)
        if (known !== undefined) return known ? acceptedHit : rejectedHit
        const ok = attempt(predicate, publicKey, signature, message)
        entries.set(key, ok)
        return ok ? acceptedNew : rejectedNew
      }
      return attempt(predicate, publicKey, signature, message) ? acceptedNew : rejectedNew
    }
    const unsafeVerify = (
      publicKey: Uint8Array,
      signature: Uint8Array,
      message: Uint8Array,
      predicate: Predicate,
      labels: ReadonlyArray<MetricLabel.MetricLabel>
    ): boolean => {
      const outcome = answer(publicKey, signature, message, predicate)
      outcome.counter.unsafeUpdate(1, labels)
      return outcome.ok
    }
    return {
      capacity: entries.capacity,
      size: Effect.sync(entries.size),
      // One step of the caller's fiber, its metric counted as `Metric.increment` would (with the fiber's labels):
      // a peer's claim is verified each time the peer is relayed (hundreds of times in a join, nearly all of them
      // answered here), and the effects around a counter cost more than the lookup.
      verify: (publicKey, signature, message, predicate) =>
        Effect.withFiberRuntime((fiber) =>
          unsafeVerify(publicKey, signature, message, predicate, fiber.getFiberRef(FiberRef.currentMetricLabels))
            ? accepted
            : rejected
        ),
      unsafeVerify
    }
  })
