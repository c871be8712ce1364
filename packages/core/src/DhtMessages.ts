/**
 * The DHT messages of `dht.proto` (SPEC §3.3, §10): Join, Discovery and DiscoveryResponse. All three carry a peer's
 * key, its signed claim (addresses, features, identity signature) and a nonce.
 *
 * Decoding checks the shape only — a 32-byte key, a 64-byte claim signature, addresses in UTF-8 — and fails with
 * `InvalidMessageBody` (§14.1: the origin that signed an undecodable body is banned). The key check, the claim's
 * proof and its policy (§2.6) are the handlers'.
 *
 * @since 0.1.0
 */
import { create, toBinary } from "@bufbuild/protobuf"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { InvalidMessageBody } from "./DhtError.js"
import * as Pb from "./internal/proto/dht_pb.js"
import * as Wire from "./internal/wire.js"
import * as NodeId from "./NodeId.js"
import { PeerClaim } from "./Peer.js"

const fields = {
  publicKey: NodeId.PublicKey,
  /** UTF-8 address strings (§2.6), in claim order */
  addresses: Wire.Addresses,
  peerFeatures: Wire.Uint32,
  nonce: Wire.Uint64,
  /** the claim signature over addresses and features (§4.7) */
  identitySignature: Wire.identitySignature(64)
}

/**
 * `JoinMessage` (SPEC §10.1).
 *
 * @since 0.1.0
 * @category models
 */
export class JoinMessage extends Schema.Class<JoinMessage>("@comms-dht/core/JoinMessage")(fields) {
  /**
   * The signed claim this message carries.
   *
   * @since 0.1.0
   */
  get claim(): PeerClaim {
    return toClaim(this)
  }
}

/**
 * `DiscoveryMessage` (SPEC §10.2): the requester's key and claim; `nonce` matches the response to the request.
 *
 * @since 0.1.0
 * @category models
 */
export class DiscoveryMessage extends Schema.Class<DiscoveryMessage>("@comms-dht/core/DiscoveryMessage")(fields) {
  /**
   * @since 0.1.0
   */
  get claim(): PeerClaim {
    return toClaim(this)
  }
}

/**
 * `DiscoveryResponseMessage` (SPEC §10.3): the responder's key and claim, `nonce` copied from the request.
 *
 * @since 0.1.0
 * @category models
 */
export class DiscoveryResponseMessage
  extends Schema.Class<DiscoveryResponseMessage>("@comms-dht/core/DiscoveryResponseMessage")(fields)
{
  /**
   * @since 0.1.0
   */
  get claim(): PeerClaim {
    return toClaim(this)
  }
}

type Fields = Schema.Struct.Type<typeof fields>

const toClaim = (m: Fields): PeerClaim =>
  new PeerClaim({ addresses: m.addresses, features: m.peerFeatures, identitySignature: m.identitySignature }, true)

type ProtoDesc =
  | typeof Pb.JoinMessageSchema
  | typeof Pb.DiscoveryMessageSchema
  | typeof Pb.DiscoveryResponseMessageSchema

const decodeFields = (desc: ProtoDesc, bytes: Uint8Array): Either.Either<Fields, InvalidMessageBody> => {
  const parsed = Wire.parse(desc, bytes)
  if (Either.isLeft(parsed)) return Either.left(new InvalidMessageBody({ reason: parsed.left }))
  const m = parsed.right
  const publicKey = Wire.copy(m.publicKey)
  if (!Wire.isPublicKey(publicKey)) {
    return Either.left(new InvalidMessageBody({ reason: `public key of ${publicKey.length} bytes` }))
  }
  if (m.identitySignature === undefined) {
    return Either.left(new InvalidMessageBody({ reason: "identity signature absent" }))
  }
  if (m.identitySignature.signature.length !== 64) {
    return Either.left(
      new InvalidMessageBody({ reason: `identity signature of ${m.identitySignature.signature.length} bytes` })
    )
  }
  const addresses = Wire.decodeAddresses(m.addresses)
  if (Either.isLeft(addresses)) {
    return Either.left(new InvalidMessageBody({ reason: `address ${addresses.left} is not UTF-8` }))
  }
  return Either.right({
    publicKey,
    addresses: addresses.right,
    peerFeatures: m.peerFeatures,
    nonce: m.nonce,
    identitySignature: Wire.identitySignatureFromProto(m.identitySignature)
  })
}

const encodeFields = (desc: ProtoDesc, m: Fields): Uint8Array =>
  toBinary(
    desc,
    create(desc, {
      publicKey: m.publicKey,
      addresses: Wire.encodeAddresses(m.addresses),
      peerFeatures: m.peerFeatures,
      nonce: m.nonce,
      identitySignature: Wire.identitySignatureToProto(m.identitySignature)
    })
  )

// Fields were checked while decoding; the class need not validate them again.
const decodeJoinEither = (bytes: Uint8Array) =>
  Either.map(decodeFields(Pb.JoinMessageSchema, bytes), (f) => new JoinMessage(f, true))
const decodeDiscoveryEither = (bytes: Uint8Array) =>
  Either.map(decodeFields(Pb.DiscoveryMessageSchema, bytes), (f) => new DiscoveryMessage(f, true))
const decodeDiscoveryResponseEither = (bytes: Uint8Array) =>
  Either.map(decodeFields(Pb.DiscoveryResponseMessageSchema, bytes), (f) => new DiscoveryResponseMessage(f, true))

/**
 * @since 0.1.0
 * @category decoding
 */
export const decodeJoin = (bytes: Uint8Array): Effect.Effect<JoinMessage, InvalidMessageBody> =>
  decodeJoinEither(bytes)

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodeJoin = (message: JoinMessage): Uint8Array => encodeFields(Pb.JoinMessageSchema, message)

/**
 * @since 0.1.0
 * @category decoding
 */
export const decodeDiscovery = (bytes: Uint8Array): Effect.Effect<DiscoveryMessage, InvalidMessageBody> =>
  decodeDiscoveryEither(bytes)

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodeDiscovery = (message: DiscoveryMessage): Uint8Array =>
  encodeFields(Pb.DiscoveryMessageSchema, message)

/**
 * @since 0.1.0
 * @category decoding
 */
export const decodeDiscoveryResponse = (
  bytes: Uint8Array
): Effect.Effect<DiscoveryResponseMessage, InvalidMessageBody> => decodeDiscoveryResponseEither(bytes)

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodeDiscoveryResponse = (message: DiscoveryResponseMessage): Uint8Array =>
  encodeFields(Pb.DiscoveryResponseMessageSchema, message)

/**
 * @since 0.1.0
 * @category schemas
 */
export const JoinMessageFromBytes: Schema.Schema<JoinMessage, Uint8Array> = Wire.fromBytes(
  JoinMessage,
  decodeJoinEither,
  encodeJoin
)

/**
 * @since 0.1.0
 * @category schemas
 */
export const DiscoveryMessageFromBytes: Schema.Schema<DiscoveryMessage, Uint8Array> = Wire.fromBytes(
  DiscoveryMessage,
  decodeDiscoveryEither,
  encodeDiscovery
)

/**
 * @since 0.1.0
 * @category schemas
 */
export const DiscoveryResponseMessageFromBytes: Schema.Schema<DiscoveryResponseMessage, Uint8Array> = Wire
  .fromBytes(DiscoveryResponseMessage, decodeDiscoveryResponseEither, encodeDiscoveryResponse)
