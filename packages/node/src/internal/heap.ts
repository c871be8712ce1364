/** @internal */

/**
 * @internal
 * A binary min-heap of wake-ups ordered by `(at, seq)`. Synchronous and mutable on purpose: the `VirtualClock`
 * pushes from inside `Clock.sleep`'s registration and pops in its driver, tens of thousands of times per virtual
 * second of a large simulation, where a persistent structure would cost an allocation per operation. `seq` is unique,
 * so the order is total and two runs pop in the same order.
 */
export interface Keyed {
  readonly at: number
  readonly seq: number
}

/** @internal */
export interface Heap<A extends Keyed> {
  readonly size: () => number
  readonly push: (item: A) => void
  readonly peek: () => A | undefined
  readonly pop: () => A | undefined
  /** keeps only the items `keep` accepts, in O(n) (Floyd's heapify) */
  readonly retain: (keep: (item: A) => boolean) => void
}

const before = (a: Keyed, b: Keyed): boolean => a.at < b.at || (a.at === b.at && a.seq < b.seq)

/** @internal */
export const make = <A extends Keyed>(): Heap<A> => {
  let items: Array<A> = []

  const siftUp = (start: number): void => {
    let i = start
    const item = items[i]
    if (item === undefined) return
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = items[parent]
      if (p === undefined || !before(item, p)) break
      items[i] = p
      i = parent
    }
    items[i] = item
  }

  const siftDown = (start: number): void => {
    const n = items.length
    let i = start
    const item = items[i]
    if (item === undefined) return
    while (true) {
      const left = 2 * i + 1
      if (left >= n) break
      const right = left + 1
      const l = items[left]
      const r = right < n ? items[right] : undefined
      if (l === undefined) break
      const child = r !== undefined && before(r, l) ? right : left
      const c = child === left ? l : r
      if (c === undefined || !before(c, item)) break
      items[i] = c
      i = child
    }
    items[i] = item
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
      if (top !== undefined && last !== undefined && items.length > 0) {
        items[0] = last
        siftDown(0)
      }
      return top
    },
    retain: (keep) => {
      items = items.filter(keep)
      for (let i = (items.length >> 1) - 1; i >= 0; i--) siftDown(i)
    }
  }
}
