/**
 * The payload of Noise XX handshake messages 2 and 3 (SPEC §4.8, `transport.proto`): who the peer is (its Ed25519
 * identity), the binding of its Noise static key to that identity, and its signed claim.
 *
 * Decoding checks the shape — a 32-byte identity key, 64-byte signatures, UTF-8 addresses — and fails with
 * `DecodeError`, which the transport reports as `HandshakeFailed`. The key check, the static-key binding and the
 * claim are verified by the transport (§4.8).
 *
 * @since 0.1.0
 */
import { create, toBinary } from "@bufbuild/protobuf"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { DecodeError } from "./DhtError.js"
import * as Pb from "./internal/proto/transport_pb.js"
import * as Wire from "./internal/wire.js"
import * as NodeId from "./NodeId.js"
import { PeerClaim } from "./Peer.js"

/**
 * `NoiseHandshakePayload` (SPEC §4.8).
 *
 * @since 0.1.0
 * @category models
 */
export class NoiseHandshakePayload extends Schema.Class<NoiseHandshakePayload>(
  "@comms-dht/core/NoiseHandshakePayload"
)({
  identityPublicKey: NodeId.PublicKey,
  /** `Ed25519.sign(identity, DSH("noise_static", 32, noiseStaticPublicKey))` */
  staticSignature: Wire.bytes(64, "StaticSignature"),
  peerFeatures: Wire.Uint32,
  addresses: Wire.Addresses,
  /** claim over addresses and features (§4.7) */
  identitySignature: Wire.identitySignature(64),
  protocolVersion: Wire.Uint32
}) {
  /**
   * The signed claim this payload carries.
   *
   * @since 0.1.0
   */
  get claim(): PeerClaim {
    return new PeerClaim({
      addresses: this.addresses,
      features: this.peerFeatures,
      identitySignature: this.identitySignature
    }, true)
  }
}

const fail = (reason: string) => Either.left(new DecodeError({ reason: `handshake payload: ${reason}` }))

// What a payload's bytes decoded to, by the bytes: a node presents the same payload to every peer it meets, and a
// transport within one process (`MemoryNetwork`) hands each the same array, which is never changed. A decoded
// payload is immutable.
const decodedPayloads = new WeakMap<Uint8Array, Either.Either<NoiseHandshakePayload, DecodeError>>()

/**
 * `decode` as a plain function, for a caller checking a handshake without Effect's run loop.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeEither = (bytes: Uint8Array): Either.Either<NoiseHandshakePayload, DecodeError> => {
  const known = decodedPayloads.get(bytes)
  if (known !== undefined) return known
  const decoded = decodeFresh(bytes)
  decodedPayloads.set(bytes, decoded)
  return decoded
}

const decodeFresh = (bytes: Uint8Array): Either.Either<NoiseHandshakePayload, DecodeError> => {
  const parsed = Wire.parse(Pb.NoiseHandshakePayloadSchema, bytes)
  if (Either.isLeft(parsed)) return fail(parsed.left)
  const m = parsed.right
  const identityPublicKey = Wire.copy(m.identityPublicKey)
  if (!Wire.isPublicKey(identityPublicKey)) return fail(`identity key of ${identityPublicKey.length} bytes`)
  if (m.staticSignature.length !== 64) return fail(`static signature of ${m.staticSignature.length} bytes`)
  if (m.identitySignature === undefined) return fail("identity signature absent")
  if (m.identitySignature.signature.length !== 64) {
    return fail(`identity signature of ${m.identitySignature.signature.length} bytes`)
  }
  const addresses = Wire.decodeAddresses(m.addresses)
  if (Either.isLeft(addresses)) return fail(`address ${addresses.left} is not UTF-8`)
  return Either.right(
    new NoiseHandshakePayload({
      identityPublicKey,
      staticSignature: Wire.copy(m.staticSignature),
      peerFeatures: m.peerFeatures,
      addresses: addresses.right,
      identitySignature: Wire.identitySignatureFromProto(m.identitySignature),
      protocolVersion: m.protocolVersion
    }, true)
  )
}

/**
 * @since 0.1.0
 * @category decoding
 */
export const decode = (bytes: Uint8Array): Effect.Effect<NoiseHandshakePayload, DecodeError> => decodeEither(bytes)

/**
 * @since 0.1.0
 * @category encoding
 */
export const encode = (payload: NoiseHandshakePayload): Uint8Array =>
  toBinary(
    Pb.NoiseHandshakePayloadSchema,
    create(Pb.NoiseHandshakePayloadSchema, {
      identityPublicKey: payload.identityPublicKey,
      staticSignature: payload.staticSignature,
      peerFeatures: payload.peerFeatures,
      addresses: Wire.encodeAddresses(payload.addresses),
      identitySignature: Wire.identitySignatureToProto(payload.identitySignature),
      protocolVersion: payload.protocolVersion
    })
  )

/**
 * @since 0.1.0
 * @category schemas
 */
export const NoiseHandshakePayloadFromBytes: Schema.Schema<NoiseHandshakePayload, Uint8Array> = Wire.fromBytes(
  NoiseHandshakePayload,
  decodeEither,
  encode
)
