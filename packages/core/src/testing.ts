/**
 * Test and simulation helpers of `@comms-dht/core` (SPEC §4, §19), kept off the main entry point: a `Crypto` layer
 * whose randomness is the seeded DRBG repeats ephemeral keys and AEAD nonces from one run to the next, which is
 * what a reproducible simulation needs and what a real node must never do (`comms-dht run` refuses it).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { CryptoService, LayerOptions } from "./Crypto.js"
import { Crypto } from "./Crypto.js"
import * as CryptoBackend from "./CryptoBackend.js"
import * as Drbg from "./Drbg.js"
import * as Noble from "./internal/noble.js"

/**
 * The noble backend drawing its randomness from the DRBG of seed `S` (`deterministic = true`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeNobleSeeded = (seed: Drbg.Seed, options: LayerOptions = {}): Effect.Effect<CryptoService> =>
  Effect.flatMap(
    Drbg.make(seed),
    (drbg) => CryptoBackend.make(Noble.primitives, { verifyMemoCapacity: options.verifyMemoCapacity, drbg })
  )

/**
 * `Crypto.layerNoble` with the DRBG of seed `S` as its randomness. Build it once and share it to give many nodes one
 * DRBG and one verification memo.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNobleSeeded = (seed: Drbg.Seed, options: LayerOptions = {}): Layer.Layer<Crypto> =>
  Layer.effect(Crypto, makeNobleSeeded(seed, options))
