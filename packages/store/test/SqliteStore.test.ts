/**
 * What only the sqlite store has to prove (SPEC §18, scenarios 32, 33, 53): a node's state survives closing and
 * reopening the same file, migrations run once, a corrupt or locked file fails the Layer with a typed error and is
 * left untouched, failed writes change nothing, no out-of-range integer reaches sqlite, and the hot queries are
 * index lookups.
 */
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import type { StoreError } from "@comms-dht/core/DhtError"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as NodeId from "@comms-dht/core/NodeId"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Migrations from "../src/internal/migrations.js"
import * as Queries from "../src/internal/queries.js"
import * as SqliteStore from "../src/SqliteStore.js"

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const U64_MAX = (1n << 64n) - 1n
const I64_MAX = (1n << 63n) - 1n

const bytes32 = (tag: number, i: number) => {
  const b = new Uint8Array(32)
  b[0] = tag
  new DataView(b.buffer).setUint32(28, i)
  return b
}
const key = (i: number): NodeId.PublicKey => NodeId.PublicKey.make(bytes32(1, i))
const hash = (i: number) => bytes32(2, i)

const row = (options: {
  readonly to: number
  readonly hash: number
  readonly priority?: MessageStore.Priority
  readonly expiresAt?: number
}): MessageStore.NewStoredMessage => ({
  version: 1,
  messageType: 0,
  destinationPublicKey: key(options.to),
  destinationNodeId: NodeId.fromPublicKey(key(options.to)),
  header: Uint8Array.of(8, 1, 16, 0),
  body: new Uint8Array(40).fill(options.hash & 0xff),
  priority: options.priority ?? MessageStore.Priority.Low,
  expiresAt: options.expiresAt ?? 3 * HOUR,
  sourceNodeId: NodeId.fromPublicKey(key(900)),
  bodyHash: hash(options.hash)
})

const signature = (seed: number) =>
  new Peer.IdentitySignature({ version: 0, signature: new Uint8Array(64).fill(seed), updatedAt: 1_700_000_000n })

const alice = new Peer.Peer({
  ...Peer.make({
    publicKey: key(1),
    addresses: [],
    features: Peer.PeerFeatures.COMMUNICATION_NODE,
    source: "Join",
    nowMs: 1_000
  }),
  addresses: [
    new Peer.PeerAddress({
      address: "/ip4/10.0.0.2/tcp/18189",
      lastSeen: 5_000,
      lastAttempt: 5_000,
      connectionFailures: 0,
      source: "Join",
      claim: new Peer.PeerClaim({
        addresses: ["/ip4/10.0.0.2/tcp/18189", "/dns4/alice.example/tcp/1"],
        features: Peer.PeerFeatures.COMMUNICATION_NODE,
        identitySignature: signature(7)
      })
    }),
    new Peer.PeerAddress({ address: "/ip4/10.0.0.1/tcp/18189", connectionFailures: 3, source: "Config" })
  ],
  identitySignature: signature(7),
  claimUpdatedAt: 1_700_000_000n,
  verifiedAt: 4_000,
  lastSeen: 5_000
})
const bob = Peer.make({
  publicKey: key(2),
  addresses: ["/ip4/10.0.0.3/tcp/18189"],
  features: Peer.PeerFeatures.COMMUNICATION_CLIENT,
  source: "Discovery",
  nowMs: 2_000,
  flags: Peer.PeerFlags.SEED
})

const tempFile = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "comms-dht-store-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => path.join(dir, "node.db")))

const withConfig = (overrides: DhtConfig.Overrides = {}) => DhtConfig.layer(DhtConfig.unsafeMake(overrides))

/** The store with its client visible, on `filename`. */
const open = (options: SqliteStore.Options, overrides: DhtConfig.Overrides = {}) =>
  SqliteStore.layerServices.pipe(
    Layer.provideMerge(SqliteStore.layerClient(options)),
    Layer.provide(withConfig(overrides))
  )

const MigrationRow = Schema.Struct({ migration_id: Schema.Number, name: Schema.String, created_at: Schema.String })
const migrations = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql`SELECT migration_id, name, created_at FROM effect_sql_migrations ORDER BY migration_id`.pipe(
    Effect.flatMap(Schema.decodeUnknown(Schema.Array(MigrationRow)))
  ))

// the typed failure of building `layer`; a defect fails the test
const openFailure = <A>(layer: Layer.Layer<A, StoreError>) => Effect.flip(Effect.provide(Effect.void, layer))

const insertedId = (result: MessageStore.InsertResult) => {
  if (result._tag !== "Inserted") throw new Error(`expected Inserted, got ${result._tag}`)
  return result.id
}

describe("SqliteStore", () => {
  describe("restart (scenario 32)", () => {
    it.scoped("peers, SAF rows and cursors, dedup entries and metadata survive; migrations are not re-run", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        yield* TestClock.setTime(10 * MINUTE)

        const first = yield* Effect.gen(function*() {
          const peers = yield* PeerManager.PeerManager
          const store = yield* MessageStore.MessageStore
          const dedup = yield* DedupCache.DedupCache
          const metadata = yield* DhtMetadata.DhtMetadata
          const applied = yield* migrations

          yield* peers.add(alice)
          yield* peers.add(bob)
          yield* peers.ban(bob.nodeId, 2 * HOUR, "forged signature")
          const a = insertedId(yield* store.insert(row({ to: 5, hash: 1 })))
          const b = insertedId(yield* store.insert(row({ to: 5, hash: 2, priority: MessageStore.Priority.High })))
          yield* store.insert(row({ to: 6, hash: 3 }))
          yield* store.advanceCursor(key(7), { sinceMs: 123_456n, afterId: 42n })
          yield* dedup.insert(hash(10), key(1))
          yield* dedup.insert(hash(11), key(1), 5 * HOUR)
          // a hit changes only the in-memory index until trim or close
          yield* dedup.insert(hash(11), key(2))
          yield* metadata.set("OfflineTimestamp", DhtMetadata.encodeMillis(9 * MINUTE))
          return {
            applied,
            rows: (yield* store.fetchFor(key(5), MessageStore.initialCursor, 10)).rows,
            ids: [a, b],
            count: yield* store.count,
            bytes: yield* store.totalBytes,
            banned: yield* peers.get(bob.nodeId),
            entry: Option.getOrThrow(yield* dedup.get(hash(11)))
          }
        }).pipe(Effect.provide(open({ filename })))
        expect(first.applied.map((m) => [m.migration_id, m.name])).toEqual([
          [1, "peers"],
          [2, "stored_messages"],
          [3, "dedup_cache"],
          [4, "dht_metadata"],
          [5, "saf_cursors"]
        ])

        // an hour later, the same file
        yield* TestClock.adjust("1 hour")
        yield* Effect.gen(function*() {
          const peers = yield* PeerManager.PeerManager
          const store = yield* MessageStore.MessageStore
          const dedup = yield* DedupCache.DedupCache
          const metadata = yield* DhtMetadata.DhtMetadata

          expect(yield* migrations).toEqual(first.applied)

          expect(yield* peers.get(alice.nodeId)).toEqual(alice)
          const bobAgain = yield* peers.get(bob.nodeId)
          expect(bobAgain).toEqual(first.banned)
          expect(bobAgain.isBanned(yield* currentMillis)).toBe(true)
          expect(bobAgain.bannedReason).toBe("forged signature")
          expect(bobAgain.isSeed).toBe(true)
          expect(yield* peers.count).toBe(2)
          expect((yield* Metric.value(DhtMetrics.knownPeers)).value).toBe(2)

          expect(yield* store.count).toBe(first.count)
          expect(yield* store.totalBytes).toBe(first.bytes)
          expect((yield* store.fetchFor(key(5), MessageStore.initialCursor, 10)).rows).toEqual(first.rows)
          expect(yield* store.cursor(key(7))).toEqual({ sinceMs: 123_456n, afterId: 42n })
          expect(yield* store.insert(row({ to: 9, hash: 1 }))).toEqual(MessageStore.InsertResult.Existed())
          // ids are never reused
          expect(insertedId(yield* store.insert(row({ to: 5, hash: 4 })))).toBe(4)

          // within their keepUntil the entries are still there: the next copy is a duplicate
          expect(yield* dedup.size).toBe(2)
          expect(Option.getOrThrow(yield* dedup.get(hash(11)))).toEqual(first.entry)
          expect(yield* dedup.insert(hash(10), key(3))).toEqual(DedupCache.DedupInsertResult.Inserted({ hits: 2 }))
          expect(yield* dedup.insert(hash(11), key(3))).toEqual(DedupCache.DedupInsertResult.Inserted({ hits: 3 }))

          const offline = yield* metadata.get("OfflineTimestamp")
          expect(Option.flatMap(offline, DhtMetadata.decodeMillis)).toEqual(Option.some(9 * MINUTE))
        }).pipe(Effect.provide(open({ filename })))
      }))

    it.scoped("peers added in batches larger than a statement's run survive with their claims and addresses", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        const many = Array.from({ length: 1_201 }, (_, i) =>
          i === 0 ? alice : new Peer.Peer({ ...alice, publicKey: key(10 + i), nodeId: NodeId.fromPublicKey(key(10 + i)) }))
        // alice again with one address fewer: a batch that updates rewrites that peer's addresses
        const fewer = new Peer.Peer({ ...alice, addresses: alice.addresses.slice(1) })
        const written = yield* Effect.gen(function*() {
          const peers = yield* PeerManager.PeerManager
          expect(yield* peers.addMany(many)).toEqual(many.map(() => "Added"))
          expect(yield* peers.addMany([bob, fewer])).toEqual(["Added", "Updated"])
          return yield* peers.all
        }).pipe(Effect.provide(open({ filename })))
        expect(written).toHaveLength(1_202)
        yield* Effect.gen(function*() {
          const peers = yield* PeerManager.PeerManager
          expect(yield* peers.all).toEqual(written)
          expect(yield* peers.get(alice.nodeId)).toEqual(fewer)
        }).pipe(Effect.provide(open({ filename })))
      }))

    it.scoped("storedAt does not go back across a restart, even after every row has left", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        yield* TestClock.setTime(HOUR)
        yield* Effect.gen(function*() {
          const store = yield* MessageStore.MessageStore
          const id = insertedId(yield* store.insert(row({ to: 1, hash: 1 })))
          yield* store.remove([id])
          expect(yield* store.count).toBe(0)
        }).pipe(Effect.provide(open({ filename })))

        // the clock went back while the node was down
        yield* TestClock.setTime(MINUTE)
        const again = yield* Effect.flatMap(MessageStore.MessageStore, (s) => s.insert(row({ to: 1, hash: 2 }))).pipe(
          Effect.provide(open({ filename }))
        )
        expect(again).toEqual(MessageStore.InsertResult.Inserted({ id: 2, storedAt: HOUR }))
      }))

    it.scoped("dedup: entries wait for 64, a trim or the close; trim deletes dead rows, those dead at reopen too", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        const Hits = Schema.Array(Schema.Struct({ number_of_hits: Schema.Number, keep_until: Schema.Number }))
        const stored = (i: number) =>
          Effect.flatMap(SqlClient.SqlClient, (sql) =>
            sql`SELECT number_of_hits, keep_until FROM dedup_cache WHERE body_hash = ${hash(i)}`.pipe(
              Effect.flatMap(Schema.decodeUnknown(Hits))
            ))
        const rows = Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql<{ readonly n: number }>`SELECT count(*) AS n FROM dedup_cache`.pipe(Effect.map((r) => r[0]?.n)))
        yield* Effect.gen(function*() {
          const dedup = yield* DedupCache.DedupCache
          yield* dedup.insert(hash(1), key(1), 30 * MINUTE)
          yield* dedup.insert(hash(2), key(1), 5 * HOUR)
          yield* dedup.insert(hash(2), key(2), 6 * HOUR)
          // the entries and the hit live in memory only, until a trim
          expect(yield* dedup.hitCount(hash(2))).toBe(2)
          expect(yield* rows).toBe(0)
          expect(yield* dedup.trim).toBe(0)
          expect(yield* stored(2)).toEqual([{ number_of_hits: 2, keep_until: 6 * HOUR }])
          expect(yield* rows).toBe(2)
          // so do the hits the inbound pipeline records without an Effect; the scope's close writes them
          expect(dedup.unsafeRecordHit(hash(2), key(3), 0, 7 * HOUR)).toBe(3)
          expect(yield* stored(2)).toEqual([{ number_of_hits: 2, keep_until: 6 * HOUR }])
        }).pipe(Effect.provide(open({ filename })))
        yield* Effect.gen(function*() {
          expect(yield* stored(2)).toEqual([{ number_of_hits: 3, keep_until: 7 * HOUR }])
          const dedup = yield* DedupCache.DedupCache
          expect(yield* dedup.hitCount(hash(2))).toBe(3)
          // 63 new entries are not written, the 64th writes them all; a hit on a written entry waits for a trim
          expect(dedup.unsafeRecordHit(hash(2), key(3), 0, 8 * HOUR)).toBe(4)
          for (let i = 100; i < 163; i++) yield* dedup.insert(hash(i), key(1), 5 * HOUR)
          expect(yield* rows).toBe(2)
          yield* dedup.insert(hash(163), key(1), 5 * HOUR)
          expect(yield* rows).toBe(66)
          expect(yield* stored(2)).toEqual([{ number_of_hits: 3, keep_until: 7 * HOUR }])
          expect(yield* stored(163)).toEqual([{ number_of_hits: 1, keep_until: 5 * HOUR }])
        }).pipe(Effect.provide(open({ filename })))

        yield* TestClock.setTime(HOUR)
        yield* Effect.gen(function*() {
          const dedup = yield* DedupCache.DedupCache
          // loaded as stored: the dead entry is still counted until it is trimmed
          expect(yield* dedup.hitCount(hash(1))).toBe(1)
          expect(yield* dedup.trim).toBe(1)
          expect(yield* dedup.hitCount(hash(1))).toBe(0)
          expect(yield* stored(1)).toEqual([])
        }).pipe(Effect.provide(open({ filename })))

        const size = yield* Effect.flatMap(DedupCache.DedupCache, (d) => d.size).pipe(Effect.provide(open({ filename })))
        // hash(2) and the 64 of the second open
        expect(size).toBe(65)
      }))

    it.scoped("a second open of an unchanged file applies no migration", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        const ran = Effect.flatMap(SqlClient.SqlClient, () => migrations)
        const before = yield* ran.pipe(Effect.provide(SqliteStore.layerClient({ filename })))
        const schema = Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql`SELECT type, name, sql FROM sqlite_schema ORDER BY name`)
        const tables = yield* schema.pipe(Effect.provide(SqliteStore.layerClient({ filename })))
        expect(yield* ran.pipe(Effect.provide(SqliteStore.layerClient({ filename })))).toEqual(before)
        expect(yield* schema.pipe(Effect.provide(SqliteStore.layerClient({ filename })))).toEqual(tables)
        expect(tables.map((t) => t.name)).toEqual(expect.arrayContaining([
          "peers",
          "peer_addresses",
          "stored_messages",
          "dedup_cache",
          "dht_metadata",
          "saf_cursors",
          "idx_stored_messages_cursor",
          "idx_stored_messages_expires_at",
          "idx_stored_messages_eviction",
          "uidx_stored_messages_body_hash",
          "idx_dedup_cache_keep_until"
        ]))
      }))
  })

  describe("migrations", () => {
    // a file as `@effect/sql`'s Migrator left it, which ran the migrations before the store's own runner
    const migratedByEffectSql = (filename: string, upTo: number) =>
      Migrator.make({})({
        loader: Migrator.fromRecord(Object.fromEntries(
          Migrations.all.filter((m) => m.id <= upTo).map((m) => [
            `${String(m.id).padStart(4, "0")}_${m.name}`,
            Effect.flatMap(SqlClient.SqlClient, (sql) =>
              Effect.forEach(m.statements, (statement) => sql.unsafe(statement), { discard: true }))
          ])
        ))
      }).pipe(Effect.provide(SqliteClient.layer({ filename })))

    it.scoped("a file migrated by @effect/sql's Migrator keeps its records; only the missing migrations run", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        yield* migratedByEffectSql(filename, 3)
        const before = yield* migrations.pipe(Effect.provide(SqliteClient.layer({ filename })))
        expect(before.map((m) => [m.migration_id, m.name])).toEqual([[1, "peers"], [2, "stored_messages"], [
          3,
          "dedup_cache"
        ]])
        const after = yield* migrations.pipe(Effect.provide(SqliteStore.layerClient({ filename })))
        expect(after.slice(0, 3)).toEqual(before)
        expect(after.map((m) => [m.migration_id, m.name])).toEqual(
          Migrations.all.map((m) => [m.id, m.name])
        )
        // and the store works on it
        const value = Effect.flatMap(DhtMetadata.DhtMetadata, (metadata) =>
          Effect.zipRight(metadata.set("OfflineTimestamp", Uint8Array.of(5)), metadata.get("OfflineTimestamp")))
        expect(yield* value.pipe(Effect.provide(open({ filename })))).toEqual(Option.some(Uint8Array.of(5)))
      }))

    it.scoped("a migration that fails applies none of them: the open fails naming the file, the file as it was", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        // a table in the way of migration 4, in a file that records none
        yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe("CREATE TABLE dht_metadata (x INTEGER)")).pipe(
          Effect.provide(SqliteClient.layer({ filename }))
        )
        const error = yield* openFailure(SqliteStore.layerClient({ filename }))
        expect(error.message).toContain(filename)
        const tables = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql<{ readonly name: string }>`SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name`).pipe(
            Effect.provide(SqliteClient.layer({ filename }))
          )
        expect(tables.map((t) => t.name)).toEqual(["dht_metadata"])
      }))
  })

  describe("SAF requests answered from memory (the cursors, destinations with nothing stored)", () => {
    it.scoped("cursors advanced at once from several fibers end at the furthest, in memory and in the file", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        const advances = [{ sinceMs: 10n, afterId: 5n }, { sinceMs: 9n, afterId: 100n }, { sinceMs: 10n, afterId: 4n }]
        yield* Effect.gen(function*() {
          const store = yield* MessageStore.MessageStore
          yield* Effect.all(advances.map((c) => store.advanceCursor(key(1), c)), { concurrency: "unbounded" })
          yield* Effect.all([...advances].reverse().map((c) => store.advanceCursor(key(2), c)), {
            concurrency: "unbounded"
          })
          expect(yield* store.cursor(key(1))).toEqual({ sinceMs: 10n, afterId: 5n })
          expect(yield* store.cursor(key(2))).toEqual({ sinceMs: 10n, afterId: 5n })
        }).pipe(Effect.provide(open({ filename })))
        yield* Effect.gen(function*() {
          const store = yield* MessageStore.MessageStore
          expect(yield* store.cursor(key(1))).toEqual({ sinceMs: 10n, afterId: 5n })
          expect(yield* store.cursor(key(2))).toEqual({ sinceMs: 10n, afterId: 5n })
        }).pipe(Effect.provide(open({ filename })))
      }))

    it.scoped("a destination's first row is fetched once its insert has returned; others still have none", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        yield* Effect.gen(function*() {
          const store = yield* MessageStore.MessageStore
          expect(yield* store.fetchFor(key(5), MessageStore.initialCursor, 10)).toEqual({ rows: [], more: false })
          yield* store.insert(row({ to: 5, hash: 1 }))
          expect((yield* store.fetchFor(key(5), MessageStore.initialCursor, 10)).rows.length).toBe(1)
          expect(yield* store.fetchFor(key(6), MessageStore.initialCursor, 10)).toEqual({ rows: [], more: false })
        }).pipe(Effect.provide(open({ filename })))
        // after a restart the counts are read back: the row is found again
        yield* Effect.gen(function*() {
          const store = yield* MessageStore.MessageStore
          expect((yield* store.fetchFor(key(5), MessageStore.initialCursor, 10)).rows.length).toBe(1)
        }).pipe(Effect.provide(open({ filename })))
      }))
  })

  describe("touches: what connections and dials change (lastSeen, verifiedAt, address statistics)", () => {
    const seenAt = (peer: Peer.Peer, at: number) =>
      new Peer.Peer({
        ...peer,
        lastSeen: at,
        verifiedAt: peer.verifiedAt ?? at,
        addresses: peer.addresses.map((a) => new Peer.PeerAddress({ ...a, lastSeen: at, connectionFailures: 0 }))
      })
    const LastSeen = Schema.Array(Schema.Struct({ last_seen: Schema.NullOr(Schema.Number) }))
    // what the file holds, read past the mirror
    const storedLastSeen = (peer: Peer.Peer) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql`SELECT last_seen FROM peers WHERE node_id = ${peer.nodeId}`.pipe(
          Effect.flatMap(Schema.decodeUnknown(LastSeen)),
          Effect.map((rows) => rows[0]?.last_seen)
        ))
    const others = Array.from({ length: 70 }, (_, i) =>
      Peer.make({
        publicKey: key(100 + i),
        addresses: [`/ip4/10.1.0.${i}/tcp/18189`],
        features: Peer.PeerFeatures.COMMUNICATION_NODE,
        source: "PeerSync",
        nowMs: 3_000
      }))

    it.scoped("reach the mirror at once, the file with the next write, at 64 waiting, and when the scope closes", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        yield* Effect.gen(function*() {
          const peers = yield* PeerManager.PeerManager
          yield* peers.add(alice)
          yield* peers.add(bob)
          yield* peers.addMany(others)

          const seen = yield* peers.update(alice.nodeId, (p) => seenAt(p, 9_000))
          expect(yield* peers.get(alice.nodeId)).toEqual(seen)
          expect(yield* storedLastSeen(alice)).toBe(5_000)
          // any other write takes the waiting touches with it
          yield* peers.ban(bob.nodeId, HOUR, "test")
          expect(yield* storedLastSeen(alice)).toBe(9_000)

          for (const [i, other] of others.slice(0, 63).entries()) {
            yield* peers.update(other.nodeId, (p) => seenAt(p, 10_000 + i))
          }
          expect(yield* storedLastSeen(others[62]!)).toBe(null)
          yield* peers.update(others[63]!.nodeId, (p) => seenAt(p, 20_000))
          expect(yield* storedLastSeen(others[0]!)).toBe(10_000)
          expect(yield* storedLastSeen(others[63]!)).toBe(20_000)

          // an add of a record with the same claims and addresses is a touch too
          yield* peers.add(seenAt(yield* peers.get(alice.nodeId), 30_000))
          expect(yield* storedLastSeen(alice)).toBe(9_000)
        }).pipe(Effect.provide(open({ filename })))

        const reopened = yield* Effect.flatMap(PeerManager.PeerManager, (peers) => peers.get(alice.nodeId)).pipe(
          Effect.provide(open({ filename }))
        )
        expect(reopened).toEqual(seenAt(alice, 30_000))
      }))

    it.scoped("additions wait like touches: written at 64 waiting, with any other write, at the scope's close", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        const moved = new Peer.Peer({
          ...seenAt(alice, 9_000),
          addresses: [
            ...alice.addresses,
            new Peer.PeerAddress({ address: "/ip4/10.9.9.9/tcp/1", connectionFailures: 0, source: "Join" })
          ]
        })
        yield* Effect.gen(function*() {
          const peers = yield* PeerManager.PeerManager
          for (const other of others.slice(0, 63)) yield* peers.add(other)
          expect(yield* storedLastSeen(others[0]!)).toBeUndefined()
          expect(yield* peers.count).toBe(63)
          yield* peers.add(alice)
          expect(yield* storedLastSeen(others[0]!)).toBe(null)
          expect(yield* storedLastSeen(alice)).toBe(5_000)

          // a new address is an addition's change too: it waits
          yield* peers.add(moved)
          expect(yield* peers.get(alice.nodeId)).toEqual(moved)
          expect(yield* storedLastSeen(alice)).toBe(5_000)
          // an offline mark is no touch: written before the call returns, with what waits
          yield* peers.update(alice.nodeId, (p) => new Peer.Peer({ ...p, lastSeen: 9_500, offlineAt: 9_500 }))
          expect(yield* storedLastSeen(alice)).toBe(9_500)

          yield* peers.addMany(others.slice(63))
          expect(yield* storedLastSeen(others[69]!)).toBeUndefined()
        }).pipe(Effect.provide(open({ filename })))

        const reopened = yield* Effect.flatMap(PeerManager.PeerManager, (peers) => peers.all).pipe(
          Effect.provide(open({ filename }))
        )
        expect(reopened.length).toBe(71)
        expect(reopened.find((p) => NodeId.equals(p.nodeId, alice.nodeId))?.addresses).toEqual(moved.addresses)
      }))

    it.effect("a write that fails keeps what waits for the next one", () =>
      Effect.gen(function*() {
        const peers = yield* PeerManager.PeerManager
        const failWrites = Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql.unsafe(`CREATE TRIGGER fail_peers BEFORE INSERT ON peer_addresses BEGIN SELECT RAISE(ABORT, 'x'); END`))
        const restoreWrites = Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP TRIGGER fail_peers`))
        yield* peers.add(alice)
        yield* peers.add(bob)
        yield* peers.update(alice.nodeId, (p) => seenAt(p, 9_000))
        yield* failWrites
        // a ban is written before the call returns: it fails, and so does the batch of what waited
        expect((yield* Effect.flip(peers.ban(bob.nodeId, HOUR, "test")))._tag).toBe("StoreError")
        expect((yield* peers.get(bob.nodeId)).isBanned(0)).toBe(false)
        yield* restoreWrites
        expect(yield* storedLastSeen(alice)).toBeUndefined()
        expect((yield* peers.get(alice.nodeId)).lastSeen).toBe(9_000)
        yield* peers.ban(bob.nodeId, HOUR, "test")
        expect(yield* storedLastSeen(alice)).toBe(9_000)
        expect(yield* storedLastSeen(bob)).toBe(null)
      }).pipe(Effect.provide(open({ filename: ":memory:" }))))

    it.effect("a record the table cannot hold fails its add at once and leaves what waits writable", () =>
      Effect.gen(function*() {
        const peers = yield* PeerManager.PeerManager
        yield* peers.add(bob)
        const unencodable = new Peer.Peer({
          ...alice,
          identitySignature: new Peer.IdentitySignature({
            version: 2 ** 32,
            signature: new Uint8Array(64),
            updatedAt: 1n
          })
        })
        const error = yield* Effect.flip(peers.add(unencodable))
        expect(error.reason).toBe("Constraint")
        expect(yield* peers.exists(alice.nodeId)).toBe(false)
        expect(yield* Effect.flip(peers.addMany([others[0]!, unencodable]))).toMatchObject({ reason: "Constraint" })
        expect(yield* peers.exists(others[0]!.nodeId)).toBe(false)
        yield* peers.ban(bob.nodeId, HOUR, "test")
        expect(yield* storedLastSeen(bob)).toBe(null)
      }).pipe(Effect.provide(open({ filename: ":memory:" }))))
  })

  describe("a file that cannot be used (scenario 33)", () => {
    it.scoped("random bytes: Corrupt, naming the file, and the file is byte-identical afterwards", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        const original = crypto.randomBytes(64 * 1024)
        fs.writeFileSync(filename, original)
        const error = yield* openFailure(SqliteStore.layer({ filename }))
        expect(error._tag).toBe("StoreError")
        expect(error.reason).toBe("Corrupt")
        expect(error.message).toContain(filename)
        expect(Buffer.compare(fs.readFileSync(filename), original)).toBe(0)
        // no journal, WAL or shared-memory file left beside it
        expect(fs.readdirSync(path.dirname(filename))).toEqual(["node.db"])
      }))

    it.scoped("a database with a damaged page fails quick_check: Corrupt, and nothing is written to it", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        yield* Effect.gen(function*() {
          const store = yield* MessageStore.MessageStore
          for (let i = 0; i < 200; i++) yield* store.insert(row({ to: i % 7, hash: i }))
        }).pipe(Effect.provide(open({ filename })))
        const damaged = fs.readFileSync(filename)
        expect(damaged.length).toBeGreaterThan(6 * 4096)
        // pages 3 to 5, b-tree pages of the tables and their indexes, overwritten whole
        damaged.fill(0xa5, 2 * 4096, 5 * 4096)
        fs.writeFileSync(filename, damaged)

        const error = yield* openFailure(SqliteStore.layer({ filename }))
        expect(error.reason).toBe("Corrupt")
        expect(error.message).toContain(filename)
        expect(Buffer.compare(fs.readFileSync(filename), damaged)).toBe(0)
      }))

    it.scoped("a file another store holds: Locked after the busy timeout; usable once that store closes", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        const scope = yield* Effect.scope
        const holder = yield* Layer.buildWithScope(open({ filename }), scope)
        expect(yield* Context.get(holder, PeerManager.PeerManager).count).toBe(0)

        const error = yield* openFailure(SqliteStore.layer({ filename, busyTimeout: "100 millis" }))
        expect(error._tag).toBe("StoreError")
        expect(error.reason).toBe("Locked")
        expect(error.message).toContain(filename)
      }))

    it.scoped("a file locked by an open exclusive transaction of another connection: Locked, then fine", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        yield* Effect.flatMap(PeerManager.PeerManager, (p) => p.add(bob)).pipe(Effect.provide(open({ filename })))

        const count = Effect.flatMap(PeerManager.PeerManager, (p) => p.count)
        yield* Effect.gen(function*() {
          const other = yield* SqlClient.SqlClient
          yield* other.unsafe("BEGIN EXCLUSIVE")
          yield* other`DELETE FROM peers`
          const error = yield* openFailure(SqliteStore.layer({ filename, busyTimeout: "100 millis" }))
          expect(error.reason).toBe("Locked")
          expect(error.message).toContain(filename)
          yield* other.unsafe("ROLLBACK")
        }).pipe(Effect.provide(SqliteClient.layer({ filename })))

        // nothing was lost: the other connection's change was rolled back, ours is intact
        expect(yield* count.pipe(Effect.provide(open({ filename })))).toBe(1)
      }))

    it.scoped("a directory that does not exist: Io, not a defect", () =>
      Effect.gen(function*() {
        const filename = path.join(path.dirname(yield* tempFile), "missing", "node.db")
        const error = yield* openFailure(SqliteStore.layer({ filename }))
        expect(error.reason).toBe("Io")
        expect(error.message).toContain(filename)
      }))
  })

  describe("failed writes change nothing (SPEC §18 failure handling)", () => {
    // every INSERT and UPDATE of `table` fails until `restoreWrites`, as on a disk that refuses writes
    const failWrites = (table: string) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        Effect.forEach(["INSERT", "UPDATE"], (op) =>
          sql.unsafe(
            `CREATE TRIGGER fail_${op}_${table} BEFORE ${op} ON ${table} BEGIN SELECT RAISE(ABORT, 'disk on fire'); END`
          )))
    const restoreWrites = (table: string) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        Effect.forEach(["INSERT", "UPDATE"], (op) => sql.unsafe(`DROP TRIGGER fail_${op}_${table}`)))

    it.effect("while dedup writes fail, each insert that fills the batch is Failed and taken back (scenario 43)", () =>
      Effect.gen(function*() {
        const dedup = yield* DedupCache.DedupCache
        const rows = Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql<{ readonly n: number }>`SELECT count(*) AS n FROM dedup_cache`.pipe(Effect.map((r) => r[0]?.n)))
        // 64 entries, written together; hash(1) dies at 100
        yield* dedup.insert(hash(1), key(1), 100)
        for (let i = 2; i <= 64; i++) yield* dedup.insert(hash(i), key(1), 1_000_000)
        expect(yield* rows).toBe(64)
        yield* TestClock.setTime(200)
        yield* failWrites("dedup_cache")

        // hits and the next 63 entries wait in memory, so they still count
        expect(yield* dedup.insert(hash(3), key(2))).toEqual(DedupCache.DedupInsertResult.Inserted({ hits: 2 }))
        for (let i = 100; i < 163; i++) {
          expect(yield* dedup.insert(hash(i), key(1), 1_000_000)).toEqual(
            DedupCache.DedupInsertResult.Inserted({ hits: 1 })
          )
        }
        expect(yield* dedup.size).toBe(127)
        // the cache is full: the 64th waiting takes the dead entry's place, its write fails, and both come back
        const failed = yield* dedup.insert(hash(163), key(1), 1_000_000)
        expect(failed._tag).toBe("Failed")
        if (failed._tag === "Failed") {
          expect(failed.error.reason).toBe("Constraint")
          expect(failed.error.message).toContain("disk on fire")
        }
        expect(yield* dedup.hitCount(hash(163))).toBe(0)
        expect(yield* dedup.hitCount(hash(1))).toBe(1)
        expect(yield* dedup.hitCount(hash(162))).toBe(1)
        expect(yield* dedup.size).toBe(127)
        // the batch stays full, so the next one fails as well: a store that cannot write forwards nothing new
        expect((yield* dedup.insert(hash(163), key(1), 1_000_000))._tag).toBe("Failed")
        expect(yield* rows).toBe(64)

        yield* restoreWrites("dedup_cache")
        expect(yield* dedup.insert(hash(163), key(1), 1_000_000)).toEqual(
          DedupCache.DedupInsertResult.Inserted({ hits: 1 })
        )
        expect(yield* dedup.hitCount(hash(1))).toBe(0)
        expect(yield* dedup.hitCount(hash(3))).toBe(2)
        // the dead entry's row went with the write that replaced it; nothing that waited was lost
        expect(yield* rows).toBe(127)
      }).pipe(Effect.provide(open({ filename: ":memory:" }, { dedupCacheCapacity: 127 }))))

    it.effect("an insert that must evict is rolled back whole when its write fails", () =>
      Effect.gen(function*() {
        const store = yield* MessageStore.MessageStore
        const first = insertedId(yield* store.insert(row({ to: 1, hash: 1 })))
        insertedId(yield* store.insert(row({ to: 2, hash: 2 })))
        yield* failWrites("stored_messages")
        const error = yield* Effect.flip(store.insert(row({ to: 3, hash: 3 })))
        expect(error.reason).toBe("Constraint")
        expect(error.message).toContain("disk on fire")
        expect(yield* store.count).toBe(2)
        expect((yield* store.fetchFor(key(1), MessageStore.initialCursor, 10)).rows.map((r) => r.id)).toEqual([first])

        yield* restoreWrites("stored_messages")
        expect((yield* store.insert(row({ to: 3, hash: 3 })))._tag).toBe("Inserted")
        expect((yield* store.fetchFor(key(1), MessageStore.initialCursor, 10)).rows).toEqual([])
        expect(yield* store.count).toBe(2)
      }).pipe(Effect.provide(open({ filename: ":memory:" }, { saf: { msgStorageCapacity: 2 } }))))

    it.effect("a peer whose write fails keeps its previous record", () =>
      Effect.gen(function*() {
        const peers = yield* PeerManager.PeerManager
        yield* peers.add(bob)
        yield* failWrites("peer_addresses")
        const moved = (p: Peer.Peer) =>
          new Peer.Peer({
            ...p,
            offlineAt: 9_000,
            addresses: [new Peer.PeerAddress({ address: "/ip4/10.9.9.9/tcp/1", connectionFailures: 0, source: "Join" })]
          })
        const error = yield* Effect.flip(peers.update(bob.nodeId, moved))
        expect(error._tag).toBe("StoreError")
        expect(yield* peers.get(bob.nodeId)).toEqual(bob)
        expect((yield* Effect.flip(peers.remove(bob.nodeId)))._tag).toBe("StoreError")
        expect(yield* peers.count).toBe(1)
      }).pipe(Effect.provide(open({ filename: ":memory:" }))))

    it.effect("an addition that must evict is written first, and fails whole when its write fails", () =>
      Effect.gen(function*() {
        const peers = yield* PeerManager.PeerManager
        yield* peers.add(alice)
        yield* failWrites("peer_addresses")
        // bob, a seed, takes alice's place
        expect((yield* Effect.flip(peers.add(bob)))._tag).toBe("StoreError")
        expect(yield* peers.exists(bob.nodeId)).toBe(false)
        expect(yield* peers.get(alice.nodeId)).toEqual(alice)
        yield* restoreWrites("peer_addresses")
        expect(yield* peers.add(bob)).toBe("Added")
        expect(yield* peers.exists(alice.nodeId)).toBe(false)
      }).pipe(Effect.provide(open({ filename: ":memory:" }, { maxKnownPeers: 1 }))))
  })

  it.effect("an update may not move a record to another key: the rows are keyed by it", () =>
    Effect.gen(function*() {
      const peers = yield* PeerManager.PeerManager
      yield* peers.add(bob)
      const error = yield* Effect.flip(peers.update(bob.nodeId, (p) => new Peer.Peer({ ...p, publicKey: key(3) })))
      expect(error._tag).toBe("StoreError")
      expect(yield* peers.get(bob.nodeId)).toEqual(bob)
    }).pipe(Effect.provide(open({ filename: ":memory:" }))))

  describe("uint64 values (scenario 53)", () => {
    it.scoped("values near 2⁶⁴ − 1 are clamped before they are bound, and read back as stored", () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        const far = Number(U64_MAX) // 1.8e19 as a number: beyond every integer sqlite holds
        yield* Effect.gen(function*() {
          const store = yield* MessageStore.MessageStore
          const dedup = yield* DedupCache.DedupCache
          const peers = yield* PeerManager.PeerManager
          expect(yield* store.advanceCursor(key(1), { sinceMs: U64_MAX, afterId: U64_MAX - 1n }))
            .toEqual({ sinceMs: I64_MAX, afterId: I64_MAX })
          expect(yield* store.fetchFor(key(2), { sinceMs: U64_MAX, afterId: U64_MAX }, 10))
            .toEqual({ rows: [], more: false })
          expect((yield* store.insert(row({ to: 2, hash: 1, expiresAt: far })))._tag).toBe("Inserted")
          expect((yield* dedup.insert(hash(5), key(1), far))._tag).toBe("Inserted")
          yield* peers.add(new Peer.Peer({ ...bob, claimUpdatedAt: U64_MAX, identitySignature: signature(1) }))
        }).pipe(Effect.provide(open({ filename })))

        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const store = yield* MessageStore.MessageStore
          const cells = yield* sql`
            SELECT typeof(since_ms) AS t, CAST(since_ms AS TEXT) AS v FROM saf_cursors
            UNION ALL SELECT typeof(after_id), CAST(after_id AS TEXT) FROM saf_cursors
            UNION ALL SELECT typeof(expires_at), CAST(expires_at AS TEXT) FROM stored_messages
            UNION ALL SELECT typeof(keep_until), CAST(keep_until AS TEXT) FROM dedup_cache
            UNION ALL SELECT typeof(claim_updated_at), CAST(claim_updated_at AS TEXT) FROM peers`
          expect(cells).toEqual([
            { t: "integer", v: String(I64_MAX) },
            { t: "integer", v: String(I64_MAX) },
            { t: "integer", v: String(Number.MAX_SAFE_INTEGER) },
            { t: "integer", v: String(Number.MAX_SAFE_INTEGER) },
            { t: "integer", v: String(I64_MAX) }
          ])
          expect(yield* store.cursor(key(1))).toEqual({ sinceMs: I64_MAX, afterId: I64_MAX })
          const [stored] = (yield* store.fetchFor(key(2), MessageStore.initialCursor, 10)).rows
          expect(stored?.expiresAt).toBe(Number.MAX_SAFE_INTEGER)
          expect((yield* Effect.flatMap(PeerManager.PeerManager, (p) => p.get(bob.nodeId))).claimUpdatedAt)
            .toBe(I64_MAX)
          expect(yield* Effect.flatMap(DedupCache.DedupCache, (d) => d.hitCount(hash(5)))).toBe(1)
        }).pipe(Effect.provide(open({ filename })))
      }))
  })

  describe("query plans", () => {
    const Plan = Schema.Array(Schema.Struct({ detail: Schema.String }))
    const explain = (statement: { readonly compile: () => readonly [string, ReadonlyArray<unknown>] }) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) => {
        const [text, params] = statement.compile()
        return sql.unsafe(`EXPLAIN QUERY PLAN ${text}`, params).pipe(
          Effect.flatMap(Schema.decodeUnknown(Plan)),
          Effect.map((rows) => rows.map((r) => r.detail))
        )
      })
    const noScan = (details: ReadonlyArray<string>) =>
      expect(details.filter((d) => /^SCAN stored_messages\b/.test(d))).toEqual([])

    it.effect("'for destination X since T' and 'expired' are index lookups on a store of 2,000 rows", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const store = yield* MessageStore.MessageStore
        for (let i = 0; i < 2_000; i++) {
          yield* store.insert(row({ to: i % 50, hash: i, priority: i % 3 === 0 ? 10 : 1, expiresAt: HOUR + i }))
        }
        yield* sql`ANALYZE`

        for (const since of [Queries.headsAfter, Queries.rowsAfter]) {
          const forDestination = yield* explain(since(sql, key(3), 1_000n, 17n, 51))
          expect(forDestination.join("\n")).toMatch(/SEARCH stored_messages USING INDEX idx_stored_messages_cursor/)
          noScan(forDestination)
        }
        const byId = yield* explain(Queries.rowsById(sql, [3, 5, 8]))
        expect(byId.join("\n")).toMatch(/SEARCH stored_messages USING INTEGER PRIMARY KEY/)
        noScan(byId)

        const expired = yield* explain(Queries.deleteExpired(sql, HOUR))
        expect(expired.join("\n")).toMatch(/USING (COVERING )?INDEX idx_stored_messages_expires_at\b/)
        noScan(expired)

        for (const priority of [1, 10]) {
          const outlived = yield* explain(Queries.deleteOutlived(sql, priority, HOUR))
          expect(outlived.join("\n")).toMatch(/USING (COVERING )?INDEX idx_stored_messages_eviction\b/)
          noScan(outlived)
        }

        const eviction = yield* explain(Queries.candidatesAfter(sql, 10, { priority: 1, storedAt: 5, id: 9 }, 2))
        expect(eviction.join("\n")).toMatch(/SEARCH stored_messages USING INDEX idx_stored_messages_eviction/)
        noScan(eviction)
        expect(eviction.join("\n")).not.toMatch(/TEMP B-TREE/)

        // bounded by maxRowsPerDestination whichever index the planner takes
        noScan(yield* explain(Queries.destinationCandidates(sql, key(3), 1, 1)))
      }).pipe(Effect.provide(open({ filename: ":memory:" }))))
  })
})

const currentMillis = Effect.clockWith((clock) => clock.currentTimeMillis)
