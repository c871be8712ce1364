/**
 * The peer sync messages of `peer_sync.proto` (SPEC §3.5, §12.4), carried as DHT messages of types
 * `PeerSyncRequest` and `PeerSyncResponse`.
 *
 * A response relays third parties' claims, and §12.4 judges them one `PeerInfo` at a time: a `PeerInfo` without
 * key or claims bans the relayer (`EmptyPeerMessageReceived`), while a key that fails the key check, a bad
 * signature or an unusable address only skips that `PeerInfo`. So decoding keeps relayed keys, signatures and
 * addresses as the bytes received, whatever their length or encoding; `PeerInfo.publicKeyChecked` and
 * `toPeerClaim` do the per-entry checks.
 *
 * @since 0.1.0
 */
import { create, toBinary } from "@bufbuild/protobuf"
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { InvalidMessageBody } from "./DhtError.js"
import * as Ed25519 from "./Ed25519.js"
import * as EnvelopeWriter from "./internal/envelopeWriter.js"
import { byteKey } from "./internal/hexKey.js"
import * as Lru from "./internal/lru.js"
import * as Pb from "./internal/proto/peer_sync_pb.js"
import * as Wire from "./internal/wire.js"
import type * as NodeId from "./NodeId.js"
import { type IdentitySignature, PeerClaim } from "./Peer.js"

// --- request ---

/**
 * `GetPeersRequest` (SPEC §12.4). `n` 0 means the responder's default (100).
 *
 * @since 0.1.0
 * @category models
 */
export class GetPeersRequest extends Schema.Class<GetPeersRequest>("@comms-dht/core/GetPeersRequest")({
  n: Wire.Uint32,
  includeClients: Schema.Boolean,
  maxClaims: Wire.Uint32,
  maxAddressesPerClaim: Wire.Uint32,
  requestId: Wire.Uint32
}) {}

const decodeRequestEither = (bytes: Uint8Array): Either.Either<GetPeersRequest, InvalidMessageBody> =>
  Either.map(
    Either.mapLeft(Wire.parse(Pb.GetPeersRequestSchema, bytes), (reason) => new InvalidMessageBody({ reason })),
    (m) =>
      new GetPeersRequest({
        n: m.n,
        includeClients: m.includeClients,
        maxClaims: m.maxClaims,
        maxAddressesPerClaim: m.maxAddressesPerClaim,
        requestId: m.requestId
      }, true)
  )

/**
 * @since 0.1.0
 * @category decoding
 */
export const decodeGetPeersRequest = (bytes: Uint8Array): Effect.Effect<GetPeersRequest, InvalidMessageBody> =>
  decodeRequestEither(bytes)

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodeGetPeersRequest = (request: GetPeersRequest): Uint8Array =>
  toBinary(
    Pb.GetPeersRequestSchema,
    create(Pb.GetPeersRequestSchema, {
      n: request.n,
      includeClients: request.includeClients,
      maxClaims: request.maxClaims,
      maxAddressesPerClaim: request.maxAddressesPerClaim,
      requestId: request.requestId
    })
  )

/**
 * @since 0.1.0
 * @category schemas
 */
export const GetPeersRequestFromBytes: Schema.Schema<GetPeersRequest, Uint8Array> = Wire.fromBytes(
  GetPeersRequest,
  decodeRequestEither,
  encodeGetPeersRequest
)

// --- response ---

/**
 * A relayed claim, unverified: addresses as the bytes that were signed, the signature of whatever length it came
 * with, possibly absent.
 *
 * @since 0.1.0
 * @category models
 */
export class PeerIdentityClaim extends Schema.Class<PeerIdentityClaim>("@comms-dht/core/PeerIdentityClaim")({
  addresses: Schema.Array(Schema.Uint8ArrayFromSelf),
  peerFeatures: Wire.Uint32,
  identitySignature: Schema.OptionFromSelf(Wire.identitySignature())
}) {}

/**
 * A relayed claim as a `PeerClaim`, if it has a 64-byte signature and every address is UTF-8; otherwise it can
 * never verify and the `PeerInfo` is skipped (§12.4, no ban).
 *
 * @since 0.1.0
 * @category utils
 */
export const toPeerClaim = (claim: PeerIdentityClaim): Option.Option<PeerClaim> =>
  Option.flatMap(claim.identitySignature, (identitySignature: IdentitySignature) => {
    if (identitySignature.signature.length !== 64) return Option.none()
    return Option.map(
      Option.getRight(Wire.decodeAddresses(claim.addresses)),
      (addresses) => new PeerClaim({ addresses, features: claim.peerFeatures, identitySignature }, true)
    )
  })

/**
 * A relayed peer: its key as received (possibly empty or malformed) and its claims.
 *
 * @since 0.1.0
 * @category models
 */
export class PeerInfo extends Schema.Class<PeerInfo>("@comms-dht/core/PeerInfo")({
  publicKey: Schema.Uint8ArrayFromSelf,
  claims: Schema.Array(PeerIdentityClaim)
}) {
  /**
   * No key or no claims: `EmptyPeerMessageReceived` (§12.4).
   *
   * @since 0.1.0
   */
  get isEmpty(): boolean {
    return this.publicKey.length === 0 || this.claims.length === 0
  }

  /**
   * The key, if it passes the key check (§4.3).
   *
   * @since 0.1.0
   */
  get publicKeyChecked(): Option.Option<NodeId.PublicKey> {
    const key = this.publicKey
    return Ed25519.checkPublicKeyMemo(key) ? Option.some(key) : Option.none()
  }
}

/**
 * `PeerSyncResponse` (ours, SPEC §12.4): one batch of peers per request.
 *
 * @since 0.1.0
 * @category models
 */
export class PeerSyncResponse extends Schema.Class<PeerSyncResponse>("@comms-dht/core/PeerSyncResponse")({
  peers: Schema.Array(PeerInfo),
  requestId: Wire.Uint32
}) {}

const claimFromProto = (c: Pb.PeerIdentityClaim): PeerIdentityClaim =>
  new PeerIdentityClaim({
    addresses: c.addresses.map(Wire.copy),
    peerFeatures: c.peerFeatures,
    identitySignature: c.identitySignature === undefined
      ? Option.none()
      : Option.some(Wire.identitySignatureFromProto(c.identitySignature))
  }, true)

const decodeResponseEither = (bytes: Uint8Array): Either.Either<PeerSyncResponse, InvalidMessageBody> =>
  Either.map(
    Either.mapLeft(Wire.parse(Pb.PeerSyncResponseSchema, bytes), (reason) => new InvalidMessageBody({ reason })),
    (m) =>
      new PeerSyncResponse({
        peers: m.peers.map(infoFromProto),
        requestId: m.requestId
      }, true)
  )

const infoFromProto = (p: Pb.PeerInfo): PeerInfo =>
  new PeerInfo({ publicKey: Wire.copy(p.publicKey), claims: p.claims.map(claimFromProto) }, true)

// Decoded `PeerInfo`s by their bytes. Every node relays a peer it holds with the same bytes (its key and its signed
// claims), so across a network a few thousand distinct entries make up millions of relayed ones. Process-wide like
// the key-check memo; the values are immutable.
const infoMemo = Lru.make<PeerInfo>(50_000)

/**
 * A response in its plain shape — only `peers` entries (field 1, length-delimited) and `request_id` (field 2,
 * varint) — decoded entry by entry through the memo; undefined for any other shape, which the full decoder then
 * reads, so both paths give the same result or the same error for the same bytes.
 */
const decodePlainResponse = (bytes: Uint8Array): PeerSyncResponse | undefined => {
  try {
    const reader = new BinaryReader(bytes)
    const peers: Array<PeerInfo> = []
    let requestId = 0
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag()
      if (field === 1 && wireType === WireType.LengthDelimited) {
        const slice = reader.bytes()
        const key = byteKey(slice)
        let info = infoMemo.get(key)
        if (info === undefined) {
          const parsed = Wire.parse(Pb.PeerInfoSchema, slice)
          if (Either.isLeft(parsed)) return undefined
          info = infoFromProto(parsed.right)
          infoMemo.set(key, info)
        }
        peers.push(info)
      } else if (field === 2 && wireType === WireType.Varint) {
        requestId = reader.uint32()
      } else return undefined
    }
    return new PeerSyncResponse({ peers, requestId }, true)
  } catch {
    return undefined
  }
}

/**
 * Bytes → response; only bytes that are not a `PeerSyncResponse` fail (`InvalidMessageBody`).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodePeerSyncResponse = (bytes: Uint8Array): Effect.Effect<PeerSyncResponse, InvalidMessageBody> =>
  Effect.suspend(() => {
    const plain = decodePlainResponse(bytes)
    return plain === undefined ? decodeResponseEither(bytes) : Effect.succeed(plain)
  })

const claimToProto = (c: PeerIdentityClaim): Pb.PeerIdentityClaim =>
  create(Pb.PeerIdentityClaimSchema, {
    addresses: [...c.addresses],
    peerFeatures: c.peerFeatures,
    ...(Option.isSome(c.identitySignature)
      ? { identitySignature: Wire.identitySignatureToProto(c.identitySignature.value) }
      : {})
  })

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodePeerSyncResponse = (response: PeerSyncResponse): Uint8Array =>
  toBinary(
    Pb.PeerSyncResponseSchema,
    create(Pb.PeerSyncResponseSchema, {
      peers: response.peers.map((p) =>
        create(Pb.PeerInfoSchema, { publicKey: p.publicKey, claims: p.claims.map(claimToProto) })
      ),
      requestId: response.requestId
    })
  )

/**
 * One `PeerInfo` as it appears inside a `PeerSyncResponse`: a responder encodes a stored peer once and reuses the
 * bytes for every request it answers with that peer (`encodePeerSyncResponseBodyOf`, `encodePeerSyncResponseOf`).
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodePeerInfo = (info: PeerInfo): Uint8Array =>
  toBinary(Pb.PeerInfoSchema, create(Pb.PeerInfoSchema, { publicKey: info.publicKey, claims: info.claims.map(claimToProto) }))

/**
 * The bytes `encodePeerSyncResponse` gives for a response of these peers (each already `encodePeerInfo`d) and this
 * request id: field 1 once per peer, then field 2 unless it is 0, as protobuf-es writes them.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodePeerSyncResponseOf = (peers: ReadonlyArray<Uint8Array>, requestId: number): Uint8Array =>
  EnvelopeWriter.encodePieces(responsePieces(peers, requestId))

/**
 * The bytes of `EnvelopeBody{parts: [encodePeerSyncResponseOf(peers, requestId)]}`, the body a response is sent
 * in, written in one allocation rather than the response and then a copy of it in its body.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodePeerSyncResponseBodyOf = (peers: ReadonlyArray<Uint8Array>, requestId: number): Uint8Array =>
  EnvelopeWriter.encodeEnvelopeBodyOfPieces(responsePieces(peers, requestId))

// `PeerSyncResponse`: `peers` is field 1, `request_id` field 2
const responsePieces = (peers: ReadonlyArray<Uint8Array>, requestId: number): EnvelopeWriter.Pieces => ({
  field: 1,
  pieces: peers,
  last: 2,
  lastValue: requestId
})

/**
 * A stored claim as it is relayed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromPeerClaim = (claim: PeerClaim): PeerIdentityClaim =>
  new PeerIdentityClaim({
    addresses: Wire.encodeAddresses(claim.addresses),
    peerFeatures: claim.features,
    identitySignature: Option.some(claim.identitySignature)
  })

/**
 * @since 0.1.0
 * @category schemas
 */
export const PeerSyncResponseFromBytes: Schema.Schema<PeerSyncResponse, Uint8Array> = Wire.fromBytes(
  PeerSyncResponse,
  decodeResponseEither,
  encodePeerSyncResponse
)
