/**
 * Outbound pipeline benchmarks: one encrypted direct request (a 1 KiB application body) through broadcast, encrypt
 * and serialize on a two-node `MemoryNetwork`, until the transport has written it (`outbound.encrypted-direct`),
 * against the crypto that request cannot avoid — ECDH + KDF, sealing the padded body, signing, sealing the
 * signature — done alone in the same run (`outbound.crypto-only`). The ratio is the share of a request's cost that
 * is crypto. Both use the node backend (`@comms-dht/node/Crypto`); the `noble` pair repeats them on the portable
 * backend.
 */
import * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import * as NodeCrypto from "@comms-dht/node/Crypto"
import * as OutboundPipeline from "@comms-dht/outbound/OutboundPipeline"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import type { Task } from "./main.js"

const BODY_BYTES = 1024

const identity = (crypto: Crypto.CryptoService) =>
  Effect.map(crypto.generateSecretKey, (secretKey) =>
    NodeIdentity.make({
      secretKey,
      publicKey: crypto.publicKeyOf(secretKey),
      features: Peer.PeerFeatures.COMMUNICATION_NODE
    }))

const endpoint = (id: NodeIdentity.Identity) =>
  MemoryNetwork.layer().pipe(
    Layer.provideMerge(Layer.mergeAll(PeerManager.layerMemory, NodeIdentity.layer(id))),
    Layer.orDie
  )

/** Two connected nodes; the receiver drains its inbox. Returns one request, run to the written state. */
const twoNodes = (crypto: Crypto.CryptoService) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const cryptoLayer = Layer.succeed(Crypto.Crypto, crypto)
    const hub = yield* Layer.buildWithScope(MemoryNetwork.layerHub(), scope)
    const shared = Layer.merge(Layer.succeedContext(hub), cryptoLayer)
    const sender = yield* identity(crypto)
    const receiver = yield* identity(crypto)
    const receiving = yield* Layer.buildWithScope(Layer.provide(endpoint(receiver), shared), scope)
    yield* Effect.flatMap(Transport.Transport, (t) => Effect.forever(Queue.take(t.inbound))).pipe(
      Effect.provide(receiving),
      Effect.forkIn(scope)
    )
    const sending = yield* Layer.buildWithScope(
      OutboundPipeline.layer().pipe(
        Layer.provideMerge(Layer.mergeAll(endpoint(sender), DedupCache.layerMemory)),
        Layer.provideMerge(shared)
      ),
      scope
    )
    yield* Effect.gen(function*() {
      yield* Effect.orDie((yield* PeerManager.PeerManager).add(Peer.make({
        publicKey: receiver.publicKey,
        addresses: [`mem://${NodeId.toHex(receiver.nodeId)}`],
        features: receiver.features,
        source: "Config",
        nowMs: 0
      })))
      yield* Effect.orDie((yield* Transport.Transport).dial(receiver.nodeId))
    }).pipe(Effect.provide(sending))
    const payload = new Uint8Array(BODY_BYTES).fill(7)
    const request = OutboundRequester.sendDirectEncrypted(receiver.publicKey, 1, payload).pipe(
      Effect.flatMap(OutboundRequester.resolve),
      Effect.flatMap((states) => states.waitSingle),
      Effect.flatMap((written) => written ? Effect.void : Effect.dieMessage("a benchmark request was not written")),
      Effect.provide(sending)
    )
    return { sender, receiver, request }
  })

const pair = async (prefix: string, make: () => Effect.Effect<Crypto.CryptoService>): Promise<Array<Task>> => {
  const crypto = await Effect.runPromise(make())
  const { receiver, request, sender } = await Effect.runPromise(twoNodes(crypto))
  // the same request's crypto, alone: the plaintext the pipeline encrypts, the fields it signs
  const plaintext = Envelope.encodeEnvelopeBody(
    await Effect.runPromise(OutboundRequester.applicationBody(1, new Uint8Array(BODY_BYTES).fill(7)))
  )
  const fields: MessageCrypto.EncryptFields = {
    version: 1,
    destination: Envelope.destinationPublicKey(receiver.publicKey),
    messageType: Envelope.DhtMessageType.None,
    flags: Envelope.DhtMessageFlags.NONE,
    expires: 1_735_700_400n
  }
  const cryptoOnly = Effect.provideService(
    MessageCrypto.encrypt(sender, receiver.publicKey, fields, plaintext),
    Crypto.Crypto,
    crypto
  )
  let sink = 0
  return [
    { name: `${prefix}crypto-only`, fn: () => void (sink ^= Effect.runSync(cryptoOnly).body.length) },
    {
      name: `${prefix}encrypted-direct`,
      fn: () => Effect.runPromise(request),
      bound: `${prefix}crypto-only`
    }
  ]
}

/** `outbound.*` (node backend) and `outbound.noble.*`. */
export const outboundBenches = async (): Promise<ReadonlyArray<Task>> => [
  ...(await pair("outbound.", () => NodeCrypto.makeNode())),
  ...(await pair("outbound.noble.", () => Crypto.makeNoble()))
]
