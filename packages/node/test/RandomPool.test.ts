/**
 * The random pool's draw over distance buckets (docs/spec-departures.md §12): how the slots are shared between the
 * buckets, and what a draw keeps and adds.
 */
import * as NodeId from "@comms-dht/core/NodeId"
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as RandomPool from "../src/internal/randomPool.js"

const sizes = fc.array(fc.integer({ min: 0, max: 12 }), { maxLength: 16 })
const slotsWanted = fc.integer({ min: 0, max: 40 })

const nodeId = fc.uint8Array({ minLength: 13, maxLength: 13 }).map((b) => NodeId.NodeId.make(b))
const hex = NodeId.toHex

describe("RandomPool.allocate", () => {
  it.prop("gives no bucket more than it holds, and all the slots there are candidates for", [sizes, slotsWanted], (
    [sizes, n]
  ) => {
    const slots = RandomPool.allocate(sizes, n)
    expect(slots.length).toBe(sizes.length)
    slots.forEach((k, i) => {
      expect(k).toBeGreaterThanOrEqual(0)
      expect(k).toBeLessThanOrEqual(sizes[i]!)
    })
    const total = sizes.reduce((a, b) => a + b, 0)
    expect(slots.reduce((a, b) => a + b, 0)).toBe(Math.min(n, total))
  }, { fastCheck: { numRuns: 2_000 } })

  it.prop("reaches every bucket before any gets a second slot, the farthest first", [sizes, slotsWanted], (
    [sizes, n]
  ) => {
    const slots = RandomPool.allocate(sizes, n)
    const nonEmpty = sizes.flatMap((size, i) => size > 0 ? [i] : [])
    if (n < nonEmpty.length) {
      // the first n non-empty buckets (farthest first), one slot each
      nonEmpty.forEach((i, k) => expect(slots[i]).toBe(k < n ? 1 : 0))
    } else {
      for (const i of nonEmpty) expect(slots[i]).toBeGreaterThanOrEqual(1)
    }
  }, { fastCheck: { numRuns: 2_000 } })

  it.prop("shares the rest evenly, nearer buckets first", [sizes, slotsWanted], ([sizes, n]) => {
    const slots = RandomPool.allocate(sizes, n)
    const nonEmpty = sizes.flatMap((size, i) => size > 0 ? [i] : [])
    if (n < nonEmpty.length) return
    for (const i of nonEmpty) {
      for (const j of nonEmpty) {
        // no bucket got two more than one that had room left
        if (slots[i]! < sizes[i]!) expect(slots[j]).toBeLessThanOrEqual(slots[i]! + 1)
        // j nearer than i, with room left: it was served first
        if (i < j && slots[j]! < sizes[j]!) expect(slots[j]).toBeGreaterThanOrEqual(slots[i]!)
      }
    }
  }, { fastCheck: { numRuns: 2_000 } })

  it("shares 12 slots over a 1000-node table as one a bucket, then the nearest first", () => {
    // ~500, 250, 125, … peers from the far half inwards; the 8 nearest are the neighbours, not candidates
    expect(RandomPool.allocate([500, 250, 125, 62, 31, 15, 8, 4], 12)).toEqual([1, 1, 1, 1, 2, 2, 2, 2])
    expect(RandomPool.allocate([500, 250, 125, 62, 31, 15, 8, 1], 12)).toEqual([1, 1, 1, 2, 2, 2, 2, 1])
    expect(RandomPool.allocate([3, 0, 1], 12)).toEqual([3, 0, 1])
    expect(RandomPool.allocate([5, 5, 5], 2)).toEqual([1, 1, 0])
  })
})

describe("RandomPool.draw", () => {
  const table = fc.uniqueArray(nodeId, { maxLength: 60, selector: hex })

  it.effect.prop(
    "keeps members first, draws the rest from non-members, each bucket its share",
    [nodeId, table, fc.integer({ min: 0, max: 16 }), fc.func(fc.boolean()), fc.integer()],
    ([self, ids, n, memberOf, seed]) =>
      Effect.gen(function*() {
        const candidates = ids.filter((id) => !NodeId.equals(id, self))
        const isMember = (id: NodeId.NodeId) => memberOf(hex(id))
        const result = yield* RandomPool.draw(self, candidates, (id) => id, n, isMember).pipe(
          Effect.withRandom(Random.make(seed))
        )
        const chosen = [...result.kept, ...result.drawn]
        expect(new Set(chosen.map(hex)).size).toBe(chosen.length)
        expect(chosen.length).toBe(Math.min(n, candidates.length))
        expect(result.kept.every(isMember)).toBe(true)
        expect(result.drawn.some(isMember)).toBe(false)

        // each bucket holds what `allocate` gives it, and keeps as many members as it has, up to that
        const bucketsOf = (list: ReadonlyArray<NodeId.NodeId>) => {
          const counts = new Map<number, number>()
          for (const id of list) {
            const b = NodeId.bucketIndex(self, id)
            counts.set(b, (counts.get(b) ?? 0) + 1)
          }
          return counts
        }
        const all = bucketsOf(candidates)
        const order = Array.from(all.keys()).sort((a, b) => a - b)
        const slots = RandomPool.allocate(order.map((b) => all.get(b)!), n)
        const got = bucketsOf(chosen)
        const keptBy = bucketsOf(result.kept)
        const membersBy = bucketsOf(candidates.filter(isMember))
        order.forEach((b, i) => {
          expect(got.get(b) ?? 0).toBe(slots[i])
          expect(keptBy.get(b) ?? 0).toBe(Math.min(slots[i]!, membersBy.get(b) ?? 0))
        })

        // the same seed, the same draw
        const again = yield* RandomPool.draw(self, candidates, (id) => id, n, isMember).pipe(
          Effect.withRandom(Random.make(seed))
        )
        expect(again.drawn.map(hex)).toEqual(result.drawn.map(hex))
      }),
    { fastCheck: { numRuns: 200 } }
  )

  it.effect("draws uniformly within a bucket", () =>
    Effect.gen(function*() {
      // one bucket of 5 candidates (the far half: first bit differs), one slot
      const self = NodeId.NodeId.make(new Uint8Array(13))
      const candidates = Array.from({ length: 5 }, (_, i) => {
        const id = new Uint8Array(13)
        id[0] = 0x80
        id[12] = i
        return NodeId.NodeId.make(id)
      })
      const counts = new Map<string, number>()
      for (let seed = 0; seed < 2_000; seed++) {
        const { drawn } = yield* RandomPool.draw(self, candidates, (id) => id, 1, () => false).pipe(
          Effect.withRandom(Random.make(seed))
        )
        counts.set(hex(drawn[0]!), (counts.get(hex(drawn[0]!)) ?? 0) + 1)
      }
      expect(counts.size).toBe(5)
      // 400 expected each; 5 standard deviations is about 90
      for (const count of counts.values()) expect(Math.abs(count - 400)).toBeLessThan(90)
    }))
})
