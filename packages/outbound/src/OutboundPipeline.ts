/**
 * The outbound pipeline (SPEC §6): a bounded queue of `DhtOutboundRequest`s read as a `Stream` through three
 * stages — broadcast (peer selection, §6.1–§6.2), encrypt (sign and encrypt once per request, then fan out, §6.3)
 * and serialize (encode once, check the size, hand one message per peer to the transport, §6.4) — and the live
 * `OutboundRequester` in front of it.
 *
 * Each request is handled on its own (`Stream.mapEffect`, 16 at a time): a stage failure completes the
 * request's reply with its `SendFailure` and is counted, it never ends the stream. Closing the Layer's scope answers
 * every request not yet handled with `DhtShutdown`.
 *
 * @since 0.1.0
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import * as DhtLog from "@comms-dht/core/DhtLog"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Discovery from "@comms-dht/core/Discovery"
import * as Envelope from "@comms-dht/core/Envelope"
import * as FiberClock from "@comms-dht/core/FiberClock"
import * as LightDeferred from "@comms-dht/core/LightDeferred"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import type * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

type Request = OutboundRequester.DhtOutboundRequest

/**
 * How the pipeline discovers an unknown destination (SPEC §6.1 step 3, §10.2).
 *
 * @since 0.1.0
 * @category models
 */
export type Discover = (publicKey: NodeId.PublicKey) => Effect.Effect<Peer.Peer, DhtError.DiscoveryError>

// --- stage 1: broadcast (§6.1) ---

/**
 * The outcome of the broadcast stage: the peers to send to, or a destination to discover first. `expires` is fixed
 * here (unix seconds) so that every copy carries the same one.
 *
 * @since 0.1.0
 * @category models
 */
export type Selection = Data.TaggedEnum<{
  Selected: {
    readonly request: Request
    readonly peers: ReadonlyArray<NodeId.NodeId>
    readonly expires: bigint
    readonly isBroadcast: boolean
  }
  Discover: { readonly request: Request; readonly publicKey: NodeId.PublicKey; readonly expires: bigint }
}>

/**
 * Constructors and matchers of `Selection`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const Selection = Data.taggedEnum<Selection>()

/**
 * A selection of peers: what the encrypt stage takes.
 *
 * @since 0.1.0
 * @category models
 */
export type Selected = Data.TaggedEnum.Value<Selection, "Selected">

/**
 * What the broadcast stage can fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type BroadcastError = DhtError.SendToOurselves | DhtError.PeerSelectionFailed | DhtError.FailedToGenerateMessages

const secondsOf = (ms: number): bigint => BigInt(Math.floor(ms / 1000))

/**
 * SPEC §6.1 step 4: `now + (expiresIn ?? saf.msgValidity)` in unix seconds; beyond `maxMessageExpiry` is
 * `ExpiryTooFar`. A forward keeps the received expiry.
 *
 * @since 0.1.0
 * @category utils
 */
export const expiryOf = (
  params: OutboundRequester.SendMessageParams,
  nowMs: number,
  config: DhtConfig.Config
): Either.Either<bigint, DhtError.FailedToGenerateMessages> => {
  if (Option.isSome(params.customHeader)) return Either.right(params.customHeader.value.expires)
  const expiresIn = Option.getOrElse(params.expiresIn, () => config.saf.msgValidity)
  if (!Duration.isFinite(expiresIn) || Duration.greaterThan(expiresIn, config.maxMessageExpiry)) {
    return Either.left(new DhtError.FailedToGenerateMessages({ reason: "ExpiryTooFar" }))
  }
  return Either.right(secondsOf(nowMs) + secondsOf(Duration.toMillis(expiresIn)))
}

const noPeers: ReadonlyArray<Peer.Peer> = []

// SPEC §13: a failing table answers with no peers, logged (Tari), rather than failing the request. Only the records
// the strategy can choose from are read: a forward or a direct send looks at its connections and target alone.
const knownPeers = (
  peers: PeerManager.PeerManagerService,
  wanted: "All" | ReadonlyArray<NodeId.NodeId>,
  tag: OutboundRequester.MessageTag
) =>
  (wanted === "All" ? peers.all : peers.getMany(wanted)).pipe(
    Effect.catchTag(
      "StoreError",
      (error) =>
        Effect.as(
          Effect.annotateLogs(Effect.logWarning("peer selection read no peers", error), { messageTag: tag.toString() }),
          noPeers
        )
    )
  )

// The services the stages use, taken from the context once per worker rather than looked up by every stage of every
// request (a lookup is a step of the fiber; four of them cost the broadcast stage a third of its steps).
interface Services {
  readonly identity: NodeIdentity.Identity
  readonly config: DhtConfig.Config
  readonly peers: PeerManager.PeerManagerService
  readonly transport: Transport.TransportService
  readonly cache: DedupCache.DedupCacheService
  readonly crypto: Crypto.CryptoService
}

const servicesOf = (context: Context.Context<Requirements>): Services => ({
  identity: Context.get(context, NodeIdentity.NodeIdentity),
  config: Context.get(context, DhtConfig.DhtConfig),
  peers: Context.get(context, PeerManager.PeerManager),
  transport: Context.get(context, Transport.Transport),
  cache: Context.get(context, DedupCache.DedupCache),
  crypto: Context.get(context, Crypto.Crypto)
})

// What a request reads from its fiber, in the one step that starts it rather than a step each: the time, the metric
// labels, and the fiber's id for the replies it makes.
interface Turn {
  readonly nowMs: number
  readonly labels: ReadonlyArray<MetricLabel.MetricLabel>
  readonly fiberId: FiberId.FiberId
}

const withTurn = <A, E, R>(f: (turn: Turn) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) =>
    f({
      nowMs: FiberClock.nowOf(fiber),
      labels: fiber.getFiberRef(FiberRef.currentMetricLabels),
      fiberId: fiber.id()
    })
  )

// a stage run on its own, as the exported stages are: its services from the context it is run in
const withServices = <A, E, R>(f: (services: Services, turn: Turn) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.context<Requirements>(), (context) => withTurn((turn) => f(servicesOf(context), turn)))

// The stages below are plain functions around the few effects a request needs (the transport's connections, the
// peer table, the random draws, the transport's queue): each `yield*` of a generator or link of a pipe is a step of
// the worker's fiber, and a request's steps cost more than its non-crypto work (docs/performance.md).
const selectPeers = (
  services: Services,
  request: Request,
  nowMs: number
): Effect.Effect<Selection, BroadcastError> => {
  const { config, identity, peers, transport } = services
  const { params } = request
  const strategy = params.strategy
  if (strategy._tag === "DirectPublicKey" && NodeId.equals(strategy.publicKey, identity.publicKey)) {
    return Either.left(new DhtError.SendToOurselves())
  }
  return Effect.flatMap(transport.connectedPeers, (connected) => {
    const drawn = BroadcastStrategy.drawFromConnections(
      strategy,
      config,
      { self: identity.nodeId, connected, nowMs },
      (ids) => knownPeers(peers, ids, request.tag)
    )
    if (drawn !== undefined) return Effect.flatMap(drawn, (chosen) => selectionOf(request, chosen, nowMs, config))
    return Effect.flatMap(knownPeers(peers, BroadcastStrategy.peersToRead(strategy, connected), request.tag), (known) => {
      const ctx = BroadcastStrategy.makeContext(config, {
        self: identity.nodeId,
        peers: known,
        connected: BroadcastStrategy.connectedSet(connected),
        nowMs,
        isOrigin: Option.isNone(params.customHeader)
      })
      return Effect.flatMap(
        BroadcastStrategy.select(strategy, ctx),
        (chosen) => selectionOf(request, chosen, nowMs, config)
      )
    })
  })
}

const selectionOf = (
  request: Request,
  chosen: ReadonlyArray<NodeId.NodeId>,
  nowMs: number,
  config: DhtConfig.Config
): Either.Either<Selection, DhtError.FailedToGenerateMessages> => {
  const { params } = request
  const strategy = params.strategy
  return Either.map(expiryOf(params, nowMs, config), (expires) =>
    chosen.length === 0 && params.discoveryEnabled && strategy._tag === "DirectPublicKey"
      ? Selection.Discover({ request, publicKey: strategy.publicKey, expires })
      : Selection.Selected({
        request,
        peers: chosen,
        expires,
        isBroadcast: BroadcastStrategy.isBroadcast(strategy, chosen)
      }))
}

/**
 * Stage 1 (SPEC §6.1): `SendToOurselves` for a direct send to this node's key; the peers the strategy selects from
 * a snapshot of the peer table and the transport's connections (§6.2); a destination to discover when a direct
 * send finds no known peer and discovery is on; the expiry; and whether the request is a broadcast.
 *
 * @since 0.1.0
 * @category stages
 */
export const broadcast = (request: Request): Effect.Effect<Selection, BroadcastError, Requirements> =>
  withServices((services, turn) => selectPeers(services, request, turn.nowMs))

// --- stage 2: encrypt (§6.3) ---

interface Prepared {
  readonly version: number
  readonly destination: Envelope.NodeDestination
  readonly messageType: Envelope.DhtMessageType
  readonly flags: number
  readonly expires: bigint
  readonly ephemeralPublicKey: Option.Option<Uint8Array>
  readonly body: Uint8Array
  readonly messageSignature: Uint8Array
}

const EMPTY = new Uint8Array(0)

const encryptionFailed = () => new DhtError.FailedToGenerateMessages({ reason: "EncryptionFailed" })

// what goes on the wire for a request of our own: encrypted and signed, signed, or neither. The records are
// spelled out field by field: on Node 20 `{ ...fields, more }` costs microseconds per request (V8's object-spread
// path), several times what building the record costs.
const prepare = (
  crypto: Crypto.CryptoService,
  identity: NodeIdentity.Identity,
  params: OutboundRequester.SendMessageParams,
  body: OutboundRequester.OutboundBody,
  expires: bigint,
  version: number
): Effect.Effect<Prepared, DhtError.FailedToGenerateMessages> => {
  const { destination, encryption, messageType } = params
  const flags = Envelope.withFlags(OutboundRequester.encryptionFlags(encryption), params.extraFlags)
  const plaintext = OutboundRequester.bodyBytes(body)
  if (encryption._tag === "EncryptFor") {
    const fields: MessageCrypto.EncryptFields = { version, destination, messageType, flags, expires }
    return Effect.flatMap(MessageCrypto.drawRandomness(crypto), (randomness) => {
      const sealed = MessageCrypto.sealMessage(crypto, identity, encryption.publicKey, fields, plaintext, randomness)
      return Either.isLeft(sealed) ? Either.left(encryptionFailed()) : Either.right<Prepared>({
        version,
        destination,
        messageType,
        flags: sealed.right.flags,
        expires,
        ephemeralPublicKey: Option.some(sealed.right.ephemeralPublicKey),
        body: sealed.right.body,
        messageSignature: sealed.right.messageSignature
      })
    })
  }
  const clear = (messageSignature: Uint8Array): Prepared => ({
    version,
    destination,
    messageType,
    flags,
    expires,
    ephemeralPublicKey: Option.none(),
    body: plaintext,
    messageSignature
  })
  return Either.right(
    params.forceOrigin ? clear(MessageCrypto.signWith(crypto, identity, clear(EMPTY), plaintext)) : clear(EMPTY)
  )
}

// a forward sends what it received: nothing is recomputed (SPEC §6.3)
const forwarded = (header: Envelope.DhtMessageHeader, body: OutboundRequester.OutboundBody): Prepared => ({
  version: header.version,
  destination: header.destination,
  messageType: header.messageType,
  flags: header.flags,
  expires: header.expires,
  ephemeralPublicKey: header.ephemeralPublicKey,
  body: OutboundRequester.bodyBytes(body),
  messageSignature: header.messageSignature
})

/**
 * The dedup hash of SPEC §8.1: `DSH("dedup", 32, challenge, message_signature)` over the signed header fields and
 * the body as sent.
 *
 * @since 0.1.0
 * @category utils
 */
export const dedupHash = (
  fields: MessageCrypto.SignedFields,
  body: Uint8Array,
  messageSignature: Uint8Array
): Effect.Effect<Uint8Array, never, Crypto.Crypto> => MessageCrypto.dedupHash(fields, body, messageSignature)

// echoes of our own broadcast are dropped when they come back (SPEC §6.3, §8.2)
const preInsert = ({ cache, config, crypto, identity }: Services, prepared: Prepared): Effect.Effect<void> => {
  const hash = MessageCrypto.dedupHashWith(
    crypto,
    MessageCrypto.challengeWith(crypto, prepared, prepared.body),
    prepared.messageSignature
  )
  const keepUntil = Number(prepared.expires) * 1000 + DhtConfig.millis(config.clockSkewAllowance)
  return Effect.flatMap(cache.hitCount(hash), (hits) =>
    hits > 0 ? Effect.void : Effect.asVoid(cache.insert(hash, identity.publicKey, keepUntil)))
}

/**
 * Stage 2 (SPEC §6.3): signs and encrypts once for the whole request (`EncryptFor`: fresh ephemeral key, sealed
 * body and signature; `ClearText` with `forceOrigin`: a plain signature; a forward: the received body, signature and
 * key as they are), pre-inserts a broadcast's dedup hash, then fans out one `DhtOutboundMessage` per peer, each
 * with its own reply.
 *
 * @since 0.1.0
 * @category stages
 */
export const encrypt = (
  selected: Selected
): Effect.Effect<Array<OutboundRequester.DhtOutboundMessage>, DhtError.FailedToGenerateMessages, Requirements> =>
  withServices((services, turn) => sealFor(services, selected, turn.fiberId))

const sealFor = (
  services: Services,
  selected: Selected,
  fiberId: FiberId.FiberId
): Effect.Effect<Array<OutboundRequester.DhtOutboundMessage>, DhtError.FailedToGenerateMessages> => {
  const { request } = selected
  const { params } = request
  // a forward's hash is in the cache already: the inbound dedup stage put it there (a message it could not record
  // is never forwarded, §7.3), so §6.3's check would find it and insert nothing
  if (Option.isSome(params.customHeader)) {
    return Either.right(copiesOf(selected, forwarded(params.customHeader.value, request.body), fiberId))
  }
  const { config, crypto, identity } = services
  return Effect.flatMap(
    prepare(crypto, identity, params, request.body, selected.expires, config.protocolVersion),
    (prepared) =>
      selected.isBroadcast
        ? Effect.as(preInsert(services, prepared), copiesOf(selected, prepared, fiberId))
        : Either.right(copiesOf(selected, prepared, fiberId))
  )
}

// one copy per peer, each with its own reply, made in one step rather than an Effect per peer
const copiesOf = (
  { isBroadcast, peers, request }: Selected,
  prepared: Prepared,
  fiberId: FiberId.FiberId
): Array<OutboundRequester.DhtOutboundMessage> => {
  const { customHeader } = request.params
  const hopCount = Option.isSome(customHeader) ? customHeader.value.hopCount : 0
  return peers.map((peer): OutboundRequester.DhtOutboundMessage => ({
    protocolVersion: prepared.version,
    tag: request.tag,
    peer,
    destination: prepared.destination,
    messageType: prepared.messageType,
    flags: prepared.flags,
    customHeader,
    body: prepared.body,
    ephemeralPublicKey: prepared.ephemeralPublicKey,
    messageSignature: prepared.messageSignature,
    isBroadcast,
    expires: prepared.expires,
    hopCount,
    reply: LightDeferred.unsafeMake<void, DhtError.SendFailReason>(fiberId)
  }))
}

// `f` of each item, one after the other: a chain of `flatMap`s, without the batching check and finalizer mask that
// `Effect.forEach` sets up each time, which cost more than sending one copy (most requests go to one or a few peers)
const inTurn = <A, E, R>(
  items: ReadonlyArray<A>,
  f: (item: A) => Effect.Effect<void, E, R>
): Effect.Effect<void, E, R> => {
  const step = (i: number): Effect.Effect<void, E, R> =>
    i === items.length - 1 ? f(items[i]!) : Effect.flatMap(f(items[i]!), () => step(i + 1))
  return items.length === 0 ? Effect.void : step(0)
}

// --- stage 3: serialize (§6.4) ---

// every field was produced by the stages above (or decoded and checked, for a forward), so no class checks them again
const headerOf = (message: OutboundRequester.DhtOutboundMessage): Envelope.HeaderValues =>
  Option.match(message.customHeader, {
    onSome: Envelope.nextHop,
    onNone: (): Envelope.HeaderValues => ({
      version: message.protocolVersion,
      destination: message.destination,
      messageSignature: message.messageSignature,
      ephemeralPublicKey: message.ephemeralPublicKey,
      messageType: message.messageType,
      flags: message.flags,
      messageTag: message.tag,
      expires: message.expires,
      hopCount: 0
    })
  })

/**
 * Stage 3 (SPEC §6.4): builds the `DhtHeader` (a forward's with `hop_count + 1`), encodes the envelope once,
 * refuses it as `TooLarge` beyond `maxMessageSize` before anything is sent, and hands one `OutboundMessage` per
 * peer to the transport. Returns the send states.
 *
 * @since 0.1.0
 * @category stages
 */
export const serialize = (
  messages: ReadonlyArray<OutboundRequester.DhtOutboundMessage>
): Effect.Effect<OutboundRequester.MessageSendStates, DhtError.FailedToGenerateMessages, Requirements> =>
  withServices((services) => hand(services, messages))

const hand = (
  { config, transport }: Services,
  messages: ReadonlyArray<OutboundRequester.DhtOutboundMessage>
): Effect.Effect<OutboundRequester.MessageSendStates, DhtError.FailedToGenerateMessages> => {
  const first = messages[0]
  if (first === undefined) return Effect.succeed(OutboundRequester.noSendStates)
  const bytes = Envelope.encodeEnvelopeFrom(headerOf(first), first.body)
  if (bytes.length > config.maxMessageSize) {
    return Effect.fail(new DhtError.FailedToGenerateMessages({ reason: "TooLarge" }))
  }
  const outbound = (message: OutboundRequester.DhtOutboundMessage): Transport.OutboundMessage => ({
    peer: message.peer,
    tag: message.tag,
    bytes,
    reply: message.reply
  })
  const sendAll = transport.sendAll
  return Effect.as(
    sendAll === undefined || messages.length === 1
      ? inTurn(messages, (message) => transport.send(outbound(message)))
      : sendAll(messages.map(outbound)),
    new OutboundRequester.MessageSendStates(
      messages.map((message) => ({ peer: message.peer, tag: message.tag, result: message.reply }))
    )
  )
}

// --- the pipeline ---

type FailureReason =
  | Exclude<DhtError.SendFailure, DhtError.FailedToGenerateMessages>["_tag"]
  | DhtError.FailedToGenerateMessages["reason"]

const failureReason = (failure: DhtError.SendFailure): FailureReason =>
  failure._tag === "FailedToGenerateMessages" ? failure.reason : failure._tag

const failureCounter = (reason: FailureReason) => DhtMetrics.tagged(DhtMetrics.sendFailures, "reason", reason)

// tagging a metric builds a new key each time: one per reason, made once
const failuresByReason: { readonly [K in FailureReason]: Metric.Metric.Counter<number> } = {
  SendToOurselves: failureCounter("SendToOurselves"),
  DiscoveryFailed: failureCounter("DiscoveryFailed"),
  PeerSelectionFailed: failureCounter("PeerSelectionFailed"),
  NoMessagesQueued: failureCounter("NoMessagesQueued"),
  DhtShutdown: failureCounter("DhtShutdown"),
  TooLarge: failureCounter("TooLarge"),
  EncryptionFailed: failureCounter("EncryptionFailed"),
  ExpiryTooFar: failureCounter("ExpiryTooFar")
}

// the request's tag is annotated here, on the failure path, rather than on every request's fiber
const countReason = (reason: FailureReason, tag: OutboundRequester.MessageTag) =>
  DhtLog.debug("outbound request failed", { reason, messageTag: tag.toString() }).pipe(
    Effect.zipRight(Metric.increment(failuresByReason[reason]))
  )

const countFailure = (failure: DhtError.SendFailure, tag: OutboundRequester.MessageTag) =>
  countReason(failureReason(failure), tag)

const sentMessages = DhtMetrics.tagged(DhtMetrics.outboundMessages, "result", "sent")
const failedMessages = DhtMetrics.tagged(DhtMetrics.outboundMessages, "result", "failed")

// one watcher per request counts each copy's outcome once the transport reports it; awaiting them in turn costs no
// fiber per copy, and every copy is counted once the last is done
const countOutcome = (state: OutboundRequester.MessageSendState) =>
  Effect.flatMap(
    Effect.exit(LightDeferred.awaitOnce(state.result)),
    (exit) => Metric.increment(Exit.isSuccess(exit) ? sentMessages : failedMessages)
  )

// counts the copies whose outcome is known; returns those still in flight. A reply completed with an effect rather
// than an outcome (`Deferred.complete`) is left to the watcher, which runs it. Read synchronously: a broadcast's six
// copies polled one step each, in a chain of steps, were a tenth of the simulation's traffic.
const countSettled = (
  states: OutboundRequester.MessageSendStates,
  labels: ReadonlyArray<MetricLabel.MetricLabel>
): Array<OutboundRequester.MessageSendState> => {
  const pending: Array<OutboundRequester.MessageSendState> = []
  let sent = 0
  let failed = 0
  for (const state of states.states) {
    const outcome = LightDeferred.unsafePoll(state.result)
    if (outcome === undefined || !Exit.isExit(outcome)) pending.push(state)
    else if (Exit.isSuccess(outcome)) sent += 1
    else failed += 1
  }
  if (sent > 0) sentMessages.unsafeUpdate(sent, labels)
  if (failed > 0) failedMessages.unsafeUpdate(failed, labels)
  return pending
}

const countOutcomes = (states: OutboundRequester.MessageSendStates) => {
  const first = states.states[0]
  return first !== undefined && states.states.length === 1
    ? countOutcome(first)
    : Effect.forEach(states.states, countOutcome, { discard: true })
}

// tagging a metric builds a new key each time: one per strategy, made once
type StrategyTag = BroadcastStrategy.BroadcastStrategy["_tag"]

const requestsByStrategy: { readonly [K in StrategyTag]: Metric.Metric.Counter<number> } = {
  DirectPublicKey: DhtMetrics.tagged(DhtMetrics.outboundRequests, "strategy", "DirectPublicKey"),
  DirectNodeId: DhtMetrics.tagged(DhtMetrics.outboundRequests, "strategy", "DirectNodeId"),
  Flood: DhtMetrics.tagged(DhtMetrics.outboundRequests, "strategy", "Flood"),
  Broadcast: DhtMetrics.tagged(DhtMetrics.outboundRequests, "strategy", "Broadcast"),
  Random: DhtMetrics.tagged(DhtMetrics.outboundRequests, "strategy", "Random"),
  ClosestNodes: DhtMetrics.tagged(DhtMetrics.outboundRequests, "strategy", "ClosestNodes"),
  DirectOrClosestNodes: DhtMetrics.tagged(DhtMetrics.outboundRequests, "strategy", "DirectOrClosestNodes"),
  SelectedPeers: DhtMetrics.tagged(DhtMetrics.outboundRequests, "strategy", "SelectedPeers"),
  Propagate: DhtMetrics.tagged(DhtMetrics.outboundRequests, "strategy", "Propagate")
}

/**
 * What the stages need from the Layer graph.
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

/**
 * Where the pipeline runs work that outlives one request's turn in the stream: the discoveries it waits for and the
 * watchers counting per-peer outcomes. Interrupted with the pipeline.
 *
 * @since 0.1.0
 * @category models
 */
export interface Handler {
  readonly jobs: FiberSet.FiberSet<void, never>
  readonly discover: Option.Option<Discover>
}

// encrypt → serialize for a selection; an empty one is queued as no states (`resolve` makes it NoMessagesQueued)
const deliver = (
  handler: Handler,
  services: Services,
  selected: Selected,
  turn: Turn
): Effect.Effect<OutboundRequester.MessageSendStates, DhtError.FailedToGenerateMessages> => {
  if (selected.peers.length === 0) {
    return Effect.as(
      // the reason alone: an error object (and its stack) for a selection that is often empty would be wasted
      countReason("NoMessagesQueued", selected.request.tag),
      OutboundRequester.noSendStates
    )
  }
  return Effect.flatMap(sealFor(services, selected, turn.fiberId), (messages) =>
    Effect.flatMap(hand(services, messages), (states) =>
      // Copies the transport has already answered (a memory network writing in the sender's fiber answers them all
      // before `send` returns) are counted now; a watcher is forked only for those still in flight.
      {
        const pending = countSettled(states, turn.labels)
        return pending.length === 0
          ? Effect.succeed(states)
          : Effect.as(
            FiberSet.run(handler.jobs, countOutcomes(new OutboundRequester.MessageSendStates(pending))),
            states
          )
      }))
}

const discoveryFailure = (error: DhtError.DiscoveryError): DhtError.SendFailure => {
  switch (error._tag) {
    case "DiscoveryFailed":
      return error
    case "DiscoveryTimeout":
      return new DhtError.DiscoveryFailed({ reason: "Timeout" })
    case "CannotDiscoverThisNode":
      return new DhtError.SendToOurselves()
  }
}

// SPEC §6.1 step 3: answer PendingDiscovery now; discover, then carry on with the discovered peer, off the stream
const pendingDiscovery = (
  handler: Handler,
  services: Services,
  discovering: Data.TaggedEnum.Value<Selection, "Discover">
) =>
  Effect.gen(function*() {
    const { expires, publicKey, request } = discovering
    const result = yield* Deferred.make<OutboundRequester.MessageSendStates, DhtError.SendFailure>()
    const discover = Option.getOrElse(
      handler.discover,
      (): Discover => () => Effect.fail(new DhtError.DiscoveryFailed({ reason: "SendFailed" }))
    )
    const job = discover(publicKey).pipe(
      Effect.mapError(discoveryFailure),
      Effect.flatMap((peer) =>
        withTurn((turn) =>
          deliver(
            handler,
            services,
            Selection.Selected({ request, peers: [peer.nodeId], expires, isBroadcast: false }),
            turn
          )
        )
      ),
      Effect.tapError((failure) => countFailure(failure, request.tag)),
      Effect.exit,
      Effect.flatMap((exit) => Deferred.done(result, exit)),
      Effect.onInterrupt(() => Deferred.fail(result, new DhtError.DhtShutdown())),
      Effect.asVoid,
      Effect.annotateLogs({ messageTag: request.tag.toString() })
    )
    yield* FiberSet.run(handler.jobs, job)
    return OutboundRequester.SendMessageResponse.PendingDiscovery({ result })
  })

/**
 * One request through the three stages. Its reply is completed in every case: the response, the `SendFailure` of
 * the stage that failed (logged, counted `comms_dht_send_failures_total{reason}`), or `DhtShutdown` when the
 * pipeline stops under it. Never fails.
 *
 * @since 0.1.0
 * @category pipeline
 */
export const handle = (handler: Handler) => (request: Request): Effect.Effect<void, never, Requirements> =>
  withServices((services, turn) =>
    Effect.catchAllCause(
      handleWith(handler, services, turn, completeReply)(request),
      settleFailed(request, completeReply)
    ).pipe(
      Effect.onInterrupt(() => Deferred.fail(request.reply, new DhtError.DhtShutdown()))
    )
  )

type Reply = Exit.Exit<OutboundRequester.SendMessageResponse, DhtError.SendFailure>

// completes a request's reply; the live requester also resumes the sender waiting on it (`makeHandoff`)
type Answer = (request: Request, reply: Reply) => void

const completeReply: Answer = (request, reply) => {
  Deferred.unsafeDone(request.reply, reply)
}

// the stages for one request, its reply completed on success; a failure is left to `settleFailed`
const handleWith = (handler: Handler, services: Services, turn: Turn, answer: Answer) =>
(
  request: Request
): Effect.Effect<void, DhtError.SendFailure> => {
  requestsByStrategy[request.params.strategy._tag].unsafeUpdate(1, turn.labels)
  return Effect.flatMap(selectPeers(services, request, turn.nowMs), (selection) =>
    selection._tag === "Discover"
      ? Effect.map(pendingDiscovery(handler, services, selection), (response) => {
        answer(request, Exit.succeed(response))
      })
      : Effect.map(deliver(handler, services, selection, turn), (states) => {
        answer(request, Exit.succeed(OutboundRequester.SendMessageResponse.Queued({ states })))
      }))
}

// The reply of a request that did not get through the stages: its `SendFailure` (logged, counted), `DhtShutdown`
// when the pipeline stops under it, or the defect (logged as an error).
const settleFailed = (request: Request, answer: Answer) =>
(
  cause: Cause.Cause<DhtError.SendFailure>
): Effect.Effect<void> => {
  if (Cause.isInterruptedOnly(cause)) {
    answer(request, Exit.fail(new DhtError.DhtShutdown()))
    return Effect.failCause(Cause.stripFailures(cause))
  }
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    return Effect.map(countFailure(failure.value, request.tag), () => answer(request, Exit.fail(failure.value)))
  }
  return Effect.map(
    Effect.logError("outbound request failed unexpectedly", cause),
    () => answer(request, Exit.failCause(Cause.stripFailures(cause)))
  )
}

/**
 * The stream of SPEC §6: every request through `handle`, 16 at a time. Requests finish in any order; the stream
 * emits in input order, which costs nothing because `handle` never waits on the network (discovery is forked,
 * `Transport.send` only enqueues). The live requester does not run this stream but workers like `workers`, which
 * are cheaper per request and handle the same requests with the same concurrency.
 *
 * @since 0.1.0
 * @category pipeline
 */
export const pipeline = (handler: Handler) => <E, R>(source: Stream.Stream<Request, E, R>) =>
  source.pipe(Stream.mapEffect(handle(handler), { concurrency: 16 }))

/**
 * Requests handled at once (SPEC §6).
 *
 * @since 0.1.0
 * @category constants
 */
export const CONCURRENCY = 16

/**
 * SPEC §6 on a queue: `CONCURRENCY` fibers, each taking the next request and running it through `handle`, so at
 * most 16 requests are in the stages and each is handled independently, in no guaranteed order. This replaces
 * `Stream.mapEffect(handle, { concurrency: 16 })` (`pipeline`), whose per-element fork, race and semaphore cost
 * more than a request's own non-crypto work: in one run of a microbenchmark, a queue → `mapEffect(…, { concurrency:
 * 16 })` → reply round trip took ≈ 500 µs per element against ≈ 50 µs for the same round trip through a fiber that
 * takes from the queue. A request taken from the queue is always
 * handled (the take and the start of `handle` are not separated by an interruption point), so its reply is
 * completed, with `DhtShutdown` if the workers are interrupted under it. A defect fails that request's reply with
 * the defect and is logged; the worker carries on.
 *
 * @since 0.1.0
 * @category pipeline
 */
export const workers = (
  handler: Handler,
  queue: Queue.Dequeue<Request>
): Effect.Effect<never, never, Requirements> =>
  withServices((services) => runWorkers(handler, services, Queue.take(queue), () => {}, completeReply))

// The live requester's hand-over to its workers. A worker with nothing to do parks here, and a request goes straight
// to a parked worker; its sender waits to be resumed with the reply. Through `Queue.take` and `Deferred.await` the
// same hand-over and wait cost the taker's Deferred and the interruption handling of both, about thirty steps of the
// fibers per request (docs/performance.md). Requests find no worker parked only when all are busy, and then wait in
// the bounded queue (`outboundBufferSize`), which a worker drains before it parks again. Every request the hand-over
// accepts is answered: by a worker, or with DhtShutdown by `close`.
interface Handoff {
  /** offers `request` and waits for its reply; a full queue suspends the sender (SPEC §6) */
  readonly request: (request: Request) => Effect.Effect<OutboundRequester.SendMessageResponse, DhtError.SendFailure>
  /** hands `request` to a parked worker, or queues it if the queue has room; false if neither or closed */
  readonly offer: (request: Request) => boolean
  readonly isClosed: () => boolean
  /** the next request: queued, or handed over while parked */
  readonly next: Effect.Effect<Request>
  /** marks a request as running, no longer waiting in a worker's hand */
  readonly started: (request: Request) => void
  readonly answer: Answer
  /** once the workers are interrupted: answers what was handed to them or queued, and refuses the rest */
  readonly close: Effect.Effect<void>
}

const makeHandoff = (queue: Queue.Queue<Request>): Handoff => {
  // A parked worker's wake-up is not withdrawn when the worker is interrupted (a canceler costs the interruption
  // handling this saves); workers are interrupted only when the pipeline closes, and `close` then stops the
  // hand-over and answers what was handed to them.
  let parked: Array<(request: Request) => void> = []
  let closed = false
  // handed to a parked worker and not yet started by it
  const handed = new Set<Request>()
  // senders waiting for their replies; an interrupted sender's entry goes when its request is answered
  const waiting = new Map<Request, (reply: Reply) => void>()
  const shutdown = () => new DhtError.DhtShutdown()
  const offer = (request: Request): boolean => {
    if (closed) return false
    const wake = parked.pop()
    if (wake === undefined) return Queue.unsafeOffer(queue, request)
    handed.add(request)
    wake(request)
    return true
  }
  const answer: Answer = (request, reply) => {
    Deferred.unsafeDone(request.reply, reply)
    const resume = waiting.get(request)
    if (resume !== undefined) {
      waiting.delete(request)
      resume(reply)
    }
  }
  // a full queue: the suspending offer, and the check that the pipeline did not close before the offer was in
  const offerSuspending = (request: Request) =>
    Effect.flatMap(
      shutdownAsDhtShutdown(Queue.offer(queue, request)),
      () => closed ? Effect.fail(shutdown()) : LightDeferred.awaitOnce(request.reply)
    )
  return {
    // the registration and the offer are one synchronous step, so no reply can come before its sender waits
    request: (request) =>
      Effect.async((resume) => {
        if (closed) return resume(Effect.fail(shutdown()))
        waiting.set(request, resume)
        if (!offer(request)) {
          waiting.delete(request)
          resume(offerSuspending(request))
        }
      }),
    offer,
    isClosed: () => closed,
    // the check and the parking are one synchronous step, so no offer can queue a request between them unseen
    next: Effect.async<Request>((resume) => {
      if (Option.getOrElse(queue.unsafeSize(), () => 0) > 0) resume(Queue.take(queue))
      else parked.push((request) => resume(Effect.succeed(request)))
    }),
    started: (request) => {
      handed.delete(request)
    },
    answer,
    close: Effect.suspend(() => {
      closed = true
      parked = []
      const dropped = Array.from(handed)
      handed.clear()
      for (const request of dropped) answer(request, Exit.fail(shutdown()))
      return Effect.flatMap(Queue.takeAll(queue), (queued) => {
        for (const request of queued) answer(request, Exit.fail(shutdown()))
        return Queue.shutdown(queue)
      })
    })
  }
}

// `CONCURRENCY` workers, each taking the next request from `next` and answering it through `answer`: `workers` on a
// queue, the live requester on its hand-over (`started` tells it the request left a worker's hand). The failure
// handler is outside `restore`: an interrupted fiber skips failure handlers inside an interruptible region, and this
// one must answer the request with DhtShutdown. A loop of its own rather than `Effect.forever`, whose yield each turn
// is a step more; the take suspends whenever nothing is waiting.
const runWorkers = (
  handler: Handler,
  services: Services,
  next: Effect.Effect<Request>,
  started: (request: Request) => void,
  answer: Answer
): Effect.Effect<never> => {
  const worker = Effect.uninterruptibleMask((restore) => {
    const one = (request: Request) =>
      Effect.catchAllCause(
        restore(withTurn((turn) => handleWith(handler, services, turn, answer)(request))),
        settleFailed(request, answer)
      )
    const loop: Effect.Effect<never> = Effect.flatMap(restore(next), (request) => {
      started(request)
      return Effect.flatMap(one(request), () => loop)
    })
    return loop
  })
  return Effect.all(Array.from({ length: CONCURRENCY }, () => worker), { concurrency: "unbounded", discard: true })
    .pipe(Effect.zipRight(Effect.never))
}

// --- the requester ---

/**
 * Options of the live requester.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * Discovery for SPEC §6.1 step 3; default: the `Discovery` service, if the Layer graph holds one when the
   * pipeline is built. Discovery itself sends through the requester, so a composition root that builds it after the
   * pipeline passes a function here that reaches it once built. With neither, an empty direct selection with
   * discovery on ends `DiscoveryFailed{SendFailed}`.
   */
  readonly discover?: Discover | undefined
}

// a queue shut down under a waiting offer interrupts it: that is the pipeline closing
const shutdownAsDhtShutdown = <A>(effect: Effect.Effect<A>): Effect.Effect<A, DhtError.DhtShutdown> =>
  Effect.catchAllCause(
    effect,
    (cause) => Cause.isInterruptedOnly(cause) ? Effect.fail(new DhtError.DhtShutdown()) : Effect.failCause(cause)
  )

// the request's tag when it has one (given, or a forward's header's); otherwise one is drawn
const knownTagOf = (params: OutboundRequester.SendMessageParams): OutboundRequester.MessageTag | undefined =>
  Option.isSome(params.tag)
    ? params.tag.value
    : Option.isSome(params.customHeader)
    ? params.customHeader.value.messageTag
    : undefined

// In the step that starts it when its tag is known (every forward's is): a draw is the only effect a request needs
// here, and mapping a tag already at hand was two more steps for each.
const makeRequest = (params: OutboundRequester.SendMessageParams, body: OutboundRequester.OutboundBody) =>
  Effect.withFiberRuntime<Request>((fiber) => {
    const request = (tag: OutboundRequester.MessageTag): Request => ({
      params,
      body,
      tag,
      reply: LightDeferred.unsafeMake<OutboundRequester.SendMessageResponse, DhtError.SendFailure>(fiber.id())
    })
    const known = knownTagOf(params)
    return known !== undefined ? Effect.succeed(request(known)) : Effect.map(OutboundRequester.randomTag, request)
  })

const shedForward = DhtMetrics.tagged(DhtMetrics.inboundShed, "where", "forward")

/**
 * The live `OutboundRequester`: `CONCURRENCY` workers as `workers` describes, run for as long as the scope, and a
 * bounded queue of `outboundBufferSize` requests for when all are busy. A request goes to a worker waiting for one
 * without the queue's hand-over (the same requests, handled the same way, in fewer steps). `send` suspends while
 * the queue is full; `offerForward` sheds instead.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<OutboundRequester.OutboundRequesterService, never, Requirements | Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* DhtConfig.DhtConfig
    const queue = yield* Queue.bounded<Request>(config.outboundBufferSize)
    const handoff = makeHandoff(queue)
    const jobs = yield* FiberSet.make<void, never>()
    // runs once the workers are interrupted (finalizers run in reverse), before the jobs are
    yield* Effect.addFinalizer(() => handoff.close)
    const fromGraph = Option.map(yield* Effect.serviceOption(Discovery.Discovery), (d): Discover => d.discover)
    const handler: Handler = { jobs, discover: Option.orElse(Option.fromNullable(options.discover), () => fromGraph) }
    yield* Effect.forkScoped(
      withServices((services) => runWorkers(handler, services, handoff.next, handoff.started, handoff.answer))
    )
    return OutboundRequester.OutboundRequester.of({
      send: (params, body) => Effect.flatMap(makeRequest(params, body), handoff.request),
      // a forward is shed when no worker or queue slot takes it (§13.1), and refused once the pipeline closed
      offerForward: (params, body) =>
        Effect.suspend(() =>
          handoff.isClosed() ? Effect.succeed(false) : Effect.flatMap(
            makeRequest(params, body),
            (request) => handoff.offer(request) ? Effect.succeed(true) : Effect.as(Metric.increment(shedForward), false)
          )
        )
    })
  })

/**
 * `make` as a Layer: the pipeline runs while the Layer's scope is open.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<OutboundRequester.OutboundRequester, never, Requirements> =>
  Layer.scoped(OutboundRequester.OutboundRequester, make(options))
