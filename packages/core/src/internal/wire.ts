/** @internal */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf"
import { create, fromBinary } from "@bufbuild/protobuf"
import { getTextEncoding } from "@bufbuild/protobuf/wire"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { PublicKey as PublicKeySchema } from "../NodeId.js"
import type { PublicKey } from "../NodeId.js"
import { IdentitySignature } from "../Peer.js"
import * as PbCommon from "./proto/common_pb.js"

// Unknown fields are ignored (SPEC §3.7), so there is no point in keeping them: they would only hold memory.
const readOptions = { readUnknownFields: false } as const

/**
 * @internal
 * Parses protobuf bytes. bufbuild throws on malformed input (truncated varints, bad wire types, overlong lengths,
 * recursion limit), so the exception is turned into a value here.
 */
export const parse = <Desc extends DescMessage>(
  schema: Desc,
  bytes: Uint8Array
): Either.Either<MessageShape<Desc>, string> => {
  try {
    return Either.right(fromBinary(schema, bytes, readOptions))
  } catch (error) {
    return Either.left(`not a ${schema.typeName}: ${error instanceof Error ? error.message : String(error)}`)
  }
}

const text = getTextEncoding()

/**
 * @internal
 * Strict UTF-8: an address is signed as its bytes (SPEC §4.7), so a lossy decoding would change what was signed.
 */
export const decodeUtf8 = (bytes: Uint8Array): string | undefined => {
  try {
    return text.decodeUtf8(bytes, true)
  } catch {
    return undefined
  }
}

// up to this many bytes a typed array lives in V8's heap; a longer one costs as much as the encoder's own
const ON_HEAP = 64

/**
 * @internal
 * The UTF-8 of `s`, as `TextEncoder` gives it. Addresses are nearly always short ASCII, and the encoder's result is
 * allocated outside V8's heap (320 ns for `mem://17`, against 45 for this loop), on every claim's challenge and
 * every policy check of a relayed peer: ASCII is copied here, anything else goes to the encoder.
 */
export const encodeUtf8 = (s: string): Uint8Array => {
  const n = s.length
  if (n > ON_HEAP) return text.encodeUtf8(s)
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c > 0x7f) return text.encodeUtf8(s)
    out[i] = c
  }
  return out
}

/**
 * @internal
 * `encodeUtf8(s).length` without encoding: a surrogate pair is 4 bytes, and a lone surrogate 3, as the encoder
 * writes U+FFFD for it.
 */
export const utf8Length = (s: string): number => {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4
        i++
      } else n += 3
    } else n += 3
  }
  return n
}

/**
 * @internal
 * Every address of a list as strict UTF-8, or the index of the first that is not.
 */
export const decodeAddresses = (list: ReadonlyArray<Uint8Array>): Either.Either<Array<string>, number> => {
  const out: Array<string> = []
  for (let i = 0; i < list.length; i++) {
    const s = decodeUtf8(list[i]!)
    if (s === undefined) return Either.left(i)
    out.push(s)
  }
  return Either.right(out)
}

/** @internal */
export const U64_MAX = (1n << 64n) - 1n

/** @internal */
export const U32_MAX = 0xffffffff

/** @internal protobuf `uint64`: a bigint in [0, 2^64 − 1] (SPEC §3.7 "uint64 values") */
export const Uint64 = Schema.BigIntFromSelf.pipe(
  Schema.betweenBigInt(0n, U64_MAX, {
    arbitrary: () => (fc) =>
      fc.oneof(fc.bigInt({ min: 0n, max: U64_MAX }), fc.constantFrom(0n, 1n, U64_MAX - 1n, U64_MAX, 1n << 63n))
  })
)

/** @internal protobuf `uint32` */
export const Uint32 = Schema.Int.pipe(
  Schema.between(0, U32_MAX, {
    arbitrary: () => (fc) => fc.oneof(fc.integer({ min: 0, max: U32_MAX }), fc.constantFrom(0, 1, U32_MAX))
  })
)

/** @internal protobuf `int32` */
export const Int32 = Schema.Int.pipe(Schema.between(-0x80000000, 0x7fffffff))

/** @internal exactly `n` bytes */
export const bytes = (n: number, name: string) =>
  Schema.Uint8ArrayFromSelf.pipe(
    Schema.filter((b) => b.length === n || `${name}: expected ${n} bytes, got ${b.length}`, {
      // without it fast-check would draw arbitrary lengths and filter forever
      arbitrary: () => (fc) => fc.uint8Array({ minLength: n, maxLength: n })
    })
  )

/** @internal copy of a short field, so that a long-lived value does not pin the whole received frame */
export const copy = (b: Uint8Array): Uint8Array => b.slice()

/** @internal a length check that brands (the key check of SPEC §4.3 is the consumer's) */
export const isPublicKey: (u: unknown) => u is PublicKey = Schema.is(PublicKeySchema)

/**
 * @internal
 * `Uint8Array` ⇄ model as a Schema over an Either-returning decoder; the failure message names the error's tag.
 */
export const fromBytes = <A, I, E extends { readonly _tag: string; readonly message: string }>(
  to: Schema.Schema<A, I>,
  decode: (bytes: Uint8Array) => Either.Either<A, E>,
  encode: (a: A) => Uint8Array
): Schema.Schema<A, Uint8Array> =>
  Schema.transformOrFail(Schema.Uint8ArrayFromSelf, Schema.typeSchema(to), {
    strict: true,
    decode: (bytes, _, ast) =>
      Either.mapLeft(decode(bytes), (e) => new ParseResult.Type(ast, bytes, `${e._tag}: ${e.message}`)),
    encode: (a) => ParseResult.succeed(encode(a))
  })

/** @internal protobuf `int64` */
export const Int64 = Schema.BigIntFromSelf.pipe(Schema.betweenBigInt(-(1n << 63n), (1n << 63n) - 1n))

/**
 * @internal
 * `Peer.IdentitySignature` restricted to what `common.proto` can carry; with `signatureLength`, also a signature of
 * exactly that many bytes.
 */
export const identitySignature = (signatureLength?: number) =>
  Schema.typeSchema(IdentitySignature).pipe(
    Schema.filter((s) => {
      if (!Number.isInteger(s.version) || s.version < 0 || s.version > U32_MAX) return `version ${s.version}`
      if (s.updatedAt < -(1n << 63n) || s.updatedAt >= 1n << 63n) return `updatedAt ${s.updatedAt} is not an int64`
      if (signatureLength !== undefined && s.signature.length !== signatureLength) {
        return `signature of ${s.signature.length} bytes, expected ${signatureLength}`
      }
      return true
    }, {
      arbitrary: () => (fc) =>
        fc.record({
          version: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: U32_MAX })),
          signature: signatureLength === undefined
            ? fc.uint8Array({ maxLength: 80 })
            : fc.uint8Array({ minLength: signatureLength, maxLength: signatureLength }),
          updatedAt: fc.oneof(
            fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }),
            fc.bigInt({ min: 0n, max: 4n << 30n })
          )
        }).map((fields) => new IdentitySignature(fields))
    })
  )

/** @internal */
export const identitySignatureFromProto = (s: PbCommon.IdentitySignature): IdentitySignature =>
  new IdentitySignature({ version: s.version, signature: copy(s.signature), updatedAt: s.updatedAt }, true)

/** @internal */
export const identitySignatureToProto = (s: IdentitySignature): PbCommon.IdentitySignature =>
  create(PbCommon.IdentitySignatureSchema, { version: s.version, signature: s.signature, updatedAt: s.updatedAt })

/**
 * @internal
 * An address as a string that UTF-8 can carry: a lone surrogate would be replaced on encoding, so the bytes sent
 * (and signed, SPEC §4.7) would not be the string's.
 */
export const Address = Schema.String.pipe(
  Schema.filter((s) => decodeUtf8(encodeUtf8(s)) === s || "not representable as UTF-8", {
    arbitrary: () => (fc) => fc.string({ unit: "grapheme", maxLength: 40 })
  })
)

/** @internal */
export const Addresses = Schema.Array(Address)

/** @internal */
export const encodeAddresses = (addresses: ReadonlyArray<string>): Array<Uint8Array> => addresses.map(encodeUtf8)
