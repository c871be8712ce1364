/**
 * The DHT's own key-value metadata (SPEC §13 `GetMetadata`/`SetMetadata`, table `dht_metadata` of §18): the
 * `DhtMetadata` tag, an in-memory Layer, and the `u64be` millisecond encoding its values use. The only key is
 * `OfflineTimestamp`, written at shutdown and read (logged as "offline since") at start; SAF cursors live in
 * `MessageStore`, not here.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import type { StoreError } from "./DhtError.js"

/**
 * The metadata keys, as stored in the `key` column.
 *
 * @since 0.1.0
 * @category schemas
 */
export const MetadataKey: Schema.Literal<["OfflineTimestamp"]> = Schema.Literal("OfflineTimestamp")

/**
 * @since 0.1.0
 * @category models
 */
export type MetadataKey = typeof MetadataKey.Type

/**
 * @since 0.1.0
 * @category models
 */
export interface DhtMetadataService {
  readonly get: (key: MetadataKey) => Effect.Effect<Option.Option<Uint8Array>, StoreError>
  readonly set: (key: MetadataKey, value: Uint8Array) => Effect.Effect<void, StoreError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class DhtMetadata extends Context.Tag("@comms-dht/core/DhtMetadata")<DhtMetadata, DhtMetadataService>() {}

const U64_MAX = (1n << 64n) - 1n

/**
 * Unix milliseconds as 8 big-endian bytes (SPEC §13). Negative or fractional inputs are floored at 0 and truncated;
 * values above 2⁶⁴ − 1 saturate.
 *
 * @since 0.1.0
 * @category utils
 */
export const encodeMillis = (ms: number | bigint): Uint8Array => {
  const raw = typeof ms === "bigint" ? ms : Number.isFinite(ms) ? BigInt(Math.trunc(ms)) : ms > 0 ? U64_MAX : 0n
  const value = raw < 0n ? 0n : raw > U64_MAX ? U64_MAX : raw
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, value, false)
  return out
}

/**
 * The inverse of `encodeMillis`: none unless `bytes` is exactly 8 bytes holding a value a `number` represents
 * exactly (≤ 2⁵³ − 1, far beyond any real timestamp).
 *
 * @since 0.1.0
 * @category utils
 */
export const decodeMillis = (bytes: Uint8Array): Option.Option<number> => {
  if (bytes.length !== 8) return Option.none()
  const value = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, false)
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Option.none() : Option.some(Number(value))
}

/**
 * An in-memory `DhtMetadata`. Values are copied in and out, as a database would, so a caller mutating its buffer
 * changes nothing stored.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<DhtMetadataService> = Effect.gen(function*() {
  const values = yield* Ref.make(HashMap.empty<MetadataKey, Uint8Array>())
  return DhtMetadata.of({
    get: (key) => Effect.map(Ref.get(values), (m) => Option.map(HashMap.get(m, key), (v) => v.slice())),
    set: (key, value) => Ref.update(values, (m) => HashMap.set(m, key, value.slice()))
  })
})

/**
 * `makeMemory` as a Layer: empty each time it is built.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<DhtMetadata> = Layer.effect(DhtMetadata, makeMemory)
