/**
 * The `DhtMetadata` cases every implementation must pass: core runs them on `layerMemory`, `@comms-dht/store` on
 * its sqlite store. Imports core by package name so that both packages' tests resolve the same modules.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"

/**
 * Declares the `DhtMetadata` cases under `name`. `layer` must build a fresh, empty store each time it is provided; the
 * suite supplies the `DhtConfig` each case needs.
 */
export const dhtMetadataSuite = <E>(name: string, layer: Layer.Layer<DhtMetadata.DhtMetadata, E>): void => {
  const withMetadata = (overrides: DhtConfig.Overrides = {}) =>
    Effect.provide(Layer.provide(layer, DhtConfig.layer(DhtConfig.unsafeMake(overrides))))

  describe(name, () => {
    it.effect("a key is absent until set, then holds the last value written", () =>
      Effect.gen(function*() {
        const metadata = yield* DhtMetadata.DhtMetadata
        expect(yield* metadata.get("OfflineTimestamp")).toEqual(Option.none())
        yield* metadata.set("OfflineTimestamp", DhtMetadata.encodeMillis(1_000))
        yield* metadata.set("OfflineTimestamp", DhtMetadata.encodeMillis(2_000))
        const stored = yield* metadata.get("OfflineTimestamp")
        expect(Option.flatMap(stored, DhtMetadata.decodeMillis)).toEqual(Option.some(2_000))
      }).pipe(withMetadata()))

    it.effect("values are copied in and out", () =>
      Effect.gen(function*() {
        const metadata = yield* DhtMetadata.DhtMetadata
        const value = Uint8Array.of(1, 2, 3)
        yield* metadata.set("OfflineTimestamp", value)
        value[0] = 9
        const read = Option.getOrThrow(yield* metadata.get("OfflineTimestamp"))
        expect(Array.from(read)).toEqual([1, 2, 3])
        read[1] = 9
        expect(Array.from(Option.getOrThrow(yield* metadata.get("OfflineTimestamp")))).toEqual([1, 2, 3])
      }).pipe(withMetadata()))

    it.effect("each build starts empty", () =>
      Effect.gen(function*() {
        yield* Effect.flatMap(DhtMetadata.DhtMetadata, (m) => m.set("OfflineTimestamp", Uint8Array.of(1))).pipe(
          withMetadata()
        )
        const fresh = yield* Effect.flatMap(DhtMetadata.DhtMetadata, (m) => m.get("OfflineTimestamp")).pipe(
          withMetadata()
        )
        expect(fresh).toEqual(Option.none())
      }))
  })
}
