/**
 * Store-and-forward storage (SPEC §9.1–§9.3): the `MessageStore` tag, its row model, and an in-memory Layer that
 * behaves as the sqlite one in `@comms-dht/store` must. Rows are unique by `bodyHash`; each insert is subject to
 * the per-source hourly limit and makes room by priority (a Low row never displaces a High one); rows leave at
 * `min(storedAt + TTL(priority), expiresAt + clockSkewAllowance)` or through eviction, never on delivery.
 *
 * The same store keeps the requester side's cursors, one per responder, which only move forward in
 * `(sinceMs, afterId)` order. Cursor values are `bigint`s, clamped to 2⁶³ − 1 (the largest sqlite INTEGER) wherever
 * they enter the store.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Config, SafConfig } from "./DhtConfig.js"
import { DhtConfig, millis } from "./DhtConfig.js"
import type { StoreError } from "./DhtError.js"
import * as DhtMetrics from "./DhtMetrics.js"
import * as Envelope from "./Envelope.js"
import { hexKey } from "./internal/hexKey.js"
import * as MinHeap from "./MinHeap.js"
import { NodeId, PublicKey } from "./NodeId.js"

// --- model ---

/**
 * Stored priorities (SPEC §9.2): the value is what the `priority` column holds.
 *
 * @since 0.1.0
 * @category models
 */
export const Priority = { Low: 1, High: 10 } as const

/**
 * @since 0.1.0
 * @category models
 */
export type Priority = (typeof Priority)[keyof typeof Priority]

/**
 * @since 0.1.0
 * @category schemas
 */
export const PrioritySchema: Schema.Literal<[1, 10]> = Schema.Literal(Priority.Low, Priority.High)

const Hash32 = Schema.Uint8ArrayFromSelf.pipe(
  Schema.filter((b) => b.length === 32 || `bodyHash: expected 32 bytes, got ${b.length}`, {
    arbitrary: () => (fc) => fc.uint8Array({ minLength: 32, maxLength: 32 })
  })
)

const Millis = Schema.NonNegativeInt

/**
 * One stored row (SPEC §9.1, table `stored_messages` of §18). `id` is the sqlite rowid (`AUTOINCREMENT`: never
 * reused, the cursor's tie-break); it counts inserts, so it stays far below 2⁵³. Times are unix milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export class StoredMessage extends Schema.Class<StoredMessage>("@comms-dht/core/MessageStore/StoredMessage")({
  id: Schema.Int.pipe(Schema.greaterThanOrEqualTo(1)),
  /** `DhtHeader.major` */
  version: Schema.NonNegativeInt,
  messageType: Envelope.DhtMessageTypeSchema,
  destinationPublicKey: PublicKey,
  destinationNodeId: NodeId,
  /** the encoded `DhtHeader`, `hop_count` reset to 0 */
  header: Schema.Uint8ArrayFromSelf,
  /** the body as received */
  body: Schema.Uint8ArrayFromSelf,
  priority: PrioritySchema,
  /** non-decreasing across inserts (SPEC §9.1) */
  storedAt: Millis,
  /** header `expires` × 1000 */
  expiresAt: Millis,
  /** the peer that delivered it, for the per-source limit */
  sourceNodeId: NodeId,
  /** the dedup hash (SPEC §8.1): rows are unique by it */
  bodyHash: Hash32
}) {}

/**
 * What `insert` takes: a row before the store gives it an `id` and a `storedAt`.
 *
 * @since 0.1.0
 * @category models
 */
export type NewStoredMessage = Omit<StoredMessage, "id" | "storedAt">

/**
 * Why an insert was refused: the source peer's hourly limit, or no room even after evicting every row the new one
 * may displace.
 *
 * @since 0.1.0
 * @category models
 */
export type RejectCause = "source" | "noRoom"

/**
 * The outcome of `insert`: `Existed` (a row with this `bodyHash` is stored: the message was already forwarded),
 * `Inserted` with the new row's id and `storedAt`, or `Rejected`.
 *
 * @since 0.1.0
 * @category models
 */
export type InsertResult = Data.TaggedEnum<{
  Existed: {}
  Inserted: { readonly id: number; readonly storedAt: number }
  Rejected: { readonly cause: RejectCause }
}>

/**
 * Constructors and matchers of `InsertResult`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const InsertResult = Data.taggedEnum<InsertResult>()

/**
 * Why rows left the store, as counted by `safEvicted` (SPEC §9.2, §16): `ttl` and `expired` at cleanup (whichever
 * of the two deadlines came first), `capacity`, `bytes` and `destination` when an insert made room.
 *
 * @since 0.1.0
 * @category models
 */
export type EvictionCause = "ttl" | "expired" | "capacity" | "bytes" | "destination"

/**
 * Rows deleted by one `cleanup`, by cause.
 *
 * @since 0.1.0
 * @category models
 */
export interface CleanupResult {
  readonly ttl: number
  readonly expired: number
}

/**
 * A position in one destination's rows, ordered by `(storedAt, id)`: "everything strictly after this row"
 * (SPEC §9.3). `(0n, 0n)` is the beginning.
 *
 * @since 0.1.0
 * @category models
 */
export interface Cursor {
  readonly sinceMs: bigint
  readonly afterId: bigint
}

/**
 * @since 0.1.0
 * @category models
 */
export interface FetchResult {
  /** ascending by `(storedAt, id)` */
  readonly rows: ReadonlyArray<StoredMessage>
  /** a qualifying row was left out (by `limit` or by `maxBytes`) */
  readonly more: boolean
}

/**
 * Packing for `fetchFor`: the rows returned stay within `maxBytes` by `sizeOf` (default: header + body bytes),
 * except that the first qualifying row is always returned.
 *
 * @since 0.1.0
 * @category models
 */
export interface FetchOptions {
  readonly maxBytes?: number
  readonly sizeOf?: (row: StoredMessage) => number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface MessageStoreService {
  /** Inserts if no row has this `bodyHash`, subject to the limits of SPEC §9.2 (evicting to make room). */
  readonly insert: (row: NewStoredMessage) => Effect.Effect<InsertResult, StoreError>
  /**
   * The rows for `destination` strictly after `cursor`, not past their deletion time, ascending by
   * `(storedAt, id)`: at most `limit` of them (SPEC §9.3 step 3–4).
   */
  readonly fetchFor: (
    destination: PublicKey,
    cursor: Cursor,
    limit: number,
    options?: FetchOptions
  ) => Effect.Effect<FetchResult, StoreError>
  /** Deletes rows by id; returns how many existed. */
  readonly remove: (ids: Iterable<number>) => Effect.Effect<number, StoreError>
  /** A row with this body hash is stored (SPEC §9.1: the message was stored, hence forwarded, before). */
  readonly contains: (hash: Uint8Array) => Effect.Effect<boolean, StoreError>
  /** Deletes the row with this body hash, if any. */
  readonly removeByBodyHash: (hash: Uint8Array) => Effect.Effect<boolean, StoreError>
  /** The destination of the row with this body hash, if one is stored: whose receipt may remove it (ours). */
  readonly destinationOf: (hash: Uint8Array) => Effect.Effect<Option.Option<PublicKey>, StoreError>
  /** Deletes every row past its deletion time; enforces no capacity (SPEC §9.2). */
  readonly cleanup: Effect.Effect<CleanupResult, StoreError>
  /** Running totals. */
  readonly count: Effect.Effect<number>
  /** Header + body bytes of every row. */
  readonly totalBytes: Effect.Effect<number>
  /** This node's cursor for `responder`, `(0n, 0n)` when none. */
  readonly cursor: (responder: PublicKey) => Effect.Effect<Cursor, StoreError>
  /** Moves the cursor for `responder` to `cursor` (clamped) if that is further on; returns the cursor now stored. */
  readonly advanceCursor: (responder: PublicKey, cursor: Cursor) => Effect.Effect<Cursor, StoreError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class MessageStore extends Context.Tag("@comms-dht/core/MessageStore")<MessageStore, MessageStoreService>() {}

// --- rules shared by every implementation ---

/**
 * The largest value an sqlite INTEGER holds; cursor values are clamped to it (SPEC §3.7).
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_CURSOR_VALUE: bigint = (1n << 63n) - 1n

/**
 * @since 0.1.0
 * @category constants
 */
export const initialCursor: Cursor = { sinceMs: 0n, afterId: 0n }

const clamp = (n: bigint): bigint => n < 0n ? 0n : n > MAX_CURSOR_VALUE ? MAX_CURSOR_VALUE : n

/**
 * Both values within `[0, 2⁶³ − 1]`.
 *
 * @since 0.1.0
 * @category utils
 */
export const clampCursor = (cursor: Cursor): Cursor => ({
  sinceMs: clamp(cursor.sinceMs),
  afterId: clamp(cursor.afterId)
})

/**
 * Orders cursors by `(sinceMs, afterId)`.
 *
 * @since 0.1.0
 * @category utils
 */
export const compareCursor = (a: Cursor, b: Cursor): -1 | 0 | 1 =>
  a.sinceMs !== b.sinceMs
    ? a.sinceMs < b.sinceMs ? -1 : 1
    : a.afterId !== b.afterId
    ? a.afterId < b.afterId ? -1 : 1
    : 0

/**
 * The cursor that points at `row`: a request with it asks for the rows after this one.
 *
 * @since 0.1.0
 * @category utils
 */
export const cursorOf = (row: { readonly storedAt: number; readonly id: number }): Cursor => ({
  sinceMs: BigInt(row.storedAt),
  afterId: BigInt(row.id)
})

/**
 * `row` comes strictly after `cursor` (`stored_at > since_ms`, or equal and `id > after_id`).
 *
 * @since 0.1.0
 * @category utils
 */
export const isAfter = (row: { readonly storedAt: number; readonly id: number }, cursor: Cursor): boolean =>
  compareCursor(cursorOf(row), cursor) > 0

/**
 * What a row counts against `saf.maxStoredBytes`: header + body.
 *
 * @since 0.1.0
 * @category utils
 */
export const rowBytes = (row: { readonly header: Uint8Array; readonly body: Uint8Array }): number =>
  row.header.length + row.body.length

/**
 * The storage TTL of a priority (SPEC §9.2), in ms.
 *
 * @since 0.1.0
 * @category utils
 */
export const ttlMillis = (priority: Priority, saf: SafConfig): number =>
  millis(priority === Priority.High ? saf.highPriorityMsgStorageTtl : saf.lowPriorityMsgStorageTtl)

/**
 * When a row is deleted (SPEC §9.2): `min(storedAt + TTL(priority), expiresAt + clockSkewAllowance)`, and which of
 * the two deadlines it is (`ttl` on a tie). A row is past its deletion time once `now >= at`; it then is neither
 * served nor kept by `cleanup`. Being at most the message's `expiresAt + skew`, it never outlives the dedup entry
 * of the same message (dead only once `keepUntil < now`).
 *
 * @since 0.1.0
 * @category utils
 */
export const deletionTime = (
  row: { readonly priority: Priority; readonly storedAt: number; readonly expiresAt: number },
  config: Config
): { readonly at: number; readonly cause: "ttl" | "expired" } => {
  const byTtl = row.storedAt + ttlMillis(row.priority, config.saf)
  const byExpiry = row.expiresAt + millis(config.clockSkewAllowance)
  return byTtl <= byExpiry ? { at: byTtl, cause: "ttl" } : { at: byExpiry, cause: "expired" }
}

/**
 * The per-source hourly limit (SPEC §9.2): rows accepted from each source over a sliding hour, kept in 60
 * one-minute buckets in memory (they do not survive a restart, SPEC §18). Synchronous and mutable; run it inside
 * one `Effect.sync` (or continuation) per operation.
 *
 * @since 0.1.0
 * @category models
 */
export interface SourceWindow {
  /** rows recorded for `source` within the hour ending at `now` */
  readonly count: (source: Uint8Array, now: number) => number
  readonly record: (source: Uint8Array, now: number) => void
  /** forgets buckets older than the hour, and sources left with none */
  readonly prune: (now: number) => void
  readonly sources: () => number
}

const MINUTE = 60_000
const WINDOW_BUCKETS = 60

interface Buckets {
  // parallel arrays, ascending minutes; short (≤ 60), so shifting from the front is cheap
  readonly minutes: Array<number>
  readonly counts: Array<number>
  total: number
}

/**
 * A new, empty `SourceWindow`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeSourceWindow = (): SourceWindow => {
  const bySource = new Map<string, Buckets>()

  const expire = (b: Buckets, minute: number) => {
    while (b.minutes.length > 0 && b.minutes[0]! <= minute - WINDOW_BUCKETS) {
      b.minutes.shift()
      b.total -= b.counts.shift()!
    }
  }

  return {
    count: (source, now) => {
      const b = bySource.get(hexKey(source))
      if (b === undefined) return 0
      expire(b, Math.floor(now / MINUTE))
      return b.total
    },
    record: (source, now) => {
      const key = hexKey(source)
      const minute = Math.floor(now / MINUTE)
      let b = bySource.get(key)
      if (b === undefined) {
        b = { minutes: [], counts: [], total: 0 }
        bySource.set(key, b)
      }
      expire(b, minute)
      const last = b.minutes.length - 1
      // a clock that went back lands in the newest bucket rather than reopening an old one
      if (last >= 0 && b.minutes[last]! >= minute) b.counts[last]! += 1
      else {
        b.minutes.push(minute)
        b.counts.push(1)
      }
      b.total += 1
    },
    prune: (now) => {
      const minute = Math.floor(now / MINUTE)
      for (const [key, b] of bySource) {
        expire(b, minute)
        if (b.total === 0) bySource.delete(key)
      }
    },
    sources: () => bySource.size
  }
}

// --- memory layer ---

// Rows carry safe-integer times and ids, so a cursor value beyond 2⁵³ compares as "after every row".
const toNumber = (n: bigint): number => n > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(n)

// index of the first row of `list` (ascending by (storedAt, id)) strictly after (sinceMs, afterId)
const firstAfter = (list: ReadonlyArray<StoredMessage>, sinceMs: number, afterId: number) => {
  let lo = 0
  let hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    const row = list[mid]!
    if (row.storedAt > sinceMs || (row.storedAt === sinceMs && row.id > afterId)) hi = mid
    else lo = mid + 1
  }
  return lo
}

interface Deadline {
  readonly at: number
  readonly id: number
  readonly cause: "ttl" | "expired"
}

// Past this many stale entries beyond the live ones, an index with lazy deletion is compacted.
const COMPACT_SLACK = 1_024

// Ids of one priority in insertion order, as an array with a moving head: a `Map` would do, but deleting from its
// front leaves holes that every later scan from the front walks again. Removal is lazy (an id whose row is gone is
// skipped); the array is compacted when stale ids outnumber live ones.
interface IdQueue {
  ids: Array<number>
  head: number
  live: number
}

const makeQueue = (): IdQueue => ({ ids: [], head: 0, live: 0 })

const enqueue = (q: IdQueue, id: number) => {
  q.ids.push(id)
  q.live++
}

const dequeue = (q: IdQueue, rows: ReadonlyMap<number, StoredMessage>) => {
  q.live--
  if (q.ids.length - q.head > 2 * q.live + COMPACT_SLACK) {
    q.ids = q.ids.slice(q.head).filter((id) => rows.has(id))
    q.head = 0
  }
}

function* queued(q: IdQueue, rows: ReadonlyMap<number, StoredMessage>): Generator<StoredMessage> {
  // stale ids at the front are dropped for good; the rest are only skipped
  while (q.head < q.ids.length && !rows.has(q.ids[q.head]!)) q.head++
  for (let i = q.head; i < q.ids.length; i++) {
    const row = rows.get(q.ids[i]!)
    if (row !== undefined) yield row
  }
}

const priorityTag = (p: Priority) => p === Priority.High ? "high" : "low"

const storedCounter = {
  low: DhtMetrics.tagged(DhtMetrics.safStored, "priority", "low"),
  high: DhtMetrics.tagged(DhtMetrics.safStored, "priority", "high")
}

const evictedBy = (cause: EvictionCause, n: number) =>
  n === 0 ? Effect.void : Metric.incrementBy(DhtMetrics.tagged(DhtMetrics.safEvicted, "cause", cause), n)

const rejected = (cause: RejectCause) =>
  Metric.increment(DhtMetrics.tagged(DhtMetrics.safInsertRejected, "cause", cause)).pipe(
    Effect.as(InsertResult.Rejected({ cause }))
  )

interface Eviction {
  readonly row: StoredMessage
  readonly cause: EvictionCause
}

type Plan = { readonly _tag: "Fits"; readonly evictions: ReadonlyArray<Eviction> } | { readonly _tag: "NoRoom" }

/**
 * An in-memory `MessageStore` with the limits and lifetimes of the `DhtConfig` reference read when it is made.
 * Inserts, lookups by cursor and evictions cost O(log n) or O(rows evicted); per-destination work is bounded by
 * `saf.maxRowsPerDestination`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<MessageStoreService> = Effect.gen(function*() {
  const config = yield* DhtConfig
  const saf = config.saf

  // Mutable indexes rather than persistent maps in a `Ref`: at 100,000 rows a copy per insert would dominate.
  // Every operation reads the clock first and then touches them in one synchronous continuation, which no other
  // fiber can interleave.
  const rows = new Map<number, StoredMessage>()
  const byHash = new Map<string, number>()
  // per destination, ascending by (storedAt, id), which is insertion order since both only grow
  const byDestination = new Map<string, Array<StoredMessage>>()
  // per priority, ids in insertion order, i.e. oldest storedAt first: the eviction order within a priority
  const byPriority = { [Priority.Low]: makeQueue(), [Priority.High]: makeQueue() }
  // deletion times; entries of rows already gone are skipped when they surface, and compacted away in bulk
  const deadlines = MinHeap.make<Deadline>((a, b) => a.at - b.at || a.id - b.id)
  const cursors = new Map<string, Cursor>()
  const sources = makeSourceWindow()
  let bytes = 0
  let nextId = 1
  let highWater = 0

  const publishCount = Effect.suspend(() => Metric.set(DhtMetrics.safStoredMessages, rows.size))

  const destinationRows = (key: Uint8Array) => byDestination.get(hexKey(key)) ?? []

  const detach = (row: StoredMessage) => {
    rows.delete(row.id)
    byHash.delete(hexKey(row.bodyHash))
    dequeue(byPriority[row.priority], rows)
    bytes -= rowBytes(row)
    const key = hexKey(row.destinationPublicKey)
    const list = byDestination.get(key)
    if (list !== undefined) {
      const at = firstAfter(list, row.storedAt, row.id) - 1
      if (at >= 0 && list[at]!.id === row.id) list.splice(at, 1)
      if (list.length === 0) byDestination.delete(key)
    }
  }

  const attach = (row: StoredMessage) => {
    rows.set(row.id, row)
    byHash.set(hexKey(row.bodyHash), row.id)
    enqueue(byPriority[row.priority], row.id)
    bytes += rowBytes(row)
    const key = hexKey(row.destinationPublicKey)
    const list = byDestination.get(key)
    if (list === undefined) byDestination.set(key, [row])
    else list.push(row)
    deadlines.push(deadlineOf(row))
    if (deadlines.size() > 2 * rows.size + COMPACT_SLACK) deadlines.rebuild(Array.from(rows.values(), deadlineOf))
  }

  const deadlineOf = (row: StoredMessage): Deadline => {
    const deadline = deletionTime(row, config)
    return { at: deadline.at, id: row.id, cause: deadline.cause }
  }

  // The rows a new row of `priority` may displace, in eviction order: Low before High, oldest first.
  function* displaceable(priority: Priority, source: (p: Priority) => Iterable<StoredMessage>) {
    yield* source(Priority.Low)
    if (priority >= Priority.High) yield* source(Priority.High)
  }

  // Decides the evictions without touching the store, so a row that cannot fit leaves everything as it was.
  const plan = (row: NewStoredMessage): Plan => {
    const size = rowBytes(row)
    if (size > saf.maxStoredBytes) return { _tag: "NoRoom" }
    const evictions: Array<Eviction> = []
    const chosen = new Set<number>()
    const choose = (victim: StoredMessage, cause: EvictionCause) => {
      chosen.add(victim.id)
      evictions.push({ row: victim, cause })
    }

    const ofDestination = destinationRows(row.destinationPublicKey)
    let excess = ofDestination.length + 1 - saf.maxRowsPerDestination
    if (excess > 0) {
      const candidates = displaceable(row.priority, (p) => ofDestination.filter((r) => r.priority === p))
      for (const victim of candidates) {
        if (excess === 0) break
        choose(victim, "destination")
        excess--
      }
      if (excess > 0) return { _tag: "NoRoom" }
    }

    const candidates = displaceable(row.priority, (p) => queued(byPriority[p], rows))
    // pulled by hand: a `for…of` that returns early would close the generator for the next limit
    const next = (): StoredMessage | undefined => {
      for (let step = candidates.next(); step.done !== true; step = candidates.next()) {
        if (!chosen.has(step.value.id)) return step.value
      }
      return undefined
    }
    let count = rows.size - chosen.size
    let total = bytes - evictions.reduce((sum, e) => sum + rowBytes(e.row), 0)
    while (count + 1 > saf.msgStorageCapacity) {
      const victim = next()
      if (victim === undefined) return { _tag: "NoRoom" }
      choose(victim, "capacity")
      count--
      total -= rowBytes(victim)
    }
    while (total + size > saf.maxStoredBytes) {
      const victim = next()
      if (victim === undefined) return { _tag: "NoRoom" }
      choose(victim, "bytes")
      total -= rowBytes(victim)
    }
    return { _tag: "Fits", evictions }
  }

  const countEvictions = (evictions: ReadonlyArray<Eviction>) => {
    const by: Record<EvictionCause, number> = { ttl: 0, expired: 0, destination: 0, capacity: 0, bytes: 0 }
    for (const e of evictions) by[e.cause] += 1
    return Effect.all([
      evictedBy("destination", by.destination),
      evictedBy("capacity", by.capacity),
      evictedBy("bytes", by.bytes)
    ], { discard: true })
  }

  const insert = (fresh: NewStoredMessage, now: number): Effect.Effect<InsertResult> => {
    if (byHash.has(hexKey(fresh.bodyHash))) return Effect.succeed(InsertResult.Existed())
    if (sources.count(fresh.sourceNodeId, now) >= saf.maxRowsPerSourcePeerPerHour) return rejected("source")
    const decided = plan(fresh)
    if (decided._tag === "NoRoom") return rejected("noRoom")
    for (const e of decided.evictions) detach(e.row)
    const storedAt = Math.max(now, highWater)
    highWater = storedAt
    const row = new StoredMessage({ ...fresh, id: nextId++, storedAt }, true)
    attach(row)
    sources.record(fresh.sourceNodeId, now)
    return countEvictions(decided.evictions).pipe(
      Effect.zipRight(Metric.increment(storedCounter[priorityTag(row.priority)])),
      Effect.zipRight(publishCount),
      Effect.as(InsertResult.Inserted({ id: row.id, storedAt }))
    )
  }

  const fetchFor = (destination: PublicKey, cursor: Cursor, limit: number, options: FetchOptions, now: number) => {
    const list = destinationRows(destination)
    const maxBytes = options.maxBytes ?? Infinity
    const sizeOf = options.sizeOf ?? rowBytes
    const out: Array<StoredMessage> = []
    let used = 0
    let more = false
    const max = Number.isNaN(limit) ? 0 : limit
    const from = clampCursor(cursor)
    for (let i = firstAfter(list, toNumber(from.sinceMs), toNumber(from.afterId)); i < list.length; i++) {
      const row = list[i]!
      if (now >= deletionTime(row, config).at) continue
      const size = sizeOf(row)
      if (out.length >= max || (out.length > 0 && used + size > maxBytes)) {
        more = true
        break
      }
      out.push(row)
      used += size
    }
    return { rows: out, more }
  }

  const cleanup = (now: number) => {
    const removed = { ttl: 0, expired: 0 }
    let top = deadlines.peek()
    while (top !== undefined && top.at <= now) {
      deadlines.pop()
      const row = rows.get(top.id)
      if (row !== undefined) {
        detach(row)
        removed[top.cause] += 1
      }
      top = deadlines.peek()
    }
    sources.prune(now)
    return evictedBy("ttl", removed.ttl).pipe(
      Effect.zipRight(evictedBy("expired", removed.expired)),
      Effect.zipRight(publishCount),
      Effect.as<CleanupResult>(removed)
    )
  }

  const removeAll = (ids: Iterable<number>) => {
    let n = 0
    for (const id of ids) {
      const row = rows.get(id)
      if (row !== undefined) {
        detach(row)
        n++
      }
    }
    return Effect.as(publishCount, n)
  }

  return MessageStore.of({
    insert: (row) => Effect.flatMap(Clock.currentTimeMillis, (now) => insert(row, now)),
    fetchFor: (destination, cursor, limit, options = {}) =>
      Effect.map(Clock.currentTimeMillis, (now) => fetchFor(destination, cursor, limit, options, now)),
    remove: (ids) => Effect.suspend(() => removeAll(ids)),
    contains: (hash) => Effect.sync(() => byHash.has(hexKey(hash))),
    removeByBodyHash: (hash) =>
      Effect.suspend(() => {
        const id = byHash.get(hexKey(hash))
        return id === undefined ? Effect.succeed(false) : Effect.as(removeAll([id]), true)
      }),
    destinationOf: (hash) =>
      Effect.sync(() =>
        Option.fromNullable(byHash.get(hexKey(hash))).pipe(
          Option.flatMapNullable((id) => rows.get(id)),
          Option.map((row) => row.destinationPublicKey)
        )
      ),
    cleanup: Effect.flatMap(Clock.currentTimeMillis, cleanup),
    count: Effect.sync(() => rows.size),
    totalBytes: Effect.sync(() => bytes),
    cursor: (responder) => Effect.sync(() => cursors.get(hexKey(responder)) ?? initialCursor),
    advanceCursor: (responder, cursor) =>
      Effect.sync(() => {
        const key = hexKey(responder)
        const current = cursors.get(key) ?? initialCursor
        const next = clampCursor(cursor)
        if (compareCursor(next, current) <= 0) return current
        cursors.set(key, next)
        return next
      })
  })
})

/**
 * `makeMemory` as a Layer: a fresh, empty store each time it is built.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<MessageStore> = Layer.effect(MessageStore, makeMemory)
