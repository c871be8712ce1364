/**
 * The persistent `DedupCache` (SPEC §8.2, table `dedup_cache` of §18). The in-memory index of core
 * (`DedupCache.makeIndex`) is loaded at open and answers every `insert` and `hitCount`. New entries wait in memory
 * and are written together, in one transaction, once 64 wait, at each `trim` and when the scope closes; hits on
 * entries wait for a trim or the close. A message's first copy costs a map entry, not a statement of its own (the
 * departure of docs/spec-departures.md §10). A write that fails leaves what waits waiting; the insert that
 * completed the batch answers `Failed` and is taken back out of the index, and so does every new entry after it
 * while writes fail (the batch stays full), so a store that cannot write delivers but never forwards (scenario 43).
 * Duplicates never touch sqlite (`unsafeRecordHit` records them without the lock or an Effect).
 *
 * @since 0.1.0
 */
import * as DedupCache from "@comms-dht/core/DedupCache"
import { DhtConfig, millis } from "@comms-dht/core/DhtConfig"
import type { StoreError } from "@comms-dht/core/DhtError"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as LightLock from "@comms-dht/core/LightLock"
import * as NodeId from "@comms-dht/core/NodeId"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Schema from "effect/Schema"
import { runs } from "./internal/runs.js"
import * as Db from "./internal/db.js"
import { lift } from "./internal/errors.js"
import { Blob, clampSafe } from "./internal/values.js"

const EntryRow = Schema.Struct({
  body_hash: Blob,
  sender_public_key: Blob.pipe(Schema.compose(NodeId.PublicKey)),
  number_of_hits: Schema.Int,
  stored_at: Schema.Number,
  last_hit_at: Schema.Number,
  keep_until: Schema.Number
})
const decodeEntries = Schema.decodeUnknown(Schema.Array(EntryRow))

// how many new entries wait before they are written: a crash loses at most these (and the hits since the last trim);
// a clean close loses nothing
const ENTRIES_PER_WRITE = 64

/**
 * The sqlite `DedupCache`, with the capacity and lifetimes of the `DhtConfig` reference read when it is made. Fails
 * if the stored entries cannot be read. The scope's close writes what waits (a failure is logged).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<
  DedupCache.DedupCacheService,
  StoreError,
  SqliteClient.SqliteClient | Scope.Scope
> = Effect.gen(function*() {
  const client = yield* SqliteClient.SqliteClient
  const sql: SqlClient.SqlClient = client
  const filename = client.config.filename
  const db = Db.forClient(sql)
  const config = yield* DhtConfig
  // By hex hash: entries added since the last write, entries hit since the last trim, and written entries a new one
  // replaced. Inserts and hits take no lock, so a write takes its batch out first: an entry marked while its
  // statements run waits for the next write instead of being cleared unwritten.
  const fresh = new Map<string, Uint8Array>()
  const dirty = new Map<string, Uint8Array>()
  const gone = new Map<string, Uint8Array>()
  const index = DedupCache.makeIndex({
    capacity: config.dedupCacheCapacity,
    defaultLifetimeMs: millis(config.saf.msgValidity) + millis(config.clockSkewAllowance),
    onHit: (key, hash) => dirty.set(key, hash)
  })

  // Restored in keepUntil order, the order in which the index breaks ties between equal deadlines.
  const rows = yield* db.once(
    sql`SELECT body_hash, sender_public_key, number_of_hits, stored_at, last_hit_at, keep_until
      FROM dedup_cache ORDER BY keep_until, id`
  ).pipe(Effect.flatMap(decodeEntries), lift(filename, "load dedup cache"))
  for (const row of rows) {
    index.restore({
      hash: row.body_hash,
      sender: row.sender_public_key,
      hits: row.number_of_hits,
      storedAt: row.stored_at,
      lastHitAt: row.last_hit_at,
      keepUntil: row.keep_until
    })
  }

  const lock = yield* LightLock.make
  const publishSize = Effect.suspend(() => Metric.set(DhtMetrics.dedupCacheEntries, index.size()))
  yield* publishSize

  // Written as the index has them, in `runs` of rows, each statement one of a few shapes (prepared once); a row of a
  // hash already written keeps its `stored_at`, and a row repeated as padding changes nothing.
  const upsertRows = (entries: ReadonlyArray<DedupCache.DedupEntry>) =>
    db.run(sql`INSERT INTO dedup_cache ${
      sql.insert(entries.map((entry) => ({
        body_hash: entry.hash,
        sender_public_key: entry.sender,
        number_of_hits: entry.hits,
        stored_at: clampSafe(entry.storedAt),
        last_hit_at: clampSafe(entry.lastHitAt),
        keep_until: clampSafe(entry.keepUntil)
      })))
    } ON CONFLICT (body_hash) DO UPDATE SET sender_public_key = excluded.sender_public_key,
      number_of_hits = excluded.number_of_hits, last_hit_at = excluded.last_hit_at, keep_until = excluded.keep_until`)

  const deleteRow = (hash: Uint8Array) => db.run(sql`DELETE FROM dedup_cache WHERE body_hash = ${hash}`)

  // (hex key, hash) pairs, so what goes back or is merged is not converted to hex again
  type Marked = ReadonlyArray<readonly [string, Uint8Array]>
  interface Batch {
    readonly fresh: Marked
    readonly dirty: Marked
    readonly gone: Marked
  }
  const drain = (map: Map<string, Uint8Array>): Marked => {
    const taken = Array.from(map)
    map.clear()
    return taken
  }
  const takeBatch = (withHits: boolean): Batch => ({
    fresh: drain(fresh),
    dirty: withHits ? drain(dirty) : [],
    gone: drain(gone)
  })
  // what a failed write took out goes back, under anything marked since (a row deleted is deleted again first)
  const putBack = (batch: Batch) =>
    Effect.sync(() => {
      for (const [key, hash] of batch.fresh) fresh.set(key, hash)
      for (const [key, hash] of batch.dirty) dirty.set(key, hash)
      for (const [key, hash] of batch.gone) gone.set(key, hash)
    })

  // the entries as the index has them now, each once; one it no longer holds was trimmed or replaced since, and its
  // row goes with the deletes
  const entriesOf = (batch: Batch): Array<DedupCache.DedupEntry> => {
    const hashes = new Map<string, Uint8Array>([...batch.fresh, ...batch.dirty])
    const entries: Array<DedupCache.DedupEntry> = []
    for (const hash of hashes.values()) {
      const entry = index.get(hash)
      if (entry !== undefined) entries.push(entry)
    }
    return entries
  }
  const writeBatch = (batch: Batch) =>
    Effect.forEach(batch.gone, ([, hash]) => deleteRow(hash), { discard: true }).pipe(
      Effect.zipRight(Effect.forEach(runs(entriesOf(batch)), upsertRows, { discard: true }))
    )

  // what waits (hits only `withHits`), then `more`, in one transaction; what waited goes back if it fails
  const writeThen = <A>(withHits: boolean, more: Effect.Effect<A, SqlError>, action: string) =>
    Effect.suspend(() => {
      const batch = takeBatch(withHits)
      return writeBatch(batch).pipe(
        Effect.zipRight(more),
        db.transaction,
        lift(filename, action),
        Effect.tapError(() => putBack(batch))
      )
    })

  // Hits wait for a trim or the close: most entries are hit by copies soon after they are added, and written with
  // the batch, hits would write most entries twice.
  const writeFresh = writeThen(false, Effect.void, "write dedup entries")
  const writeAll = writeThen(true, Effect.void, "write dedup entries")

  yield* Effect.addFinalizer(() =>
    lock.withLock(Effect.catchAll(writeAll, (error) => Effect.logWarning("could not write dedup entries", error)))
  )

  // A failed write of the batch this insert completed: its own entry is taken back (SPEC §8.2: it reads as unseen,
  // hit count 0), with the dead entry it had replaced; the others wait for the next write.
  const undo = (hash: Uint8Array, replaced: Option.Option<DedupCache.DedupEntry>, error: StoreError) =>
    Effect.sync(() => {
      index.remove(hash)
      fresh.delete(NodeId.toHex(hash))
      if (Option.isSome(replaced)) {
        const entry = replaced.value
        index.restore(entry)
        gone.delete(NodeId.toHex(entry.hash))
        // whatever it had waiting is written with the next trim, at worst again
        dirty.set(NodeId.toHex(entry.hash), entry.hash)
      }
      return DedupCache.DedupInsertResult.Failed({ error })
    })

  // `insert` in the caller's step while the new entry does not complete a batch: the index and the marks are all
  // it changes (a write takes the lock and a transaction, so it goes through `insert`)
  const unsafeInsert = (
    hash: Uint8Array,
    sender: NodeId.PublicKey,
    nowMs: number,
    keepUntil: number | undefined,
    labels: ReadonlyArray<MetricLabel.MetricLabel>
  ): DedupCache.DedupInsertResult | undefined => {
    if (fresh.size + 1 >= ENTRIES_PER_WRITE) return undefined
    const outcome = index.insert(hash, sender, nowMs, keepUntil)
    if (Option.isNone(outcome.added)) return outcome.result
    markAdded(hash, outcome)
    DhtMetrics.dedupCacheEntries.unsafeUpdate(index.size(), labels)
    return outcome.result
  }

  // a new entry waits to be written; the dead one it took the place of, to be deleted
  const markAdded = (hash: Uint8Array, outcome: DedupCache.IndexInsert): void => {
    fresh.set(NodeId.toHex(hash), hash)
    if (Option.isSome(outcome.replaced)) {
      const key = NodeId.toHex(outcome.replaced.value.hash)
      fresh.delete(key)
      dirty.delete(key)
      gone.set(key, outcome.replaced.value.hash)
    }
  }

  const insert = (hash: Uint8Array, sender: NodeId.PublicKey, keepUntil?: number) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const outcome = index.insert(hash, sender, now, keepUntil)
      // a hit: the index marked the entry dirty
      if (Option.isNone(outcome.added)) return Effect.succeed(outcome.result)
      markAdded(hash, outcome)
      const recorded = Effect.as(publishSize, outcome.result)
      if (fresh.size < ENTRIES_PER_WRITE) return recorded
      return lock.withLockUninterruptible(writeFresh).pipe(
        Effect.matchEffect({
          onFailure: (error) => undo(hash, outcome.replaced, error),
          onSuccess: () => recorded
        })
      )
    })

  const trim = Effect.flatMap(Clock.currentTimeMillis, (now) =>
    writeThen(true, db.run(sql`DELETE FROM dedup_cache WHERE keep_until < ${now}`), "trim dedup cache").pipe(
      Effect.map(() => index.trim(now).length),
      Effect.tap((removed) => Metric.incrementBy(DhtMetrics.dedupTrimmed, removed)),
      Effect.tap(() => publishSize)
    ))

  return DedupCache.DedupCache.of({
    insert,
    hitCount: (hash) => Effect.sync(() => index.hitCount(hash)),
    get: (hash) => Effect.sync(() => Option.fromNullable(index.get(hash))),
    unsafeRecordHit: index.hit,
    unsafeInsert,
    // the table and the index change together: nothing may stop a trim between the two
    trim: lock.withLockUninterruptible(trim),
    size: Effect.sync(() => index.size())
  })
})

/**
 * `make` as a Layer over the store's client.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<DedupCache.DedupCache, StoreError, SqliteClient.SqliteClient> = Layer.scoped(
  DedupCache.DedupCache,
  make
)
