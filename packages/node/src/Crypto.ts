/**
 * The `node:crypto` backend of the `Crypto` service (SPEC §4): OpenSSL's Ed25519, X25519, BLAKE2b-512 and
 * ChaCha20-Poly1305, bit-identical to core's portable `Crypto.layerNoble` (both pass the same `crypto.json` and
 * `ed25519-speccheck.json`) and several times faster on verification and key exchange. Imported keys are cached per
 * identity and per peer.
 *
 * @since 0.1.0
 */
import type { CryptoService, LayerOptions } from "@comms-dht/core/Crypto"
import { Crypto } from "@comms-dht/core/Crypto"
import * as CryptoBackend from "@comms-dht/core/CryptoBackend"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { makePrimitives } from "./internal/nodeCrypto.js"

/**
 * The node backend with CSPRNG randomness (`crypto.randomFillSync`). Each run builds a fresh memo and key caches.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeNode = (options: LayerOptions = {}): Effect.Effect<CryptoService> =>
  Effect.suspend(() => CryptoBackend.make(makePrimitives(), { verifyMemoCapacity: options.verifyMemoCapacity }))

/**
 * `Crypto` on `node:crypto`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNode = (options: LayerOptions = {}): Layer.Layer<Crypto> => Layer.effect(Crypto, makeNode(options))
