/**
 * `MessageStore` on the `stored_messages` and `saf_cursors` tables (SPEC §9.1–§9.3, §18), behaving as core's
 * `MessageStore.layerMemory` does: rows unique by `bodyHash`, the per-source hourly limit (in memory, as SPEC §18
 * says it does not survive a restart), "make room" by priority at insert, deletion at
 * `min(storedAt + TTL, expiresAt + skew)`, and forward-only cursors per responder.
 *
 * The running totals (rows, header + body bytes, rows per destination) are read at open and kept in memory; an
 * insert that evicts deletes and inserts in one transaction. `storedAt` never decreases, across restarts too: the
 * greatest `storedAt` handed out is kept in `dht_metadata` (at each cleanup and when the scope closes) next to the
 * greatest one still stored.
 *
 * @since 0.1.0
 */
import { DhtConfig, millis } from "@comms-dht/core/DhtConfig"
import type { StoreError } from "@comms-dht/core/DhtError"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as LightLock from "@comms-dht/core/LightLock"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as NodeId from "@comms-dht/core/NodeId"
import * as SqlClient from "@effect/sql/SqlClient"
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
import * as Queries from "./internal/queries.js"
import { BigIntText, Blob, clampSafe } from "./internal/values.js"
import { runs } from "./internal/runs.js"

const { StoredMessage } = MessageStore
const { High, Low } = MessageStore.Priority

const MessageRow = Schema.Struct({
  id: StoredMessage.fields.id,
  version: StoredMessage.fields.version,
  message_type: StoredMessage.fields.messageType,
  destination_pubkey: Blob.pipe(Schema.compose(StoredMessage.fields.destinationPublicKey)),
  destination_node_id: Blob.pipe(Schema.compose(StoredMessage.fields.destinationNodeId)),
  header: Blob,
  body: Blob,
  priority: StoredMessage.fields.priority,
  stored_at: StoredMessage.fields.storedAt,
  expires_at: StoredMessage.fields.expiresAt,
  source_node_id: Blob.pipe(Schema.compose(StoredMessage.fields.sourceNodeId)),
  body_hash: Blob.pipe(Schema.compose(StoredMessage.fields.bodyHash))
})
const decodeMessages = Schema.decodeUnknown(Schema.Array(MessageRow))
const decodeDestination = Schema.decodeUnknown(Schema.Array(Schema.Struct({
  destination_pubkey: MessageRow.fields.destination_pubkey
})))

const toMessage = (r: typeof MessageRow.Type) =>
  new StoredMessage({
    id: r.id,
    version: r.version,
    messageType: r.message_type,
    destinationPublicKey: r.destination_pubkey,
    destinationNodeId: r.destination_node_id,
    header: r.header,
    body: r.body,
    priority: r.priority,
    storedAt: r.stored_at,
    expiresAt: r.expires_at,
    sourceNodeId: r.source_node_id,
    bodyHash: r.body_hash
  }, true) // every field was checked by `MessageRow`

// A row as eviction and deletion see it.
const RowInfo = Schema.Struct({
  id: Schema.Int,
  destination_pubkey: Blob,
  priority: MessageStore.PrioritySchema,
  stored_at: Schema.Number,
  size: Schema.NonNegativeInt
})
type RowInfo = typeof RowInfo.Type
const decodeInfo = Schema.decodeUnknown(Schema.Array(RowInfo))
const Head = Schema.Struct({
  id: Schema.Int,
  priority: MessageStore.PrioritySchema,
  stored_at: Schema.Number,
  expires_at: Schema.Number,
  size: Schema.NonNegativeInt
})
const decodeHeads = Schema.decodeUnknown(Schema.Array(Head))
interface Times {
  readonly priority: MessageStore.Priority
  readonly stored_at: number
  readonly expires_at: number
}
const rowTimes = (r: Times) => ({ priority: r.priority, storedAt: r.stored_at, expiresAt: r.expires_at })
const Deleted = Schema.Struct({ ...RowInfo.fields, expires_at: Schema.Number })
const decodeDeleted = Schema.decodeUnknown(Schema.Array(Deleted))

const Totals = Schema.Struct({ n: Schema.NonNegativeInt, bytes: Schema.NonNegativeInt, high: Schema.Number })
const DestinationCount = Schema.Struct({ destination_pubkey: Blob, n: Schema.NonNegativeInt })
const ValueRow = Schema.Struct({ value: Blob })
const CursorRow = Schema.Struct({ since_ms: BigIntText, after_id: BigIntText })
const IdRow = Schema.Struct({ id: StoredMessage.fields.id })

/**
 * The `dht_metadata` key under which the greatest `storedAt` handed out is kept (u64be milliseconds, as the other
 * metadata values). It is not a `DhtMetadata` key: only this store reads it.
 *
 * @since 0.1.0
 * @category constants
 */
export const HIGH_WATER_KEY = "StoredAtHighWater"

// SAF cursors kept in memory per store (a node asks its few closest peers, so this is rarely reached)
const MAX_CACHED_CURSORS = 4_096

const priorityTag = (p: MessageStore.Priority) => p === High ? "high" : "low"

const storedCounter = {
  low: DhtMetrics.tagged(DhtMetrics.safStored, "priority", "low"),
  high: DhtMetrics.tagged(DhtMetrics.safStored, "priority", "high")
}

const evictedBy = (cause: MessageStore.EvictionCause, n: number) =>
  n === 0 ? Effect.void : Metric.incrementBy(DhtMetrics.tagged(DhtMetrics.safEvicted, "cause", cause), n)

const rejected = (cause: MessageStore.RejectCause) =>
  Metric.increment(DhtMetrics.tagged(DhtMetrics.safInsertRejected, "cause", cause)).pipe(
    Effect.as(MessageStore.InsertResult.Rejected({ cause }))
  )

interface Eviction {
  readonly row: RowInfo
  readonly cause: MessageStore.EvictionCause
}

type Plan = { readonly _tag: "Fits"; readonly evictions: ReadonlyArray<Eviction> } | { readonly _tag: "NoRoom" }

const noRoom: Plan = { _tag: "NoRoom" }

// an insert at capacity usually evicts one row; the page doubles when more are needed
const FIRST_CANDIDATE_PAGE = 2
const MAX_PAGE = 256

/**
 * The sqlite `MessageStore`, with the limits and lifetimes of the `DhtConfig` reference read when it is made.
 * Fails if the stored totals cannot be read. The scope's close records the `storedAt` high-water mark (a failure is
 * logged).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<
  MessageStore.MessageStoreService,
  StoreError,
  SqliteClient.SqliteClient | Scope.Scope
> = Effect.gen(function*() {
  const client = yield* SqliteClient.SqliteClient
  const sql: SqlClient.SqlClient = client
  const filename = client.config.filename
  const db = Db.forClient(sql)
  const config = yield* DhtConfig
  const saf = config.saf
  const skew = millis(config.clockSkewAllowance)

  const [totals] = yield* db.once(
    sql`SELECT count(*) AS n, coalesce(sum(length(header) + length(body)), 0) AS bytes,
      coalesce(max(stored_at), 0) AS high FROM stored_messages`
  ).pipe(
    Effect.flatMap(Schema.decodeUnknown(Schema.Tuple(Totals))),
    lift(filename, "read stored-message totals")
  )
  const perDestination = yield* db.once(sql`SELECT destination_pubkey, count(*) AS n FROM stored_messages
      GROUP BY destination_pubkey`).pipe(
    Effect.flatMap(Schema.decodeUnknown(Schema.Array(DestinationCount))),
    lift(filename, "read stored-message totals")
  )
  const savedHighWater = yield* db.once(sql`SELECT value FROM dht_metadata WHERE key = ${HIGH_WATER_KEY}`).pipe(
    Effect.flatMap(Schema.decodeUnknown(Schema.Array(ValueRow))),
    Effect.map((rows) =>
      Option.getOrElse(Option.flatMap(Option.fromNullable(rows[0]), (r) => DhtMetadata.decodeMillis(r.value)), () => 0)
    ),
    lift(filename, "read the storedAt high-water mark")
  )

  // Touched only while `lock` is held, after the statements they mirror have committed.
  let count = totals.n
  let bytes = totals.bytes
  let highWater = Math.max(totals.high, savedHighWater)
  const byDestination = new Map<string, number>()
  for (const row of perDestination) byDestination.set(NodeId.toHex(row.destination_pubkey), row.n)
  const sources = MessageStore.makeSourceWindow()
  const lock = yield* LightLock.make
  // inserts between their statement and `attach`: while any is, `byDestination` may lag behind the table
  let inserting = 0
  // SAF cursors as stored, by responder: the table has no other writer, and a node asks the same responders again
  const cursors = new Map<string, MessageStore.Cursor>()

  const publishCount = Effect.suspend(() => Metric.set(DhtMetrics.safStoredMessages, count))
  yield* publishCount

  const detach = (row: { readonly destination_pubkey: Uint8Array; readonly size: number }) => {
    count--
    bytes -= row.size
    const key = NodeId.toHex(row.destination_pubkey)
    const n = (byDestination.get(key) ?? 1) - 1
    if (n <= 0) byDestination.delete(key)
    else byDestination.set(key, n)
  }

  const attach = (destination: Uint8Array, size: number) => {
    count++
    bytes += size
    const key = NodeId.toHex(destination)
    byDestination.set(key, (byDestination.get(key) ?? 0) + 1)
  }

  const saveHighWater = Effect.suspend(() =>
    db.run(sql`INSERT INTO dht_metadata (key, value) VALUES (${HIGH_WATER_KEY}, ${DhtMetadata.encodeMillis(highWater)})
      ON CONFLICT (key) DO UPDATE SET value = excluded.value`)
  )

  yield* Effect.addFinalizer(() =>
    lock.withLock(saveHighWater.pipe(lift(filename, "record the storedAt high-water mark"), Effect.ignore))
  )

  // Decides the evictions without touching the store, so a row that cannot fit leaves everything as it was. The
  // order is the memory layer's: that destination's rows first when it is full, then Low before High (High only for
  // a High row), oldest `storedAt` first.
  const plan = (row: MessageStore.NewStoredMessage) =>
    Effect.gen(function*() {
      const size = MessageStore.rowBytes(row)
      if (size > saf.maxStoredBytes) return noRoom
      const evictions: Array<Eviction> = []
      const chosen = new Set<number>()
      const choose = (victim: RowInfo, cause: MessageStore.EvictionCause) => {
        chosen.add(victim.id)
        evictions.push({ row: victim, cause })
      }

      const excess = (byDestination.get(NodeId.toHex(row.destinationPublicKey)) ?? 0) + 1 -
        saf.maxRowsPerDestination
      if (excess > 0) {
        const victims = yield* Queries.destinationCandidates(sql, row.destinationPublicKey, row.priority, excess).pipe(
          Effect.flatMap(decodeInfo)
        )
        if (victims.length < excess) return noRoom
        for (const victim of victims) choose(victim, "destination")
      }

      let page: ReadonlyArray<RowInfo> = []
      let at = 0
      let pageSize = FIRST_CANDIDATE_PAGE
      let exhausted = false
      let after = { priority: -1, storedAt: 0, id: 0 }
      const next = Effect.gen(function*() {
        while (true) {
          while (at < page.length) {
            const candidate = page[at++]!
            if (!chosen.has(candidate.id)) return Option.some(candidate)
          }
          if (exhausted) return Option.none<RowInfo>()
          page = yield* Queries.candidatesAfter(sql, row.priority, after, pageSize).pipe(Effect.flatMap(decodeInfo))
          at = 0
          exhausted = page.length < pageSize
          pageSize = Math.min(pageSize * 2, MAX_PAGE)
          const last = page[page.length - 1]
          if (last !== undefined) after = { priority: last.priority, storedAt: last.stored_at, id: last.id }
        }
      })

      let remaining = count - chosen.size
      let total = bytes - evictions.reduce((sum, e) => sum + e.row.size, 0)
      while (remaining + 1 > saf.msgStorageCapacity) {
        const victim = yield* next
        if (Option.isNone(victim)) return noRoom
        choose(victim.value, "capacity")
        remaining--
        total -= victim.value.size
      }
      while (total + size > saf.maxStoredBytes) {
        const victim = yield* next
        if (Option.isNone(victim)) return noRoom
        choose(victim.value, "bytes")
        total -= victim.value.size
      }
      const fits: Plan = { _tag: "Fits", evictions }
      return fits
    })

  const deleteIds = (ids: ReadonlyArray<number>) =>
    Effect.forEach(runs(ids), (part) => db.run(sql`DELETE FROM stored_messages WHERE ${sql.in("id", part)}`), {
      discard: true
    })

  const countEvictions = (evictions: ReadonlyArray<Eviction>) => {
    const by: Record<MessageStore.EvictionCause, number> = { ttl: 0, expired: 0, destination: 0, capacity: 0, bytes: 0 }
    for (const e of evictions) by[e.cause] += 1
    return Effect.all([
      evictedBy("destination", by.destination),
      evictedBy("capacity", by.capacity),
      evictedBy("bytes", by.bytes)
    ], { discard: true })
  }

  const insert = (fresh: MessageStore.NewStoredMessage) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const existing = yield* db.run(sql`SELECT id FROM stored_messages WHERE body_hash = ${fresh.bodyHash}`)
      if (existing.length > 0) return MessageStore.InsertResult.Existed()
      if (sources.count(fresh.sourceNodeId, now) >= saf.maxRowsPerSourcePeerPerHour) return yield* rejected("source")
      const decided = yield* plan(fresh)
      if (decided._tag === "NoRoom") return yield* rejected("noRoom")

      const storedAt = Math.max(now, highWater)
      inserting++
      const insertRow = db.run(sql`INSERT INTO stored_messages ${
        sql.insert({
          version: fresh.version,
          origin_pubkey: null,
          message_type: fresh.messageType,
          destination_pubkey: fresh.destinationPublicKey,
          destination_node_id: fresh.destinationNodeId,
          header: fresh.header,
          body: fresh.body,
          is_encrypted: 1,
          priority: fresh.priority,
          stored_at: clampSafe(storedAt),
          expires_at: clampSafe(fresh.expiresAt),
          source_node_id: fresh.sourceNodeId,
          body_hash: fresh.bodyHash
        })
      } RETURNING id`).pipe(Effect.flatMap(Schema.decodeUnknown(Schema.Tuple(IdRow))))
      const evictions = decided.evictions
      const [{ id }] = yield* (evictions.length === 0
        ? insertRow
        : deleteIds(evictions.map((e) => e.row.id)).pipe(Effect.zipRight(insertRow), db.transaction)).pipe(
          Effect.onError(() =>
            Effect.sync(() => {
              inserting--
            })
          )
        )

      for (const e of evictions) detach(e.row)
      attach(fresh.destinationPublicKey, MessageStore.rowBytes(fresh))
      // uninterruptible since the statement (`exclusive`): the counts mirror the row before a fetch can skip it
      inserting--
      highWater = storedAt
      sources.record(fresh.sourceNodeId, now)
      yield* countEvictions(evictions)
      yield* Metric.increment(storedCounter[priorityTag(fresh.priority)])
      yield* publishCount
      return MessageStore.InsertResult.Inserted({ id, storedAt })
    })

  // Reads the heads of the rows after the cursor first, then the bodies of those that can still fit: a response
  // of 15 rows of 512 KiB does not read the 36 rows its limit would allow. Rows past their deletion time (which
  // cleanup has not removed yet) are skipped, so one page may not be enough.
  const fetchFor = (
    destination: NodeId.PublicKey,
    cursor: MessageStore.Cursor,
    limit: number,
    options: MessageStore.FetchOptions
  ) =>
    Effect.gen(function*() {
      // most requests are from nodes nothing is stored for: answered from the counts, without a query
      if (inserting === 0 && !byDestination.has(NodeId.toHex(destination))) return { rows: [], more: false }
      const now = yield* Clock.currentTimeMillis
      const maxBytes = options.maxBytes ?? Infinity
      const sizeOf = options.sizeOf ?? MessageStore.rowBytes
      const max = Number.isNaN(limit) ? 0 : limit
      const out: Array<MessageStore.StoredMessage> = []
      let used = 0
      let { afterId, sinceMs } = MessageStore.clampCursor(cursor)
      while (true) {
        // one row beyond what is still wanted tells whether there is `more`
        const wanted = Math.min(Math.max(Math.ceil(max - out.length) + 1, 1), MAX_PAGE)
        const heads = yield* db.run(Queries.headsAfter(sql, destination, sinceMs, afterId, wanted)).pipe(
          Effect.flatMap(decodeHeads)
        )
        const exhausted = heads.length < wanted
        const take: Array<typeof Head.Type> = []
        let estimate = used
        for (const head of heads) {
          if (now >= MessageStore.deletionTime(rowTimes(head), config).at) continue
          take.push(head)
          estimate += head.size
          // header + body bytes usually bound `sizeOf` from below: past `maxBytes` the next row is the last needed
          if (out.length + take.length > max || (out.length + take.length > 1 && estimate > maxBytes)) break
        }
        const rows = take.length === 0
          ? []
          : yield* db.run(Queries.rowsById(sql, take.map((h) => h.id))).pipe(Effect.flatMap(decodeMessages))
        for (const raw of rows) {
          const row = toMessage(raw)
          const size = sizeOf(row)
          if (out.length >= max || (out.length > 0 && used + size > maxBytes)) return { rows: out, more: true }
          out.push(row)
          used += size
        }
        // on past what was read: every head when none was taken, else the last one taken
        const reached = take.length === 0 ? heads[heads.length - 1] : take[take.length - 1]
        if (reached === undefined || (exhausted && reached === heads[heads.length - 1])) {
          return { rows: out, more: false }
        }
        sinceMs = BigInt(reached.stored_at)
        afterId = BigInt(reached.id)
      }
    })

  const removed = (rows: ReadonlyArray<RowInfo>) =>
    Effect.sync(() => {
      for (const row of rows) detach(row)
      return rows.length
    }).pipe(Effect.tap(() => publishCount))

  const remove = (ids: Iterable<number>) =>
    Effect.suspend(() => {
      const list = Array.from(ids)
      return Effect.forEach(
        runs(list),
        (part) =>
          db.run(sql`DELETE FROM stored_messages WHERE ${sql.in("id", part)} RETURNING ${
            sql.literal(Queries.CANDIDATE_COLUMNS)
          }`).pipe(Effect.flatMap(decodeInfo)),
        { concurrency: 1 }
      ).pipe(
        db.transaction,
        Effect.flatMap((parts) => removed(parts.flat()))
      )
    })

  const cleanup = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const deleted = yield* Effect.all([
      db.run(Queries.deleteExpired(sql, clampSafe(now - skew))),
      db.run(Queries.deleteOutlived(sql, Low, clampSafe(now - MessageStore.ttlMillis(Low, saf)))),
      db.run(Queries.deleteOutlived(sql, High, clampSafe(now - MessageStore.ttlMillis(High, saf))))
    ]).pipe(
      // decoded before the commit: rows that cannot be accounted for are not deleted
      Effect.flatMap((parts) => decodeDeleted(parts.flat())),
      Effect.zipLeft(saveHighWater),
      db.transaction
    )
    const result = { ttl: 0, expired: 0 }
    for (const row of deleted) {
      detach(row)
      const deadline = MessageStore.deletionTime(rowTimes(row), config)
      result[deadline.cause] += 1
    }
    sources.prune(now)
    yield* evictedBy("ttl", result.ttl)
    yield* evictedBy("expired", result.expired)
    yield* publishCount
    const cleaned: MessageStore.CleanupResult = result
    return cleaned
  })

  const readCursor = (responder: NodeId.PublicKey) =>
    Effect.suspend(() => {
      const known = cursors.get(NodeId.toHex(responder))
      return known === undefined ? readStoredCursor(responder) : Effect.succeed(known)
    })

  const readStoredCursor = (responder: NodeId.PublicKey) =>
    db.run(sql`SELECT CAST(since_ms AS TEXT) AS since_ms, CAST(after_id AS TEXT) AS after_id FROM saf_cursors
      WHERE responder_public_key = ${responder}`).pipe(
      Effect.flatMap(Schema.decodeUnknown(Schema.Array(CursorRow))),
      Effect.map((rows): MessageStore.Cursor => {
        const row = rows[0]
        const cursor = row === undefined ? MessageStore.initialCursor : { sinceMs: row.since_ms, afterId: row.after_id }
        remember(responder, cursor)
        return cursor
      })
    )

  const remember = (responder: NodeId.PublicKey, cursor: MessageStore.Cursor) => {
    // a cache, not a record: past its bound it starts again from the table
    if (cursors.size >= MAX_CACHED_CURSORS) cursors.clear()
    cursors.set(NodeId.toHex(responder), cursor)
  }

  // The stored cursor moves forward only. The cache is updated inside the transaction, so the next one (they run one
  // at a time) reads it; a transaction that does not commit takes the entry out, and the table is read again.
  const advanceCursor = (responder: NodeId.PublicKey, cursor: MessageStore.Cursor) =>
    Effect.gen(function*() {
      const next = MessageStore.clampCursor(cursor)
      const current = yield* readCursor(responder)
      // the initial cursor is never stored: nothing is before it
      if (MessageStore.compareCursor(next, current) <= 0) return current
      const now = yield* Clock.currentTimeMillis
      yield* db.run(sql`INSERT INTO saf_cursors (responder_public_key, since_ms, after_id, updated_at)
        VALUES (${responder}, ${next.sinceMs}, ${next.afterId}, ${clampSafe(now)})
        ON CONFLICT (responder_public_key) DO UPDATE SET since_ms = excluded.since_ms, after_id = excluded.after_id,
          updated_at = excluded.updated_at
        WHERE (excluded.since_ms, excluded.after_id) > (saf_cursors.since_ms, saf_cursors.after_id)`)
      remember(responder, next)
      return next
    }).pipe(
      db.transaction,
      Effect.onError(() => Effect.sync(() => cursors.delete(NodeId.toHex(responder))))
    )

  // A change and the totals it moves go together: once a statement has committed, nothing may stop the
  // bookkeeping that follows it.
  const exclusive = lock.withLockUninterruptible

  return MessageStore.MessageStore.of({
    insert: (row) => exclusive(insert(row)).pipe(lift(filename, "insert stored message")),
    fetchFor: (destination, cursor, limit, options = {}) =>
      fetchFor(destination, cursor, limit, options).pipe(lift(filename, "fetch stored messages")),
    remove: (ids) => exclusive(remove(ids)).pipe(lift(filename, "remove stored messages")),
    contains: (hash) =>
      db.run(sql<{ readonly found: number }>`SELECT 1 AS found FROM stored_messages WHERE body_hash = ${hash}
        LIMIT 1`).pipe(
        Effect.map((rows) => rows.length > 0),
        lift(filename, "look up stored message")
      ),
    removeByBodyHash: (hash) =>
      exclusive(
        db.run(sql`DELETE FROM stored_messages WHERE body_hash = ${hash}
          RETURNING ${sql.literal(Queries.CANDIDATE_COLUMNS)}`).pipe(
          Effect.flatMap(decodeInfo),
          Effect.flatMap(removed),
          Effect.map((n) => n > 0)
        )
      ).pipe(lift(filename, "remove stored message")),
    destinationOf: (hash) =>
      db.run(sql`SELECT destination_pubkey FROM stored_messages WHERE body_hash = ${hash} LIMIT 1`).pipe(
        Effect.flatMap(decodeDestination),
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (row) => row.destination_pubkey)),
        lift(filename, "look up stored message")
      ),
    cleanup: exclusive(cleanup).pipe(lift(filename, "clean up stored messages")),
    count: Effect.sync(() => count),
    totalBytes: Effect.sync(() => bytes),
    cursor: (responder) => readCursor(responder).pipe(lift(filename, "read SAF cursor")),
    advanceCursor: (responder, cursor) =>
      advanceCursor(responder, cursor).pipe(lift(filename, "advance SAF cursor"))
  })
})

/**
 * `make` as a Layer over the store's client.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<MessageStore.MessageStore, StoreError, SqliteClient.SqliteClient> = Layer.scoped(
  MessageStore.MessageStore,
  make
)
