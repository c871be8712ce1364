import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import * as NodeId from "../src/NodeId.js"

const numRuns = 1_000
const nodeId = FastCheck.uint8Array({ minLength: 13, maxLength: 13 }).map((b) => NodeId.NodeId.make(b))

const asBigInt = (bytes: Uint8Array): bigint => bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n)
const xor = (a: NodeId.NodeId, b: NodeId.NodeId) => asBigInt(a) ^ asBigInt(b)

describe("NodeId distance (§2.3)", () => {
  it.prop("is symmetric", [nodeId, nodeId], ([a, b]) => {
    expect(NodeId.distance(a, b)).toEqual(NodeId.distance(b, a))
  }, { fastCheck: { numRuns } })

  it.prop("is zero exactly when the ids are equal", [nodeId, nodeId], ([a, b]) => {
    expect(NodeId.distance(a, a).every((x) => x === 0)).toBe(true)
    const zero = NodeId.distance(a, b).every((x) => x === 0)
    expect(zero).toBe(NodeId.equals(a, b))
  }, { fastCheck: { numRuns } })

  const bitIndex = FastCheck.integer({ min: 0, max: 103 })
  it.prop("ids one bit apart are at that bit's power of two", [nodeId, bitIndex], ([a, bit]) => {
    const b = Uint8Array.from(a)
    b[bit >> 3] = b[bit >> 3]! ^ (1 << (bit & 7))
    const d = NodeId.distance(a, NodeId.NodeId.make(b))
    expect(asBigInt(d)).toBe(1n << BigInt(8 * (12 - (bit >> 3)) + (bit & 7)))
    // the bucket counts from the most significant bit: byte `bit >> 3`, bit `bit & 7` of it from the low end
    expect(NodeId.bucketIndex(a, NodeId.NodeId.make(b))).toBe(8 * (bit >> 3) + 7 - (bit & 7))
  }, { fastCheck: { numRuns } })

  it.prop("bucketIndex is the count of leading zero bits of the distance", [nodeId, nodeId], ([a, b]) => {
    const d = xor(a, b)
    const expected = d === 0n ? 104 : 104 - d.toString(2).length
    expect(NodeId.bucketIndex(a, b)).toBe(expected)
    expect(NodeId.bucketIndex(b, a)).toBe(expected)
  }, { fastCheck: { numRuns } })

  it.prop("is the XOR of the ids read as big-endian integers", [nodeId, nodeId], ([a, b]) => {
    expect(asBigInt(NodeId.distance(a, b))).toBe(xor(a, b))
  }, { fastCheck: { numRuns } })

  it.prop(
    "sorting by distance matches numeric order of the XOR (ties by id bytes)",
    [nodeId, FastCheck.array(nodeId, { maxLength: 40 })],
    ([target, ids]) => {
      const sorted = ids.slice().sort(NodeId.byDistanceTo(target))
      const reference = ids.slice().sort((x, y) => {
        const dx = xor(x, target)
        const dy = xor(y, target)
        if (dx !== dy) return dx < dy ? -1 : 1
        const ix = asBigInt(x)
        const iy = asBigInt(y)
        return ix < iy ? -1 : ix > iy ? 1 : 0
      })
      expect(sorted.map(NodeId.toHex)).toEqual(reference.map(NodeId.toHex))
    },
    { fastCheck: { numRuns } }
  )

  // Ids that often share their first bytes with each other and with the target, some repeated, so that the
  // selection's ties on its four-byte prefix and its boundary are exercised, not only distinct random prefixes.
  const selection = FastCheck.tuple(
    FastCheck.uint8Array({ minLength: 4, maxLength: 4 }),
    FastCheck.array(
      FastCheck.tuple(FastCheck.uint8Array({ minLength: 13, maxLength: 13 }), FastCheck.integer({ min: 0, max: 5 })),
      { minLength: 1, maxLength: 60 }
    ),
    FastCheck.array(FastCheck.nat(), { maxLength: 10 }),
    FastCheck.integer({ min: -1, max: 80 })
  ).map(([prefix, drawn, repeats, n]) => {
    const [target, ...ids] = drawn.map(([bytes, shared]) => {
      const id = Uint8Array.from(bytes)
      id.set(prefix.subarray(0, Math.min(4, shared)))
      return NodeId.NodeId.make(id)
    })
    const all = [...ids, ...(ids.length === 0 ? [] : repeats.map((i) => ids[i % ids.length]!))]
    return { target: target!, ids: all, n }
  })
  it.prop("closestOf is the first n of the full sort by distance", [selection], ([{ ids, n, target }]) => {
    const items = ids.map((id, index) => ({ id, index }))
    const order = NodeId.byDistanceTo(target)
    const expected = items.slice().sort((a, b) => order(a.id, b.id)).slice(0, Math.max(0, n))
    const chosen = NodeId.closestOf(target, items, n, (item) => item.id)
    expect(chosen.map((item) => NodeId.toHex(item.id))).toEqual(expected.map((item) => NodeId.toHex(item.id)))
    // each item chosen once
    expect(new Set(chosen.map((item) => item.index)).size).toBe(chosen.length)
  }, { fastCheck: { numRuns } })

  it("closestOf stays exact across calls of every size (its sort keys are reused and grown)", () => {
    const idAt = (i: number) =>
      NodeId.NodeId.make(Uint8Array.from({ length: 13 }, (_, j) => (i * 131 + j * 29 + i * j) & 255))
    for (const size of [5, 3_000, 7, 16_000, 2]) {
      const items = Array.from({ length: size }, (_, i) => idAt(i))
      const target = idAt(size + 1)
      const order = NodeId.byDistanceTo(target)
      const expected = items.slice().sort(order).slice(0, 40).map(NodeId.toHex)
      expect(NodeId.closestOf(target, items, 40, (id) => id).map(NodeId.toHex)).toEqual(expected)
    }
  })

  it.prop("compareDistance and isCloser agree with the numeric distances", [nodeId, nodeId, nodeId], ([t, x, y]) => {
    const dx = xor(x, t)
    const dy = xor(y, t)
    expect(NodeId.compareDistance(t, x, y)).toBe(dx < dy ? -1 : dx > dy ? 1 : 0)
    expect(NodeId.isCloser(t, x, y)).toBe(dx < dy)
  }, { fastCheck: { numRuns } })
})

describe("NodeId.mapKey", () => {
  const bytes = FastCheck.uint8Array({ maxLength: 9000 })
  it.prop("equal for equal bytes, different for different bytes (lengths across its 4096-byte chunks)", [
    bytes,
    bytes
  ], ([a, b]) => {
    const same = a.length === b.length && a.every((x, i) => x === b[i])
    expect(NodeId.mapKey(a) === NodeId.mapKey(b)).toBe(same)
    expect(NodeId.mapKey(a)).toBe(NodeId.mapKey(Uint8Array.from(a)))
    expect(NodeId.mapKey(a)).toHaveLength(a.length)
  })
  it("tells apart byte strings that differ only in their last byte or their length", () => {
    const a = new Uint8Array(5000).fill(7)
    const b = a.slice()
    b[4999] = 8
    expect(new Set([a, b, a.subarray(0, 4999), a.subarray(0, 4096)].map(NodeId.mapKey)).size).toBe(4)
  })
})
