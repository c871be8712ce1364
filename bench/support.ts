/** What the pipeline benchmarks share: fresh identities and the peer records that point at them. */
import type * as Crypto from "@comms-dht/core/Crypto"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as Peer from "@comms-dht/core/Peer"
import * as Effect from "effect/Effect"

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
