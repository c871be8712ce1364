/** @internal */
import type { SqlError } from "@effect/sql/SqlError"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import type * as Db from "./db.js"

/** @internal one migration: its statements run in order (better-sqlite3 prepares one statement at a time) */
export interface Migration {
  readonly id: number
  readonly name: string
  readonly statements: ReadonlyArray<string>
}

const statements = (...list: ReadonlyArray<string>) => list

const fromRecord = (record: Record<string, ReadonlyArray<string>>): ReadonlyArray<Migration> =>
  Object.entries(record).map(([key, list]) => {
    const [id, ...name] = key.split("_")
    return { id: Number(id), name: name.join("_"), statements: list }
  }).sort((a, b) => a.id - b.id)

/**
 * @internal
 * SPEC §18, verbatim.
 */
export const all: ReadonlyArray<Migration> = fromRecord({
  "0001_peers": statements(
    `CREATE TABLE peers (
  public_key BLOB PRIMARY KEY,
  node_id BLOB NOT NULL UNIQUE,
  features INTEGER NOT NULL,
  flags INTEGER NOT NULL DEFAULT 0,
  banned_until INTEGER,
  banned_reason TEXT NOT NULL DEFAULT '',
  offline_at INTEGER,
  last_seen INTEGER,
  added_at INTEGER NOT NULL,
  verified_at INTEGER,
  claim_updated_at INTEGER,
  identity_signature BLOB
)`,
    `CREATE TABLE peer_addresses (
  node_id BLOB NOT NULL REFERENCES peers(node_id) ON DELETE CASCADE,
  address TEXT NOT NULL,
  source TEXT NOT NULL,
  last_seen INTEGER,
  last_attempt INTEGER,
  connection_failures INTEGER NOT NULL DEFAULT 0,
  claim BLOB,
  PRIMARY KEY (node_id, address)
)`,
    "CREATE INDEX idx_peers_banned_until ON peers (banned_until)",
    "CREATE INDEX idx_peers_last_seen ON peers (last_seen)",
    "CREATE INDEX idx_peers_verified_at ON peers (verified_at)"
  ),
  "0002_stored_messages": statements(
    `CREATE TABLE stored_messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  version INTEGER NOT NULL,
  origin_pubkey BLOB,
  message_type INTEGER NOT NULL,
  destination_pubkey BLOB,
  destination_node_id BLOB,
  header BLOB NOT NULL,
  body BLOB NOT NULL,
  is_encrypted INTEGER NOT NULL CHECK (is_encrypted IN (0, 1)),
  priority INTEGER NOT NULL,
  stored_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  source_node_id BLOB NOT NULL,
  body_hash BLOB NOT NULL
)`,
    "CREATE UNIQUE INDEX uidx_stored_messages_body_hash ON stored_messages (body_hash)",
    "CREATE INDEX idx_stored_messages_cursor ON stored_messages (destination_pubkey, stored_at, id)",
    "CREATE INDEX idx_stored_messages_destination_node_id ON stored_messages (destination_node_id)",
    "CREATE INDEX idx_stored_messages_expires_at ON stored_messages (expires_at)",
    "CREATE INDEX idx_stored_messages_eviction ON stored_messages (priority, stored_at)"
  ),
  "0003_dedup_cache": statements(
    `CREATE TABLE dedup_cache (
  id INTEGER PRIMARY KEY,
  body_hash BLOB NOT NULL UNIQUE,
  sender_public_key BLOB NOT NULL,
  number_of_hits INTEGER NOT NULL,
  stored_at INTEGER NOT NULL,
  last_hit_at INTEGER NOT NULL,
  keep_until INTEGER NOT NULL
)`,
    "CREATE INDEX idx_dedup_cache_keep_until ON dedup_cache (keep_until)"
  ),
  "0004_dht_metadata": statements("CREATE TABLE dht_metadata (key TEXT PRIMARY KEY, value BLOB NOT NULL)"),
  "0005_saf_cursors": statements(
    `CREATE TABLE saf_cursors (
  responder_public_key BLOB PRIMARY KEY,
  since_ms INTEGER NOT NULL,
  after_id INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
)`
  )
})

/**
 * @internal
 * Applies the migrations `effect_sql_migrations` does not record, in one transaction with their records, so a
 * failure leaves none of them applied; returns those it applied. The table is `@effect/sql`'s `Migrator`'s for
 * sqlite, which made the files before: each statement through the client cost about 99 steps of Effect's run
 * loop, and opening a store ran some twenty (a 1000-node simulation opens a thousand).
 */
export const run = (db: Db.Db): Effect.Effect<ReadonlyArray<Migration>, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    db.transaction(Effect.gen(function*() {
      yield* db.once(sql.unsafe(`CREATE TABLE IF NOT EXISTS effect_sql_migrations (
  migration_id integer PRIMARY KEY NOT NULL,
  created_at datetime NOT NULL DEFAULT current_timestamp,
  name VARCHAR(255) NOT NULL
)`))
      const [row] = yield* db.once(
        sql.unsafe<{ readonly latest: number | null }>("SELECT max(migration_id) AS latest FROM effect_sql_migrations")
      )
      const latest = row?.latest ?? 0
      const required = all.filter((migration) => migration.id > latest)
      for (const migration of required) {
        for (const statement of migration.statements) yield* db.once(sql.unsafe(statement))
        yield* db.once(
          sql`INSERT INTO effect_sql_migrations (migration_id, name) VALUES (${migration.id}, ${migration.name})`
        )
      }
      return required
    })))
