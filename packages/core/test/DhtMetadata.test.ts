import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Option from "effect/Option"
import * as DhtMetadata from "../src/DhtMetadata.js"

const withMetadata = Effect.provide(DhtMetadata.layerMemory)

describe("DhtMetadata.layerMemory", () => {
  it.effect("a key is absent until set, then holds the last value written", () =>
    Effect.gen(function*() {
      const metadata = yield* DhtMetadata.DhtMetadata
      expect(yield* metadata.get("OfflineTimestamp")).toEqual(Option.none())
      yield* metadata.set("OfflineTimestamp", DhtMetadata.encodeMillis(1_000))
      yield* metadata.set("OfflineTimestamp", DhtMetadata.encodeMillis(2_000))
      const stored = yield* metadata.get("OfflineTimestamp")
      expect(Option.flatMap(stored, DhtMetadata.decodeMillis)).toEqual(Option.some(2_000))
    }).pipe(withMetadata))

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
    }).pipe(withMetadata))

  it.effect("each build starts empty", () =>
    Effect.gen(function*() {
      yield* Effect.flatMap(DhtMetadata.DhtMetadata, (m) => m.set("OfflineTimestamp", Uint8Array.of(1))).pipe(
        withMetadata
      )
      const fresh = yield* Effect.flatMap(DhtMetadata.DhtMetadata, (m) => m.get("OfflineTimestamp")).pipe(withMetadata)
      expect(fresh).toEqual(Option.none())
    }))
})

describe("u64be milliseconds", () => {
  it("encodes big-endian in 8 bytes", () => {
    // 2025-01-01T00:00:00Z
    expect(Array.from(DhtMetadata.encodeMillis(1_735_689_600_000))).toEqual([0, 0, 1, 148, 31, 41, 124, 0])
    expect(Array.from(DhtMetadata.encodeMillis(0))).toEqual([0, 0, 0, 0, 0, 0, 0, 0])
    expect(Array.from(DhtMetadata.encodeMillis((1n << 64n) + 5n))).toEqual([255, 255, 255, 255, 255, 255, 255, 255])
    expect(Array.from(DhtMetadata.encodeMillis(-5))).toEqual([0, 0, 0, 0, 0, 0, 0, 0])
  })

  it("decodes only 8-byte values that fit a safe integer", () => {
    const newYear = Uint8Array.of(0, 0, 1, 148, 31, 41, 124, 0)
    expect(DhtMetadata.decodeMillis(newYear)).toEqual(Option.some(1_735_689_600_000))
    expect(DhtMetadata.decodeMillis(new Uint8Array(7))).toEqual(Option.none())
    expect(DhtMetadata.decodeMillis(new Uint8Array(9))).toEqual(Option.none())
    expect(DhtMetadata.decodeMillis(new Uint8Array(8).fill(255))).toEqual(Option.none())
    // a view into a larger buffer decodes its own bytes
    const backing = Uint8Array.of(7, 0, 0, 0, 0, 0, 0, 0, 42, 7)
    expect(DhtMetadata.decodeMillis(backing.subarray(1, 9))).toEqual(Option.some(42))
  })

  it.prop("decode ∘ encode is the identity on safe non-negative integers", [
    FastCheck.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })
  ], ([ms]) => {
    expect(DhtMetadata.decodeMillis(DhtMetadata.encodeMillis(ms))).toEqual(Option.some(ms))
  }, { fastCheck: { numRuns: 1_000 } })
})
