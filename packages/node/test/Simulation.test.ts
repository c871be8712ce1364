import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Dht from "../src/Dht.js"
import * as Recorder from "../src/internal/simRecorder.js"
import * as Simulation from "../src/Simulation.js"

const small = (seed: number): Simulation.Options => ({
  nodes: 12,
  degree: 4,
  seed,
  messages: 20,
  offline: 0.25,
  store: "memory"
})

const withoutWallTime = (result: Simulation.Result) => ({ ...result, durationMs: 0 })

describe("Simulation", () => {
  it.effect("a small network delivers each direct and broadcast message once, bans nobody, reports §19's fields", () =>
    Effect.gen(function*() {
      const progress: Array<Simulation.Progress> = []
      const result = yield* Simulation.run(
        { ...small(42), onProgress: (p) => Effect.sync(() => progress.push(p)) },
        Dht.layer
      )
      expect(result).toMatchObject({ nodes: 12, degree: 4, seed: 42, messages: 20, offline: 3 })
      expect(result.direct).toEqual({ expected: 20, delivered: 20 })
      // two broadcasts (ceil(M / 10)), each for the 11 other nodes
      expect(result.broadcast).toEqual({ expected: 22, delivered: 22 })
      expect(result.saf.expected).toBe(6)
      // every message sent to an offline node reached it when it came back, through store-and-forward
      expect(result.saf.delivered).toBe(6)
      expect(result.saf.stored).toBeGreaterThanOrEqual(6)
      expect(result.expected).toBe(20 + 22 + 6)
      expect(result.delivered).toBe(result.direct.delivered + result.broadcast.delivered + result.saf.delivered)
      expect(result.deliveryRatio).toBeCloseTo(result.delivered / result.expected, 5)
      expect(result.duplicates).toBe(0)
      expect(result.bans).toBe(0)
      expect(result.wireMessages).toBeGreaterThan(0)
      expect(result.amplification).toBeCloseTo(result.wireMessages / result.expected, 5)
      // the odd-numbered messages are propagated: each took at least one envelope
      expect(result.propagation.messages).toBe(10)
      expect(result.propagation.wireMessages).toBeGreaterThanOrEqual(10)
      // link latency is 5–50 ms per hop: every delivery took at least one hop
      expect(result.latencyMs.p50).toBeGreaterThanOrEqual(5)
      expect(result.latencyMs.p50).toBeLessThanOrEqual(result.latencyMs.p95)
      expect(result.latencyMs.p95).toBeLessThanOrEqual(result.latencyMs.max)
      expect(result.discovery.succeeded).toBeLessThanOrEqual(result.discovery.attempted)
      // every fourth step-5 message (5 of 20) and the 6 step-6 messages asked for a receipt, and got it
      expect(result.receipts).toMatchObject({ requested: 11, delivered: 11 })
      expect(result.receipts.p50Ms).toBeGreaterThanOrEqual(5)
      expect(result.receipts.p50Ms).toBeLessThanOrEqual(result.receipts.p95Ms)
      // the receipts of the step-6 messages removed their stored copies, and nothing else
      expect(result.receipts.safCleaned).toBeGreaterThanOrEqual(6)
      expect(result.receipts.safCleaned).toBeLessThanOrEqual(result.saf.stored)
      // step 6 waits 10 virtual minutes: the whole run is longer than that, in virtual time
      expect(result.virtualMs).toBeGreaterThan(10 * 60_000)
      expect(Object.keys(result)).toEqual([
        "nodes",
        "degree",
        "seed",
        "messages",
        "offline",
        "direct",
        "broadcast",
        "saf",
        "expected",
        "delivered",
        "deliveryRatio",
        "duplicates",
        "wireMessages",
        "amplification",
        "propagation",
        "latencyMs",
        "discovery",
        "bans",
        "receipts",
        "virtualMs",
        "durationMs"
      ])
      expect(progress.map((p) => p.step)).toEqual([...progress.map((p) => p.step)].sort((a, b) => a - b))
      expect(new Set(progress.map((p) => p.step))).toEqual(new Set([1, 2, 3, 4, 5, 6, 7, 8]))
      // every message delivered, so step 8's store and forward ended at 100 %: its closing is still reported
      expect(progress.at(-1)).toMatchObject({ step: 8, label: "closing", fraction: 1 })
    }))

  it.effect("the same seed gives the same JSON except durationMs; seeds 42 and 43 differ (SPEC §20.48)", () =>
    Effect.gen(function*() {
      const first = yield* Simulation.run(small(42), Dht.layer)
      const again = yield* Simulation.run(small(42), Dht.layer)
      const other = yield* Simulation.run(small(43), Dht.layer)
      expect(JSON.stringify(withoutWallTime(again))).toBe(JSON.stringify(withoutWallTime(first)))
      expect(withoutWallTime(other)).not.toEqual({ ...withoutWallTime(first), seed: 43 })
    }))

  it.effect("a progress observer, however much it runs, does not change the run (a TTY and a pipe agree)", () =>
    Effect.gen(function*() {
      const quiet = yield* Simulation.run(small(7), Dht.layer)
      // a busy observer, more operations a call than Effect's default preemption allows a fiber (2,048): while fibers
      // on virtual time were preempted by count, it moved where the driver yielded, and with it the run's times
      const busy = (_: Simulation.Progress) =>
        Effect.gen(function*() {
          for (let i = 0; i < 3_000; i++) yield* Effect.sync(() => i)
        })
      const observed = yield* Simulation.run({ ...small(7), onProgress: busy }, Dht.layer)
      expect(JSON.stringify(withoutWallTime(observed))).toBe(JSON.stringify(withoutWallTime(quiet)))
    }))

  it.effect("inputs that cannot make a network are refused before anything is built", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Simulation.run({ ...small(1), nodes: 1, offline: 2 }, Dht.layer))
      expect(error._tag).toBe("ConfigError")
      expect(error._tag === "ConfigError" ? error.reason : "").toMatch(/nodes must be an integer ≥ 2.*offline/)
    }))
})

describe("the simulation's measures", () => {
  it("counts a (message, recipient) pair once, a second delivery as a duplicate, a misdelivery as a stray", () => {
    const recorder = Recorder.make(4)
    const sentAt = 1_735_689_600_000
    recorder.expect("direct", 0, 2)
    recorder.expect("broadcast", 0, 1)
    recorder.record(2, Recorder.encodeBody("direct", 0, sentAt), sentAt + 30)
    recorder.record(2, Recorder.encodeBody("direct", 0, sentAt), sentAt + 90)
    recorder.record(3, Recorder.encodeBody("direct", 0, sentAt), sentAt + 40)
    for (const node of [0, 2, 3, 0]) recorder.record(node, Recorder.encodeBody("broadcast", 0, sentAt), sentAt + 10)
    recorder.record(1, Recorder.encodeBody("broadcast", 0, sentAt), sentAt + 10)
    recorder.record(0, new TextEncoder().encode("not a simulated message"), sentAt)
    const snapshot = recorder.snapshot()
    expect(snapshot.direct).toEqual({ expected: 1, delivered: 1 })
    // a broadcast is meant for every node but its sender
    expect(snapshot.broadcast).toEqual({ expected: 3, delivered: 3 })
    expect(snapshot.duplicates).toBe(2)
    expect(snapshot.strays).toBe(2)
    expect([...snapshot.latencies].sort((a, b) => a - b)).toEqual([10, 10, 10, 30])
  })

  it("reads back only the bodies it wrote", () => {
    expect(Recorder.decodeBody(Recorder.encodeBody("saf", 17, 1_735_689_600_123.7))).toEqual({
      kind: "saf",
      index: 17,
      sentAt: 1_735_689_600_123
    })
    for (const text of ["", "d", "x1|2", "d1|", "d-1|5", "d1|5|6", "d1|5 "]) {
      expect(Recorder.decodeBody(new TextEncoder().encode(text))).toBeUndefined()
    }
  })

  it("takes nearest-rank percentiles", () => {
    const sorted = Array.from({ length: 20 }, (_, i) => i + 1)
    expect(Recorder.percentile(sorted, 0.5)).toBe(10)
    expect(Recorder.percentile(sorted, 0.95)).toBe(19)
    expect(Recorder.percentile(sorted, 1)).toBe(20)
    expect(Recorder.percentile([7], 0.5)).toBe(7)
    expect(Recorder.percentile([], 0.5)).toBe(0)
  })
})
