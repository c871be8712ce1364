/**
 * The implementations every behavioural suite runs against: core's memory Layers (the reference) and the sqlite
 * store on a fresh `":memory:"` database. A case that passes on one and fails on the other is a divergence.
 */
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import type { StoreError } from "@comms-dht/core/DhtError"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as SqliteStore from "../src/SqliteStore.js"

export interface Implementation {
  readonly name: string
  readonly layer: (config: DhtConfig.Config) => Layer.Layer<SqliteStore.Services, StoreError>
}

export const memory: Implementation = {
  name: "memory",
  layer: (config) =>
    Layer.mergeAll(
      PeerManager.layerMemory,
      MessageStore.layerMemory,
      DedupCache.layerMemory,
      DhtMetadata.layerMemory
    ).pipe(Layer.provide(DhtConfig.layer(config)))
}

export const sqlite: Implementation = {
  name: "sqlite",
  layer: (config) => SqliteStore.layer({ filename: ":memory:" }).pipe(Layer.provide(DhtConfig.layer(config)))
}

export const implementations: ReadonlyArray<Implementation> = [memory, sqlite]

/** Provides a fresh store of `impl` configured with `overrides`. */
export const provideStore = (impl: Implementation, overrides: DhtConfig.Overrides = {}) =>
<A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provide(effect, impl.layer(DhtConfig.unsafeMake(overrides)))
