/**
 * The implementations the behavioural suites of `core/test/suites` run against here: the sqlite store on a fresh
 * `":memory:"` database. The core project runs the same suites on core's memory Layers (the reference), so a case
 * that passes there and fails here is a divergence.
 */
import type { StoreError } from "@comms-dht/core/DhtError"
import type * as Layer from "effect/Layer"
import * as SqliteStore from "../src/SqliteStore.js"

export interface Implementation {
  readonly name: string
  /** Builds an empty store each time it is provided; the suites supply `DhtConfig`. */
  readonly layer: Layer.Layer<SqliteStore.Services, StoreError>
}

export const sqlite: Implementation = {
  name: "sqlite",
  layer: SqliteStore.layer({ filename: ":memory:" })
}

export const implementations: ReadonlyArray<Implementation> = [sqlite]
