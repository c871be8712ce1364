/**
 * A binary min-heap over an explicit comparator. Synchronous and mutable on purpose: it indexes the in-memory
 * stores (dedup `keepUntil`, SAF deletion times) and the simulation's `VirtualClock` wake-ups, where an operation
 * must not cost O(n) or an allocation at 100,000 entries. Callers use lazy deletion: stale items stay in the heap and
 * are skipped when they surface; `rebuild` and `retain` compact.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 * @category models
 */
export interface MinHeap<A> {
  readonly size: () => number
  readonly push: (item: A) => void
  readonly peek: () => A | undefined
  readonly pop: () => A | undefined
  /** replaces the content in O(n) (Floyd's heapify) */
  readonly rebuild: (items: Iterable<A>) => void
  /** keeps only the items `keep` accepts, in O(n) */
  readonly retain: (keep: (item: A) => boolean) => void
}

/**
 * `compare(a, b) < 0` puts `a` nearer the top.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A>(compare: (a: A, b: A) => number): MinHeap<A> => {
  let items: Array<A> = []

  const siftUp = (start: number) => {
    let i = start
    const item = items[i]!
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = items[parent]!
      if (compare(item, p) >= 0) break
      items[i] = p
      i = parent
    }
    items[i] = item
  }

  const siftDown = (start: number) => {
    const n = items.length
    let i = start
    const item = items[i]!
    while (true) {
      const left = 2 * i + 1
      if (left >= n) break
      const right = left + 1
      const child = right < n && compare(items[right]!, items[left]!) < 0 ? right : left
      if (compare(items[child]!, item) >= 0) break
      items[i] = items[child]!
      i = child
    }
    items[i] = item
  }

  const heapify = () => {
    for (let i = (items.length >> 1) - 1; i >= 0; i--) siftDown(i)
  }

  return {
    size: () => items.length,
    push: (item) => {
      items.push(item)
      siftUp(items.length - 1)
    },
    peek: () => items[0],
    pop: () => {
      const top = items[0]
      const last = items.pop()
      if (items.length > 0 && last !== undefined) {
        items[0] = last
        siftDown(0)
      }
      return top
    },
    rebuild: (source) => {
      items = Array.from(source)
      heapify()
    },
    retain: (keep) => {
      items = items.filter(keep)
      heapify()
    }
  }
}
