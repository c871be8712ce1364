/**
 * The virtual clock's queue of wake-ups: whatever the pushes, pops and compactions, items leave in `(at, seq)` order,
 * as the binary heap of SPEC §19 would give them.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import * as TimeQueue from "../src/internal/timeQueue.js"

interface Item {
  readonly at: number
  readonly seq: number
  readonly dropped: boolean
}

type Op =
  | { readonly _tag: "Push"; readonly delay: number; readonly dropped: boolean }
  | { readonly _tag: "Pop" }
  | { readonly _tag: "Retain" }

const op: fc.Arbitrary<Op> = fc.oneof(
  // few distinct delays, as link latencies: many items share a time
  fc.record({
    _tag: fc.constant("Push" as const),
    delay: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.double({ min: 0, max: 50, noNaN: true })),
    dropped: fc.boolean()
  }),
  fc.constant({ _tag: "Pop" as const }),
  fc.constant({ _tag: "Retain" as const })
)

const order = (a: Item, b: Item) => a.at - b.at || a.seq - b.seq

describe("TimeQueue", () => {
  it("pops in (at, seq) order through pushes, pops and compactions, as a sorted list would", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const queue = TimeQueue.make<Item>()
        let reference: Array<Item> = []
        let seq = 0
        // the clock's time: pushes are never earlier than the last pop
        let now = 0
        for (const o of ops) {
          switch (o._tag) {
            case "Push": {
              const item = { at: now + o.delay, seq: seq++, dropped: o.dropped }
              queue.push(item)
              reference.push(item)
              reference.sort(order)
              break
            }
            case "Pop": {
              const expected = reference.shift()
              expect(queue.peek()).toBe(expected)
              expect(queue.pop()).toBe(expected)
              if (expected !== undefined) now = expected.at
              break
            }
            case "Retain": {
              queue.retain((item) => !item.dropped)
              reference = reference.filter((item) => !item.dropped)
              break
            }
          }
          expect(queue.size()).toBe(reference.length)
        }
        const rest: Array<Item> = []
        for (let item = queue.pop(); item !== undefined; item = queue.pop()) rest.push(item)
        expect(rest).toEqual(reference)
      }),
      { numRuns: 500 }
    )
  })

  it("keeps a time's items in push order however many share it", () => {
    const queue = TimeQueue.make<Item>()
    for (let seq = 0; seq < 1000; seq++) queue.push({ at: seq % 3, seq, dropped: false })
    const popped: Array<Item> = []
    for (let item = queue.pop(); item !== undefined; item = queue.pop()) popped.push(item)
    expect(popped.map((i) => i.at)).toEqual([...Array(334).fill(0), ...Array(333).fill(1), ...Array(333).fill(2)])
    expect(popped.filter((i) => i.at === 1).map((i) => i.seq)).toEqual(
      Array.from({ length: 333 }, (_, k) => 3 * k + 1)
    )
  })
})
