/** What the pipeline benchmarks share: fresh identities and the peer records that point at them. */
import type * as Crypto from "@comms-dht/core/Crypto"
import * as Envelope from "@comms-dht/core/Envelope"
import type * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as Peer from "@comms-dht/core/Peer"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

/** a communication node with a fresh key from `crypto` */
export const identity = (crypto: Crypto.CryptoService) =>
  Effect.map(crypto.generateSecretKey, (secretKey) =>
    NodeIdentity.make({
      secretKey,
      publicKey: crypto.publicKeyOf(secretKey),
      features: Peer.PeerFeatures.COMMUNICATION_NODE
    }))

/** `id` as a configured peer at its `mem://` address */
export const peerOf = (id: NodeIdentity.Identity) =>
  Peer.make({
    publicKey: id.publicKey,
    addresses: [`mem://${NodeId.toHex(id.nodeId)}`],
    features: id.features,
    source: "Config",
    nowMs: 0
  })

/** The envelope the outbound pipeline sends for `sealed`: its header (tag `messageTag`, hop 0) and its bytes. */
export const sealedEnvelope = (
  fields: MessageCrypto.EncryptFields,
  sealed: MessageCrypto.Encrypted,
  messageTag: bigint
) => {
  const header = new Envelope.DhtMessageHeader({
    ...fields,
    messageType: Envelope.DhtMessageType.None,
    flags: sealed.flags,
    messageSignature: sealed.messageSignature,
    ephemeralPublicKey: Option.some(sealed.ephemeralPublicKey),
    messageTag,
    hopCount: 0
  }, true)
  return {
    header,
    body: sealed.body,
    bytes: Envelope.encodeEnvelope(new Envelope.DhtEnvelope({ header, body: sealed.body }, true))
  }
}
