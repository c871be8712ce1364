import { describe, expect, it } from "@effect/vitest"
import * as Crypto from "@comms-dht/core/Crypto"
import * as Testing from "@comms-dht/core/testing"
import { blake2b } from "@noble/hashes/blake2.js"
import { Effect, FastCheck as fc } from "effect"
import { cryptoSuite, hex } from "./cryptoSuite.js"

cryptoSuite({ name: "noble", make: Crypto.makeNoble, makeSeeded: Testing.makeNobleSeeded })

const u64le = (n: number) => {
  const out = Buffer.alloc(8)
  out.writeBigUInt64LE(BigInt(n))
  return out
}

/** SPEC §4.1 written out byte by byte, independently of the implementation's chunked framing. */
const reference = (label: string, outLen: number, fields: ReadonlyArray<Uint8Array>) => {
  const tag = Buffer.from(`comms-dht.v1.${label}.${outLen}`, "ascii")
  const input = Buffer.concat([u64le(tag.length), tag, ...fields.flatMap((f) => [u64le(f.length), Buffer.from(f)])])
  return blake2b(input).subarray(0, outLen)
}

describe("entry points", () => {
  it("the seeded layer is only in @comms-dht/core/testing (SPEC §20.50)", () => {
    expect(Object.keys(Crypto)).not.toContain("layerNobleSeeded")
    expect(Object.keys(Crypto)).not.toContain("makeNobleSeeded")
    expect(Object.keys(Testing)).toEqual(expect.arrayContaining(["layerNobleSeeded", "makeNobleSeeded"]))
  })
})

describe("DSH framing", () => {
  it.effect("matches SPEC §4.1 written out, for small, empty and large fields", () =>
    Effect.gen(function*() {
      const crypto = yield* Crypto.makeNoble()
      const cases: ReadonlyArray<ReadonlyArray<Uint8Array>> = [
        [],
        [new Uint8Array(0)],
        [Uint8Array.of(1, 2, 3), new Uint8Array(1024).fill(7), new Uint8Array(1025).fill(9), Uint8Array.of(4)],
        [new Uint8Array(70_000).fill(0x5a)],
        [new Uint8Array(2000), new Uint8Array(3000), new Uint8Array(0), new Uint8Array(5)]
      ]
      for (const fields of cases) {
        for (const outLen of [1, 13, 32, 64]) {
          expect(hex(crypto.dsh("challenge", outLen, fields))).toBe(hex(reference("challenge", outLen, fields)))
        }
      }
    }))

  it.effect("matches the reference call after call, fields inline and by reference, past the framing buffer's size", () =>
    Effect.gen(function*() {
      const crypto = yield* Crypto.makeNoble()
      // sizes around the inline limit (1024) and lists whose inline part outgrows the buffer the framing reuses
      const field = fc.oneof(
        fc.uint8Array({ maxLength: 40 }),
        fc.uint8Array({ minLength: 1000, maxLength: 1100 }),
        fc.uint8Array({ minLength: 3000, maxLength: 5000 })
      )
      fc.assert(
        fc.property(fc.array(field, { maxLength: 12 }), fc.array(field, { maxLength: 12 }), (a, b) => {
          // b between two framings of a: nothing of one call may show in the next
          const first = hex(crypto.dsh("challenge", 32, a))
          const other = hex(crypto.dsh("dedup", 32, b))
          expect(first).toBe(hex(reference("challenge", 32, a)))
          expect(other).toBe(hex(reference("dedup", 32, b)))
          expect(hex(crypto.dsh("challenge", 32, a))).toBe(first)
        }),
        { numRuns: 300 }
      )
    }))

  it.effect("puts outLen into the tag, so outputs of different lengths are unrelated", () =>
    Effect.gen(function*() {
      const crypto = yield* Crypto.makeNoble()
      const fields = [Uint8Array.of(1)]
      expect(hex(crypto.dsh("dedup", 64, fields)).startsWith(hex(crypto.dsh("dedup", 32, fields)))).toBe(false)
    }))
})
