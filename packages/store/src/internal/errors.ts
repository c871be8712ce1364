/** @internal */
import { SqlError } from "@effect/sql/SqlError"
import { StoreError } from "@comms-dht/core/DhtError"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { ParseError } from "effect/ParseResult"

/** @internal */
export type Reason = StoreError["reason"]

const field = (u: unknown, name: "code" | "cause" | "message"): unknown =>
  typeof u === "object" && u !== null && name in u ? Reflect.get(u, name) : undefined

// better-sqlite3 throws a `SqliteError` whose `code` is the extended result code ("SQLITE_IOERR_WRITE"); @effect/sql
// keeps it as the `cause` of its `SqlError`, and a `MigrationError` keeps the `SqlError` as its own `cause`.
const sqliteCode = (u: unknown): string | undefined => {
  for (let at = u, depth = 0; at !== undefined && depth < 4; at = field(at, "cause"), depth++) {
    const code = field(at, "code")
    if (typeof code === "string" && code.startsWith("SQLITE_")) return code
  }
  return undefined
}

const sqliteMessage = (u: unknown): string | undefined => {
  for (let at = u, depth = 0; at !== undefined && depth < 4; at = field(at, "cause"), depth++) {
    if (sqliteCode(field(at, "cause")) === undefined) {
      const message = field(at, "message")
      if (typeof message === "string" && message.length > 0) return message
    }
  }
  return undefined
}

/**
 * @internal
 * SPEC §18: not a database, corruption or a failed check → `Corrupt`; busy or locked (after the busy timeout) →
 * `Locked`; I/O, a full disk, a read-only or unopenable file → `Io`; a constraint → `Constraint`.
 */
export const reasonOf = (cause: unknown): Reason => {
  const code = sqliteCode(cause)
  if (code === undefined) return "Unknown"
  const primary = code.replace(/^(SQLITE_[A-Z]+).*$/, "$1")
  switch (primary) {
    case "SQLITE_CORRUPT":
    case "SQLITE_NOTADB":
      return "Corrupt"
    case "SQLITE_BUSY":
    case "SQLITE_LOCKED":
      return "Locked"
    case "SQLITE_IOERR":
    case "SQLITE_FULL":
    case "SQLITE_READONLY":
    case "SQLITE_CANTOPEN":
    case "SQLITE_PERM":
      return "Io"
    case "SQLITE_CONSTRAINT":
      return "Constraint"
    default:
      return "Unknown"
  }
}

/**
 * @internal
 * A `StoreError` naming the file, what was being done, and the sqlite result code.
 */
export const storeError = (filename: string, action: string, cause: unknown, reason: Reason = reasonOf(cause)) => {
  const code = sqliteCode(cause)
  const detail = sqliteMessage(cause) ?? "failed"
  return new StoreError({
    reason,
    message: `sqlite store ${filename}: ${action}: ${detail}${code === undefined ? "" : ` (${code})`}`,
    cause
  })
}

/**
 * @internal
 * A row that does not decode was written by something other than this store, or damaged on disk.
 */
export const corruptRow = (filename: string, action: string, error: ParseError) =>
  new StoreError({ reason: "Corrupt", message: `sqlite store ${filename}: ${action}: ${error.message}`, cause: error })

/**
 * @internal
 * The `SqlError`s that turn into defects: `withTransaction` (and the store's own transactions) run COMMIT and
 * ROLLBACK with `orDie`. Only these are recovered; any other defect stays one.
 */
export const recoverSqlDefects = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
  Effect.catchSomeDefect(effect, (defect) =>
    defect instanceof SqlError
      ? Option.some(Effect.fail(defect))
      : sqliteCode(defect) !== undefined
      ? Option.some(Effect.fail(new SqlError({ cause: defect, message: "sqlite failed" })))
      : Option.none())

/**
 * @internal
 * The border of every service method: `SqlError` (also the defects above) and undecodable rows become a logged
 * `StoreError` naming the file.
 */
export const lift = (filename: string, action: string) =>
<A, R>(effect: Effect.Effect<A, SqlError | ParseError, R>): Effect.Effect<A, StoreError, R> =>
  recoverSqlDefects(effect).pipe(
    Effect.mapError((error) =>
      error._tag === "ParseError" ? corruptRow(filename, action, error) : storeError(filename, action, error)
    ),
    Effect.tapError((error) =>
      Effect.logWarning("sqlite store operation failed").pipe(
        Effect.annotateLogs({ store: filename, action, reason: error.reason, error: error.message })
      )
    )
  )

/**
 * @internal
 * What a failed open reports: a defect thrown while the client opens the file (better-sqlite3 throws from its
 * constructor) is classified like any other sqlite error.
 */
export const fromOpenCause = (filename: string, cause: Cause.Cause<unknown>): StoreError => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    return failure.value instanceof StoreError ? failure.value : storeError(filename, "open", failure.value)
  }
  const defect = Cause.dieOption(cause)
  if (Option.isSome(defect)) {
    // better-sqlite3 refuses a path whose directory is missing with a plain TypeError, before sqlite is involved
    const message = field(defect.value, "message")
    const cannotOpen = typeof message === "string" && message.startsWith("Cannot open database")
    return storeError(filename, "open", defect.value, cannotOpen ? "Io" : reasonOf(defect.value))
  }
  return new StoreError({ reason: "Unknown", message: `sqlite store ${filename}: open: ${Cause.pretty(cause)}` })
}
