/**
 * Identities (SPEC §2): Ed25519 public and secret keys, the 13-byte NodeId derived from a public key, and the XOR
 * metric that orders peers in key space.
 *
 * @since 0.1.0
 */
import { blake2b } from "@noble/hashes/blake2.js"
import * as Effect from "effect/Effect"
import * as Order from "effect/Order"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Hex from "./internal/hex.js"
import { byteKey } from "./internal/hexKey.js"
import * as Lru from "./internal/lru.js"

const bytes = (n: number, name: string) =>
  Schema.Uint8ArrayFromSelf.pipe(
    Schema.filter((b) => b.length === n || `${name}: expected ${n} bytes, got ${b.length}`, {
      // without it fast-check would draw arbitrary lengths and filter forever
      arbitrary: () => (fc) => fc.uint8Array({ minLength: n, maxLength: n })
    })
  )

/**
 * A 32-byte Ed25519 public key. The brand says "32 bytes"; whether the key is a valid, non-small-order point is
 * the key check of `Crypto.checkPublicKey` (SPEC §4.3), applied wherever a key is accepted from outside.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PublicKey = bytes(32, "PublicKey").pipe(Schema.brand("PublicKey"))

/**
 * @since 0.1.0
 * @category models
 */
export type PublicKey = typeof PublicKey.Type

/**
 * A 32-byte Ed25519 secret seed (RFC 8032 private key).
 *
 * @since 0.1.0
 * @category schemas
 */
export const SecretKey = bytes(32, "SecretKey").pipe(Schema.brand("SecretKey"))

/**
 * @since 0.1.0
 * @category models
 */
export type SecretKey = typeof SecretKey.Type

/**
 * The first 13 bytes of BLAKE2b-512 of a public key (SPEC §2.2).
 *
 * @since 0.1.0
 * @category schemas
 */
export const NodeId = bytes(13, "NodeId").pipe(Schema.brand("NodeId"))

/**
 * @since 0.1.0
 * @category models
 */
export type NodeId = typeof NodeId.Type

/**
 * @since 0.1.0
 * @category constants
 */
export const NODE_ID_LENGTH = 13

// Every inbound message and every peer selection derives node ids from keys; a portable BLAKE2b costs several
// microseconds, a hex lookup a fraction of one. NodeIds are never mutated, so one array is shared.
const nodeIdMemo = Lru.make<NodeId>(8192)

// A key's NodeId by the key's array, before its hex is built to look it up in `nodeIdMemo`: keys are decoded once
// and passed around by reference, and the hex was most of the lookup's cost.
const nodeIdOfKey = new WeakMap<Uint8Array, NodeId>()

// The hex of a NodeId by its array. NodeIds are immutable and shared (`fromPublicKey` hands out one array per key),
// and every peer selection, table lookup and map key turns them into hex: each time a fresh string and its array of
// character codes, the largest share of our own allocations in a simulation. Only NodeId-sized arrays are kept, so
// per-message hashes and bodies do not fill the map.
const nodeIdHex = new WeakMap<Uint8Array, string>()

/**
 * Derives the NodeId of a public key: `BLAKE2b-512(publicKey)[0..13]`, no domain tag.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromPublicKey = (key: PublicKey): NodeId => {
  const same = nodeIdOfKey.get(key)
  if (same !== undefined) return same
  const hex = Hex.encode(key)
  const known = nodeIdMemo.get(hex)
  if (known !== undefined) {
    nodeIdOfKey.set(key, known)
    return known
  }
  const id = blake2b(key).subarray(0, NODE_ID_LENGTH) as NodeId
  nodeIdMemo.set(hex, id)
  nodeIdOfKey.set(key, id)
  return id
}

/**
 * A key (or NodeId) as a compact string for sets and maps that are never shown: one character per byte, made without
 * the array of character codes that hex builds. Distinct bytes give distinct strings; use `toHex` for anything
 * printed or stored.
 *
 * @since 0.1.0
 * @category utils
 */
export const mapKey = (bytes: Uint8Array): string => byteKey(bytes)

/**
 * Lowercase hex (26 characters for a NodeId, 64 for a key). Arrays are taken as immutable: the hex of a NodeId is
 * remembered per array.
 *
 * @since 0.1.0
 * @category utils
 */
export const toHex = (bytes: Uint8Array): string => {
  if (bytes.length !== NODE_ID_LENGTH) return Hex.encode(bytes)
  const known = nodeIdHex.get(bytes)
  if (known !== undefined) return known
  const hex = Hex.encode(bytes)
  nodeIdHex.set(bytes, hex)
  return hex
}

/**
 * A hex string decoded and checked as a NodeId.
 *
 * @since 0.1.0
 * @category schemas
 */
export const NodeIdFromHex = Schema.transformOrFail(Schema.String, NodeId, {
  strict: true,
  decode: (s, _, ast) => {
    const decoded = Hex.decode(s)
    return decoded === undefined
      ? ParseResult.fail(new ParseResult.Type(ast, s, "not a hex string"))
      : ParseResult.decodeUnknown(NodeId)(decoded)
  },
  encode: (id) => ParseResult.succeed(Hex.encode(id))
})

/**
 * A hex string decoded as a 32-byte public key (length only; apply the key check for untrusted keys).
 *
 * @since 0.1.0
 * @category schemas
 */
export const PublicKeyFromHex = Schema.transformOrFail(Schema.String, PublicKey, {
  strict: true,
  decode: (s, _, ast) => {
    const decoded = Hex.decode(s)
    return decoded === undefined
      ? ParseResult.fail(new ParseResult.Type(ast, s, "not a hex string"))
      : ParseResult.decodeUnknown(PublicKey)(decoded)
  },
  encode: (key) => ParseResult.succeed(Hex.encode(key))
})

/**
 * Decodes untrusted bytes as a public key (length check only).
 *
 * @since 0.1.0
 * @category constructors
 */
export const decodePublicKey = (u: unknown): Effect.Effect<PublicKey, ParseResult.ParseError> =>
  Schema.decodeUnknown(PublicKey)(u)

/**
 * `a XOR b`, read as an unsigned big-endian integer (SPEC §2.3).
 *
 * @since 0.1.0
 * @category utils
 */
export const distance = (a: NodeId, b: NodeId): Uint8Array => {
  const out = new Uint8Array(NODE_ID_LENGTH)
  for (let i = 0; i < NODE_ID_LENGTH; i++) out[i] = a[i]! ^ b[i]!
  return out
}

/**
 * Byte-wise lexicographic comparison: for equal lengths it is numeric big-endian order.
 *
 * @since 0.1.0
 * @category utils
 */
export const compareBytes = (a: Uint8Array, b: Uint8Array): -1 | 0 | 1 => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!
    if (d !== 0) return d < 0 ? -1 : 1
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1
}

/**
 * Compares the distances of `x` and `y` to `target` without allocating.
 *
 * @since 0.1.0
 * @category utils
 */
export const compareDistance = (target: NodeId, x: NodeId, y: NodeId): -1 | 0 | 1 => {
  for (let i = 0; i < NODE_ID_LENGTH; i++) {
    const dx = x[i]! ^ target[i]!
    const dy = y[i]! ^ target[i]!
    if (dx !== dy) return dx < dy ? -1 : 1
  }
  return 0
}

/**
 * Orders ids by ascending distance to `target`; ties (identical ids only) by NodeId bytes.
 *
 * @since 0.1.0
 * @category utils
 */
export const byDistanceTo = (target: NodeId): Order.Order<NodeId> => (x, y) => {
  const c = compareDistance(target, x, y)
  return c !== 0 ? c : compareBytes(x, y)
}

// items a selection keys by index (`prefix * INDEX_SPACE + index` stays an exact double: 2^32 · 2^14 < 2^53)
const INDEX_SPACE = 16_384

// The sort keys of `closestOf`, in one array kept from call to call: a fresh one of more than eight keys is a store
// outside V8's heap (about 450 ns to allocate), on every selection of every forward. Read before the call returns.
let scratchKeys = new Float64Array(256)

/**
 * The `n` of `items` whose ids (`idOf`) are closest to `target`, in ascending distance (the order of
 * `byDistanceTo`), all of them if fewer.
 *
 * The selections of a node's hot paths (a forward's closest peers, a peer sync answer) pick a few of hundreds or
 * thousands of peers, where a comparator sort of them all costs more than the rest of the work. Here the first four
 * bytes of each distance, with the item's index, are sorted as plain numbers; a shorter prefix orders distances the
 * same way the whole distance does, so only the items sharing the n-th one's prefix (nearly always none but itself)
 * go through the full comparison.
 *
 * @since 0.1.0
 * @category utils
 */
export const closestOf = <A>(
  target: NodeId,
  items: ReadonlyArray<A>,
  n: number,
  idOf: (item: A) => NodeId
): Array<A> => {
  const k = Math.min(Math.max(0, Math.floor(n)), items.length)
  if (k === 0) return []
  const order = byDistanceTo(target)
  const byId = (a: A, b: A) => order(idOf(a), idOf(b))
  if (items.length > INDEX_SPACE) return items.slice().sort(byId).slice(0, k)
  const t0 = target[0]!, t1 = target[1]!, t2 = target[2]!, t3 = target[3]!
  if (scratchKeys.length < items.length) scratchKeys = new Float64Array(Math.max(items.length, 2 * scratchKeys.length))
  const keys = scratchKeys.subarray(0, items.length)
  for (let i = 0; i < items.length; i++) {
    const id = idOf(items[i]!)
    const prefix = (id[0]! ^ t0) * 16_777_216 + (id[1]! ^ t1) * 65_536 + (id[2]! ^ t2) * 256 + (id[3]! ^ t3)
    keys[i] = prefix * INDEX_SPACE + i
  }
  keys.sort()
  const prefixAt = (i: number) => Math.floor(keys[i]! / INDEX_SPACE)
  const boundary = prefixAt(k - 1)
  let end = k
  while (end < keys.length && prefixAt(end) === boundary) end++
  const chosen: Array<A> = new Array(end)
  for (let i = 0; i < end; i++) chosen[i] = items[keys[i]! % INDEX_SPACE]!
  // items sharing a prefix are in index order so far: the whole distance orders each such run, and only those (a
  // caller asking for every peer, sorted, pays no comparator sort of them all)
  for (let start = 0; start < end;) {
    let stop = start + 1
    while (stop < end && prefixAt(stop) === prefixAt(start)) stop++
    if (stop - start > 1) {
      const run = chosen.slice(start, stop).sort(byId)
      for (let i = 0; i < run.length; i++) chosen[start + i] = run[i]!
    }
    start = stop
  }
  return end === k ? chosen : chosen.slice(0, k)
}

/**
 * The Kademlia bucket of `id` seen from `self`: the number of leading zero bits of their distance, 0 for the far
 * half of the key space, `NODE_ID_LENGTH * 8` (104) for `self` itself. Each bucket holds half the key space of the
 * one before it.
 *
 * @since 0.1.0
 * @category utils
 */
export const bucketIndex = (self: NodeId, id: NodeId): number => {
  for (let i = 0; i < NODE_ID_LENGTH; i++) {
    const x = id[i]! ^ self[i]!
    // clz32 counts the 24 bits above the byte too
    if (x !== 0) return i * 8 + Math.clz32(x) - 24
  }
  return NODE_ID_LENGTH * 8
}

/**
 * `x` is strictly closer to `target` than `y`.
 *
 * @since 0.1.0
 * @category utils
 */
export const isCloser = (target: NodeId, x: NodeId, y: NodeId): boolean => compareDistance(target, x, y) < 0

/**
 * @since 0.1.0
 * @category utils
 */
export const equals = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && compareBytes(a, b) === 0
