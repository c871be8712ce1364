/**
 * `Dht`: the composition root's service (ARCHITECTURE.md "Public surface", SPEC §5). It is what an application holds:
 * send with any strategy, the decrypted inbound stream, discovery, join and events. `Dht.layer(config)` builds both
 * pipelines, the actor and the node's services from the Transport, PeerManager, Crypto and storage Layers it is given.
 *
 * @since 0.1.0
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import type * as Crypto from "@comms-dht/core/Crypto"
import type * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtActor from "@comms-dht/core/DhtActor"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import type * as DhtError from "@comms-dht/core/DhtError"
import type * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as DhtMessages from "@comms-dht/core/DhtMessages"
import type * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as CoreDiscovery from "@comms-dht/core/Discovery"
import * as Envelope from "@comms-dht/core/Envelope"
import type * as InboundMessages from "@comms-dht/core/InboundMessages"
import type * as MessageStore from "@comms-dht/core/MessageStore"
import type * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import type * as Peer from "@comms-dht/core/Peer"
import type * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import * as DhtHandler from "@comms-dht/inbound/DhtHandler"
import * as InboundPipeline from "@comms-dht/inbound/InboundPipeline"
import * as OutboundPipeline from "@comms-dht/outbound/OutboundPipeline"
import * as StoreAndForward from "@comms-dht/store/StoreAndForward"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Queue from "effect/Queue"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Connectivity from "./Connectivity.js"
import * as Discovery from "./Discovery.js"
import * as NetworkDiscovery from "./NetworkDiscovery.js"
import * as PeerSync from "./PeerSync.js"
import * as Reliable from "./Reliable.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface DhtService {
  readonly identity: NodeIdentity.Identity
  /** Queues a request (suspending while the outbound queue is full), waits through discovery, returns send states. */
  readonly send: (
    params: OutboundRequester.SendMessageParams,
    body: OutboundRequester.OutboundBody
  ) => Effect.Effect<OutboundRequester.MessageSendStates, DhtError.SendFailure>
  /** The live requester, for the §6.6 helpers (`OutboundRequester.sendDirectEncrypted`, `propagate`, …). */
  readonly requester: OutboundRequester.OutboundRequesterService
  /** Decrypted application messages, from the moment of subscription. */
  readonly inbound: Stream.Stream<InboundMessages.DomainMessage>
  /** DHT events, from the moment of subscription (sliding: a slow subscriber loses the oldest). */
  readonly events: Stream.Stream<DhtEvent.DhtEvent>
  /**
   * `inbound` as a queue of its own for as long as the scope, for a consumer that takes in a loop: a stream's pull
   * costs about 34 more steps of Effect's run loop a message than a take (the simulation reads its 100,000
   * deliveries this way).
   */
  readonly subscribeInbound: Effect.Effect<Queue.Dequeue<InboundMessages.DomainMessage>, never, Scope.Scope>
  /** `events` as a queue of its own for as long as the scope, as `subscribeInbound`. */
  readonly subscribeEvents: Effect.Effect<Queue.Dequeue<DhtEvent.DhtEvent>, never, Scope.Scope>
  readonly discover: (publicKey: NodeId.PublicKey) => Effect.Effect<Peer.Peer, DhtError.DiscoveryError>
  /** Sends a Join now (SPEC §10.1). */
  readonly join: Effect.Effect<void>
  readonly dialOrDiscover: (
    publicKey: NodeId.PublicKey
  ) => Effect.Effect<void, DhtError.DialError | DhtError.DiscoveryError | DhtError.DhtShutdown>
  readonly banPeer: (
    publicKey: NodeId.PublicKey,
    severity: PeerManager.Severity,
    reason: string
  ) => Effect.Effect<void, DhtError.DhtShutdown>
  /**
   * Asks this node's closest store-and-forward peers for the messages they hold for it (SPEC §9.3); returns how
   * many requests went out. The node does this by itself each time it comes online when `saf.autoRequest` is set.
   */
  readonly requestStoredMessages: Effect.Effect<number, DhtError.StoreError>
  /**
   * Sends an application message encrypted for `request.destination` and asks for a receipt; the `Delivery` follows
   * it to `Delivered` or `Expired`, retrying over other strategies on `policy` (default `Reliable.defaultPolicy`)
   * and leaving it to store-and-forward after that (ours, docs/spec-departures.md §2).
   */
  readonly sendReliable: (
    request: Reliable.ReliableRequest,
    policy?: Schedule.Schedule<unknown>
  ) => Effect.Effect<Reliable.Delivery, DhtError.SendFailure>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Dht extends Context.Tag("@comms-dht/node/Dht")<Dht, DhtService>() {}

/**
 * What `Dht.layer` takes from the Layer graph: the transport, the peer table, the crypto backend, this node's
 * identity and the three storage services (`SqliteStore.layer`, or core's memory layers).
 *
 * @since 0.1.0
 * @category models
 */
export type Requirements =
  | Transport.Transport
  | PeerManager.PeerManager
  | Crypto.Crypto
  | NodeIdentity.NodeIdentity
  | DedupCache.DedupCache
  | MessageStore.MessageStore
  | DhtMetadata.DhtMetadata

// SPEC §10.1: our signed claim toward the nodes closest to us, cleartext and signed so receivers can re-propagate it
const joinSender = Layer.effect(
  DhtActor.JoinSender,
  Effect.gen(function*() {
    const context = yield* Effect.context<
      NodeIdentity.NodeIdentity | Transport.Transport | Crypto.Crypto | OutboundRequester.OutboundRequester
    >()
    const sendJoin = Effect.gen(function*() {
      const identity = yield* NodeIdentity.NodeIdentity
      const claim = yield* DhtHandler.ownClaim
      const join = new DhtMessages.JoinMessage({
        publicKey: identity.publicKey,
        addresses: claim.addresses,
        peerFeatures: claim.features,
        nonce: yield* OutboundRequester.randomU64,
        identitySignature: claim.identitySignature
      })
      const requester = yield* OutboundRequester.OutboundRequester
      yield* requester.send(
        OutboundRequester.makeParams({
          strategy: BroadcastStrategy.ClosestNodes({ id: identity.nodeId, excluded: [], connectedOnly: false }),
          destination: Envelope.destinationPublicKey(identity.publicKey),
          messageType: Envelope.DhtMessageType.Join,
          forceOrigin: true
        }),
        new Envelope.EnvelopeBody({ parts: [DhtMessages.encodeJoin(join)] })
      )
    }).pipe(Effect.provide(context))
    return { sendJoin }
  })
)

// SPEC §9.3: the online trigger, run by connectivity each time the node comes online
const safHooks = (config: DhtConfig.Config) =>
  Layer.effect(
    Connectivity.ConnectivityHooks,
    Effect.map(StoreAndForward.StoreAndForward, (saf) => ({
      onOnline: config.saf.autoRequest
        ? Effect.catchAll(
          Effect.asVoid(saf.requestStoredMessages),
          (error) => Effect.logWarning("store-and-forward request failed", error)
        )
        : Effect.void
    }))
  )

// SPEC §9.3: the new-connection trigger
const safOnConnection = (config: DhtConfig.Config) =>
  config.saf.autoRequest
    ? Layer.scopedDiscard(Effect.gen(function*() {
      const saf = yield* StoreAndForward.StoreAndForward
      const transport = yield* Transport.Transport
      yield* Transport.forEachEvent(transport, (event) =>
        event._tag === "PeerConnected"
          ? Effect.catchAll(saf.peerConnected(event.peer), (error) =>
            Effect.logWarning("store-and-forward request failed", error))
          : Effect.void
      )
    }))
    : Layer.empty

/**
 * The whole node as one Layer: configuration, events, the actor, both pipelines, discovery, peer sync,
 * store-and-forward, connectivity and network discovery, every fiber scoped to the Layer. Closing the scope stops
 * them all and fails waiting callers with `DhtShutdown`.
 *
 * `config` reaches what this Layer builds. The transport and the storage are built beside it, and read their bounds
 * (frame limit, flood rule, peer-table and SAF limits) from the `DhtConfig` reference too: give them the same config
 * with `Layer.provide(DhtConfig.layer(config))` over the whole node, as `examples/quickstart.ts` does, or they keep
 * the defaults.
 *
 * Discovery sends through the outbound pipeline, and the pipeline discovers unknown destinations (SPEC §6.1
 * step 3): the pipeline gets a function that waits for the discovery service, which is built on top of it.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (config: DhtConfig.Config): Layer.Layer<Dht, never, Requirements> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const discovery = yield* Deferred.make<CoreDiscovery.DiscoveryService>()
    const discover: OutboundPipeline.Discover = (publicKey) =>
      Effect.flatMap(Deferred.await(discovery), (service) => service.discover(publicKey))

    const base = Layer.mergeAll(DhtEvents.layer)
    const outbound = OutboundPipeline.layer({ discover }).pipe(Layer.provideMerge(base))
    const discoveryLayer = Layer.effectContext(Effect.gen(function*() {
      const service = yield* CoreDiscovery.Discovery
      yield* Deferred.succeed(discovery, service)
      return Context.make(CoreDiscovery.Discovery, service)
    })).pipe(Layer.provide(Discovery.layer), Layer.provideMerge(outbound))
    const actor = DhtActor.layer.pipe(Layer.provide(joinSender), Layer.provideMerge(discoveryLayer))
    const peerSync = PeerSync.layer.pipe(Layer.provideMerge(actor))
    const saf = StoreAndForward.layer.pipe(Layer.provideMerge(peerSync))
    const reliable = Reliable.layer.pipe(Layer.provideMerge(saf))
    const inbound = Layer.unwrapEffect(
      Effect.map(
        Effect.all([PeerSync.PeerSync, Reliable.Reliable]),
        ([sync, receipts]) => InboundPipeline.layer({ peerSync: sync.handle, receipts: receipts.receipts })
      )
    ).pipe(Layer.provideMerge(reliable))
    const services = Layer.mergeAll(
      Connectivity.layer.pipe(Layer.provide(safHooks(config))),
      NetworkDiscovery.layer,
      safOnConnection(config)
    ).pipe(Layer.provideMerge(inbound))

    const dht = Layer.effect(
      Dht,
      Effect.gen(function*() {
        const identity = yield* NodeIdentity.NodeIdentity
        const requester = yield* OutboundRequester.OutboundRequester
        const inboundService = yield* InboundPipeline.Inbound
        const events = yield* DhtEvents.DhtEvents
        const actorService = yield* DhtActor.DhtActor
        const discoveryService = yield* CoreDiscovery.Discovery
        const safService = yield* StoreAndForward.StoreAndForward
        const reliableService = yield* Reliable.Reliable
        return Dht.of({
          identity,
          requester,
          send: (params, body) => Effect.flatMap(requester.send(params, body), OutboundRequester.resolve),
          inbound: inboundService.messages,
          events: events.events,
          subscribeInbound: inboundService.subscribe,
          subscribeEvents: events.subscribe,
          discover: discoveryService.discover,
          join: Effect.ignore(actorService.sendJoin),
          dialOrDiscover: actorService.dialDiscoverPeer,
          banPeer: actorService.banPeer,
          requestStoredMessages: safService.requestStoredMessages,
          sendReliable: reliableService.sendReliable
        })
      })
    )
    return dht.pipe(Layer.provide(services), Layer.provide(DhtConfig.layer(config)))
  }))
