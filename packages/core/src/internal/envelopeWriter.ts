/**
 * @internal
 * `DhtEnvelope{header, body}` written exactly as `toBinary(DhtEnvelopeSchema, …)` of protobuf-es writes it
 * (Envelope.test.ts holds the two byte-equal over arbitrary envelopes), in one allocation and one copy of the body.
 * protobuf-es builds the message with `create`, writes the header into a writer of its own and joins the chunks:
 * about 10 µs for an envelope with a 6 KB body on this machine, against about 4 µs here. Every frame a node sends
 * is encoded once, and the outbound pipeline's cost is measured against the crypto it cannot avoid (bench/).
 * Decoding stays with protobuf-es: it is where untrusted bytes are read.
 */
import type * as Pb from "./proto/envelope_pb.js"

/** @internal the fields of a generated `DhtHeader`, without building one through `create` */
export type HeaderFields = Omit<Pb.DhtHeader, "$typeName" | "$unknown">

// tags: field number << 3 | wire type (0 varint, 2 length-delimited)
const MAJOR = 1 << 3
const UNKNOWN = 3 << 3
const PUBLIC_KEY = (4 << 3) | 2
const SIGNATURE = (6 << 3) | 2
const EPHEMERAL = (7 << 3) | 2
const MESSAGE_TYPE = 8 << 3
const FLAGS = 10 << 3
const TAG = 11 << 3
const EXPIRES = 12 << 3
const HOP_COUNT = 13 << 3
const HEADER = (1 << 3) | 2
const BODY = (2 << 3) | 2

// a uint32 (or a non-negative int32) as a varint
const sizeU32 = (n: number): number => n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x20_0000 ? 3 : n < 0x1000_0000 ? 4 : 5

// a uint64 as its low and high 32 bits: the varint is then written with number arithmetic, not a bigint per byte
const halves = (n: bigint): readonly [lo: number, hi: number] => {
  const v = BigInt.asUintN(64, n)
  return [Number(v & 0xffff_ffffn), Number(v >> 32n)]
}

const sizeU64 = (n: bigint): number => {
  const [lo, hi] = halves(n)
  return hi === 0 ? sizeU32(lo) : Math.ceil((64 - Math.clz32(hi)) / 7)
}

// an int32 enum: negative values take the ten bytes of their 64-bit two's complement, as protobuf writes them
const sizeEnum = (n: number): number => n < 0 ? 10 : sizeU32(n)

const sizeBytes = (b: Uint8Array): number => sizeU32(b.length) + b.length

const headerSize = (h: HeaderFields): number =>
  (h.major !== 0 ? 1 + sizeU32(h.major) : 0) +
  (h.destination.case === "unknown" ? 2 : h.destination.case === "publicKey" ? 1 + sizeBytes(h.destination.value) : 0) +
  (h.messageSignature.length > 0 ? 1 + sizeBytes(h.messageSignature) : 0) +
  (h.ephemeralPublicKey.length > 0 ? 1 + sizeBytes(h.ephemeralPublicKey) : 0) +
  (h.messageType !== 0 ? 1 + sizeEnum(h.messageType) : 0) +
  (h.flags !== 0 ? 1 + sizeU32(h.flags) : 0) +
  (h.messageTag !== 0n ? 1 + sizeU64(h.messageTag) : 0) +
  (h.expires !== 0n ? 1 + sizeU64(h.expires) : 0) +
  (h.hopCount !== 0 ? 1 + sizeU32(h.hopCount) : 0)

class Writer {
  at = 0
  constructor(readonly out: Uint8Array) {}
  u32(n: number): void {
    let v = n >>> 0
    while (v >= 0x80) {
      this.out[this.at++] = (v & 0x7f) | 0x80
      v >>>= 7
    }
    this.out[this.at++] = v
  }
  u64(n: bigint): void {
    let [lo, hi] = halves(n)
    // seven bits at a time from the 64-bit value hi:lo, shifting hi's low bits into lo
    while (hi !== 0 || lo >= 0x80) {
      this.out[this.at++] = (lo & 0x7f) | 0x80
      lo = ((lo >>> 7) | (hi << 25)) >>> 0
      hi >>>= 7
    }
    this.out[this.at++] = lo
  }
  enum(n: number): void {
    if (n < 0) this.u64(BigInt(n))
    else this.u32(n)
  }
  bytes(b: Uint8Array): void {
    this.u32(b.length)
    this.out.set(b, this.at)
    this.at += b.length
  }
}

/** @internal the canonical bytes of `DhtEnvelope{header, body}` */
export const encodeEnvelope = (h: HeaderFields, body: Uint8Array): Uint8Array => {
  const header = headerSize(h)
  const out = new Uint8Array(1 + sizeU32(header) + header + (body.length > 0 ? 1 + sizeBytes(body) : 0))
  const w = new Writer(out)
  w.u32(HEADER)
  w.u32(header)
  if (h.major !== 0) {
    w.u32(MAJOR)
    w.u32(h.major)
  }
  if (h.destination.case === "unknown") {
    w.u32(UNKNOWN)
    w.u32(h.destination.value ? 1 : 0)
  } else if (h.destination.case === "publicKey") {
    w.u32(PUBLIC_KEY)
    w.bytes(h.destination.value)
  }
  if (h.messageSignature.length > 0) {
    w.u32(SIGNATURE)
    w.bytes(h.messageSignature)
  }
  if (h.ephemeralPublicKey.length > 0) {
    w.u32(EPHEMERAL)
    w.bytes(h.ephemeralPublicKey)
  }
  if (h.messageType !== 0) {
    w.u32(MESSAGE_TYPE)
    w.enum(h.messageType)
  }
  if (h.flags !== 0) {
    w.u32(FLAGS)
    w.u32(h.flags)
  }
  if (h.messageTag !== 0n) {
    w.u32(TAG)
    w.u64(h.messageTag)
  }
  if (h.expires !== 0n) {
    w.u32(EXPIRES)
    w.u64(h.expires)
  }
  if (h.hopCount !== 0) {
    w.u32(HOP_COUNT)
    w.u32(h.hopCount)
  }
  if (body.length > 0) {
    w.u32(BODY)
    w.bytes(body)
  }
  return out
}

const PART = (1 << 3) | 2

/**
 * @internal
 * The canonical bytes of `EnvelopeBody{parts}`, as protobuf-es writes them (every part, empty ones included), in
 * one allocation: the outbound pipeline encodes every application body once.
 */
export const encodeEnvelopeBody = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  let size = 0
  for (const part of parts) size += 1 + sizeBytes(part)
  const w = new Writer(new Uint8Array(size))
  for (const part of parts) {
    w.u32(PART)
    w.bytes(part)
  }
  return w.out
}

/**
 * @internal
 * A message's content as length-delimited fields `field` (one per piece, each piece already encoded) followed by
 * the varint field `last` unless `lastValue` is 0, as protobuf-es writes them: the pieces a responder keeps
 * encoded (a peer sync response's `PeerInfo`s).
 */
export interface Pieces {
  readonly field: number
  readonly pieces: ReadonlyArray<Uint8Array>
  readonly last: number
  readonly lastValue: number
}

const piecesSize = (m: Pieces): number => {
  const tag = sizeU32((m.field << 3) | 2)
  let size = m.lastValue !== 0 ? sizeU32(m.last << 3) + sizeU32(m.lastValue) : 0
  for (const piece of m.pieces) size += tag + sizeBytes(piece)
  return size
}

const writePieces = (w: Writer, m: Pieces): void => {
  const tag = (m.field << 3) | 2
  for (const piece of m.pieces) {
    w.u32(tag)
    w.bytes(piece)
  }
  if (m.lastValue !== 0) {
    w.u32(m.last << 3)
    w.u32(m.lastValue)
  }
}

/** @internal the bytes of the message `m` alone */
export const encodePieces = (m: Pieces): Uint8Array => {
  const w = new Writer(new Uint8Array(piecesSize(m)))
  writePieces(w, m)
  return w.out
}

/**
 * @internal
 * `encodeEnvelopeBody([encodePieces(m)])` in one allocation, without the message's own bytes as a step: a peer
 * sync response of a few kilobytes was a third copy of itself on its way to the wire.
 */
export const encodeEnvelopeBodyOfPieces = (m: Pieces): Uint8Array => {
  const size = piecesSize(m)
  const w = new Writer(new Uint8Array(1 + sizeU32(size) + size))
  w.u32(PART)
  w.u32(size)
  writePieces(w, m)
  return w.out
}
