/** @internal */
import { identity } from "effect/Function"
import * as Schema from "effect/Schema"

/**
 * @internal
 * A BLOB column. better-sqlite3 returns Node `Buffer`s; the models hold plain `Uint8Array`s (as the memory layers
 * do), so each is re-viewed as one, without a copy.
 */
export const Blob = Schema.transform(Schema.Uint8ArrayFromSelf, Schema.Uint8ArrayFromSelf, {
  strict: true,
  decode: (b) =>
    Object.getPrototypeOf(b) === Uint8Array.prototype ? b : new Uint8Array(b.buffer, b.byteOffset, b.length),
  encode: identity
})

/**
 * @internal
 * An INTEGER column read as `CAST(column AS TEXT)`, so that values beyond 2⁵³ come back exactly.
 */
export const BigIntText = Schema.BigInt

const INT64_MAX = (1n << 63n) - 1n
const INT64_MIN = -(1n << 63n)

/**
 * @internal
 * SPEC §3.7: no value outside sqlite's INTEGER range is ever bound.
 */
export const clampInt64 = (n: bigint): bigint => n > INT64_MAX ? INT64_MAX : n < INT64_MIN ? INT64_MIN : n

/**
 * @internal
 * A `number` bound to an INTEGER column: within ±(2⁵³ − 1), so it is read back as the same `number`; NaN as 0.
 */
export const clampSafe = (n: number): number =>
  Number.isNaN(n) ? 0 : Math.min(Math.max(n, Number.MIN_SAFE_INTEGER), Number.MAX_SAFE_INTEGER)

/**
 * @internal
 * An optional `number` column.
 */
export const optionalSafe = (n: number | undefined): number | null => n === undefined ? null : clampSafe(n)
