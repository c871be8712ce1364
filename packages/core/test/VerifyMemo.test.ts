import { describe, expect, it } from "@effect/vitest"
import * as Crypto from "@comms-dht/core/Crypto"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as VerifyMemo from "@comms-dht/core/VerifyMemo"
import { Effect, FastCheck as fc, Metric, MetricLabel } from "effect"

const count = (result: string) =>
  Effect.map(Metric.value(Metric.tagged(DhtMetrics.cryptoVerify, "result", result)), (s) => s.count)

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")

/** An injective stand-in for the DSH, so the property's thousands of lookups cost no hashing. */
const cheapKey = (_label: string, _outLen: number, fields: ReadonlyArray<Uint8Array>) =>
  Buffer.from(fields.map((f) => `${f.length}:${hex(f)}`).join("|"))

const memoOf = (capacity?: number) => VerifyMemo.make({ capacity, dsh: cheapKey })

/** A predicate that counts its calls and accepts messages whose first byte is even. */
const counting = () => {
  let calls = 0
  const predicate: VerifyMemo.Predicate = (_key, _sig, message) => {
    calls++
    return (message[0] ?? 0) % 2 === 0
  }
  return { predicate, calls: () => calls }
}

describe("VerifyMemo", () => {
  it.effect("defaults to 65,536 entries, keyed by the layer's DSH", () =>
    Effect.gen(function*() {
      const crypto = yield* Crypto.makeNoble()
      const memo = yield* VerifyMemo.make({ dsh: crypto.dsh })
      expect(memo.capacity).toBe(VerifyMemo.DEFAULT_CAPACITY)
      expect(VerifyMemo.DEFAULT_CAPACITY).toBe(65_536)
      const { calls, predicate } = counting()
      yield* memo.verify(new Uint8Array(32), new Uint8Array(64), Uint8Array.of(2), predicate)
      yield* memo.verify(new Uint8Array(32), new Uint8Array(64), Uint8Array.of(2), predicate)
      expect(calls()).toBe(1)
      expect(yield* memo.size).toBe(1)
    }))

  it.effect.prop(
    "never holds more than its capacity, and answers like the predicate",
    [fc.integer({ min: 0, max: 8 }), fc.array(fc.integer({ min: 0, max: 20 }), { maxLength: 60 })],
    ([capacity, inputs]) =>
      Effect.gen(function*() {
        const memo = yield* memoOf(capacity)
        const { predicate } = counting()
        for (const i of inputs) {
          const ok = yield* memo.verify(new Uint8Array(32), new Uint8Array(64), Uint8Array.of(i), predicate)
          expect(ok).toBe(i % 2 === 0)
          expect(yield* memo.size).toBeLessThanOrEqual(capacity)
        }
      }),
    { fastCheck: { numRuns: 300 } }
  )

  it.effect("a repeated input is answered from the memo and counted as a hit", () =>
    Effect.gen(function*() {
      const memo = yield* memoOf(16)
      const { calls, predicate } = counting()
      const before = { memo: yield* count("memo"), valid: yield* count("valid"), invalid: yield* count("invalid") }
      const key = new Uint8Array(32)
      const sig = new Uint8Array(64)
      for (let round = 0; round < 3; round++) {
        expect(yield* memo.verify(key, sig, Uint8Array.of(2), predicate)).toBe(true)
        expect(yield* memo.verify(key, sig, Uint8Array.of(3), predicate)).toBe(false)
      }
      expect(calls()).toBe(2)
      expect((yield* count("memo")) - before.memo).toBe(4)
      expect((yield* count("valid")) - before.valid).toBe(1)
      expect((yield* count("invalid")) - before.invalid).toBe(1)
      // any of the three inputs changing is another entry
      expect(yield* memo.verify(Uint8Array.of(1), sig, Uint8Array.of(2), predicate)).toBe(true)
      expect(yield* memo.verify(key, Uint8Array.of(1), Uint8Array.of(2), predicate)).toBe(true)
      expect(calls()).toBe(4)
    }))

  it.effect("counts under the calling fiber's metric labels, as Metric.increment would", () =>
    Effect.gen(function*() {
      const memo = yield* memoOf(16)
      const { predicate } = counting()
      const labelled = (result: string) =>
        Effect.map(
          Metric.value(Metric.tagged(Metric.tagged(DhtMetrics.cryptoVerify, "result", result), "node", "memo-test")),
          (s) => s.count
        )
      const before = { memo: yield* labelled("memo"), valid: yield* labelled("valid") }
      const verify = memo.verify(new Uint8Array(32), new Uint8Array(64), Uint8Array.of(4), predicate)
      yield* Effect.tagMetrics(Effect.zipRight(verify, verify), "node", "memo-test")
      expect((yield* labelled("valid")) - before.valid).toBe(1)
      expect((yield* labelled("memo")) - before.memo).toBe(1)
    }))

  it.effect("unsafeVerify shares the memo with verify, counted under the labels it is given", () =>
    Effect.gen(function*() {
      const memo = yield* memoOf(16)
      const { calls, predicate } = counting()
      const labels = [MetricLabel.make("node", "unsafe-memo-test")]
      const labelled = (result: string) =>
        Effect.map(
          Metric.value(
            Metric.tagged(Metric.tagged(DhtMetrics.cryptoVerify, "result", result), "node", "unsafe-memo-test")
          ),
          (s) => s.count
        )
      const before = { memo: yield* labelled("memo"), valid: yield* labelled("valid"), invalid: yield* labelled("invalid") }
      const key = new Uint8Array(32)
      const sig = new Uint8Array(64)
      expect(memo.unsafeVerify(key, sig, Uint8Array.of(2), predicate, labels)).toBe(true)
      expect(memo.unsafeVerify(key, sig, Uint8Array.of(3), predicate, labels)).toBe(false)
      // what one answered, the other finds
      expect(yield* memo.verify(key, sig, Uint8Array.of(2), predicate)).toBe(true)
      expect(memo.unsafeVerify(key, sig, Uint8Array.of(3), predicate, labels)).toBe(false)
      expect(calls()).toBe(2)
      expect((yield* labelled("valid")) - before.valid).toBe(1)
      expect((yield* labelled("invalid")) - before.invalid).toBe(1)
      // the hit by `verify` ran without the label
      expect((yield* labelled("memo")) - before.memo).toBe(1)
    }))

  it.effect.prop(
    "inputs of any length have entries of their own: raw-byte keys and hashed keys never answer for another input",
    [
      // every input is cut from the same bytes at other points: side by side, many of them are the same string
      fc.uint8Array({ minLength: 200, maxLength: 200 }),
      fc.array(
        fc.tuple(fc.integer({ min: 31, max: 33 }), fc.integer({ min: 63, max: 65 }), fc.integer({ min: 0, max: 100 })),
        { minLength: 1, maxLength: 12 }
      ),
      fc.array(fc.nat(), { maxLength: 40 })
    ],
    ([bytes, cuts, order]) =>
      Effect.gen(function*() {
        const crypto = yield* Crypto.makeNoble()
        const memo = yield* VerifyMemo.make({ capacity: 64, dsh: crypto.dsh })
        // depends on every byte and every length, so a shared entry would show as a wrong answer half the time
        const predicate: VerifyMemo.Predicate = (key, sig, message) =>
          crypto.dsh("verify_memo", 32, [key, sig, message])[0]! % 2 === 0
        const inputs = cuts.map(([k, s, m]) =>
          [bytes.slice(0, k), bytes.slice(k, k + s), bytes.slice(k + s, k + s + m)] as const
        )
        for (const i of [...order, ...order]) {
          const [key, sig, message] = inputs[i % inputs.length]!
          expect(yield* memo.verify(key, sig, message, predicate)).toBe(predicate(key, sig, message))
        }
      }),
    { fastCheck: { numRuns: 300 } }
  )

  it.effect("a throwing predicate means reject", () =>
    Effect.gen(function*() {
      const memo = yield* memoOf(4)
      const throwing: VerifyMemo.Predicate = () => {
        throw new RangeError("bad point")
      }
      expect(yield* memo.verify(new Uint8Array(1), new Uint8Array(1), new Uint8Array(1), throwing)).toBe(false)
    }))
})
