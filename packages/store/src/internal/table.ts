import type * as Peer from "@comms-dht/core/Peer"

// the index of the first of ascending `keys` at or after `key`
const lowerBound = (keys: ReadonlyArray<string>, key: string): number => {
  let lo = 0
  let hi = keys.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (keys[mid]! < key) lo = mid + 1
    else hi = mid
  }
  return lo
}

/**
 * @internal
 * The peer table's mirror: the records by hex NodeId, and the same records in key order (NodeId order: the keys are
 * lowercase hex of one length), kept in order as records come, change and go rather than sorted again when asked.
 * A joining node adds peers response after response, and asks for the table in order between them (a peer sync
 * answer, a random draw), and `closest` and `closerCount` read runs of the order (`PeerManager.closestSorted`,
 * `PeerManager.countCloserSorted`).
 */
export class PeerTable {
  private readonly byKey: Map<string, Peer.Peer>
  private keys: Array<string>
  private ordered: Array<Peer.Peer>
  // `ordered` has been handed out since it was last copied: the next change copies it first
  private shared = false

  constructor(records: Map<string, Peer.Peer>) {
    this.byKey = records
    this.keys = Array.from(records.keys()).sort()
    this.ordered = this.keys.map((key) => records.get(key)!)
  }

  get size(): number {
    return this.byKey.size
  }

  get(key: string): Peer.Peer | undefined {
    return this.byKey.get(key)
  }

  has(key: string): boolean {
    return this.byKey.has(key)
  }

  values(): IterableIterator<Peer.Peer> {
    return this.byKey.values()
  }

  set(key: string, peer: Peer.Peer): void {
    const known = this.byKey.has(key)
    this.byKey.set(key, peer)
    const ordered = this.writable()
    const i = lowerBound(this.keys, key)
    if (known) {
      ordered[i] = peer
      return
    }
    this.keys.splice(i, 0, key)
    ordered.splice(i, 0, peer)
  }

  delete(key: string): void {
    if (!this.byKey.delete(key)) return
    const ordered = this.writable()
    const i = lowerBound(this.keys, key)
    this.keys.splice(i, 1)
    ordered.splice(i, 1)
  }

  /** The records in key order; the array is never changed after it is handed out. */
  inOrder(): ReadonlyArray<Peer.Peer> {
    this.shared = true
    return this.ordered
  }

  /** The records in key order, for a read that ends before the table next changes (the array is not kept). */
  peekInOrder(): ReadonlyArray<Peer.Peer> {
    return this.ordered
  }

  private writable(): Array<Peer.Peer> {
    if (this.shared) {
      this.ordered = this.ordered.slice()
      this.shared = false
    }
    return this.ordered
  }
}
