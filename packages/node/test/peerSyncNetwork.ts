/**
 * Memory networks for the peer-sync and network-discovery tests: full nodes (transport, peer table, actor, both
 * pipelines, `PeerSync` plugged into the inbound pipeline, optionally `NetworkDiscovery`), raw peers that only hold a
 * transport endpoint and write crafted frames, and helpers to build signed peer records and read what arrived.
 */
import * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtActor from "@comms-dht/core/DhtActor"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import type * as DhtError from "@comms-dht/core/DhtError"
import type * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as PeerSyncMessages from "@comms-dht/core/PeerSyncMessages"
import * as PeerValidator from "@comms-dht/core/PeerValidator"
import * as Transport from "@comms-dht/core/Transport"
import type * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as InboundPipeline from "@comms-dht/inbound/InboundPipeline"
import * as OutboundPipeline from "@comms-dht/outbound/OutboundPipeline"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as NodeCrypto from "../src/Crypto.js"
import * as NetworkDiscovery from "../src/NetworkDiscovery.js"
import * as PeerSync from "../src/PeerSync.js"

export const { COMMUNICATION_CLIENT, COMMUNICATION_NODE } = Peer.PeerFeatures

/** `localTest` with network discovery switched on and test addresses refused (mem:// is not a test address). */
export const config = DhtConfig.unsafeMake({
  networkDiscovery: { enabled: true },
  peerValidator: { allowTestAddresses: false }
}, DhtConfig.localTest)

/** A deterministic identity: the seed is 32 bytes derived from `n`. */
export const identityOf = (n: number, features: number = COMMUNICATION_NODE) =>
  Effect.map(Crypto.Crypto, (crypto) => {
    const seed = new Uint8Array(32)
    new DataView(seed.buffer).setUint32(0, n + 1, true)
    seed[31] = 0x3c
    const secretKey = NodeId.SecretKey.make(seed)
    return NodeIdentity.make({ secretKey, publicKey: crypto.publicKeyOf(secretKey), features })
  })

export type Shared = MemoryNetwork.MemoryNetworkHub | Crypto.Crypto

export const shared: Layer.Layer<Shared> = Layer.mergeAll(MemoryNetwork.layerHub(), NodeCrypto.layerNode())

export type RawServices = Transport.Transport | PeerManager.PeerManager | NodeIdentity.NodeIdentity

export type SyncServices =
  | RawServices
  | DedupCache.DedupCache
  | OutboundRequester.OutboundRequester
  | DhtActor.DhtActor
  | DhtEvents.DhtEvents
  | PeerSync.PeerSync
  | InboundPipeline.Inbound

export type FullServices = SyncServices | NetworkDiscovery.NetworkDiscovery

export interface Node<S> {
  readonly identity: NodeIdentity.Identity
  readonly context: Context.Context<S>
  readonly scope: Scope.CloseableScope
  readonly run: <A, E>(effect: Effect.Effect<A, E, S>) => Effect.Effect<A, E>
}

export interface FullNode extends Node<FullServices> {
  /** DHT events published since the node started */
  readonly events: Queue.Dequeue<DhtEvent.DhtEvent>
}

const endpointLayer = (identity: NodeIdentity.Identity) =>
  MemoryNetwork.layer().pipe(
    Layer.provideMerge(Layer.mergeAll(PeerManager.layerMemory, NodeIdentity.layer(identity))),
    Layer.orDie
  )

const build = <S>(identity: NodeIdentity.Identity, layer: Layer.Layer<S, never, Shared>, cfg: DhtConfig.Config) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(Layer.provide(layer, DhtConfig.layer(cfg)), scope).pipe(
      Effect.provideService(DhtConfig.DhtConfig, cfg)
    )
    const run = <A, E>(effect: Effect.Effect<A, E, S>) =>
      effect.pipe(Effect.provide(context), Effect.provideService(DhtConfig.DhtConfig, cfg))
    const node: Node<S> = { identity, context, scope, run }
    return node
  })

/** The layers of a node running peer sync behind its inbound pipeline. */
export const syncLayer = (identity: NodeIdentity.Identity, stub?: PeerSync.PeerSyncService) => {
  const base = Layer.mergeAll(endpointLayer(identity), DedupCache.layerMemory, DhtEvents.layer)
  const actor = DhtActor.layer.pipe(Layer.provideMerge(base), Layer.provide(DhtMetadata.layerMemory))
  const outbound = OutboundPipeline.layer().pipe(Layer.provideMerge(actor))
  const peerSync = stub === undefined ? PeerSync.layer : Layer.succeed(PeerSync.PeerSync, stub)
  const sync = peerSync.pipe(Layer.provideMerge(outbound))
  const inbound = Layer.unwrapEffect(
    Effect.map(PeerSync.PeerSync, (service) => InboundPipeline.layer({ peerSync: service.handle }))
  )
  return inbound.pipe(Layer.provideMerge(sync))
}

export interface NodeOptions {
  readonly config?: DhtConfig.Config
  /** replaces the real `PeerSync` (the state-machine tests drive rounds through a stub) */
  readonly peerSync?: PeerSync.PeerSyncService
}

/** A full node; network discovery runs when `config.networkDiscovery.enabled`. */
export const startNode = (identity: NodeIdentity.Identity, options: NodeOptions = {}) =>
  Effect.gen(function*() {
    const cfg = options.config ?? config
    const layer = NetworkDiscovery.layer.pipe(Layer.provideMerge(syncLayer(identity, options.peerSync)))
    const node = yield* build<FullServices>(identity, layer, cfg)
    const events = yield* Scope.extend(yield* node.run(Effect.map(DhtEvents.DhtEvents, (e) => e.subscribe)), node.scope)
    const full: FullNode = { ...node, events }
    return full
  })

/** A node with only a transport endpoint: what it receives waits in its inbox, nothing is processed. */
export const startRaw = (identity: NodeIdentity.Identity, cfg: DhtConfig.Config = config) =>
  build<RawServices>(identity, endpointLayer(identity), cfg)

export const addressOf = (identity: NodeIdentity.Identity) => `mem://${NodeId.toHex(identity.nodeId)}`

/** A record of `identity` as a node that has never connected knows it. */
export const peerRecord = (identity: NodeIdentity.Identity) =>
  Peer.make({
    publicKey: identity.publicKey,
    addresses: [addressOf(identity)],
    features: identity.features,
    source: "Config",
    nowMs: 0
  })

/** `a` learns `b`'s address and dials it: both then know each other as connected, verified peers. */
export const connect = (a: Node<RawServices>, b: Node<RawServices>) =>
  a.run(Effect.gen(function*() {
    const table = yield* PeerManager.PeerManager
    yield* table.add(peerRecord(b.identity))
    yield* (yield* Transport.Transport).dial(b.identity.nodeId)
  })).pipe(Effect.orDie)

/** A claim signed by `identity` over `addresses`. */
export const claimOf = (
  identity: NodeIdentity.Identity,
  addresses: ReadonlyArray<string> = [addressOf(identity)],
  updatedAt?: bigint
) =>
  PeerValidator.signClaim({
    secretKey: identity.secretKey,
    publicKey: identity.publicKey,
    addresses,
    features: identity.features,
    ...(updatedAt === undefined ? {} : { updatedAt })
  })

/**
 * A record of `identity` holding `claims` (each address tagged with the claim it came from), as a node that has
 * connected to it (verified, seen at `lastSeen`) or only heard of it.
 */
export const claimedRecord = (
  identity: NodeIdentity.Identity,
  claims: ReadonlyArray<Peer.PeerClaim>,
  options: { readonly verified?: boolean; readonly lastSeen?: number } = {}
) => {
  const base = Peer.make({
    publicKey: identity.publicKey,
    addresses: [],
    features: identity.features,
    source: "Inbound",
    nowMs: 0
  })
  const claimed = PeerValidator.applyClaims(
    base,
    claims.map((claim) => ({ claim, addresses: claim.addresses })),
    { source: "Inbound", maxAddressesPerPeer: 100 }
  )
  const verified = options.verified ?? true
  return new Peer.Peer({
    ...claimed,
    ...(verified ? { verifiedAt: 0 } : {}),
    ...(options.lastSeen === undefined && !verified ? {} : { lastSeen: options.lastSeen ?? 0 })
  })
}

/** Adds `peers` to a node's table. */
export const addPeers = (node: Node<RawServices>, peers: ReadonlyArray<Peer.Peer>) =>
  node.run(Effect.flatMap(PeerManager.PeerManager, (table) => Effect.forEach(peers, (peer) => table.add(peer)))).pipe(
    Effect.orDie
  )

/** The peer record a node holds for `identity`, if any. */
export const recordOf = (node: Node<RawServices>, identity: NodeIdentity.Identity) =>
  node.run(Effect.flatMap(PeerManager.PeerManager, (peers) => Effect.option(peers.get(identity.nodeId))))

// --- crafted frames ---

/** An unsigned cleartext envelope of `messageType` carrying `part`, as a raw peer writes it. */
export const envelope = (messageType: Envelope.DhtMessageType, part: Uint8Array, tag: bigint) =>
  Effect.map(Clock.currentTimeMillis, (now) =>
    Envelope.encodeEnvelope(
      new Envelope.DhtEnvelope({
        header: new Envelope.DhtMessageHeader({
          version: 1,
          destination: Envelope.destinationUnknown(),
          messageSignature: new Uint8Array(0),
          ephemeralPublicKey: Option.none(),
          messageType,
          flags: Envelope.DhtMessageFlags.NONE,
          messageTag: tag,
          expires: BigInt(Math.floor(now / 1000)) + 3600n,
          hopCount: 0
        }),
        body: Envelope.encodeEnvelopeBody(new Envelope.EnvelopeBody({ parts: [part] }))
      })
    ))

/** Writes raw bytes from `from` to `to` (already connected), as a transport frame. */
export const sendRaw = (from: Node<RawServices>, to: NodeIdentity.Identity, bytes: Uint8Array) =>
  from.run(Effect.gen(function*() {
    const reply = yield* Deferred.make<void, DhtError.SendFailReason>()
    yield* (yield* Transport.Transport).send({ peer: to.nodeId, tag: 0n, bytes, reply })
    yield* Effect.orDie(Deferred.await(reply))
  }))

let tags = 1000n

/** A `GetPeersRequest` written by a raw peer. */
export const sendRequest = (
  from: Node<RawServices>,
  to: NodeIdentity.Identity,
  request: PeerSyncMessages.GetPeersRequest
) =>
  Effect.flatMap(
    envelope(Envelope.DhtMessageType.PeerSyncRequest, PeerSyncMessages.encodeGetPeersRequest(request), tags++),
    (bytes) => sendRaw(from, to, bytes)
  )

/** A `PeerSyncResponse` written by a raw peer. */
export const sendResponse = (
  from: Node<RawServices>,
  to: NodeIdentity.Identity,
  response: PeerSyncMessages.PeerSyncResponse
) =>
  Effect.flatMap(
    envelope(Envelope.DhtMessageType.PeerSyncResponse, PeerSyncMessages.encodePeerSyncResponse(response), tags++),
    (bytes) => sendRaw(from, to, bytes)
  )

/** The envelopes waiting in a raw node's inbox, decoded, with their first body part. */
export const receivedOf = (node: Node<RawServices>) =>
  node.run(Effect.gen(function*() {
    const transport = yield* Transport.Transport
    const frames = Chunk.toReadonlyArray(yield* Queue.takeAll(transport.inbound))
    return yield* Effect.forEach(frames, (frame) =>
      Effect.gen(function*() {
        const decoded = yield* Envelope.decodeEnvelope(frame.bytes)
        const body = yield* Envelope.decodeEnvelopeBody(decoded.body)
        return { header: decoded.header, part: body.parts[0] ?? new Uint8Array(0) }
      }))
  })).pipe(Effect.orDie)

/** Waits (yielding, bounded) for a raw node to receive a `GetPeersRequest`, and decodes it. */
export const nextRequest = (node: Node<RawServices>) =>
  eventuallySome(
    Effect.flatMap(receivedOf(node), (received) => {
      const found = received.find((m) => m.header.messageType === Envelope.DhtMessageType.PeerSyncRequest)
      return found === undefined
        ? Effect.succeedNone
        : Effect.asSome(Effect.orDie(PeerSyncMessages.decodeGetPeersRequest(found.part)))
    })
  )

/** Waits (yielding, bounded) for a raw node to receive a `PeerSyncResponse`, and decodes it. */
export const nextResponse = (node: Node<RawServices>) =>
  eventuallySome(
    Effect.flatMap(receivedOf(node), (received) => {
      const found = received.find((m) => m.header.messageType === Envelope.DhtMessageType.PeerSyncResponse)
      return found === undefined
        ? Effect.succeedNone
        : Effect.asSome(Effect.orDie(PeerSyncMessages.decodePeerSyncResponse(found.part)))
    })
  )

// --- waiting without sleeping ---

/** yields until `condition` holds (bounded, so a bug fails the test instead of hanging it) */
export const eventually = <E, R>(condition: Effect.Effect<boolean, E, R>) =>
  Effect.zipRight(Effect.yieldNow(), condition).pipe(
    Effect.repeat({ until: (ok) => ok, times: 20_000 }),
    Effect.flatMap((ok) => ok ? Effect.void : Effect.dieMessage("condition never held"))
  )

/** yields until `probe` gives a value (bounded) */
export const eventuallySome = <A, E, R>(probe: Effect.Effect<Option.Option<A>, E, R>) =>
  Effect.zipRight(Effect.yieldNow(), probe).pipe(
    Effect.repeat({ until: Option.isSome, times: 20_000 }),
    Effect.flatMap(Option.match({ onNone: () => Effect.dieMessage("nothing arrived"), onSome: Effect.succeed }))
  )

/** lets every runnable fiber run for a while: for asserting that something did not happen */
export const settle = Effect.repeatN(Effect.yieldNow(), 300)

/** Events a node has published so far, taken. */
export const eventsSoFar = (node: FullNode) => Effect.map(Queue.takeAll(node.events), Chunk.toReadonlyArray)
