/**
 * The DHT handler's messages (SPEC §7.7, §10): Join (§10.1: learn the joiner, re-propagate it once), Discovery at
 * its target (§10.2: learn the requester, answer with this node's signed claim) and DiscoveryResponse at the
 * requester (§10.3: the checks in their order, then hand the peer to the `Discovery` service). Each check fails with
 * the §14.1 tag that says whom to blame; the pipeline's `handle` turns it into the log line, metric and ban.
 *
 * Replies and re-propagation use the requester's dropping `offerForward` (§13.1): no inbound stage waits on the
 * outbound queue.
 *
 * @since 0.1.0
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import type * as Crypto from "@comms-dht/core/Crypto"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import * as DhtEvent from "@comms-dht/core/DhtEvent"
import type * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as DhtMessages from "@comms-dht/core/DhtMessages"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Discovery from "@comms-dht/core/Discovery"
import * as Envelope from "@comms-dht/core/Envelope"
import * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as PeerValidator from "@comms-dht/core/PeerValidator"
import * as Transport from "@comms-dht/core/Transport"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Actor from "./internal/actor.js"

/**
 * What the handlers read from the Layer graph (`Discovery` is optional: without it every response is unexpected).
 *
 * @since 0.1.0
 * @category models
 */
export type Requirements =
  | PeerManager.PeerManager
  | Crypto.Crypto
  | NodeIdentity.NodeIdentity
  | OutboundRequester.OutboundRequester
  | Transport.Transport
  | DhtEvents.DhtEvents

/**
 * What the handlers fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type HandlerError =
  | DhtError.OriginRequired
  | DhtError.InvalidMessageBody
  | DhtError.OriginMismatch
  | DhtError.PeerValidationError
  | DhtError.NewAndExistingMismatch
  | DhtError.UnexpectedDiscoveryResponse
  | DhtError.DiscoveryResponseRelayed
  | DhtError.DiscoveryKeyMismatch
  | DhtError.StoreError

/**
 * A message the decrypt stage opened: its body and origin.
 *
 * @since 0.1.0
 * @category models
 */
export interface Opened {
  readonly message: InboundMessages.DecryptedDhtMessage
  readonly body: Envelope.EnvelopeBody
  readonly origin: Option.Option<NodeId.PublicKey>
}

const forwardedJoin = DhtMetrics.tagged(DhtMetrics.forwarded, "rule", "join")

const requireOrigin = (opened: Opened): Effect.Effect<NodeId.PublicKey, DhtError.OriginRequired> =>
  Option.match(opened.origin, {
    onNone: () => Effect.fail(new DhtError.OriginRequired()),
    onSome: Effect.succeed
  })

// parts[0] exists: an EnvelopeBody has at least one part
const firstPart = (opened: Opened): Uint8Array => opened.body.parts[0] ?? new Uint8Array(0)

/**
 * What learning a peer from its claim did: the record as stored and whether it is new.
 *
 * @since 0.1.0
 * @category models
 */
export interface Learnt {
  readonly peer: Peer.Peer
  readonly added: boolean
}

/**
 * SPEC §2.6 and §10.1 step 5–6 for a claim inside a Join, Discovery or DiscoveryResponse: proof (a failure is
 * `PeerValidationError`), policy (drops addresses, counted), then the peer added (unverified, `source`) or its
 * claim-sourced addresses replaced. None when no address survived policy or the table skipped the new peer (its
 * bounds, §2.5). `from` is the connection that delivered the message, charged for a new peer.
 *
 * @since 0.1.0
 * @category utils
 */
export const learnPeer = (
  publicKey: NodeId.PublicKey,
  claim: Peer.PeerClaim,
  source: Peer.AddressSource,
  from: NodeId.NodeId
): Effect.Effect<
  Option.Option<Learnt>,
  DhtError.PeerValidationError | DhtError.NewAndExistingMismatch | DhtError.StoreError,
  PeerManager.PeerManager | Crypto.Crypto | DhtEvents.DhtEvents
> =>
  Effect.flatMap(PeerManager.PeerManager, (peers) => {
    const nodeId = NodeId.fromPublicKey(publicKey)
    return Effect.flatMap(PeerManager.getOption(peers, nodeId), (existing): Effect.Effect<
      Option.Option<Learnt>,
      DhtError.PeerValidationError | DhtError.NewAndExistingMismatch | DhtError.StoreError,
      Crypto.Crypto | DhtEvents.DhtEvents
    > => {
      if (Option.isNone(existing)) return learnClaim(peers, publicKey, nodeId, claim, source, from, existing)
      if (!NodeId.equals(existing.value.publicKey, publicKey)) return Effect.fail(new DhtError.NewAndExistingMismatch())
      // a join travels to the joiner's neighbours, who mostly know its claim already (from peer sync, from another
      // copy): neither proven again nor written again, in the step that read the record
      return PeerValidator.holdsClaim(existing.value, claim)
        ? Effect.succeed(Option.some({ peer: existing.value, added: false }))
        : learnClaim(peers, publicKey, nodeId, claim, source, from, existing)
    })
  })

// a claim the record does not hold yet: proven, then applied to the record or to a new one
const learnClaim = (
  peers: PeerManager.PeerManagerService,
  publicKey: NodeId.PublicKey,
  nodeId: NodeId.NodeId,
  claim: Peer.PeerClaim,
  source: Peer.AddressSource,
  from: NodeId.NodeId,
  existing: Option.Option<Peer.Peer>
): Effect.Effect<
  Option.Option<Learnt>,
  DhtError.PeerValidationError | DhtError.StoreError,
  Crypto.Crypto | DhtEvents.DhtEvents
> =>
  Effect.gen(function*() {
    const config = yield* DhtConfig.DhtConfig
    const accepted = yield* PeerValidator.validateClaims(publicKey, [claim], {
      storedUpdatedAt: Option.isSome(existing) ? existing.value.claimUpdatedAt : undefined
    })
    if (accepted.length === 0) return Option.none()
    const apply = (peer: Peer.Peer) =>
      PeerValidator.applyClaims(peer, accepted, {
        source,
        maxAddressesPerPeer: config.peerValidator.maxAddressesPerPeer
      })
    if (Option.isSome(existing)) {
      const updated = yield* peers.update(nodeId, apply).pipe(
        Effect.map(Option.some),
        Effect.catchTag("PeerNotFound", () => Effect.succeed(Option.none<Peer.Peer>()))
      )
      // removed meanwhile: added afresh below
      if (Option.isSome(updated)) return Option.some({ peer: updated.value, added: false })
    }
    const nowMs = yield* Clock.currentTimeMillis
    const peer = apply(Peer.make({ publicKey, addresses: [], features: claim.features, source, nowMs }))
    const result = yield* peers.add(peer, { source: from })
    if (result === "SkippedBudget" || result === "SkippedCapacity") return Option.none()
    if (result === "Added") yield* Actor.publishEvent(DhtEvent.PeerAdded({ publicKey, source }))
    return Option.some({ peer, added: result === "Added" })
  })

const mayPropagate = (identity: NodeIdentity.Identity, message: InboundMessages.DecryptedDhtMessage) =>
  message.mayForward && Peer.hasFeatures(identity.features, Peer.PeerFeatures.MESSAGE_PROPAGATION)

/**
 * SPEC §10.1 (handling): the joiner must have signed its own join; its claim is validated and the peer added or
 * updated (unverified until connected); unless banned it is re-propagated once towards its own key, with the
 * received header and body (so its signature still verifies downstream), to the `joinPropagationFactor` closer
 * peers (docs/spec-departures.md §14). A join from this node is dropped.
 *
 * @since 0.1.0
 * @category handlers
 */
export const handleJoin = (opened: Opened): Effect.Effect<void, HandlerError, Requirements> =>
  Effect.flatMap(Effect.context<Requirements>(), (context) => {
    const identity = Context.get(context, NodeIdentity.NodeIdentity)
    const { message } = opened
    // the fiber read once, for the metric labels and the clock
    return Effect.withFiberRuntime((fiber): Effect.Effect<void, HandlerError, Requirements> => {
      const labels = fiber.getFiberRef(FiberRef.currentMetricLabels)
      const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
      DhtMetrics.joinsReceived.unsafeUpdate(1, labels)
      if (Option.isNone(opened.origin)) return Effect.fail(new DhtError.OriginRequired())
      const origin = opened.origin.value
      if (NodeId.equals(origin, identity.publicKey)) return Effect.void
      return Effect.flatMap(DhtMessages.decodeJoin(firstPart(opened)), (join): Effect.Effect<
        void,
        HandlerError,
        Requirements
      > =>
        !NodeId.equals(join.publicKey, origin)
          ? Effect.fail(new DhtError.OriginMismatch())
          : Effect.flatMap(learnPeer(origin, join.claim, "Join", message.sourcePeer.nodeId), (learnt) => {
            if (Option.isNone(learnt)) return Effect.void
            if (learnt.value.peer.isBanned(clock.unsafeCurrentTimeMillis()) || !mayPropagate(identity, message)) {
              return Effect.void
            }
            const destination = Envelope.destinationPublicKey(origin)
            return Effect.map(
              Context.get(context, OutboundRequester.OutboundRequester).offerForward(
                OutboundRequester.makeParams({
                  strategy: BroadcastStrategy.Propagate({
                    destination,
                    excluded: [learnt.value.peer.nodeId, message.sourcePeer.nodeId],
                    factor: Context.get(context, DhtConfig.DhtConfig).joinPropagationFactor
                  }),
                  destination,
                  messageType: message.header.messageType,
                  customHeader: Option.some(message.header)
                }),
                message.body
              ),
              (offered) => {
                if (offered) forwardedJoin.unsafeUpdate(1, labels)
              }
            )
          }))
    })
  })

/**
 * This node's claim, signed now over the addresses its transport listens on.
 *
 * @since 0.1.0
 * @category utils
 */
export const ownClaim: Effect.Effect<
  Peer.PeerClaim,
  never,
  NodeIdentity.NodeIdentity | Transport.Transport | Crypto.Crypto
> = Effect.gen(function*() {
  const identity = yield* NodeIdentity.NodeIdentity
  const transport = yield* Transport.Transport
  return yield* PeerValidator.signClaim({
    secretKey: identity.secretKey,
    publicKey: identity.publicKey,
    addresses: transport.listenAddresses,
    features: identity.features
  })
})

/**
 * SPEC §10.2 at the target: the requester (the origin, which must be the key it names) is learnt from its claim;
 * unless banned it gets this node's signed claim with the request's nonce, in clear and signed, addressed and sent
 * directly to it — the signed destination binds the response to the requester.
 *
 * @since 0.1.0
 * @category handlers
 */
export const handleDiscovery = (opened: Opened): Effect.Effect<void, HandlerError, Requirements> =>
  Effect.gen(function*() {
    const origin = yield* requireOrigin(opened)
    const request = yield* DhtMessages.decodeDiscovery(firstPart(opened))
    // answering a key other than the signer's would let anyone aim responses at a third party
    if (!NodeId.equals(request.publicKey, origin)) return yield* new DhtError.OriginMismatch()
    yield* learnPeer(origin, request.claim, "Discovery", opened.message.sourcePeer.nodeId)
    const peers = yield* PeerManager.PeerManager
    const known = yield* PeerManager.getOption(peers, NodeId.fromPublicKey(origin))
    const nowMs = yield* Clock.currentTimeMillis
    if (Option.isSome(known) && known.value.isBanned(nowMs)) return
    const claim = yield* ownClaim
    const identity = yield* NodeIdentity.NodeIdentity
    const response = new DhtMessages.DiscoveryResponseMessage({
      publicKey: identity.publicKey,
      addresses: claim.addresses,
      peerFeatures: claim.features,
      nonce: request.nonce,
      identitySignature: claim.identitySignature
    }, true)
    const requester = yield* OutboundRequester.OutboundRequester
    yield* requester.offerForward(
      OutboundRequester.makeParams({
        strategy: BroadcastStrategy.DirectPublicKey({ publicKey: origin }),
        destination: Envelope.destinationPublicKey(origin),
        messageType: Envelope.DhtMessageType.DiscoveryResponse,
        forceOrigin: true
      }),
      new Envelope.EnvelopeBody({ parts: [DhtMessages.encodeDiscoveryResponse(response)] }, true)
    )
  })

/**
 * SPEC §10.3 at the requester, in its order, each check blaming only the party that provably produced the fault;
 * a response that passes them all adds the peer and resolves the requests waiting for it.
 *
 * @since 0.1.0
 * @category handlers
 */
export const handleDiscoveryResponse = (opened: Opened): Effect.Effect<void, HandlerError, Requirements> =>
  Effect.gen(function*() {
    const origin = yield* requireOrigin(opened)
    const identity = yield* NodeIdentity.NodeIdentity
    const { message } = opened
    if (!Envelope.isDestinedTo(message.header.destination, identity.publicKey)) {
      return yield* new DhtError.UnexpectedDiscoveryResponse({ reason: "not addressed to this node" })
    }
    const response = yield* DhtMessages.decodeDiscoveryResponse(firstPart(opened))
    const discovery = yield* Effect.serviceOption(Discovery.Discovery)
    const pending = Option.isSome(discovery)
      ? yield* discovery.value.pendingKey(response.nonce)
      : Option.none<NodeId.PublicKey>()
    if (Option.isNone(discovery) || Option.isNone(pending)) {
      return yield* new DhtError.UnexpectedDiscoveryResponse({ reason: "unknown nonce" })
    }
    if (!NodeId.equals(origin, response.publicKey)) return yield* new DhtError.OriginMismatch()
    if (!NodeId.equals(origin, message.sourcePeer.publicKey)) return yield* new DhtError.DiscoveryResponseRelayed()
    if (!NodeId.equals(response.publicKey, pending.value)) return yield* new DhtError.DiscoveryKeyMismatch()
    const learnt = yield* learnPeer(origin, response.claim, "Discovery", message.sourcePeer.nodeId)
    if (Option.isNone(learnt)) return
    yield* discovery.value.handleResponse(response.nonce, learnt.value.peer)
  })
