/**
 * The envelope wire format (SPEC §3.1, §3.7, §5): the models a `DhtEnvelope` decodes to, and codecs between them
 * and bytes. Decoding untrusted bytes never throws: it yields a model or the tagged error of the §3.7 rule that
 * failed. Version support (§3.6) is the validation stage's concern, so `version` is kept as received.
 *
 * Byte fields of a decoded envelope body (`DhtEnvelope.body`, `EnvelopeBody.parts`) are views into the input
 * (no copy on the hot path): do not mutate an input buffer after decoding it. Keys and signatures are copied.
 *
 * @since 0.1.0
 */
import { create, toBinary } from "@bufbuild/protobuf"
import { ed25519 } from "@noble/curves/ed25519.js"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import {
  DecodeError,
  EnvelopeBodyDecodeFailed,
  type EnvelopeDecodeError,
  HeaderOmitted,
  InvalidApplicationBody,
  InvalidDestination,
  InvalidEphemeralPublicKey,
  InvalidMessageFlags,
  InvalidMessageType
} from "./DhtError.js"
import * as Ed25519 from "./Ed25519.js"
import * as EnvelopeWriter from "./internal/envelopeWriter.js"
import * as Pb from "./internal/proto/envelope_pb.js"
import * as Wire from "./internal/wire.js"
import * as NodeId from "./NodeId.js"

// --- message type (§3.1) ---

/**
 * `DhtMessageType` values (SPEC §3.1). `None` is an application ("domain") message.
 *
 * @since 0.1.0
 * @category models
 */
export const DhtMessageType = {
  None: 0,
  Join: 1,
  Discovery: 2,
  DiscoveryResponse: 3,
  SafRequestMessages: 20,
  SafStoredMessages: 21,
  PeerSyncRequest: 30,
  PeerSyncResponse: 31,
  /** ours: an end-to-end delivery receipt (docs/spec-departures.md §2) */
  Receipt: 32
} as const

/**
 * @since 0.1.0
 * @category models
 */
export type DhtMessageType = (typeof DhtMessageType)[keyof typeof DhtMessageType]

/**
 * @since 0.1.0
 * @category schemas
 */
export const DhtMessageTypeSchema: Schema.Enums<typeof DhtMessageType> = Schema.Enums(DhtMessageType)

const messageTypeNames: ReadonlyMap<number, keyof typeof DhtMessageType> = new Map([
  [DhtMessageType.None, "None"],
  [DhtMessageType.Join, "Join"],
  [DhtMessageType.Discovery, "Discovery"],
  [DhtMessageType.DiscoveryResponse, "DiscoveryResponse"],
  [DhtMessageType.SafRequestMessages, "SafRequestMessages"],
  [DhtMessageType.SafStoredMessages, "SafStoredMessages"],
  [DhtMessageType.PeerSyncRequest, "PeerSyncRequest"],
  [DhtMessageType.PeerSyncResponse, "PeerSyncResponse"],
  [DhtMessageType.Receipt, "Receipt"]
])

/**
 * @since 0.1.0
 * @category utils
 */
export const isDhtMessageType = (n: number): n is DhtMessageType => messageTypeNames.has(n)

/**
 * The name of a message type (`"Join"`), for logs and metric labels.
 *
 * @since 0.1.0
 * @category utils
 */
export const messageTypeName = (t: DhtMessageType): keyof typeof DhtMessageType => messageTypeNames.get(t) ?? "None"

/**
 * Join, Discovery and DiscoveryResponse: handled by the DHT handler (§7.7, §10), never delivered or stored.
 *
 * @since 0.1.0
 * @category utils
 */
export const isDhtMessage = (t: DhtMessageType): boolean =>
  t === DhtMessageType.Join || t === DhtMessageType.Discovery || t === DhtMessageType.DiscoveryResponse

/**
 * SafRequestMessages and SafStoredMessages (§9).
 *
 * @since 0.1.0
 * @category utils
 */
export const isSafMessage = (t: DhtMessageType): boolean =>
  t === DhtMessageType.SafRequestMessages || t === DhtMessageType.SafStoredMessages

/**
 * PeerSyncRequest and PeerSyncResponse (§12.4).
 *
 * @since 0.1.0
 * @category utils
 */
export const isPeerSyncMessage = (t: DhtMessageType): boolean =>
  t === DhtMessageType.PeerSyncRequest || t === DhtMessageType.PeerSyncResponse

// --- flags (§3.1) ---

/**
 * `DhtMessageFlags` bits (SPEC §3.1). Any other bit is `InvalidMessageFlags`.
 *
 * @since 0.1.0
 * @category models
 */
export const DhtMessageFlags = {
  NONE: 0x00,
  ENCRYPTED: 0x01,
  /** ours: the origin asks the destination for a receipt (docs/spec-departures.md §2); signed like every flag */
  RECEIPT_REQUESTED: 0x02
} as const

const KNOWN_FLAGS = DhtMessageFlags.ENCRYPTED | DhtMessageFlags.RECEIPT_REQUESTED

/**
 * Flags with only known bits set.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DhtMessageFlagsSchema = Wire.Uint32.pipe(
  Schema.filter((n) => (n & ~KNOWN_FLAGS) === 0 || `unknown flag bits 0x${n.toString(16)}`, {
    arbitrary: () => (fc) =>
      fc.constantFrom(DhtMessageFlags.NONE, DhtMessageFlags.ENCRYPTED, DhtMessageFlags.RECEIPT_REQUESTED)
  })
)

/**
 * @since 0.1.0
 * @category utils
 */
export const isEncrypted = (flags: number): boolean => (flags & DhtMessageFlags.ENCRYPTED) !== 0

/**
 * @since 0.1.0
 * @category utils
 */
export const isReceiptRequested = (flags: number): boolean => (flags & DhtMessageFlags.RECEIPT_REQUESTED) !== 0

/**
 * A bit outside `DhtMessageFlags` is set. `&` works on int32, so bit 31 shows as a negative, still non-zero, value.
 *
 * @since 0.1.0
 * @category utils
 */
export const hasUnknownFlags = (flags: number): boolean => (flags & ~KNOWN_FLAGS) !== 0

/**
 * @since 0.1.0
 * @category utils
 */
export const withFlags = (flags: number, add: number): number => (flags | add) >>> 0

// --- destination (§5) ---

// Decodable destinations pass the key check, so generated ones must too: derive them from random seeds.
const DestinationKey = NodeId.PublicKey.annotations({
  arbitrary: () => (fc) =>
    fc.uint8Array({ minLength: 32, maxLength: 32 }).map((seed) => NodeId.PublicKey.make(ed25519.getPublicKey(seed)))
})

/**
 * The destination is undisclosed (`unknown = true` on the wire).
 *
 * @since 0.1.0
 * @category models
 */
export class DestinationUnknown extends Schema.TaggedClass<DestinationUnknown>()("Unknown", {}) {}

/**
 * The destination is the holder of a public key.
 *
 * @since 0.1.0
 * @category models
 */
export class DestinationPublicKey extends Schema.TaggedClass<DestinationPublicKey>()("PublicKey", {
  publicKey: DestinationKey
}) {
  /** Derived on each access: it is one BLAKE2b over 32 bytes. */
  get nodeId(): NodeId.NodeId {
    return NodeId.fromPublicKey(this.publicKey)
  }
}

/**
 * `Unknown | PublicKey(pk)` (SPEC §5).
 *
 * @since 0.1.0
 * @category schemas
 */
export const NodeDestination = Schema.Union(DestinationUnknown, DestinationPublicKey)

/**
 * @since 0.1.0
 * @category models
 */
export type NodeDestination = DestinationUnknown | DestinationPublicKey

const unknownDestination = new DestinationUnknown()

/**
 * @since 0.1.0
 * @category constructors
 */
export const destinationUnknown = (): NodeDestination => unknownDestination

/**
 * @since 0.1.0
 * @category constructors
 */
export const destinationPublicKey = (publicKey: NodeId.PublicKey): NodeDestination =>
  // a `PublicKey` is 32 bytes by its brand, all the class would check (at ~7 µs a send)
  new DestinationPublicKey({ publicKey }, true)

/**
 * The destination's NodeId, when it is a key.
 *
 * @since 0.1.0
 * @category utils
 */
export const destinationNodeId = (destination: NodeDestination): Option.Option<NodeId.NodeId> =>
  destination._tag === "PublicKey" ? Option.some(destination.nodeId) : Option.none()

/**
 * The destination is this key.
 *
 * @since 0.1.0
 * @category utils
 */
export const isDestinedTo = (destination: NodeDestination, publicKey: Uint8Array): boolean =>
  destination._tag === "PublicKey" && NodeId.equals(destination.publicKey, publicKey)

// --- header and envelope (§3.1, §5) ---

/**
 * A 32-byte X25519 public key carried in `ephemeral_public_key`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const EphemeralPublicKey = Wire.bytes(32, "EphemeralPublicKey")

/**
 * A decoded `DhtHeader` (SPEC §5). An ephemeral key implies `ENCRYPTED` (§3.7); the converse (an encrypted header
 * without one) is representable, because rejecting it is the validation stage's job (§7.2 rule 6).
 *
 * @since 0.1.0
 * @category models
 */
export class DhtMessageHeader extends Schema.Class<DhtMessageHeader>("@comms-dht/core/DhtMessageHeader")(
  Schema.Struct({
    /** `DhtHeader.major`, as received (§3.6) */
    version: Wire.Uint32,
    destination: NodeDestination,
    /** encoded `MessageSignature`, or its ciphertext when encrypted; empty when unsigned */
    messageSignature: Schema.Uint8ArrayFromSelf,
    ephemeralPublicKey: Schema.OptionFromSelf(EphemeralPublicKey),
    messageType: DhtMessageTypeSchema,
    flags: DhtMessageFlagsSchema,
    /** trace id, not authenticated */
    messageTag: Wire.Uint64,
    /** unix seconds; `0n` = none */
    expires: Wire.Uint64,
    /** diagnostic only */
    hopCount: Wire.Uint32
  }).pipe(
    Schema.filter((h) =>
      Option.isNone(h.ephemeralPublicKey) || isEncrypted(h.flags) || "ephemeral public key on a cleartext header"
    )
  )
) {
  /**
   * @since 0.1.0
   */
  get isEncrypted(): boolean {
    return isEncrypted(this.flags)
  }
}

/**
 * The header a forwarder sends on: `hopCount + 1`, saturating at the uint32 maximum (the count is diagnostic and
 * never enforced, SPEC §3.7, scenario 17).
 *
 * @since 0.1.0
 * @category utils
 */
export const nextHop = (header: DhtMessageHeader): DhtMessageHeader =>
  // field by field: spreading the instance takes V8's slow object-spread path, microseconds per forward
  new DhtMessageHeader({
    version: header.version,
    destination: header.destination,
    messageSignature: header.messageSignature,
    ephemeralPublicKey: header.ephemeralPublicKey,
    messageType: header.messageType,
    flags: header.flags,
    messageTag: header.messageTag,
    expires: header.expires,
    hopCount: Math.min(header.hopCount + 1, Wire.U32_MAX)
  }, true)

/**
 * A decoded `DhtEnvelope`: header and body (`EnvelopeBody` bytes, or ciphertext when encrypted).
 *
 * @since 0.1.0
 * @category models
 */
export class DhtEnvelope extends Schema.Class<DhtEnvelope>("@comms-dht/core/DhtEnvelope")({
  header: DhtMessageHeader,
  body: Schema.Uint8ArrayFromSelf
}) {}

/**
 * What decoding a standalone `DhtHeader` can fail with (a header is never "omitted" from itself).
 *
 * @since 0.1.0
 * @category errors
 */
export type HeaderDecodeError = Exclude<EnvelopeDecodeError, HeaderOmitted>

// The key check costs ~100 µs (a field square root in bigint arithmetic), some 20 times the rest of a decode, and a
// network has few distinct destinations: the shared memo answers repeats.
const checkDestinationKey = Ed25519.checkPublicKeyMemo

const headerFromProto = (h: Pb.DhtHeader): Either.Either<DhtMessageHeader, HeaderDecodeError> => {
  let destination: NodeDestination
  switch (h.destination.case) {
    case "unknown": {
      if (!h.destination.value) {
        return Either.left(new InvalidDestination({ reason: "unknown must be true" }))
      }
      destination = unknownDestination
      break
    }
    case "publicKey": {
      const key = h.destination.value
      if (key.length !== 32) {
        return Either.left(new InvalidDestination({ reason: `public key of ${key.length} bytes` }))
      }
      const copied = Wire.copy(key)
      if (!checkDestinationKey(copied)) {
        return Either.left(new InvalidDestination({ reason: "public key fails the key check" }))
      }
      destination = new DestinationPublicKey({ publicKey: copied }, true)
      break
    }
    default:
      return Either.left(new InvalidDestination({ reason: "destination absent" }))
  }
  const e = h.ephemeralPublicKey
  if (e.length !== 0) {
    if (e.length !== 32) {
      return Either.left(new InvalidEphemeralPublicKey({ reason: `ephemeral public key of ${e.length} bytes` }))
    }
    if (!isEncrypted(h.flags)) {
      return Either.left(new InvalidEphemeralPublicKey({ reason: "ephemeral public key on a cleartext message" }))
    }
  }
  const messageType: number = h.messageType
  if (!isDhtMessageType(messageType)) {
    return Either.left(new InvalidMessageType({ value: messageType }))
  }
  if (hasUnknownFlags(h.flags)) {
    return Either.left(new InvalidMessageFlags({ flags: h.flags }))
  }
  // Every field was checked above and protobuf bounds the integers, so the class need not validate again.
  return Either.right(
    new DhtMessageHeader({
      version: h.major,
      destination,
      messageSignature: Wire.copy(h.messageSignature),
      ephemeralPublicKey: e.length === 0 ? Option.none() : Option.some(Wire.copy(e)),
      messageType,
      flags: h.flags,
      messageTag: h.messageTag,
      expires: h.expires,
      hopCount: h.hopCount
    }, true)
  )
}

const headerFields = (h: HeaderValues): EnvelopeWriter.HeaderFields => ({
  major: h.version,
  destination: h.destination._tag === "Unknown"
    ? { case: "unknown", value: true }
    : { case: "publicKey", value: h.destination.publicKey },
  messageSignature: h.messageSignature,
  ephemeralPublicKey: Option.getOrElse(h.ephemeralPublicKey, () => empty),
  messageType: h.messageType,
  flags: h.flags,
  messageTag: h.messageTag,
  expires: h.expires,
  hopCount: h.hopCount
})

const headerToProto = (h: DhtMessageHeader): Pb.DhtHeader => create(Pb.DhtHeaderSchema, headerFields(h))

const empty = new Uint8Array(0)

/**
 * Bytes → envelope, applying every decode-time rule of SPEC §3.7 in its order. Empty input is a `DecodeError`
 * (§7.1) rather than an envelope without header.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeEnvelopeEither = (bytes: Uint8Array): Either.Either<DhtEnvelope, EnvelopeDecodeError> => {
  if (bytes.length === 0) return Either.left(new DecodeError({ reason: "empty envelope" }))
  const parsed = Wire.parse(Pb.DhtEnvelopeSchema, bytes)
  if (Either.isLeft(parsed)) return Either.left(new DecodeError({ reason: parsed.left }))
  const envelope = parsed.right
  if (envelope.header === undefined) return Either.left(new HeaderOmitted())
  return Either.map(
    headerFromProto(envelope.header),
    (header) => new DhtEnvelope({ header, body: envelope.body }, true)
  )
}

/**
 * Bytes → envelope, each §3.7 rule failing with its own tag (`UnsupportedVersion` is §7.2's, not a decode error).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeEnvelope = (bytes: Uint8Array): Effect.Effect<DhtEnvelope, EnvelopeDecodeError> =>
  decodeEnvelopeEither(bytes)

/**
 * Envelope → canonical protobuf bytes (fields in number order, defaults omitted).
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeEnvelope = (envelope: DhtEnvelope): Uint8Array =>
  encodeEnvelopeFrom(envelope.header, envelope.body)

/**
 * The values of a `DhtMessageHeader`, as a plain object may hold them.
 *
 * @since 0.1.0
 * @category models
 */
export type HeaderValues = Pick<
  DhtMessageHeader,
  | "version"
  | "destination"
  | "messageSignature"
  | "ephemeralPublicKey"
  | "messageType"
  | "flags"
  | "messageTag"
  | "expires"
  | "hopCount"
>

/**
 * `encodeEnvelope` of the envelope with `header` and `body`, without building the header and envelope classes: for
 * values already valid, such as the outbound pipeline's, which encodes every frame it sends. Nothing is checked.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeEnvelopeFrom = (header: HeaderValues, body: Uint8Array): Uint8Array =>
  EnvelopeWriter.encodeEnvelope(headerFields(header), body)

/**
 * Bytes of a standalone `DhtHeader` → header (the §3.7 rules apart from `HeaderOmitted`). The SAF store keeps
 * headers in this form (§9.1).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeHeader = (bytes: Uint8Array): Effect.Effect<DhtMessageHeader, HeaderDecodeError> => {
  const parsed = Wire.parse(Pb.DhtHeaderSchema, bytes)
  return Either.isLeft(parsed) ? Either.left(new DecodeError({ reason: parsed.left })) : headerFromProto(parsed.right)
}

/**
 * Header → canonical bytes of a standalone `DhtHeader`.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeHeader = (header: DhtMessageHeader): Uint8Array =>
  toBinary(Pb.DhtHeaderSchema, headerToProto(header))

/**
 * A `DhtHeader` already parsed as part of another message (`StoredMessage.dht_header`).
 *
 * @since 0.1.0
 * @internal
 */
export const headerFromProtoEither = headerFromProto

/**
 * @since 0.1.0
 * @internal
 */
export const headerToProtoMessage = headerToProto

/**
 * `Uint8Array` ⇄ `DhtEnvelope` as a Schema, for composition. Its failures name the §3.7 tag in the message; use
 * `decodeEnvelope` where the tag itself matters.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DhtEnvelopeFromBytes: Schema.Schema<DhtEnvelope, Uint8Array> = Wire.fromBytes(
  DhtEnvelope,
  decodeEnvelopeEither,
  encodeEnvelope
)

// --- message signature (§3.1, §4.3) ---

/**
 * `MessageSignature`: who signed, and the 64-byte RFC 8032 signature `R || S`. Whether the key is acceptable is the
 * verifier's key check (§4.3), not the decoder's.
 *
 * @since 0.1.0
 * @category models
 */
export class MessageSignature extends Schema.Class<MessageSignature>("@comms-dht/core/MessageSignature")({
  signerPublicKey: NodeId.PublicKey,
  signature: Wire.bytes(64, "Signature")
}) {}

// 0x0a 0x20 key(32) 0x1a 0x40 signature(64): what `encodeMessageSignature` writes (field 2 is reserved)
const CANONICAL_SIGNATURE_LENGTH = 2 + 32 + 2 + 64
const isCanonicalSignatureEncoding = (bytes: Uint8Array): boolean =>
  bytes.length === CANONICAL_SIGNATURE_LENGTH && bytes[0] === 0x0a && bytes[1] === 32 && bytes[34] === 0x1a &&
  bytes[35] === 64

/**
 * `decodeMessageSignature` as an `Either`, for plain functions.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeMessageSignatureEither = (bytes: Uint8Array): Either.Either<MessageSignature, DecodeError> => {
  const parsed = Wire.parse(Pb.MessageSignatureSchema, bytes)
  if (Either.isLeft(parsed)) return Either.left(new DecodeError({ reason: parsed.left }))
  const { signature } = parsed.right
  const signerPublicKey = Wire.copy(parsed.right.signerPublicKey)
  if (!Wire.isPublicKey(signerPublicKey)) {
    return Either.left(new DecodeError({ reason: `signer public key of ${signerPublicKey.length} bytes` }))
  }
  if (signature.length !== 64) {
    return Either.left(new DecodeError({ reason: `signature of ${signature.length} bytes` }))
  }
  // Only the one canonical encoding (field 1, then field 3, nothing else): the dedup hash covers these bytes, so a
  // re-encoding of a valid signature (reordered or unknown fields, another wire type) would replay its message
  // past dedup
  if (!isCanonicalSignatureEncoding(bytes)) {
    return Either.left(new DecodeError({ reason: "non-canonical MessageSignature encoding" }))
  }
  return Either.right(new MessageSignature({ signerPublicKey, signature: Wire.copy(signature) }, true))
}

/**
 * Bytes → `MessageSignature`; a 32-byte key and a 64-byte signature, else `DecodeError`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeMessageSignature = (bytes: Uint8Array): Effect.Effect<MessageSignature, DecodeError> =>
  decodeMessageSignatureEither(bytes)

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodeMessageSignature = (sig: MessageSignature): Uint8Array =>
  toBinary(
    Pb.MessageSignatureSchema,
    create(Pb.MessageSignatureSchema, { signerPublicKey: sig.signerPublicKey, signature: sig.signature })
  )

/**
 * @since 0.1.0
 * @category schemas
 */
export const MessageSignatureFromBytes: Schema.Schema<MessageSignature, Uint8Array> = Wire.fromBytes(
  MessageSignature,
  decodeMessageSignatureEither,
  encodeMessageSignature
)

// --- envelope body (§3.1) ---

/**
 * Most parts an `EnvelopeBody` may have (ours, SPEC §3.1).
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_BODY_PARTS = 16

/**
 * `EnvelopeBody`: 1 to 16 parts. Application messages are `[MessageHeader, body]`, DHT and SAF messages `[message]`.
 *
 * @since 0.1.0
 * @category models
 */
export class EnvelopeBody extends Schema.Class<EnvelopeBody>("@comms-dht/core/EnvelopeBody")({
  parts: Schema.Array(Schema.Uint8ArrayFromSelf).pipe(Schema.minItems(1), Schema.maxItems(MAX_BODY_PARTS))
}) {}

/**
 * `decodeEnvelopeBody` as an `Either`, for plain functions.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeEnvelopeBodyEither = (bytes: Uint8Array): Either.Either<EnvelopeBody, EnvelopeBodyDecodeFailed> => {
  const parsed = Wire.parse(Pb.EnvelopeBodySchema, bytes)
  if (Either.isLeft(parsed)) return Either.left(new EnvelopeBodyDecodeFailed({ reason: parsed.left }))
  const parts = parsed.right.parts
  if (parts.length === 0) return Either.left(new EnvelopeBodyDecodeFailed({ reason: "no parts" }))
  if (parts.length > MAX_BODY_PARTS) {
    return Either.left(new EnvelopeBodyDecodeFailed({ reason: `${parts.length} parts, at most ${MAX_BODY_PARTS}` }))
  }
  return Either.right(new EnvelopeBody({ parts }, true))
}

/**
 * Bytes → `EnvelopeBody` with 1 to 16 parts, else `EnvelopeBodyDecodeFailed`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeEnvelopeBody = (bytes: Uint8Array): Effect.Effect<EnvelopeBody, EnvelopeBodyDecodeFailed> =>
  decodeEnvelopeBodyEither(bytes)

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodeEnvelopeBody = (body: EnvelopeBody): Uint8Array => EnvelopeWriter.encodeEnvelopeBody(body.parts)

/**
 * @since 0.1.0
 * @category schemas
 */
export const EnvelopeBodyFromBytes: Schema.Schema<EnvelopeBody, Uint8Array> = Wire.fromBytes(
  EnvelopeBody,
  decodeEnvelopeBodyEither,
  encodeEnvelopeBody
)

// --- application message header (§3.1) ---

/**
 * A random, non-zero u64 (0 is reserved for propagation headers, SPEC §3.1).
 *
 * @since 0.1.0
 * @category schemas
 */
export const MessageNonce = Wire.Uint64.pipe(
  Schema.filter((n) => n !== 0n || "nonce must not be 0", {
    arbitrary: () => (fc) => fc.bigInt({ min: 1n, max: Wire.U64_MAX })
  })
)

/**
 * `MessageHeader`: the first part of an application message.
 *
 * @since 0.1.0
 * @category models
 */
export class MessageHeader extends Schema.Class<MessageHeader>("@comms-dht/core/MessageHeader")({
  /** application-defined type tag (int32) */
  messageType: Wire.Int32,
  nonce: MessageNonce
}) {}

/**
 * `decodeMessageHeader` as an `Either`, for plain functions.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeMessageHeaderEither = (bytes: Uint8Array): Either.Either<MessageHeader, InvalidApplicationBody> => {
  const parsed = Wire.parse(Pb.MessageHeaderSchema, bytes)
  if (Either.isLeft(parsed)) return Either.left(new InvalidApplicationBody({ reason: parsed.left }))
  const { messageType, nonce } = parsed.right
  if (nonce === 0n) return Either.left(new InvalidApplicationBody({ reason: "message header nonce is 0" }))
  return Either.right(new MessageHeader({ messageType, nonce }, true))
}

/**
 * Bytes (`parts[0]` of an application body) → `MessageHeader`; undecodable or a zero nonce is
 * `InvalidApplicationBody` (§7.8).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeMessageHeader = (bytes: Uint8Array): Effect.Effect<MessageHeader, InvalidApplicationBody> =>
  decodeMessageHeaderEither(bytes)

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodeMessageHeader = (header: MessageHeader): Uint8Array =>
  toBinary(
    Pb.MessageHeaderSchema,
    create(Pb.MessageHeaderSchema, { messageType: header.messageType, nonce: header.nonce })
  )

/**
 * @since 0.1.0
 * @category schemas
 */
export const MessageHeaderFromBytes: Schema.Schema<MessageHeader, Uint8Array> = Wire.fromBytes(
  MessageHeader,
  decodeMessageHeaderEither,
  encodeMessageHeader
)
