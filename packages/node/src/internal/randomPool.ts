/**
 * The random pool's draw (ours, docs/spec-departures.md §12): peers drawn at random within the Kademlia buckets of
 * this node's key space rather than from the whole table, so that the pool reaches every distance greedy routing
 * passes through, and a refresh that keeps the members still fitting draws only for the buckets new peers opened.
 *
 * @internal
 */
import * as NodeId from "@comms-dht/core/NodeId"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Effect from "effect/Effect"

/**
 * How many of `n` slots each bucket gets, for bucket sizes given from the farthest bucket to the nearest: one for
 * every bucket first (farthest first, while slots last), then the rest one at a time from the nearest bucket
 * outwards, none beyond a bucket's size.
 *
 * The far buckets hold most of the network, so a uniform draw lands there anyway and so do other nodes' links to
 * this one; the near buckets are where greedy routing runs out of closer peers (measured in §12 of the departures).
 */
export const allocate = (sizes: ReadonlyArray<number>, n: number): Array<number> => {
  const slots = sizes.map(() => 0)
  let left = Math.max(0, Math.floor(n))
  for (let i = 0; i < sizes.length && left > 0; i++) {
    if (sizes[i]! > 0) {
      slots[i] = 1
      left--
    }
  }
  while (left > 0) {
    let placed = false
    for (let i = sizes.length - 1; i >= 0 && left > 0; i--) {
      if (slots[i]! < sizes[i]!) {
        slots[i]!++
        left--
        placed = true
      }
    }
    if (!placed) break
  }
  return slots
}

/** What a draw keeps of the pool and what it adds. */
export interface Draw<A> {
  readonly kept: ReadonlyArray<A>
  readonly drawn: ReadonlyArray<A>
}

/**
 * Up to `n` of `candidates` spread over their buckets as seen from `self` (`allocate`), uniformly at random within
 * each bucket (`PeerManager.sample`, Effect's `Random`). Candidates for which `isMember` holds keep their bucket's
 * slots first; only the slots left are drawn.
 */
export const draw = <A>(
  self: NodeId.NodeId,
  candidates: ReadonlyArray<A>,
  idOf: (a: A) => NodeId.NodeId,
  n: number,
  isMember: (a: A) => boolean
): Effect.Effect<Draw<A>> =>
  Effect.suspend(() => {
    const buckets = new Map<number, Array<A>>()
    for (const candidate of candidates) {
      const b = NodeId.bucketIndex(self, idOf(candidate))
      const bucket = buckets.get(b)
      if (bucket === undefined) buckets.set(b, [candidate])
      else bucket.push(candidate)
    }
    const order = Array.from(buckets.keys()).sort((x, y) => x - y)
    const slots = allocate(order.map((b) => buckets.get(b)!.length), n)
    const kept: Array<A> = []
    const drawn: Array<A> = []
    return Effect.as(
      Effect.forEach(order, (b, i) => {
        const bucket = buckets.get(b)!
        const members = bucket.filter(isMember).slice(0, slots[i]!)
        kept.push(...members)
        const want = slots[i]! - members.length
        if (want === 0) return Effect.void
        return Effect.map(
          PeerManager.sample(bucket.filter((candidate) => !isMember(candidate)), want),
          (chosen) => {
            drawn.push(...chosen)
          }
        )
      }, { discard: true }),
      { kept, drawn }
    )
  })
