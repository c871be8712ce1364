/**
 * Test and simulation helpers of `@comms-dht/node`, kept off the main entry point: the `node:crypto` backend with
 * the seeded DRBG of SPEC §19 as its randomness. The simulation builds one and shares it among all its nodes (one
 * DRBG, one verification memo); `comms-dht run` refuses it (`deterministic = true`).
 *
 * @since 0.1.0
 */
import type { CryptoService, LayerOptions } from "@comms-dht/core/Crypto"
import { Crypto } from "@comms-dht/core/Crypto"
import * as CryptoBackend from "@comms-dht/core/CryptoBackend"
import * as Drbg from "@comms-dht/core/Drbg"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { makePrimitives } from "./internal/nodeCrypto.js"

/**
 * The node backend drawing its randomness from the DRBG of seed `S`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeNodeSeeded = (seed: Drbg.Seed, options: LayerOptions = {}): Effect.Effect<CryptoService> =>
  Effect.flatMap(
    Drbg.make(seed),
    (drbg) => CryptoBackend.make(makePrimitives(), { verifyMemoCapacity: options.verifyMemoCapacity, drbg })
  )

/**
 * `layerNode` with the DRBG of seed `S` as its randomness (`deterministic = true`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNodeSeeded = (seed: Drbg.Seed, options: LayerOptions = {}): Layer.Layer<Crypto> =>
  Layer.effect(Crypto, makeNodeSeeded(seed, options))

/**
 * The simulation's virtual time: a heap-driven `Clock`, its driver and the `MemoryNetwork` hooks (SPEC §19).
 *
 * @since 0.1.0
 * @category models
 */
export * as VirtualClock from "./VirtualClock.js"
