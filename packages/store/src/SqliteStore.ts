/**
 * The sqlite storage of a node (SPEC §18): `SqliteStore.layer({ filename })` opens one file (`":memory:"` for
 * tests) through `@effect/sql-sqlite-node`, checks and migrates it, and supplies every storage tag of core —
 * `PeerManager`, `MessageStore` (with the SAF cursors), `DedupCache` and `DhtMetadata` — over its one connection.
 *
 * Opening is careful with the file it is given. In order: `busy_timeout` (5 s by default), exclusive locking (one
 * node per file: the services keep totals and indexes in memory, which a second writer would silently invalidate),
 * WAL, `foreign_keys = ON`, `synchronous = NORMAL`, `PRAGMA quick_check`, the write lock, then the migrations of
 * SPEC §18 (applied once each, recorded in `effect_sql_migrations`). A file that is not a database, or fails the
 * check, fails the Layer with `StoreError{reason: "Corrupt"}`; a file held by another connection fails it with
 * `Locked` once the busy timeout has passed; both name the file, and neither touches it: nothing is deleted,
 * truncated, recreated or migrated over.
 *
 * @since 0.1.0
 */
import * as DedupCache from "@comms-dht/core/DedupCache"
import { StoreError } from "@comms-dht/core/DhtError"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Db from "./internal/db.js"
import { fromOpenCause, lift } from "./internal/errors.js"
import * as Migrations from "./internal/migrations.js"
import * as SqliteDedupCache from "./SqliteDedupCache.js"
import * as SqliteMessageStore from "./SqliteMessageStore.js"
import * as SqliteMetadata from "./SqliteMetadata.js"
import * as SqlitePeerManager from "./SqlitePeerManager.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** the database file, created if absent; `":memory:"` for a private in-memory database */
  readonly filename: string
  /** how long a statement waits for a lock held by another connection before failing `Locked`; 5 seconds */
  readonly busyTimeout?: Duration.DurationInput
}

/**
 * The storage tags `layer` supplies.
 *
 * @since 0.1.0
 * @category models
 */
export type Services =
  | PeerManager.PeerManager
  | MessageStore.MessageStore
  | DedupCache.DedupCache
  | DhtMetadata.DhtMetadata

const DEFAULT_BUSY_TIMEOUT = Duration.seconds(5)

const QuickCheck = Schema.Array(Schema.Struct({ quick_check: Schema.String }))

const prepare = (options: Options) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const filename = options.filename
    const timeout = Duration.decode(options.busyTimeout ?? DEFAULT_BUSY_TIMEOUT)
    const busyMs = Math.max(0, Math.round(Duration.toMillis(timeout)))
    const step = (action: string) => lift(filename, action)
    // The store's own connection from the start: its statements run on it directly (internal/db.ts), a dozen
    // steps of the run loop each rather than about 99 through the client.
    yield* Db.own(sql).pipe(step("open"))
    const db = Db.forClient(sql)
    const exec = (text: string) => db.once(sql.unsafe(text))

    // Both before the first access of the file: the timeout covers every later statement, and exclusive locking
    // set first keeps the WAL index in process memory (no -shm file).
    yield* exec(`PRAGMA busy_timeout = ${Number.isFinite(busyMs) ? busyMs : 2_147_483_647}`).pipe(
      step("set busy_timeout")
    )
    yield* exec("PRAGMA locking_mode = EXCLUSIVE").pipe(step("set locking_mode"))
    yield* exec("PRAGMA journal_mode = WAL").pipe(step("open"))
    yield* exec("PRAGMA foreign_keys = ON").pipe(step("set foreign_keys"))
    // WAL with NORMAL syncs at checkpoints, not at every commit: a crash of the process loses nothing committed;
    // losing power may lose the last commits, never the file's consistency.
    yield* exec("PRAGMA synchronous = NORMAL").pipe(step("set synchronous"))

    const problems = yield* exec("PRAGMA quick_check").pipe(
      Effect.flatMap(Schema.decodeUnknown(QuickCheck)),
      step("quick_check")
    )
    if (problems.length !== 1 || problems[0]!.quick_check !== "ok") {
      const found = problems.slice(0, 3).map((p) => p.quick_check).join("; ")
      return yield* Effect.fail(
        new StoreError({
          reason: "Corrupt",
          message: `sqlite store ${filename}: quick_check failed: ${found.length > 0 ? found : "no result"}`
        })
      )
    }

    // Taking the write lock now makes a file held by another connection fail here, before any migration; in
    // exclusive locking mode it is then kept until the store closes.
    yield* exec("BEGIN IMMEDIATE").pipe(Effect.zipRight(exec("ROLLBACK")), step("take the write lock"))

    // the runner applies every missing migration or none (it fails): no version to check after it, as the
    // Migrator's silent skip once needed
    yield* Migrations.run(db).pipe(step("migrate"))
  })

// The client opened, checked and migrated, in the caller's scope (which closes the file). One effect rather than a
// graph of Layers (the client's, its Reactivity's, the check's, the services'): each Layer of a graph costs its
// build a few hundred steps of the run loop, and a simulation opens a store per node.
const open = (options: Options): Effect.Effect<SqliteClient.SqliteClient, StoreError, Scope.Scope> =>
  Effect.flatMap(Reactivity.make, (reactivity) =>
    // Prepared statements are kept until the cache of 200 needs the room, not for 10 minutes of the Clock: in a
    // simulation that is the virtual clock, and every node prepared each of its statements again after each 10
    // virtual minutes (19,717 preparations instead of 21,503 at 300 nodes, seed 7). WAL is switched on by
    // `prepare`, once the busy timeout and the locking mode are set.
    SqliteClient.make({ filename: options.filename, disableWAL: true, prepareCacheTTL: Duration.infinity }).pipe(
      Effect.provideService(Reactivity.Reactivity, reactivity),
      Effect.tap((client) => Effect.provideService(prepare(options), SqlClient.SqlClient, client))
    )).pipe(
      // better-sqlite3 throws from its constructor; at open that is reported as what it is, a store that cannot be
      // used
      Effect.catchAllCause((cause) =>
        Effect.failCause(
          Cause.isInterruptedOnly(cause)
            ? Cause.map(cause, () => new StoreError({ reason: "Unknown", message: "interrupted" }))
            : Cause.fail(fromOpenCause(options.filename, cause))
        )
      )
    )

// the four services over the client in context; each reads its totals and indexes as it is made
const services: Effect.Effect<Context.Context<Services>, StoreError, SqliteClient.SqliteClient | Scope.Scope> = Effect
  .gen(function*() {
    const peers = yield* SqlitePeerManager.make
    const messages = yield* SqliteMessageStore.make
    const dedup = yield* SqliteDedupCache.make
    const metadata = yield* SqliteMetadata.make
    return Context.make(PeerManager.PeerManager, peers).pipe(
      Context.add(MessageStore.MessageStore, messages),
      Context.add(DedupCache.DedupCache, dedup),
      Context.add(DhtMetadata.DhtMetadata, metadata)
    )
  })

/**
 * The checked, migrated client behind `layer`, for code that needs the connection itself (tests inspect the
 * schema and query plans through it). Any failure to open is a `StoreError` naming the file, never a defect.
 *
 * The services built over this client run their statements on its connection directly, without the client's lock
 * (`@effect/sql` spends about 99 steps of the run loop on a statement, the statement itself 12). Their
 * transactions take the lock, so a statement through the client waits for them; a transaction through the client
 * (`withTransaction`) does not keep the services' single statements out, so use the client for reading.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient = (
  options: Options
): Layer.Layer<SqliteClient.SqliteClient | SqlClient.SqlClient, StoreError> =>
  Layer.scopedContext(
    Effect.map(
      open(options),
      (client) => Context.make(SqliteClient.SqliteClient, client).pipe(Context.add(SqlClient.SqlClient, client))
    )
  )

/**
 * The four storage services over an opened client (`layerClient`). Each reads its totals and indexes at build.
 * Made in one effect rather than as four merged Layers: a simulation builds a thousand stores, and each Layer of a
 * graph costs its build a few hundred steps of the run loop.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerServices: Layer.Layer<Services, StoreError, SqliteClient.SqliteClient> = Layer.scopedContext(
  services
)

/**
 * Every storage tag of core on one sqlite file (SPEC §18). Closing its scope flushes the dedup hit counts, records
 * the SAF `storedAt` high-water mark, and closes the file; reopening the same file finds peers (bans, addresses,
 * verification), stored messages, dedup entries, metadata and SAF cursors as they were, without re-running the
 * migrations.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Services, StoreError> =>
  Layer.scopedContext(
    Effect.flatMap(open(options), (client) => Effect.provideService(services, SqliteClient.SqliteClient, client))
  )
