/** @internal */
import type * as SqlClient from "@effect/sql/SqlClient"

// The queries whose plans matter at 100,000 rows, kept apart so that a test can run EXPLAIN QUERY PLAN on exactly
// the statements the store executes (compile one and prefix it).

/** @internal */
export const MESSAGE_COLUMNS = "id, version, message_type, destination_pubkey, destination_node_id, header, body, " +
  "priority, stored_at, expires_at, source_node_id, body_hash"

/**
 * @internal
 * A destination's rows strictly after `(sinceMs, afterId)`, in cursor order: a range of
 * `idx_stored_messages_cursor`.
 */
export const rowsAfter = (
  sql: SqlClient.SqlClient,
  destination: Uint8Array,
  sinceMs: bigint,
  afterId: bigint,
  limit: number
) =>
  sql`SELECT ${sql.literal(MESSAGE_COLUMNS)} FROM stored_messages
    WHERE destination_pubkey = ${destination} AND (stored_at, id) > (${sinceMs}, ${afterId})
    ORDER BY stored_at, id LIMIT ${limit}`

/** @internal */
export const HEAD_COLUMNS = "id, priority, stored_at, expires_at, length(header) + length(body) AS size"

/**
 * @internal
 * `rowsAfter` without the header and body: what decides which rows are served and how many fit, read before any
 * body is (`length()` of a BLOB reads no overflow page).
 */
export const headsAfter = (
  sql: SqlClient.SqlClient,
  destination: Uint8Array,
  sinceMs: bigint,
  afterId: bigint,
  limit: number
) =>
  sql`SELECT ${sql.literal(HEAD_COLUMNS)} FROM stored_messages
    WHERE destination_pubkey = ${destination} AND (stored_at, id) > (${sinceMs}, ${afterId})
    ORDER BY stored_at, id LIMIT ${limit}`

/** @internal whole rows by id, in cursor order */
export const rowsById = (sql: SqlClient.SqlClient, ids: ReadonlyArray<number>) =>
  sql`SELECT ${sql.literal(MESSAGE_COLUMNS)} FROM stored_messages WHERE ${sql.in("id", ids)} ORDER BY stored_at, id`

/** @internal */
export const DELETED_COLUMNS = "id, destination_pubkey, priority, stored_at, expires_at, " +
  "length(header) + length(body) AS size"

/**
 * @internal
 * Rows whose expiry deadline has passed (`expires_at + skew <= now`): a range of `idx_stored_messages_expires_at`.
 */
export const deleteExpired = (sql: SqlClient.SqlClient, expiredBefore: number) =>
  sql`DELETE FROM stored_messages WHERE expires_at <= ${expiredBefore} RETURNING ${sql.literal(DELETED_COLUMNS)}`

/**
 * @internal
 * Rows of one priority whose TTL has passed (`stored_at + ttl <= now`): a range of `idx_stored_messages_eviction`.
 */
export const deleteOutlived = (sql: SqlClient.SqlClient, priority: number, storedBefore: number) =>
  sql`DELETE FROM stored_messages WHERE priority = ${priority} AND stored_at <= ${storedBefore}
    RETURNING ${sql.literal(DELETED_COLUMNS)}`

/** @internal */
export const CANDIDATE_COLUMNS = "id, destination_pubkey, priority, stored_at, length(header) + length(body) AS size"

/**
 * @internal
 * Eviction candidates in eviction order (Low before High, oldest first) after a position, up to `maxPriority`:
 * a range of `idx_stored_messages_eviction` (whose entries end with the rowid, so `id` breaks ties in the index).
 */
export const candidatesAfter = (
  sql: SqlClient.SqlClient,
  maxPriority: number,
  after: { readonly priority: number; readonly storedAt: number; readonly id: number },
  limit: number
) =>
  sql`SELECT ${sql.literal(CANDIDATE_COLUMNS)} FROM stored_messages
    WHERE priority <= ${maxPriority} AND (priority, stored_at, id) > (${after.priority}, ${after.storedAt}, ${after.id})
    ORDER BY priority, stored_at, id LIMIT ${limit}`

/**
 * @internal
 * Eviction candidates among one destination's rows, in eviction order.
 */
export const destinationCandidates = (
  sql: SqlClient.SqlClient,
  destination: Uint8Array,
  maxPriority: number,
  limit: number
) =>
  sql`SELECT ${sql.literal(CANDIDATE_COLUMNS)} FROM stored_messages
    WHERE destination_pubkey = ${destination} AND priority <= ${maxPriority}
    ORDER BY priority, stored_at, id LIMIT ${limit}`
