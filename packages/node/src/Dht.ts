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
import * as SafStage from "@comms-dht/core/SafStage"
import * as DhtHandler from "@comms-dht/inbound/DhtHandler"
import * as GossipBudget from "@comms-dht/inbound/GossipBudget"
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
  /**
   * Calls `f` with every DHT event from now until the scope closes, in the step that publishes it: no queue, and no
   * fiber woken for each event, for a reaction that is one synchronous step (counting, setting a flag). `f` must not
   * throw or wait; for anything more, `events` or `subscribeEvents`.
   */
  readonly listenEvents: (f: (event: DhtEvent.DhtEvent) => void) => Effect.Effect<void, never, Scope.Scope>
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
const makeJoinSender = Effect.gen(function*() {
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

// SPEC §9.3: the online trigger, run by connectivity each time the node comes online
const safHooks = (config: DhtConfig.Config, saf: StoreAndForward.StoreAndForwardService) => ({
  onOnline: config.saf.autoRequest
    ? Effect.catchAll(
      Effect.asVoid(saf.requestStoredMessages),
      (error) => Effect.logWarning("store-and-forward request failed", error)
    )
    : Effect.void
})

// SPEC §9.3: the new-connection trigger
const safOnConnection = (
  config: DhtConfig.Config,
  saf: StoreAndForward.StoreAndForwardService,
  transport: Transport.TransportService
): Effect.Effect<void, never, Scope.Scope> =>
  config.saf.autoRequest
    ? Transport.onEvent(transport, (event) => {
      if (event._tag === "PeerConnected") saf.unsafePeerConnected(event.peer)
    })
    : Effect.void

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
  Layer.scoped(Dht, Effect.provideService(make(config), DhtConfig.DhtConfig, config))

// The node's services, each made on the context of the ones before it (the order of the Layer graph this replaces),
// their finalizers in one scope, released in the reverse order. As a graph of one `Layer.scoped` per service the
// same build cost a node about 8,000 steps of Effect's run loop (16 layers chained with `provideMerge`, ~8,700 in a
// microbenchmark; the same services made in one effect, ~140), and a simulated node is built again each time it
// comes back online.
const make = (config: DhtConfig.Config) =>
  Effect.gen(function*() {
    // Discovery sends through the outbound pipeline, and the pipeline discovers unknown destinations (SPEC §6.1
    // step 3): the pipeline gets a function that waits for the discovery service, made after it.
    const discovery = yield* Deferred.make<CoreDiscovery.DiscoveryService>()
    const discover: OutboundPipeline.Discover = (publicKey) =>
      Effect.flatMap(Deferred.await(discovery), (service) => service.discover(publicKey))

    const given = yield* Effect.context<Requirements>()
    const events = yield* DhtEvents.make()
    const withEvents = Context.add(given, DhtEvents.DhtEvents, events)
    const requester = yield* Effect.provide(OutboundPipeline.make({ discover }), withEvents)
    const withRequester = Context.add(withEvents, OutboundRequester.OutboundRequester, requester)
    const discoveryService = yield* Effect.provide(Discovery.make, withRequester)
    yield* Deferred.succeed(discovery, discoveryService)
    const withDiscovery = Context.add(withRequester, CoreDiscovery.Discovery, discoveryService)
    const joinSender = yield* Effect.provide(makeJoinSender, withDiscovery)
    const actor = yield* Effect.provide(DhtActor.make, Context.add(withDiscovery, DhtActor.JoinSender, joinSender))
    const withActor = Context.add(withDiscovery, DhtActor.DhtActor, actor)
    const peerSync = yield* Effect.provide(PeerSync.make, withActor)
    const withPeerSync = Context.add(withActor, PeerSync.PeerSync, peerSync)
    const saf = yield* Effect.provide(StoreAndForward.make, withPeerSync)
    const withSaf = withPeerSync.pipe(
      Context.add(StoreAndForward.StoreAndForward, saf),
      Context.add(SafStage.SafStage, saf.stage)
    )
    const reliable = yield* Effect.provide(Reliable.make, withSaf)
    const withReliable = Context.add(withSaf, Reliable.Reliable, reliable)
    const inbound = yield* Effect.provide(
      InboundPipeline.make({ peerSync: peerSync.handle, receipts: reliable.receipts }),
      Context.add(withReliable, GossipBudget.GossipBudget, yield* GossipBudget.make)
    )
    const withInbound = Context.add(withReliable, InboundPipeline.Inbound, inbound)
    yield* Effect.provide(
      Connectivity.make,
      Context.add(withInbound, Connectivity.ConnectivityHooks, safHooks(config, saf))
    )
    yield* Effect.provide(NetworkDiscovery.make, withInbound)
    yield* safOnConnection(config, saf, Context.get(given, Transport.Transport))

    return Dht.of({
      identity: Context.get(given, NodeIdentity.NodeIdentity),
      requester,
      send: (params, body) => Effect.flatMap(requester.send(params, body), OutboundRequester.resolve),
      inbound: inbound.messages,
      events: events.events,
      subscribeInbound: inbound.subscribe,
      subscribeEvents: events.subscribe,
      listenEvents: (f) => DhtEvents.onEvent(events, f),
      discover: discoveryService.discover,
      join: Effect.ignore(actor.sendJoin),
      dialOrDiscover: actor.dialDiscoverPeer,
      banPeer: actor.banPeer,
      requestStoredMessages: saf.requestStoredMessages,
      sendReliable: reliable.sendReliable
    })
  })
