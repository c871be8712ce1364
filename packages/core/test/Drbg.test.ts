import { describe, expect, it } from "@effect/vitest"
import * as Drbg from "@comms-dht/core/Drbg"
import { Effect, FastCheck as fc } from "effect"
import { hex, unhex } from "./cryptoSuite.js"

describe("Drbg", () => {
  it.effect("is the RFC 8439 ChaCha20 keystream (A.1 test vectors 1 and 2: zero key, blocks 0 and 1)", () =>
    Effect.gen(function*() {
      const drbg = yield* Drbg.fromKey(new Uint8Array(32))
      expect(hex(yield* drbg.bytes(64))).toBe(
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7" +
          "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
      )
      expect(hex(yield* drbg.bytes(64))).toBe(
        "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed" +
          "29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f"
      )
    }))

  it.effect.prop(
    "the stream does not depend on how it is drawn",
    [fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: 1, maxLength: 8 })],
    ([sizes]) =>
      Effect.gen(function*() {
        const total = sizes.reduce((a, b) => a + b, 0)
        const whole = yield* (yield* Drbg.make(9)).bytes(total)
        const pieces = yield* Drbg.make(9)
        const drawn: Array<string> = []
        for (const n of sizes) drawn.push(hex(yield* pieces.bytes(n)))
        expect(drawn.join("")).toBe(hex(whole))
      }),
    { fastCheck: { numRuns: 200 } }
  )

  it.effect("a seed is a u64: equal seeds agree, distinct ones differ, number and bigint are the same seed", () =>
    Effect.gen(function*() {
      const first = (seed: Drbg.Seed) => Effect.flatMap(Drbg.make(seed), (d) => d.bytes(32))
      expect(hex(yield* first(7))).toBe(hex(yield* first(7n)))
      expect(hex(yield* first(7))).not.toBe(hex(yield* first(8)))
      expect(hex(yield* first(-1n))).toBe(hex(yield* first((1n << 64n) - 1n)))
      expect((yield* (yield* Drbg.make(1)).bytes(-5)).length).toBe(0)
    }))

  it("derives simulation identity seeds from S and i", () => {
    expect(hex(Drbg.simIdentitySeed(1, 0))).not.toBe(hex(Drbg.simIdentitySeed(1, 1)))
    expect(hex(Drbg.simIdentitySeed(1, 0))).not.toBe(hex(Drbg.simIdentitySeed(2, 0)))
    expect(hex(Drbg.simIdentitySeed(3, 4))).toBe(hex(Drbg.simIdentitySeed(3n, 4)))
    expect(Drbg.simIdentitySeed(1, 0).length).toBe(32)
    expect(unhex(hex(Drbg.keyFor(1))).length).toBe(32)
  })
})
