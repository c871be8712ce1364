/**
 * Store-and-forward storage on a sqlite file holding 100,000 stored messages (the default `saf.msgStorageCapacity`),
 * as a SAF node at capacity sees it: every insert makes room by evicting the oldest row (SPEC §9.2), every fetch is
 * one destination's next 50 rows after a cursor (§9.3). The bound is a bare `INSERT` of a row of the same size into
 * a scratch table through the same client and file: what the store adds to the write itself.
 */
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as NodeId from "@comms-dht/core/NodeId"
import * as SqliteStore from "@comms-dht/store/SqliteStore"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Task } from "./main.js"

const ROWS = 100_000
const DESTINATIONS = 1_000
const HEADER_BYTES = 180
const BODY_BYTES = 600

const bytesOf = (length: number, seed: number) => {
  const out = new Uint8Array(length)
  let x = (seed * 2654435761) >>> 0
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    out[i] = x >>> 24
  }
  return out
}

const hash = (i: number) => {
  const out = bytesOf(32, i + 7)
  new DataView(out.buffer).setUint32(0, i)
  return out
}

const destinations = Array.from({ length: DESTINATIONS }, (_, i) => NodeId.PublicKey.make(bytesOf(32, 1_000_000 + i)))
const destinationIds = destinations.map((key) => NodeId.NodeId.make(bytesOf(13, 2_000_000 + key[0]!)))
const header = bytesOf(HEADER_BYTES, 3)
const body = bytesOf(BODY_BYTES, 4)
const source = NodeId.NodeId.make(bytesOf(13, 5))

/**
 * @since 0.1.0
 */
export const storeBenches = async (): Promise<ReadonlyArray<Task>> => {
  const dir = mkdtempSync(join(tmpdir(), "comms-dht-bench-"))
  const filename = join(dir, "saf.sqlite")
  const now = Date.now()
  const expiresAt = now + 2 * 24 * 3600 * 1000

  // filled through the client in one transaction, then reopened so the store reads its running totals at open
  const fill = Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql.withTransaction(Effect.gen(function*() {
      for (let i = 0; i < ROWS; i++) {
        const d = i % DESTINATIONS
        yield* sql`INSERT INTO stored_messages (version, message_type, destination_pubkey, destination_node_id, header,
          body, is_encrypted, priority, stored_at, expires_at, source_node_id, body_hash)
          VALUES (1, 0, ${destinations[d]!}, ${destinationIds[d]!}, ${header}, ${body}, 1, 10, ${now - ROWS + i},
          ${expiresAt}, ${source}, ${hash(i)})`
      }
    }))
    yield* sql`CREATE TABLE IF NOT EXISTS bench_scratch (id INTEGER PRIMARY KEY, header BLOB, body BLOB)`
  })
  await Effect.runPromise(Effect.scoped(Effect.provide(
    fill,
    Layer.provideMerge(SqliteStore.layerServices, SqliteStore.layerClient({ filename }))
  )))

  const runtime = ManagedRuntime.make(
    Layer.provideMerge(SqliteStore.layerServices, SqliteStore.layerClient({ filename })).pipe(
      Layer.provide(DhtConfig.layer(DhtConfig.defaultConfig))
    )
  )
  const store = await runtime.runPromise(MessageStore.MessageStore)
  const sql = await runtime.runPromise(SqlClient.SqlClient)
  if ((await runtime.runPromise(store.count)) !== ROWS) throw new Error("the bench store was not filled")
  process.on("exit", () => {
    void runtime.dispose()
    rmSync(dir, { recursive: true, force: true })
  })

  let next = ROWS
  let fetched = 0
  return [
    {
      name: "store.saf-insert",
      bound: "store.sql-insert",
      fn: () => {
        const i = next++
        const d = i % DESTINATIONS
        return runtime.runPromise(store.insert({
          version: 1,
          messageType: 0,
          destinationPublicKey: destinations[d]!,
          destinationNodeId: destinationIds[d]!,
          header,
          body,
          priority: MessageStore.Priority.High,
          expiresAt,
          // a thousand sources, so the per-source hourly limit never refuses
          sourceNodeId: NodeId.NodeId.make(bytesOf(13, i % 1000)),
          bodyHash: hash(i)
        }))
      }
    },
    {
      name: "store.sql-insert",
      fn: () => runtime.runPromise(sql`INSERT INTO bench_scratch (header, body) VALUES (${header}, ${body})`)
    },
    {
      name: "store.saf-fetch",
      fn: () =>
        runtime.runPromise(store.fetchFor(destinations[fetched++ % DESTINATIONS]!, MessageStore.initialCursor, 50))
    }
  ]
}
