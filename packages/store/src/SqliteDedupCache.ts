/**
 * The persistent `DedupCache` (SPEC §8.2, table `dedup_cache` of §18). The in-memory index of core
 * (`DedupCache.makeIndex`) is loaded at open and answers every `insert` and `hitCount`; a new entry is written
 * through before `insert` returns, and a failed write takes it back out of the index (`Failed`). Hits on known
 * entries change only the index and are flushed in one transaction at each `trim` and when the scope closes, so
 * duplicates never touch sqlite (`unsafeRecordHit` records them without the lock or an Effect).
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
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Schema from "effect/Schema"
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

/**
 * The sqlite `DedupCache`, with the capacity and lifetimes of the `DhtConfig` reference read when it is made. Fails
 * if the stored entries cannot be read. The scope's close flushes pending hit counts (a failure is logged).
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
  // Entries whose hits changed since the last flush, by hex hash, marked by the index as it records each hit. Hits
  // (`unsafeRecordHit`) take no lock, so a flush takes its batch out first: a hit recorded while its statements run
  // marks the entry dirty again for the next flush instead of being cleared unwritten.
  const dirty = new Map<string, Uint8Array>()
  const index = DedupCache.makeIndex({
    capacity: config.dedupCacheCapacity,
    defaultLifetimeMs: millis(config.saf.msgValidity) + millis(config.clockSkewAllowance),
    onHit: (key, hash) => dirty.set(key, hash)
  })

  // Restored in keepUntil order, the order in which the index breaks ties between equal deadlines.
  const rows = yield* sql`SELECT body_hash, sender_public_key, number_of_hits, stored_at, last_hit_at, keep_until
    FROM dedup_cache ORDER BY keep_until, id`.pipe(Effect.flatMap(decodeEntries), lift(filename, "load dedup cache"))
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

  const insertRow = (entry: DedupCache.DedupEntry) =>
    db.run(sql`INSERT INTO dedup_cache ${
      sql.insert({
        body_hash: entry.hash,
        sender_public_key: entry.sender,
        number_of_hits: entry.hits,
        stored_at: clampSafe(entry.storedAt),
        last_hit_at: clampSafe(entry.lastHitAt),
        keep_until: clampSafe(entry.keepUntil)
      })
    }`)

  // A dead entry gives its row to the new one: one statement, so atomic without a transaction. Were the row gone,
  // the entry is inserted instead.
  const writeNew = (added: DedupCache.DedupEntry, replaced: Option.Option<DedupCache.DedupEntry>) =>
    Option.isNone(replaced) ? insertRow(added) : db.run(sql`UPDATE dedup_cache SET body_hash = ${added.hash},
        sender_public_key = ${added.sender}, number_of_hits = ${added.hits}, stored_at = ${clampSafe(added.storedAt)},
        last_hit_at = ${clampSafe(added.lastHitAt)}, keep_until = ${clampSafe(added.keepUntil)}
        WHERE body_hash = ${replaced.value.hash} RETURNING id`).pipe(
      Effect.flatMap((rows) => rows.length > 0 ? Effect.void : Effect.asVoid(insertRow(added)))
    )

  const takeDirty = (): ReadonlyArray<Uint8Array> => {
    const batch = Array.from(dirty.values())
    dirty.clear()
    return batch
  }
  const putBack = (batch: ReadonlyArray<Uint8Array>) =>
    Effect.sync(() => {
      for (const hash of batch) dirty.set(NodeId.toHex(hash), hash)
    })

  const writeHits = (batch: ReadonlyArray<Uint8Array>) =>
    Effect.forEach(batch, (hash) => {
      const entry = index.get(hash)
      return entry === undefined ? Effect.void : db.run(sql`UPDATE dedup_cache SET number_of_hits = ${entry.hits},
        sender_public_key = ${entry.sender}, last_hit_at = ${clampSafe(entry.lastHitAt)},
        keep_until = ${clampSafe(entry.keepUntil)} WHERE body_hash = ${hash}`)
    }, { discard: true })

  // the pending hits and then `more`, in one transaction; the hits go back to the dirty set if it fails
  const flushThen = <A>(more: Effect.Effect<A, SqlError>, action: string) =>
    Effect.suspend(() => {
      const batch = takeDirty()
      return writeHits(batch).pipe(
        Effect.zipRight(more),
        db.transaction,
        lift(filename, action),
        Effect.tapError(() => putBack(batch))
      )
    })

  const flush = flushThen(Effect.void, "flush dedup hits")

  yield* Effect.addFinalizer(() => lock.withLock(Effect.ignore(flush)))

  const insert = (hash: Uint8Array, sender: NodeId.PublicKey, keepUntil?: number) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const outcome = index.insert(hash, sender, now, keepUntil)
      // a hit: the index marked the entry dirty
      if (Option.isSome(outcome.updated)) return Effect.succeed(outcome.result)
      if (Option.isNone(outcome.added)) return Effect.succeed(outcome.result)
      const added = outcome.added.value
      return writeNew(added, outcome.replaced).pipe(
        lift(filename, "insert dedup entry"),
        Effect.matchEffect({
          onFailure: (error) =>
            Effect.sync(() => {
              // SPEC §8.2: the entry is taken back, so the hash reads as unseen (hit count 0)
              index.remove(hash)
              if (Option.isSome(outcome.replaced)) index.restore(outcome.replaced.value)
              return DedupCache.DedupInsertResult.Failed({ error })
            }),
          onSuccess: () =>
            Effect.sync(() => {
              if (Option.isSome(outcome.replaced)) dirty.delete(NodeId.toHex(outcome.replaced.value.hash))
            }).pipe(Effect.zipRight(publishSize), Effect.as(outcome.result))
        })
      )
    })

  const trim = Effect.flatMap(Clock.currentTimeMillis, (now) =>
    flushThen(db.run(sql`DELETE FROM dedup_cache WHERE keep_until < ${now}`), "trim dedup cache").pipe(
      Effect.map(() => index.trim(now).length),
      Effect.tap((removed) => Metric.incrementBy(DhtMetrics.dedupTrimmed, removed)),
      Effect.tap(() => publishSize)
    ))

  // The index and the table change together: nothing may stop an operation between the two.
  const exclusive = lock.withLockUninterruptible

  return DedupCache.DedupCache.of({
    insert: (hash, sender, keepUntil) => exclusive(insert(hash, sender, keepUntil)),
    hitCount: (hash) => Effect.sync(() => index.hitCount(hash)),
    get: (hash) => Effect.sync(() => Option.fromNullable(index.get(hash))),
    unsafeRecordHit: index.hit,
    trim: exclusive(trim),
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
