/**
 * The UTF-8 of addresses as claims sign it (SPEC §4.7): the fast paths give exactly the bytes `TextEncoder` gives,
 * for any string, lone surrogates included.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import * as Wire from "../src/internal/wire.js"

const encoder = new TextEncoder()

// any UTF-16 code units, so that lone and paired surrogates, ASCII and multi-byte characters all occur; lengths on
// both sides of the on-heap limit (64)
const anyString = fc.oneof(
  fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 100 }).map((units) => String.fromCharCode(...units)),
  fc.array(fc.integer({ min: 0, max: 0x7f }), { maxLength: 100 }).map((units) => String.fromCharCode(...units)),
  fc.fullUnicodeString({ maxLength: 80 })
)

describe("UTF-8 of addresses", () => {
  it("encodeUtf8 and utf8Length agree with TextEncoder", () => {
    fc.assert(
      fc.property(anyString, (s) => {
        const expected = encoder.encode(s)
        expect(Array.from(Wire.encodeUtf8(s))).toEqual(Array.from(expected))
        expect(Wire.utf8Length(s)).toBe(expected.length)
      }),
      { numRuns: 5_000 }
    )
  })

  it("counts a pair as four bytes and a lone surrogate as three (U+FFFD)", () => {
    expect(Wire.utf8Length("mem://1")).toBe(7)
    expect(Wire.utf8Length("\u{1F600}")).toBe(4)
    expect(Wire.utf8Length("\ud83d")).toBe(3)
    expect(Wire.utf8Length("\ude00x")).toBe(4)
    expect(Wire.utf8Length("é")).toBe(2)
  })
})
