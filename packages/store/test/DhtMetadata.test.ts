/**
 * core's `DhtMetadata` cases, run on the memory and the sqlite store alike.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import { type Implementation, implementations, provideStore } from "./implementations.js"

const withMetadata = (impl: Implementation) => provideStore(impl)

for (const impl of implementations) {
describe(`DhtMetadata (${impl.name})`, () => {
  it.effect("a key is absent until set, then holds the last value written", () =>
    Effect.gen(function*() {
      const metadata = yield* DhtMetadata.DhtMetadata
      expect(yield* metadata.get("OfflineTimestamp")).toEqual(Option.none())
      yield* metadata.set("OfflineTimestamp", DhtMetadata.encodeMillis(1_000))
      yield* metadata.set("OfflineTimestamp", DhtMetadata.encodeMillis(2_000))
      const stored = yield* metadata.get("OfflineTimestamp")
      expect(Option.flatMap(stored, DhtMetadata.decodeMillis)).toEqual(Option.some(2_000))
    }).pipe(withMetadata(impl)))

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
    }).pipe(withMetadata(impl)))

  it.effect("each build starts empty", () =>
    Effect.gen(function*() {
      yield* Effect.flatMap(DhtMetadata.DhtMetadata, (m) => m.set("OfflineTimestamp", Uint8Array.of(1))).pipe(
        withMetadata(impl)
      )
      const fresh = yield* Effect.flatMap(DhtMetadata.DhtMetadata, (m) => m.get("OfflineTimestamp")).pipe(
        withMetadata(impl)
      )
      expect(fresh).toEqual(Option.none())
    }))
})
}
