/** @internal */
import { ascii, putU32 } from "./bytes.js"

/** @internal changes only if a construction of SPEC §4 changes */
export const DOMAIN_VERSION = 1

/** @internal `comms-dht.v1.<label>.<outLen>` */
export const tag = (label: string, outLen: number): Uint8Array =>
  ascii(`comms-dht.v${DOMAIN_VERSION}.${label}.${outLen}`)

// the labels are a handful of constants, hashed on every message: each tag is encoded once, found by the label and
// then the length, without building a key string per call
const tags = new Map<string, Map<number, Uint8Array>>()

const cachedTag = (label: string, outLen: number): Uint8Array => {
  let byLength = tags.get(label)
  if (byLength === undefined) {
    byLength = new Map()
    tags.set(label, byLength)
  }
  let t = byLength.get(outLen)
  if (t === undefined) {
    t = tag(label, outLen)
    byLength.set(outLen, t)
  }
  return t
}

// u64le of a length (a non-negative safe integer)
const putLength = (target: Uint8Array, offset: number, n: number): void => {
  putU32(target, offset, n >>> 0)
  putU32(target, offset + 4, Math.floor(n / 0x1_0000_0000) >>> 0)
}

// Fields up to this size are copied into one buffer: one hasher update for the whole framing is cheaper than many
// small ones, and only a large body is worth passing by reference.
const INLINE_LIMIT = 1024

// The framing is written into one buffer kept from call to call. A fresh array of a few hundred bytes has its
// store outside V8's heap: 450 ns to allocate against 35 ns for a view of this one, on every message's two hashes
// and every claim's. `dshWith`'s hasher reads the chunks before it returns (Primitives.blake2b512 keeps none), and
// nothing here yields in between, so one buffer serves every call.
let scratch = new Uint8Array(4096)

/**
 * @internal
 * The byte string that SPEC §4.1 hashes, `u64le(len(tag)) || tag || u64le(len(f1)) || f1 || …`, as a list of
 * chunks whose concatenation is that string. Large fields are passed by reference, not copied. The chunks are
 * views of a buffer the next call overwrites: read them before calling again.
 */
export const frame = (label: string, outLen: number, fields: ReadonlyArray<Uint8Array>): Array<Uint8Array> => {
  const t = cachedTag(label, outLen)
  const chunks: Array<Uint8Array> = []
  let inline = 8 + t.length
  for (const f of fields) inline += 8 + (f.length <= INLINE_LIMIT ? f.length : 0)
  if (inline > scratch.length) scratch = new Uint8Array(Math.max(inline, 2 * scratch.length))
  const buffer = scratch
  let start = 0
  let offset = 0
  putLength(buffer, offset, t.length)
  buffer.set(t, offset + 8)
  offset += 8 + t.length
  for (const f of fields) {
    putLength(buffer, offset, f.length)
    offset += 8
    if (f.length <= INLINE_LIMIT) {
      buffer.set(f, offset)
      offset += f.length
    } else {
      chunks.push(buffer.subarray(start, offset), f)
      start = offset
    }
  }
  if (offset > start) chunks.push(buffer.subarray(start, offset))
  return chunks
}

/**
 * @internal
 * `DSH(label, outLen, fields)` for a BLAKE2b-512 over chunks. `outLen` outside 1..64 is clamped by the slice; the
 * labels of SPEC §4.1 all use 32.
 */
export const dshWith =
  (blake2b512: (chunks: ReadonlyArray<Uint8Array>) => Uint8Array) =>
  (label: string, outLen: number, fields: ReadonlyArray<Uint8Array>): Uint8Array =>
    blake2b512(frame(label, outLen, fields)).slice(0, Math.max(0, outLen))
