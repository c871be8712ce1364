/**
 * The store's statements on its own connection (internal/db.ts): a transaction is atomic and alone, whichever fiber
 * runs statements meanwhile, through the services' path or through the client itself; on a client the store did
 * not open, statements and transactions are the client's own.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Db from "../src/internal/db.js"
import * as SqliteStore from "../src/SqliteStore.js"

const tempFile = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "comms-dht-db-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => path.join(dir, "node.db")))

const withClient = <A, E>(
  body: (sql: SqlClient.SqlClient, db: Db.Db) => Effect.Effect<A, E>,
  layer: (filename: string) => Layer.Layer<SqlClient.SqlClient, unknown> = (filename) =>
    SqliteStore.layerClient({ filename })
) =>
  Effect.gen(function*() {
    const filename = yield* tempFile
    const sql = Context.get(yield* Layer.build(layer(filename)), SqlClient.SqlClient)
    yield* sql`CREATE TABLE t (v INTEGER NOT NULL)`
    return yield* body(sql, Db.forClient(sql))
  }).pipe(Effect.scoped)

const values = (sql: SqlClient.SqlClient) =>
  Effect.map(sql<{ readonly v: number }>`SELECT v FROM t ORDER BY v`, (rows) => rows.map((r) => r.v))

// a transaction that inserts `v`, then waits for `go` before it ends as `end` says
const heldTransaction = (
  sql: SqlClient.SqlClient,
  db: Db.Db,
  v: number,
  inside: Deferred.Deferred<void>,
  go: Deferred.Deferred<void>,
  end: "commit" | "fail"
) =>
  db.transaction(
    Effect.gen(function*() {
      yield* db.run(sql`INSERT INTO t (v) VALUES (${v})`)
      yield* Deferred.succeed(inside, undefined)
      yield* Deferred.await(go)
      if (end === "fail") return yield* Effect.fail("abandoned" as const)
    })
  )

// `statement` issued from another fiber while a transaction is open, which then fails: whether the statement waited
// for it, and what the table holds afterwards
const issuedDuringTransaction = (
  sql: SqlClient.SqlClient,
  db: Db.Db,
  statement: Effect.Effect<unknown, unknown>
) =>
  Effect.gen(function*() {
    const inside = yield* Deferred.make<void>()
    const go = yield* Deferred.make<void>()
    const tx = yield* Effect.fork(heldTransaction(sql, db, 1, inside, go, "fail"))
    yield* Deferred.await(inside)
    const other = yield* Effect.fork(statement)
    yield* Effect.yieldNow()
    const waited = Option.isNone(yield* Fiber.poll(other))
    yield* Deferred.succeed(go, undefined)
    const rolledBack = Exit.isFailure(yield* Fiber.await(tx))
    yield* Fiber.join(other)
    return { waited, rolledBack, rows: yield* values(sql) }
  })

describe("the store's own connection", () => {
  it.effect("a statement of another fiber waits for an open transaction, so its rollback does not take it", () =>
    withClient((sql, db) =>
      Effect.map(
        issuedDuringTransaction(sql, db, db.run(sql`INSERT INTO t (v) VALUES (${2})`)),
        (outcome) => expect(outcome).toEqual({ waited: true, rolledBack: true, rows: [2] })
      )
    ))

  it.effect("a statement run once (prepared for that call alone) waits for an open transaction too", () =>
    withClient((sql, db) =>
      Effect.map(
        issuedDuringTransaction(sql, db, db.once(sql`INSERT INTO t (v) VALUES (${4})`)),
        (outcome) => expect(outcome).toEqual({ waited: true, rolledBack: true, rows: [4] })
      )
    ))

  it.effect("a statement through the client itself waits for the transaction too", () =>
    withClient((sql, db) =>
      Effect.map(
        issuedDuringTransaction(sql, db, sql`INSERT INTO t (v) VALUES (${3})`),
        (outcome) => expect(outcome).toEqual({ waited: true, rolledBack: true, rows: [3] })
      )
    ))

  it.effect("a committed transaction keeps its statements; a failed one keeps none", () =>
    withClient((sql, db) =>
      Effect.gen(function*() {
        yield* db.transaction(Effect.zipRight(
          db.run(sql`INSERT INTO t (v) VALUES (${1})`),
          db.run(sql`INSERT INTO t (v) VALUES (${2})`)
        ))
        const failed = yield* Effect.exit(db.transaction(Effect.zipRight(
          db.run(sql`INSERT INTO t (v) VALUES (${3})`),
          db.run(sql`INSERT INTO t (nope) VALUES (${4})`)
        )))
        expect(Exit.isFailure(failed)).toBe(true)
        expect(yield* values(sql)).toEqual([1, 2])
      })
    ))

  it.effect("an interrupted transaction is rolled back and the connection is free again", () =>
    withClient((sql, db) =>
      Effect.gen(function*() {
        const inside = yield* Deferred.make<void>()
        const never = yield* Deferred.make<void>()
        const tx = yield* Effect.fork(heldTransaction(sql, db, 1, inside, never, "commit"))
        yield* Deferred.await(inside)
        yield* Fiber.interrupt(tx)
        yield* db.run(sql`INSERT INTO t (v) VALUES (${5})`)
        yield* db.transaction(db.run(sql`INSERT INTO t (v) VALUES (${6})`))
        expect(yield* values(sql)).toEqual([5, 6])
      })
    ))

  it.effect("a transaction inside one of the same fiber is part of it", () =>
    withClient((sql, db) =>
      Effect.gen(function*() {
        const failed = yield* Effect.exit(db.transaction(
          Effect.zipRight(db.transaction(db.run(sql`INSERT INTO t (v) VALUES (${1})`)), Effect.fail("later" as const))
        ))
        expect(Exit.isFailure(failed)).toBe(true)
        expect(yield* values(sql)).toEqual([])
      })
    ))

  it.effect("on a client the store did not open, statements and transactions are the client's own", () =>
    withClient((sql, db) =>
      Effect.gen(function*() {
        const statement = sql`INSERT INTO t (v) VALUES (${7})`
        expect(db.run(statement)).toBe(statement)
        const failed = yield* Effect.exit(db.transaction(Effect.zipRight(statement, Effect.fail("no" as const))))
        expect(Exit.isFailure(failed)).toBe(true)
        expect(yield* values(sql)).toEqual([])
      }), (filename) => SqliteClient.layer({ filename }))
  )
})
