/**
 * The dedup cache (SPEC §8.2): the `DedupCache` tag, its in-memory Layer, and the synchronous index both the memory
 * and the sqlite implementations answer from. An entry lives until its `keepUntil` (the message's expiry plus the
 * clock-skew allowance) and a live entry is never evicted, so a valid message cannot be replayed past its entry; at
 * capacity a new hash may only take the place of a dead entry, otherwise the insert answers `Full`.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import { DhtConfig, millis } from "./DhtConfig.js"
import type { StoreError } from "./DhtError.js"
import * as DhtMetrics from "./DhtMetrics.js"
import * as FiberClock from "./FiberClock.js"
import * as Hex from "./internal/hex.js"
import { hexKey } from "./internal/hexKey.js"
import * as MinHeap from "./MinHeap.js"
import type { PublicKey } from "./NodeId.js"

// A message's hash is one array for every node that reads its frame in one process (the inbound screen remembers
// what a frame hashed to), and in a simulation a broadcast's copies look it up in a thousand caches: its key is
// built once. Hashes are taken as immutable, as the entries that keep them already do.
const keys = new WeakMap<Uint8Array, string>()
const keyOf = (hash: Uint8Array): string => {
  let key = keys.get(hash)
  if (key === undefined) {
    key = hexKey(hash)
    keys.set(hash, key)
  }
  return key
}

/**
 * The outcome of `insert`: `Inserted(hits)` with the hit count after this insert (1 for a new hash), `Full` when the
 * cache holds only live entries, `Failed` when the storage behind it failed. `Full` and `Failed` make the pipeline
 * deliver without forwarding (SPEC §7.3).
 *
 * @since 0.1.0
 * @category models
 */
export type DedupInsertResult = Data.TaggedEnum<{
  Inserted: { readonly hits: number }
  Full: {}
  Failed: { readonly error: StoreError }
}>

/**
 * Constructors and matchers of `DedupInsertResult`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const DedupInsertResult = Data.taggedEnum<DedupInsertResult>()

/**
 * One cache entry (SPEC §8.2, table `dedup_cache` of §18). Times are unix milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface DedupEntry {
  readonly hash: Uint8Array
  /** the peer that delivered the latest copy */
  readonly sender: PublicKey
  readonly hits: number
  readonly storedAt: number
  readonly lastHitAt: number
  /** never evicted before this instant; dead once `keepUntil < now` */
  readonly keepUntil: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface DedupCacheService {
  /**
   * Records one copy of the message with `hash` (32 bytes) from `sender`. `keepUntil` (unix ms) is the message's
   * expiry plus `clockSkewAllowance`; without it, `now + saf.msgValidity + clockSkewAllowance`. Never fails: a
   * storage error is `Failed`.
   */
  readonly insert: (hash: Uint8Array, sender: PublicKey, keepUntil?: number) => Effect.Effect<DedupInsertResult>
  /** The hits recorded for `hash`, 0 when absent. */
  readonly hitCount: (hash: Uint8Array) => Effect.Effect<number>
  readonly get: (hash: Uint8Array) => Effect.Effect<Option.Option<DedupEntry>>
  /**
   * Records one copy of a message the cache already holds, at once, and returns its hit count after this copy;
   * `undefined` when `hash` is absent, and nothing is recorded (then `insert` it). It is `insert` for a hash that is
   * present, without an Effect per copy: most frames a node receives in a flood are such copies, and the inbound
   * pipeline drops them through it. A hit writes no storage row before it returns (the sqlite cache flushes hit counts
   * with its trims), so it cannot fail.
   */
  readonly unsafeRecordHit: (hash: Uint8Array, sender: PublicKey, nowMs: number, keepUntil?: number) => number | undefined
  /**
   * `insert` at once, when it needs no write before it returns: the result, with the entries gauge set under
   * `labels` (the caller's metric labels); `undefined` when nothing was recorded and `insert` must run (a persistent
   * cache with a batch to write). Optional: a cache without it is always asked through `insert`.
   */
  readonly unsafeInsert?: (
    hash: Uint8Array,
    sender: PublicKey,
    nowMs: number,
    keepUntil: number | undefined,
    labels: ReadonlyArray<MetricLabel.MetricLabel>
  ) => DedupInsertResult | undefined
  /** Deletes the dead entries (`keepUntil < now`) and returns how many; counted in `dedupTrimmed`. */
  readonly trim: Effect.Effect<number, StoreError>
  readonly size: Effect.Effect<number>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class DedupCache extends Context.Tag("@comms-dht/core/DedupCache")<DedupCache, DedupCacheService>() {}

// --- the index ---

/**
 * What the index did on `insert`, for an implementation that mirrors it in storage: `added` is the new entry (absent
 * for a hit or `Full`; its `hash` is the caller's array), `replaced` the dead entry it took the place of, `updated`
 * the entry a hit changed.
 *
 * @since 0.1.0
 * @category models
 */
export interface IndexInsert {
  readonly result: DedupInsertResult
  readonly added: Option.Option<DedupEntry>
  readonly replaced: Option.Option<DedupEntry>
  readonly updated: Option.Option<DedupEntry>
}

/**
 * The synchronous, mutable index behind every `DedupCache` implementation (SPEC §8.2: the sqlite one loads it at
 * open and answers `insert` and `hitCount` from it). Inserts cost O(log n): a min-heap on `keepUntil` (with lazy
 * deletion) finds the eviction candidate. Callers run it inside `Effect.sync`, so each call is atomic between fibers.
 *
 * @since 0.1.0
 * @category models
 */
export interface DedupIndex {
  readonly capacity: number
  readonly insert: (hash: Uint8Array, sender: PublicKey, now: number, keepUntil?: number) => IndexInsert
  /** `insert` for a hash that is present: the hit count after this copy, or `undefined` (nothing done) when absent */
  readonly hit: (hash: Uint8Array, sender: PublicKey, now: number, keepUntil?: number) => number | undefined
  readonly hitCount: (hash: Uint8Array) => number
  readonly get: (hash: Uint8Array) => DedupEntry | undefined
  /** Puts an entry back as it was (loading at open, or undoing an `insert` whose write failed). */
  readonly restore: (entry: DedupEntry) => void
  readonly remove: (hash: Uint8Array) => boolean
  /** Removes and returns the dead entries (`keepUntil < now`). */
  readonly trim: (now: number) => Array<DedupEntry>
  readonly size: () => number
  readonly entries: () => ReadonlyArray<DedupEntry>
}

interface Slot {
  readonly key: string
  readonly keepUntil: number
  readonly seq: number
}

// The hash itself is not kept: the map key holds it, and a copy per entry would cost more than its 32 bytes.
interface Live {
  sender: PublicKey
  hits: number
  storedAt: number
  lastHitAt: number
  keepUntil: number
  /** matches the heap slot that stands for the current `keepUntil`; every other slot of this key is stale */
  seq: number
}

const snapshot = (key: string, e: Live): DedupEntry => ({
  hash: Hex.decode(key) ?? new Uint8Array(0),
  sender: e.sender,
  hits: e.hits,
  storedAt: e.storedAt,
  lastHitAt: e.lastHitAt,
  keepUntil: e.keepUntil
})

const bySlot = (a: Slot, b: Slot) => a.keepUntil - b.keepUntil || a.seq - b.seq

// Stale slots pile up when hits raise `keepUntil`; past this slack the heap is rebuilt from the live entries.
const COMPACT_SLACK = 1_024

/**
 * A new, empty index. `defaultLifetimeMs` (`saf.msgValidity + clockSkewAllowance`) sets `keepUntil` when the caller
 * gives none. A capacity of 0 keeps nothing (every new hash is `Full`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeIndex = (options: {
  readonly capacity: number
  readonly defaultLifetimeMs: number
  /**
   * Called with the entry's key (lowercase hex) and hash whenever a copy of a held entry is recorded (`insert` of a
   * present hash, or `hit`): a persistent cache marks the entry for its next flush here.
   */
  readonly onHit?: ((key: string, hash: Uint8Array) => void) | undefined
}): DedupIndex => {
  const capacity = Math.max(0, Math.floor(options.capacity))
  const live = new Map<string, Live>()
  const heap = MinHeap.make(bySlot)
  let seq = 0

  const track = (key: string, entry: Live) => {
    entry.seq = ++seq
    heap.push({ key, keepUntil: entry.keepUntil, seq: entry.seq })
    if (heap.size() > 2 * live.size + COMPACT_SLACK) {
      heap.rebuild(Array.from(live, ([k, e]) => ({ key: k, keepUntil: e.keepUntil, seq: e.seq })))
    }
  }

  const isCurrent = (slot: Slot) => live.get(slot.key)?.seq === slot.seq

  // the entry with the smallest keepUntil, dropping stale slots on the way
  const oldest = (): Slot | undefined => {
    let top = heap.peek()
    while (top !== undefined && !isCurrent(top)) {
      heap.pop()
      top = heap.peek()
    }
    return top
  }

  const put = (key: string, entry: DedupEntry) => {
    const record: Live = {
      sender: entry.sender,
      hits: entry.hits,
      storedAt: entry.storedAt,
      lastHitAt: entry.lastHitAt,
      keepUntil: entry.keepUntil,
      seq: 0
    }
    live.set(key, record)
    track(key, record)
  }

  // a NaN would never compare as dead and so would pin the entry for good
  const lifetime = (now: number, keepUntil: number | undefined) =>
    keepUntil === undefined || Number.isNaN(keepUntil) ? now + options.defaultLifetimeMs : keepUntil

  const recordHit = (
    key: string,
    hash: Uint8Array,
    present: Live,
    sender: PublicKey,
    now: number,
    until: number
  ): void => {
    options.onHit?.(key, hash)
    present.hits += 1
    present.sender = sender
    present.lastHitAt = now
    if (until > present.keepUntil) {
      present.keepUntil = until
      track(key, present)
    }
  }

  return {
    capacity,
    hit: (hash, sender, now, keepUntil) => {
      const key = keyOf(hash)
      const present = live.get(key)
      if (present === undefined) return undefined
      recordHit(key, hash, present, sender, now, lifetime(now, keepUntil))
      return present.hits
    },
    insert: (hash, sender, now, keepUntil) => {
      const until = lifetime(now, keepUntil)
      const key = keyOf(hash)
      const present = live.get(key)
      if (present !== undefined) {
        recordHit(key, hash, present, sender, now, until)
        return {
          result: DedupInsertResult.Inserted({ hits: present.hits }),
          added: Option.none(),
          replaced: Option.none(),
          updated: Option.some(snapshot(key, present))
        }
      }
      let replaced: Option.Option<DedupEntry> = Option.none()
      if (live.size >= capacity) {
        const candidate = oldest()
        if (candidate === undefined || !(candidate.keepUntil < now)) {
          return { result: DedupInsertResult.Full(), added: Option.none(), replaced, updated: Option.none() }
        }
        heap.pop()
        const dead = live.get(candidate.key)
        live.delete(candidate.key)
        if (dead !== undefined) replaced = Option.some(snapshot(candidate.key, dead))
      }
      const entry: DedupEntry = {
        hash,
        sender,
        hits: 1,
        storedAt: now,
        lastHitAt: now,
        keepUntil: until
      }
      put(key, entry)
      return {
        result: DedupInsertResult.Inserted({ hits: 1 }),
        added: Option.some(entry),
        replaced,
        updated: Option.none()
      }
    },
    hitCount: (hash) => live.get(keyOf(hash))?.hits ?? 0,
    get: (hash) => {
      const key = keyOf(hash)
      const entry = live.get(key)
      return entry === undefined ? undefined : snapshot(key, entry)
    },
    restore: (entry) => put(hexKey(entry.hash), entry),
    remove: (hash) => live.delete(hexKey(hash)),
    trim: (now) => {
      const removed: Array<DedupEntry> = []
      let top = heap.peek()
      while (top !== undefined && top.keepUntil < now) {
        heap.pop()
        const entry = live.get(top.key)
        if (entry !== undefined && entry.seq === top.seq) {
          live.delete(top.key)
          removed.push(snapshot(top.key, entry))
        }
        top = heap.peek()
      }
      return removed
    },
    size: () => live.size,
    entries: () => Array.from(live, ([key, entry]) => snapshot(key, entry))
  }
}

// --- memory layer ---

/**
 * An in-memory `DedupCache` with the capacity and lifetimes of the `DhtConfig` reference read when it is made.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<DedupCacheService> = Effect.gen(function*() {
  const config = yield* DhtConfig
  const index = makeIndex({
    capacity: config.dedupCacheCapacity,
    defaultLifetimeMs: millis(config.saf.msgValidity) + millis(config.clockSkewAllowance)
  })
  const publishSize = Effect.suspend(() => Metric.set(DhtMetrics.dedupCacheEntries, index.size()))
  // nothing here is ever written: every insert is this one step
  const unsafeInsert = (
    hash: Uint8Array,
    sender: PublicKey,
    nowMs: number,
    keepUntil: number | undefined,
    labels: ReadonlyArray<MetricLabel.MetricLabel>
  ): DedupInsertResult => {
    const outcome = index.insert(hash, sender, nowMs, keepUntil)
    if (Option.isSome(outcome.added)) DhtMetrics.dedupCacheEntries.unsafeUpdate(index.size(), labels)
    return outcome.result
  }

  return DedupCache.of({
    insert: (hash, sender, keepUntil) =>
      Effect.withFiberRuntime((fiber) =>
        Effect.succeed(unsafeInsert(
          hash,
          sender,
          FiberClock.nowOf(fiber),
          keepUntil,
          fiber.getFiberRef(FiberRef.currentMetricLabels)
        ))
      ),
    hitCount: (hash) => Effect.sync(() => index.hitCount(hash)),
    get: (hash) => Effect.sync(() => Option.fromNullable(index.get(hash))),
    unsafeRecordHit: index.hit,
    unsafeInsert,
    trim: Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const removed = index.trim(now).length
      return Metric.incrementBy(DhtMetrics.dedupTrimmed, removed).pipe(
        Effect.zipRight(publishSize),
        Effect.as(removed)
      )
    }),
    size: Effect.sync(() => index.size())
  })
})

/**
 * `makeMemory` as a Layer: a fresh, empty cache each time it is built.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<DedupCache> = Layer.effect(DedupCache, makeMemory)
