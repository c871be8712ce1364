import { describe, expect, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import * as Option from "effect/Option"
import * as DhtMetadata from "../src/DhtMetadata.js"
import { dhtMetadataSuite } from "./suites/dhtMetadataSuite.js"

dhtMetadataSuite("DhtMetadata.layerMemory", DhtMetadata.layerMemory)

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
