/** @internal */
import type * as Peer from "@comms-dht/core/Peer"
import * as Either from "effect/Either"
import { clampInt64 } from "./values.js"

// SPEC §18 stores `identity_signature` as an encoded `common.proto` IdentitySignature and `claim` as an encoded
// `peer_sync.proto` PeerIdentityClaim: canonical protobuf (fields in number order, defaults omitted), the bytes
// core's codecs produce. The generated message types are internal to core, and these two messages have five
// scalar fields between them, so they are written and read here.
//
//   IdentitySignature { uint32 version = 1; bytes signature = 2; int64 updated_at = 4; }
//   PeerIdentityClaim { repeated bytes addresses = 1; uint32 peer_features = 2;
//                       IdentitySignature identity_signature = 3; }

/** @internal the encoded form of `Peer.IdentitySignature` */
export interface SignatureFields {
  readonly version: number
  readonly signature: Uint8Array
  readonly updatedAt: bigint
}

/** @internal the encoded form of `Peer.PeerClaim` */
export interface ClaimFields {
  readonly addresses: ReadonlyArray<string>
  readonly features: number
  readonly identitySignature: SignatureFields
}

const VARINT = 0
const FIXED64 = 1
const BYTES = 2
const FIXED32 = 5
const U32_MAX = 0xffffffff

const utf8 = new TextEncoder()
const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

// --- writing ---

const varint = (out: Array<number>, value: bigint) => {
  let v = BigInt.asUintN(64, value) // int64: negative values as their 10-byte two's complement, as protobuf does
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80)
    v >>= 7n
  }
  out.push(Number(v))
}

const tag = (out: Array<number>, field: number, wire: number) => varint(out, BigInt((field << 3) | wire))

const bytesField = (out: Array<number>, field: number, bytes: Uint8Array) => {
  tag(out, field, BYTES)
  varint(out, BigInt(bytes.length))
  for (const b of bytes) out.push(b)
}

const isUint32 = (n: number) => Number.isInteger(n) && n >= 0 && n <= U32_MAX

const signatureProblem = (s: Peer.IdentitySignature): string | undefined =>
  isUint32(s.version) ? undefined : `identity signature version ${s.version} is not a uint32`

const featuresProblem = (c: Peer.PeerClaim): string | undefined =>
  isUint32(c.features) ? undefined : `claim features ${c.features} are not a uint32`

const claimProblem = (c: Peer.PeerClaim): string | undefined =>
  featuresProblem(c) ?? signatureProblem(c.identitySignature)

/**
 * @internal
 * Why the encoders would refuse `peer`'s signature or one of its claims, if they would: checked when a record is
 * accepted, so that one written later cannot fail its batch.
 */
export const unstorable = (peer: Peer.Peer): string | undefined => {
  const own = peer.identitySignature === undefined ? undefined : signatureProblem(peer.identitySignature)
  if (own !== undefined) return own
  for (const address of peer.addresses) {
    const problem = address.claim === undefined ? undefined : claimProblem(address.claim)
    if (problem !== undefined) return `claim: ${problem}`
  }
  return undefined
}

const signatureBytes = (s: Peer.IdentitySignature): Either.Either<Uint8Array, string> => {
  const problem = signatureProblem(s)
  if (problem !== undefined) return Either.left(problem)
  const out: Array<number> = []
  if (s.version !== 0) {
    tag(out, 1, VARINT)
    varint(out, BigInt(s.version))
  }
  if (s.signature.length > 0) bytesField(out, 2, s.signature)
  const updatedAt = clampInt64(s.updatedAt)
  if (updatedAt !== 0n) {
    tag(out, 4, VARINT)
    varint(out, updatedAt)
  }
  return Either.right(Uint8Array.from(out))
}

// Encodings by the (immutable) value encoded: a peer's signature and claims are the same objects from one version of
// its record to the next, and every write of the record (a touch written with its batch) encoded them again.
const memoised = <K extends object>(
  encode: (value: K) => Either.Either<Uint8Array, string>
): (value: K) => Either.Either<Uint8Array, string> => {
  const cache = new WeakMap<K, Either.Either<Uint8Array, string>>()
  return (value) => {
    const known = cache.get(value)
    if (known !== undefined) return known
    const encoded = encode(value)
    cache.set(value, encoded)
    return encoded
  }
}

/** @internal */
export const encodeSignature = memoised(signatureBytes)

/** @internal */
export const encodeClaim = memoised((c: Peer.PeerClaim): Either.Either<Uint8Array, string> => {
  const problem = featuresProblem(c)
  if (problem !== undefined) return Either.left(problem)
  return Either.map(encodeSignature(c.identitySignature), (signature) => {
    const out: Array<number> = []
    for (const address of c.addresses) bytesField(out, 1, utf8.encode(address))
    if (c.features !== 0) {
      tag(out, 2, VARINT)
      varint(out, BigInt(c.features))
    }
    bytesField(out, 3, signature)
    return Uint8Array.from(out)
  })
})

// --- reading ---

interface Reader {
  readonly bytes: Uint8Array
  pos: number
}

type Read<A> = Either.Either<A, string>

const readVarint = (r: Reader): Read<bigint> => {
  let value = 0n
  for (let shift = 0n; shift < 70n; shift += 7n) {
    const b = r.bytes[r.pos++]
    if (b === undefined) return Either.left("truncated varint")
    value |= BigInt(b & 0x7f) << shift
    if ((b & 0x80) === 0) return Either.right(BigInt.asUintN(64, value))
  }
  return Either.left("varint longer than 10 bytes")
}

const readBytes = (r: Reader): Read<Uint8Array> =>
  Either.flatMap(readVarint(r), (n) => {
    const end = r.pos + Number(n)
    if (n > BigInt(r.bytes.length) || end > r.bytes.length) return Either.left("truncated bytes field")
    const out = r.bytes.slice(r.pos, end)
    r.pos = end
    return Either.right(out)
  })

const skip = (r: Reader, wire: number): Read<void> => {
  switch (wire) {
    case VARINT:
      return Either.map(readVarint(r), () => undefined)
    case BYTES:
      return Either.map(readBytes(r), () => undefined)
    case FIXED64:
    case FIXED32: {
      r.pos += wire === FIXED64 ? 8 : 4
      return r.pos <= r.bytes.length ? Either.void : Either.left("truncated fixed field")
    }
    default:
      return Either.left(`unsupported wire type ${wire}`)
  }
}

// Calls `onField` for each field; it returns false for a field it does not take, which is then skipped.
const fields = (bytes: Uint8Array, onField: (r: Reader, field: number, wire: number) => Read<boolean>): Read<void> => {
  const r: Reader = { bytes, pos: 0 }
  while (r.pos < bytes.length) {
    const key = readVarint(r)
    if (Either.isLeft(key)) return Either.left(key.left)
    const field = Number(key.right >> 3n)
    const wire = Number(key.right & 7n)
    const taken = onField(r, field, wire)
    if (Either.isLeft(taken)) return Either.left(taken.left)
    if (!taken.right) {
      const skipped = skip(r, wire)
      if (Either.isLeft(skipped)) return skipped
    }
  }
  return Either.void
}

/** @internal */
export const decodeSignature = (bytes: Uint8Array): Read<SignatureFields> => {
  let version = 0
  let signature: Uint8Array = new Uint8Array(0)
  let updatedAt = 0n
  const done = fields(bytes, (r, field, wire) => {
    if (field === 1 && wire === VARINT) {
      return Either.map(readVarint(r), (v) => {
        version = Number(BigInt.asUintN(32, v))
        return true
      })
    }
    if (field === 2 && wire === BYTES) {
      return Either.map(readBytes(r), (b) => {
        signature = b
        return true
      })
    }
    if (field === 4 && wire === VARINT) {
      return Either.map(readVarint(r), (v) => {
        updatedAt = BigInt.asIntN(64, v)
        return true
      })
    }
    return Either.right(false)
  })
  return Either.map(done, () => ({ version, signature, updatedAt }))
}

/** @internal */
export const decodeClaim = (bytes: Uint8Array): Read<ClaimFields> => {
  const addresses: Array<string> = []
  let features = 0
  let identitySignature: SignatureFields = { version: 0, signature: new Uint8Array(0), updatedAt: 0n }
  const done = fields(bytes, (r, field, wire): Read<boolean> => {
    if (field === 1 && wire === BYTES) {
      return Either.flatMap(readBytes(r), (b) => {
        try {
          addresses.push(strictUtf8.decode(b))
          return Either.right(true)
        } catch {
          return Either.left("claim address is not UTF-8")
        }
      })
    }
    if (field === 2 && wire === VARINT) {
      return Either.map(readVarint(r), (v) => {
        features = Number(BigInt.asUintN(32, v))
        return true
      })
    }
    if (field === 3 && wire === BYTES) {
      return Either.flatMap(readBytes(r), (b) =>
        Either.map(decodeSignature(b), (s) => {
          identitySignature = s
          return true
        }))
    }
    return Either.right(false)
  })
  return Either.map(done, () => ({ addresses, features, identitySignature }))
}
