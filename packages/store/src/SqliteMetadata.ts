/**
 * `DhtMetadata` on the `dht_metadata` table (SPEC §18, migration `0004_dht_metadata`): one row per key, written
 * with an upsert, so the value read after a restart is the last one written.
 *
 * @since 0.1.0
 */
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import type { StoreError } from "@comms-dht/core/DhtError"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Db from "./internal/db.js"
import { lift } from "./internal/errors.js"
import { Blob } from "./internal/values.js"

const ValueRow = Schema.Struct({ value: Blob })
const decodeRows = Schema.decodeUnknown(Schema.Array(ValueRow))

/**
 * The sqlite `DhtMetadata`. Values are copied out, so a caller mutating what it read changes nothing stored.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<DhtMetadata.DhtMetadataService, never, SqliteClient.SqliteClient> = Effect.gen(
  function*() {
    const client = yield* SqliteClient.SqliteClient
    const sql: SqlClient.SqlClient = client
    const filename = client.config.filename
    const db = Db.forClient(sql)
    return DhtMetadata.DhtMetadata.of({
      get: (key) =>
        db.run(sql`SELECT value FROM dht_metadata WHERE key = ${key}`).pipe(
          Effect.flatMap(decodeRows),
          Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (row) => row.value.slice())),
          lift(filename, `read metadata ${key}`)
        ),
      set: (key, value) =>
        db.run(sql`INSERT INTO dht_metadata (key, value) VALUES (${key}, ${value.slice()})
          ON CONFLICT (key) DO UPDATE SET value = excluded.value`).pipe(
          Effect.asVoid,
          lift(filename, `write metadata ${key}`)
        )
    })
  }
)

/**
 * `make` as a Layer over the store's client.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<DhtMetadata.DhtMetadata, StoreError, SqliteClient.SqliteClient> = Layer.effect(
  DhtMetadata.DhtMetadata,
  make
)
