/**
 * @internal
 * How the store's services run their statements. `@effect/sql` runs each statement under its client's lock (taken
 * and released through a scope), a span and a compile: about 99 steps of Effect's run loop a statement, measured,
 * of which 12 are the statement itself. A store's client is its own (`SqliteStore.layerClient` opens the file
 * with exclusive locking, and nothing else writes to it), so the services run their statements on its connection
 * directly: a statement alone is one synchronous call of better-sqlite3, and only transactions need excluding
 * each other and the statements of other fibers. `transaction` takes the client's lock (so that a statement
 * through the client itself waits, as before) and marks its fiber as the owner, and `run` from any other fiber
 * waits for the owner to finish. On any other client (the services' own Layers over a client someone else shares)
 * `run` and `transaction` are the client's own, unchanged.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Statement from "@effect/sql/Statement"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as FiberId from "effect/FiberId"

/** @internal */
export interface Db {
  /** one statement, outside any transaction of another fiber */
  readonly run: <A extends object>(statement: Statement.Statement<A>) => Effect.Effect<ReadonlyArray<A>, SqlError>
  /**
   * `run` for a statement a store runs once (a pragma, the schema's DDL): prepared for this call only, so it
   * neither takes a slot of the client's statement cache nor pays its miss (about 37 steps of the run loop)
   */
  readonly once: <A extends object>(statement: Statement.Statement<A>) => Effect.Effect<ReadonlyArray<A>, SqlError>
  /** `effect` between BEGIN and COMMIT (ROLLBACK on a failure or an interruption), alone on the connection */
  readonly transaction: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>
}

// The Db of each client whose connection the store owns, registered when `layerClient` has opened it: one per
// client, since its owner mark must be the one every service of that client sees.
const owned = new WeakMap<SqlClient.SqlClient, Db>()

const shared = (sql: SqlClient.SqlClient): Db => ({
  run: (statement) => statement,
  once: (statement) => statement,
  transaction: sql.withTransaction
})

/** @internal the Db of `sql`: direct if the store opened it (`own`), else the client's own statements */
export const forClient = (sql: SqlClient.SqlClient): Db => owned.get(sql) ?? shared(sql)

/**
 * @internal
 * Registers `sql` as the store's own: its one connection (`reserve` hands it out; sqlite's client has only the
 * one) is used directly from now on.
 */
export const own = (sql: SqlClient.SqlClient): Effect.Effect<void, SqlError> =>
  Effect.map(Effect.scoped(sql.reserve), (connection) => {
    owned.set(sql, direct(sql, connection))
  })

const direct = (sql: SqlClient.SqlClient, connection: SqlConnection.Connection): Db => {
  let owner: FiberId.FiberId | undefined = undefined
  let waiting: Array<() => void> = []

  // resumes whoever waited for the owner; each checks again, since another may have become owner first
  const release = Effect.sync(() => {
    owner = undefined
    const resumed = waiting
    waiting = []
    for (const resume of resumed) resume()
  })
  const ownerGone: Effect.Effect<void> = Effect.async<void>((resume) => {
    const wake = () => resume(Effect.void)
    waiting.push(wake)
    return Effect.sync(() => {
      waiting = waiting.filter((w) => w !== wake)
    })
  })

  const execute = <A extends object>(statement: Statement.Statement<A>): Effect.Effect<ReadonlyArray<A>, SqlError> => {
    const [text, params] = statement.compile()
    return connection.execute(text, params, undefined)
  }
  const executeOnce = <A extends object>(
    statement: Statement.Statement<A>
  ): Effect.Effect<ReadonlyArray<A>, SqlError> => {
    const [text, params] = statement.compile()
    return connection.executeUnprepared(text, params, undefined)
  }
  // kept prepared like the other statements (`@effect/sql` prepares them anew for each transaction)
  const control = (text: "BEGIN" | "COMMIT" | "ROLLBACK") => Effect.asVoid(connection.execute(text, [], undefined))

  const alone = <A extends object>(
    statement: Statement.Statement<A>,
    f: (statement: Statement.Statement<A>) => Effect.Effect<ReadonlyArray<A>, SqlError>
  ): Effect.Effect<ReadonlyArray<A>, SqlError> =>
    Effect.withFiberRuntime((fiber) =>
      owner === undefined || owner === fiber.id() ? f(statement) : Effect.zipRight(ownerGone, alone(statement, f))
    )
  const run = <A extends object>(statement: Statement.Statement<A>) => alone(statement, execute)
  const once = <A extends object>(statement: Statement.Statement<A>) => alone(statement, executeOnce)

  // the owner is set only under the client's lock and cleared before it is given back: no other can be set here
  const begin = (self: FiberId.FiberId): Effect.Effect<void> =>
    Effect.sync(() => {
      owner = self
    })

  const transaction = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
    Effect.withFiberRuntime((fiber) => {
      const self = fiber.id()
      // a transaction inside this fiber's own is part of it, without a savepoint: a failure rolls back the whole
      if (owner === self) return effect
      return Effect.uninterruptibleMask((restore) =>
        Effect.scoped(
          Effect.zipRight(
            sql.reserve,
            Effect.acquireUseRelease(
              Effect.zipRight(begin(self), Effect.onError(control("BEGIN"), () => release)),
              () => restore(effect),
              (_, exit) =>
                Effect.ensuring(
                  Exit.isSuccess(exit) ? Effect.orDie(control("COMMIT")) : Effect.orDie(control("ROLLBACK")),
                  release
                )
            )
          )
        )
      )
    })

  return { run, once, transaction }
}
