/**
 * @internal
 * The `VirtualClock`'s wake-ups in `(at, seq)` order, kept as one first-in-first-out bucket per distinct time and a
 * min-heap of the times. Every frame of a simulation is an entry, and link latencies take a few dozen values, so at
 * the peak of a 1000-node join some 100,000 entries share about fifty times: a heap of entries paid a sift through
 * seventeen levels of scattered objects for each pop (1.9 s of that run), a bucket pays an index step. Within a
 * bucket the order is the order of `push`, which is `seq` order as long as each entry's `seq` is larger than every
 * earlier one's — as the clock draws them.
 */
import * as MinHeap from "@comms-dht/core/MinHeap"

/** @internal */
export interface Timed {
  readonly at: number
  readonly seq: number
}

/** @internal */
export interface TimeQueue<A extends Timed> {
  readonly size: () => number
  /** `item.seq` must exceed that of every item pushed before it */
  readonly push: (item: A) => void
  readonly peek: () => A | undefined
  readonly pop: () => A | undefined
  /** keeps only the items `keep` accepts, in their order */
  readonly retain: (keep: (item: A) => boolean) => void
}

interface Bucket<A> {
  items: Array<A>
  // the first item not yet popped: a pop moves it rather than shifting the array
  head: number
}

/** @internal */
export const make = <A extends Timed>(): TimeQueue<A> => {
  const buckets = new Map<number, Bucket<A>>()
  const times = MinHeap.make<number>((a, b) => a - b)
  let size = 0

  const first = (): Bucket<A> | undefined => {
    const at = times.peek()
    return at === undefined ? undefined : buckets.get(at)
  }

  return {
    size: () => size,
    push: (item) => {
      const bucket = buckets.get(item.at)
      if (bucket === undefined) {
        buckets.set(item.at, { items: [item], head: 0 })
        times.push(item.at)
      } else {
        bucket.items.push(item)
      }
      size++
    },
    peek: () => {
      const bucket = first()
      return bucket === undefined ? undefined : bucket.items[bucket.head]
    },
    pop: () => {
      const bucket = first()
      if (bucket === undefined) return undefined
      const item = bucket.items[bucket.head]!
      bucket.head++
      size--
      if (bucket.head === bucket.items.length) {
        buckets.delete(times.pop()!)
      }
      return item
    },
    retain: (keep) => {
      size = 0
      for (const [at, bucket] of buckets) {
        const kept = bucket.items.slice(bucket.head).filter(keep)
        if (kept.length === 0) {
          buckets.delete(at)
        } else {
          buckets.set(at, { items: kept, head: 0 })
          size += kept.length
        }
      }
      times.rebuild(buckets.keys())
    }
  }
}
