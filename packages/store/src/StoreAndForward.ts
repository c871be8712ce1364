/**
 * The store-and-forward service (SPEC §9): what this node stores for others, the requests it sends when it comes
 * online, the responses it serves, and the validation of the responses it receives. It supplies core's `SafStage`
 * seam, so the inbound pipeline (`@comms-dht/inbound`) runs §9.1 and §7.6 through it without either package
 * importing the other.
 *
 * State lives in the service, one per node: the in-flight requests keyed by `(responder, request_id)`, the per-
 * requester rate limit of the responder side (forgotten when the requester disconnects), and the completion
 * counters of §9.5. A scoped fiber runs the cleanup
 * of §9.2 on the Effect clock; sends run in fibers of the service's scope, so the inbound pipeline never waits on
 * the outbound queue.
 *
 * @since 0.1.0
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as DhtLog from "@comms-dht/core/DhtLog"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Envelope from "@comms-dht/core/Envelope"
import * as FiberClock from "@comms-dht/core/FiberClock"
import * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as LightDeferred from "@comms-dht/core/LightDeferred"
import * as LightQueue from "@comms-dht/core/LightQueue"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as SafStage from "@comms-dht/core/SafStage"
import * as StoreForward from "@comms-dht/core/StoreForwardMessages"
import * as Transport from "@comms-dht/core/Transport"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"

/**
 * @since 0.1.0
 * @category models
 */
export interface StoreAndForwardService {
  /**
   * SPEC §9.3's online trigger: a request to each of this node's `saf.numNeighbouringNodes` closest verified SAF
   * peers, from this node's cursor for it. Returns how many were sent; `StoreAndForwardMessagesReceived` follows
   * when all of them have ended (§9.5).
   */
  readonly requestStoredMessages: Effect.Effect<number, DhtError.StoreError>
  /**
   * SPEC §9.3's new-connection trigger: asks `peer`, once `saf.connectionRequestDelay` has passed, if it is then a
   * SAF peer among this node's closest (at once when the delay is 0).
   */
  readonly peerConnected: (peer: Peer.Peer) => Effect.Effect<void, DhtError.StoreError>
  /**
   * `peerConnected` for a listener of the transport's events (`Transport.onEvent`), in the step that connects: the
   * peer is noted, and a fiber of the service asks it once the delay has passed (when the delay is 0, in its next
   * step).
   */
  readonly unsafePeerConnected: (peer: Peer.Peer) => void
  /** The inbound pipeline's stage (SPEC §9.1, §7.6). */
  readonly stage: SafStage.SafStageService
  /** Requests sent and not yet answered, timed out ones included until cleanup. */
  readonly inflight: Effect.Effect<number>
  /** One round of SPEC §9.2's cleanup, as the scheduled fiber runs it. */
  readonly cleanup: Effect.Effect<MessageStore.CleanupResult, DhtError.StoreError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class StoreAndForward extends Context.Tag("@comms-dht/store/StoreAndForward")<
  StoreAndForward,
  StoreAndForwardService
>() {}

/**
 * What the service reads from the Layer graph.
 *
 * @since 0.1.0
 * @category models
 */
export type Requirements =
  | MessageStore.MessageStore
  | PeerManager.PeerManager
  | NodeIdentity.NodeIdentity
  | Crypto.Crypto
  | DedupCache.DedupCache
  | OutboundRequester.OutboundRequester
  | DhtEvents.DhtEvents

// --- internal state ---

// The requests of one online trigger (§9.5): `StoreAndForwardMessagesReceived` once all have ended.
interface Trigger {
  remaining: number
  done: boolean
}

interface Inflight {
  readonly key: string
  readonly responder: Peer.Peer
  readonly requestId: number
  readonly sentAt: number
  readonly limit: number
  readonly cursor: MessageStore.Cursor
  /** continuations sent after this request, for this trigger and responder (§9.3: at most 20) */
  readonly continuation: number
  trigger: Trigger | undefined
  ended: boolean
}

interface Served {
  readonly at: number
  /** the last row of a response with `more = true`: a request from there is a continuation */
  readonly continueFrom: MessageStore.Cursor | undefined
}

// requesters remembered by the responder's rate limit; beyond this the oldest is forgotten (a flood of
// identities then costs each one response, which the source limits of the transport already bound)
const MAX_SERVED = 10_000

const inflightKey = (responder: NodeId.PublicKey, requestId: number) => `${NodeId.toHex(responder)}/${requestId}`

const randomRequestId = Random.nextIntBetween(1, 0x1_0000_0000)

const EMPTY = new Uint8Array(0)

const requestsSent = DhtMetrics.safRequestsSent
const requestsReceived = DhtMetrics.safRequestsReceived
const rateLimited = DhtMetrics.tagged(DhtMetrics.inboundRejected, "reason", "RateLimited")

const secondsOf = (ms: number): bigint => BigInt(Math.floor(ms / 1000))

// SPEC §7.2 rule 6, for headers that arrive inside a SAF response rather than through validation
const encryptedSemanticsProblem = (header: Envelope.DhtMessageHeader, body: Uint8Array): boolean =>
  header.isEncrypted &&
  (header.destination._tag === "Unknown" || Option.isNone(header.ephemeralPublicKey) ||
    header.messageSignature.length === 0 || body.length === 0)

const cursorOfWire = (m: StoreForward.StoredMessage): MessageStore.Cursor => ({ sinceMs: m.storedAtMs, afterId: m.id })

const toRow = (row: MessageStore.StoredMessage): StoreForward.StoredRow => ({
  version: row.version,
  header: row.header,
  body: row.body,
  storedAtMs: BigInt(row.storedAt),
  id: BigInt(row.id)
})

/**
 * Starts the service in the current scope: the cleanup fiber runs every `saf.cleanupInterval` until the scope
 * closes; sends still running then are interrupted.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<StoreAndForwardService, never, Requirements | Scope.Scope> = Effect.gen(function*() {
  const context = yield* Effect.context<Requirements>()
  const store = Context.get(context, MessageStore.MessageStore)
  const peers = Context.get(context, PeerManager.PeerManager)
  const identity = Context.get(context, NodeIdentity.NodeIdentity)
  const dedupCache = Context.get(context, DedupCache.DedupCache)
  const requester = Context.get(context, OutboundRequester.OutboundRequester)
  const events = Context.get(context, DhtEvents.DhtEvents)
  const scope = yield* Effect.scope

  const inflight = new Map<string, Inflight>()
  const served = new Map<string, Served>()
  // The responders asked since the node last came online (NodeId hex → when). §9.3's new-connection trigger asks a
  // SAF neighbour the online trigger did not: not again at every reconnection, which while a node joins (peer sync
  // dialling, pools refreshing) made 1,400 requests for 60 nodes, 23 a node, where 8 do.
  const asked = new Map<string, number>()

  // The configuration and the crypto this was made with, for every call: the stage runs inside the inbound
  // pipeline's fibers, whose context is the caller's, and swapping it in for each message (`mapInputContext`) was a
  // dozen steps of the run loop and two copies of the fiber's references.
  const crypto = Context.get(context, Crypto.Crypto)
  const config = Effect.succeed(yield* DhtConfig.DhtConfig)
  // what `mayStore` reads
  const safConfig = (yield* config).saf
  const fork = <A, E>(effect: Effect.Effect<A, E>) =>
    Effect.asVoid(Effect.forkIn(
      Effect.catchAllCause(effect, (cause) => Effect.logWarning("store-and-forward task failed", cause)),
      scope
    ))

  // --- §9.1 decision ---

  // verified communication nodes closer to the destination than this node, up to n
  const closerCount = (destination: NodeId.NodeId, n: number) =>
    PeerManager.closerCount(peers, destination, identity.nodeId, n, {
      features: Peer.PeerFeatures.COMMUNICATION_NODE,
      verifiedOnly: true,
      excludeBanned: true,
      excluded: [destination]
    })

  const knownDestination = (key: NodeId.PublicKey) =>
    Effect.map(
      PeerManager.getOption(peers, NodeId.fromPublicKey(key)),
      Option.filter((peer) => NodeId.equals(peer.publicKey, key))
    )

  // §9.1's rules 1–6 (and a destination key), which read nothing: false when they rule storing out
  const mayStore = (message: InboundMessages.DecryptedDhtMessage, nowMs: number): boolean => {
    const { body, header } = message
    return Peer.hasFeatures(identity.features, Peer.PeerFeatures.DHT_STORE_FORWARD) &&
      message.dedupHitCount === 1 && !message.isSafMessage &&
      body.length > 0 && header.expires >= secondsOf(nowMs) && body.length <= safConfig.maxMessageSize &&
      header.messageType === Envelope.DhtMessageType.None &&
      message.decryption._tag === "NotForUs" && header.isEncrypted &&
      header.destination._tag === "PublicKey"
  }

  // the priority when §9.1 says "store", else none
  const storePriority = (message: InboundMessages.DecryptedDhtMessage) =>
    Effect.gen(function*() {
      const { header } = message
      const now = yield* Clock.currentTimeMillis
      if (!mayStore(message, now)) return Option.none()
      const destination = header.destination
      if (destination._tag !== "PublicKey") return Option.none()
      const n = safConfig.numNeighbouringNodes
      if ((yield* closerCount(destination.nodeId, n)) >= n) {
        return Option.none()
      }
      const known = yield* knownDestination(destination.publicKey)
      if (Option.isSome(known) && known.value.isBanned(now)) return Option.none()
      return Option.some(Option.isSome(known) ? MessageStore.Priority.High : MessageStore.Priority.Low)
    })

  // The priority `decide` found, for `handle` to store with: the message's dedup hash is the same array object from
  // one stage to the next, so the peer-table queries of §9.1 run once per message, not once per stage.
  const decided = new WeakMap<Uint8Array, MessageStore.Priority>()

  const decide = (message: InboundMessages.DecryptedDhtMessage) =>
    Effect.gen(function*() {
      const priority = yield* storePriority(message)
      if (Option.isNone(priority)) return { isSafStored: false, isAlreadyForwarded: false }
      decided.set(message.dedupHash, priority.value)
      const existed = yield* store.contains(message.dedupHash)
      return { isSafStored: true, isAlreadyForwarded: existed }
    })

  const storeMessage = (message: InboundMessages.DecryptedDhtMessage) =>
    Effect.gen(function*() {
      const known = decided.get(message.dedupHash)
      decided.delete(message.dedupHash)
      const priority = known === undefined ? yield* storePriority(message) : Option.some(known)
      if (Option.isNone(priority)) return false
      const { header } = message
      if (header.destination._tag !== "PublicKey") return false
      const result = yield* store.insert({
        version: header.version,
        messageType: header.messageType,
        destinationPublicKey: header.destination.publicKey,
        destinationNodeId: header.destination.nodeId,
        header: Envelope.encodeHeader(new Envelope.DhtMessageHeader({ ...header, hopCount: 0 }, true)),
        body: message.body,
        priority: priority.value,
        expiresAt: Number(header.expires) * 1000,
        sourceNodeId: message.sourcePeer.nodeId,
        bodyHash: message.dedupHash
      })
      return result._tag === "Existed"
    })

  // --- requests (§9.3, requester side) ---

  const endRequest = (entry: Inflight) =>
    Effect.suspend(() => {
      if (entry.ended) return Effect.void
      entry.ended = true
      const trigger = entry.trigger
      if (trigger === undefined || trigger.done) return Effect.void
      trigger.remaining -= 1
      return trigger.remaining > 0 ? Effect.void : completeTrigger(trigger)
    })

  const completeTrigger = (trigger: Trigger) =>
    Effect.suspend(() => {
      if (trigger.done) return Effect.void
      trigger.done = true
      return events.publish(DhtEvent.StoreAndForwardMessagesReceived())
    })

  // a request whose write failed ends now rather than at the timeout (§9.3: a failed dial skips that peer)
  const watchSend = (entry: Inflight, sent: OutboundRequester.SendMessageResponse) =>
    OutboundRequester.resolve(sent).pipe(
      Effect.flatMap((states): Effect.Effect<void, unknown> =>
        states.states.length === 0
          ? Effect.fail("no peer")
          : Effect.forEach(states.states, (state) => LightDeferred.awaitOnce(state.result), { discard: true })
      ),
      Effect.catchAll(() =>
        Effect.suspend(() => {
          inflight.delete(entry.key)
          return endRequest(entry)
        })
      )
    )

  const sendRequest = (
    responder: Peer.Peer,
    cursor: MessageStore.Cursor,
    trigger: Trigger | undefined,
    continuation: number
  ) =>
    Effect.gen(function*() {
      const { saf } = yield* config
      const requestId = yield* randomRequestId
      const entry: Inflight = {
        key: inflightKey(responder.publicKey, requestId),
        responder,
        requestId,
        sentAt: yield* Clock.currentTimeMillis,
        limit: saf.maxReturnedMessages,
        cursor,
        continuation,
        trigger,
        ended: false
      }
      inflight.set(entry.key, entry)
      asked.set(NodeId.toHex(responder.nodeId), entry.sentAt)
      const request = new StoreForward.StoredMessagesRequest({
        requestId,
        limit: saf.maxReturnedMessages,
        sinceMs: cursor.sinceMs,
        afterId: cursor.afterId
      }, true)
      yield* fork(
        requester.send(
          OutboundRequester.makeParams({
            strategy: BroadcastStrategy.DirectNodeId({ nodeId: responder.nodeId }),
            destination: Envelope.destinationPublicKey(responder.publicKey),
            messageType: Envelope.DhtMessageType.SafRequestMessages
          }),
          new Envelope.EnvelopeBody({ parts: [StoreForward.encodeStoredMessagesRequest(request)] }, true)
        ).pipe(
          Effect.tap(() => Metric.increment(requestsSent)),
          Effect.flatMap((sent) => watchSend(entry, sent)),
          Effect.catchAll(() =>
            Effect.suspend(() => {
              inflight.delete(entry.key)
              return endRequest(entry)
            })
          )
        )
      )
      return entry
    })

  const pendingFor = (responder: NodeId.NodeId, now: number, maxAge: number): Inflight | undefined => {
    for (const entry of inflight.values()) {
      if (!entry.ended && now - entry.sentAt <= maxAge && NodeId.equals(entry.responder.nodeId, responder)) {
        return entry
      }
    }
    return undefined
  }

  const safNeighbourQuery: PeerManager.PeerQuery = {
    hasFeatures: Peer.PeerFeatures.DHT_STORE_FORWARD,
    verifiedOnly: true,
    excludeBanned: true
  }
  const safNeighbours = (n: number) => peers.closest(identity.nodeId, n, safNeighbourQuery)

  const requestStoredMessages: StoreAndForwardService["requestStoredMessages"] = Effect.gen(function*() {
    const { saf } = yield* config
    const maxAge = DhtConfig.millis(saf.maxInflightRequestAge)
    const now = yield* Clock.currentTimeMillis
    const trigger: Trigger = { remaining: 0, done: false }
    const toAsk: Array<Peer.Peer> = []
    asked.clear()
    for (const target of yield* safNeighbours(saf.numNeighbouringNodes)) {
      const pending = pendingFor(target.nodeId, now, maxAge)
      if (pending === undefined) {
        toAsk.push(target)
      } else if (pending.trigger === undefined) {
        // a request already on its way to this responder (a new connection's) counts for this trigger
        pending.trigger = trigger
        trigger.remaining += 1
      }
    }
    // counted before any is sent: a send that fails at once ends its request, and must not end the trigger early
    trigger.remaining += toAsk.length
    for (const target of toAsk) yield* sendRequest(target, yield* store.cursor(target.publicKey), trigger, 0)
    if (trigger.remaining === 0) {
      yield* completeTrigger(trigger)
    } else {
      yield* fork(Effect.delay(completeTrigger(trigger), Duration.millis(maxAge)))
    }
    return toAsk.length
  })

  // Asks `peer` if it is one of the n closest: its record matches, and fewer than n matching peers are closer
  // (counted rather than selected: it runs for every new connection, so the peers asked already leave at once).
  const askIfNeighbour = (peer: Peer.Peer): Effect.Effect<void, DhtError.StoreError> =>
    FiberClock.withNow((now) => {
      if (pendingFor(peer.nodeId, now, DhtConfig.millis(safConfig.maxInflightRequestAge)) !== undefined) {
        return Effect.void
      }
      if (asked.has(NodeId.toHex(peer.nodeId))) return Effect.void
      return Effect.flatMap(PeerManager.getOption(peers, peer.nodeId), (known) => {
        if (Option.isNone(known) || !PeerManager.matchesQuery(safNeighbourQuery, now)(known.value)) return Effect.void
        const n = safConfig.numNeighbouringNodes
        return Effect.flatMap(
          PeerManager.closerCount(peers, identity.nodeId, peer.nodeId, n, safNeighbourQuery),
          (closer) =>
            closer >= n
              ? Effect.void
              : Effect.flatMap(store.cursor(known.value.publicKey), (cursor) =>
                sendRequest(known.value, cursor, undefined, 0))
        )
      })
    })

  // The peers connected since the new-connection trigger last ran. A joining node connects to one closer peer after
  // another within a fraction of a second, each of them among its closest for a moment: asked at once, a 300-node
  // network's nodes made 32 requests each, where 8 peers hold their mail (docs/spec-departures.md).
  const newcomers = new Map<string, Peer.Peer>()
  let settling = false
  const askNewcomers = Effect.suspend(() => {
    settling = false
    const due = Array.from(newcomers.values())
    newcomers.clear()
    return Effect.forEach(due, (peer) =>
      Effect.catchAll(askIfNeighbour(peer), (error) => Effect.logWarning("store-and-forward request failed", error)), {
      discard: true
    })
  })
  const connectionDelay = DhtConfig.millis(safConfig.connectionRequestDelay)
  const asksNewcomers = (peer: Peer.Peer) =>
    safConfig.autoRequest && Peer.hasFeatures(peer.features, Peer.PeerFeatures.DHT_STORE_FORWARD)
  // The first newcomer of a settling period wakes the asker, which waits out the delay and asks them all: a fiber
  // that waits only while there is something to ask, rather than a step of a fiber for every connection.
  const settle = yield* LightQueue.bounded<void>(1)
  const noteNewcomer = (peer: Peer.Peer): void => {
    newcomers.set(NodeId.toHex(peer.nodeId), peer)
    if (settling) return
    settling = true
    settle.unsafeOffer(undefined)
  }
  const afterDelay = connectionDelay === 0 ? askNewcomers : Effect.delay(askNewcomers, Duration.millis(connectionDelay))
  yield* Effect.forkIn(
    Effect.forever(Effect.flatMap(Queue.take(settle), () =>
      Effect.catchAllCause(afterDelay, (cause) => Effect.logWarning("store-and-forward task failed", cause)))),
    scope
  )

  const peerConnected: StoreAndForwardService["peerConnected"] = (peer) =>
    Effect.suspend(() => {
      if (!asksNewcomers(peer)) return Effect.void
      if (connectionDelay === 0) return askIfNeighbour(peer)
      noteNewcomer(peer)
      return Effect.void
    })

  const unsafePeerConnected = (peer: Peer.Peer): void => {
    if (asksNewcomers(peer)) noteNewcomer(peer)
  }

  // --- responder (§9.3) ---

  const respond = (message: InboundMessages.DecryptedDhtMessage) =>
    Effect.gen(function*() {
      if (message.decryption._tag !== "Succeeded" || !message.isForThisNode) return SafStage.SafOutcome.Consumed()
      const request = yield* StoreForward.decodeStoredMessagesRequest(message.decryption.body.parts[0] ?? EMPTY)
      yield* Metric.increment(requestsReceived)
      const { maxMessageSize, saf } = yield* config
      const source = message.sourcePeer
      const sourceKey = NodeId.toHex(source.nodeId)
      const now = yield* Clock.currentTimeMillis
      const cursor = MessageStore.clampCursor({ sinceMs: request.sinceMs, afterId: request.afterId })
      const last = served.get(sourceKey)
      const isContinuation = last?.continueFrom !== undefined &&
        MessageStore.compareCursor(last.continueFrom, cursor) === 0
      const reply = (body: Uint8Array) =>
        fork(requester.send(
          OutboundRequester.makeParams({
            strategy: BroadcastStrategy.DirectNodeId({ nodeId: source.nodeId }),
            destination: Envelope.destinationPublicKey(source.publicKey),
            messageType: Envelope.DhtMessageType.SafStoredMessages
          }),
          new Envelope.EnvelopeBody({ parts: [body] }, true)
        ))
      if (last !== undefined && !isContinuation && now - last.at < DhtConfig.millis(saf.minRequestInterval)) {
        yield* Metric.increment(rateLimited)
        yield* DhtLog.debug("SAF request over the rate limit: answered empty", { peer: NodeId.toHex(source.nodeId) })
        yield* reply(StoreForward.encodePackedResponse([], request.requestId, false))
        return SafStage.SafOutcome.Consumed()
      }
      const packed = new Map<number, StoreForward.PackedRow | undefined>()
      const limit = Math.min(request.limit === 0 ? saf.maxReturnedMessages : request.limit, saf.maxReturnedMessages)
      const fetched = yield* store.fetchFor(source.publicKey, cursor, limit, {
        maxBytes: maxMessageSize - DhtConfig.SAF_RESPONSE_HEADROOM - StoreForward.RESPONSE_OVERHEAD,
        sizeOf: (row) => {
          const p = StoreForward.packRow(toRow(row))
          packed.set(row.id, p)
          return p?.size ?? 0
        }
      })
      const rows: Array<StoreForward.PackedRow> = []
      for (const row of fetched.rows) {
        const p = packed.has(row.id) ? packed.get(row.id) : StoreForward.packRow(toRow(row))
        if (p !== undefined) rows.push(p)
      }
      const lastRow = fetched.rows[fetched.rows.length - 1]
      if (served.size >= MAX_SERVED && !served.has(sourceKey)) {
        const oldest = served.keys().next()
        if (oldest.done !== true) served.delete(oldest.value)
      }
      served.delete(sourceKey)
      served.set(sourceKey, {
        at: now,
        continueFrom: fetched.more && lastRow !== undefined ? MessageStore.cursorOf(lastRow) : undefined
      })
      yield* reply(StoreForward.encodePackedResponse(rows, request.requestId, fetched.more))
      return SafStage.SafOutcome.Consumed()
    })

  // --- response validation (§9.4, requester side) ---

  type Checked = {
    readonly wire: StoreForward.StoredMessage
    readonly header: Envelope.DhtMessageHeader
    readonly origin: Option.Option<NodeId.PublicKey>
  }

  // step 3's "stop" rules over the whole response before anything is recorded: a response that stops late must
  // not leave dedup entries behind for the messages it would have delivered (an honest holder's copy would then be
  // skipped as a repeat)
  const checkRows = (entry: Inflight, wires: ReadonlyArray<StoreForward.StoredMessage>, now: number) =>
    Effect.gen(function*() {
      const cfg = yield* config
      const skew = DhtConfig.millis(cfg.clockSkewAllowance)
      const nowS = secondsOf(now)
      let previous = entry.cursor
      const kept: Array<Checked> = []
      for (const wire of wires) {
        const position = cursorOfWire(wire)
        if (MessageStore.compareCursor(position, previous) <= 0) {
          return yield* new DhtError.InvalidSafMessage({ reason: "OutOfOrder" })
        }
        previous = position
        if (Option.isNone(wire.dhtHeader) || wire.body.length === 0) {
          return yield* new DhtError.InvalidSafMessage({ reason: "Malformed" })
        }
        const header = wire.dhtHeader.value
        if (!cfg.supportedVersions.includes(wire.version) || !cfg.supportedVersions.includes(header.version)) continue
        if (wire.storedAtMs > BigInt(now + skew)) {
          return yield* new DhtError.InvalidSafMessage({ reason: "StoredAtInFuture" })
        }
        if (encryptedSemanticsProblem(header, wire.body)) {
          return yield* new DhtError.InvalidSafMessage({ reason: "BadEncryptedSemantics" })
        }
        if (header.messageType !== Envelope.DhtMessageType.None) {
          return yield* new DhtError.InvalidSafMessage({ reason: "DhtMessageViaSaf" })
        }
        if (!Envelope.isDestinedTo(header.destination, identity.publicKey)) {
          return yield* new DhtError.InvalidSafMessage({ reason: "InvalidSafDestination" })
        }
        if (header.expires < nowS) continue
        if (header.isEncrypted || header.messageSignature.length === 0) {
          kept.push({ wire, header, origin: Option.none() })
          continue
        }
        const origin = yield* MessageCrypto.verifyWith(crypto, header, wire.body, header.messageSignature).pipe(
          Effect.mapError(() => new DhtError.InvalidSafMessage({ reason: "InvalidSignature" }))
        )
        kept.push({ wire, header, origin: Option.some(origin) })
      }
      return { kept, last: wires.length === 0 ? undefined : previous }
    })

  // decryption and dedup of a row that passed the checks: `None` is a skip (not for us, or already received)
  const accept = (message: InboundMessages.DecryptedDhtMessage, row: Checked) =>
    Effect.gen(function*() {
      const { header, wire } = row
      const opened = header.isEncrypted
        ? yield* MessageCrypto.decryptWith(crypto, identity, header, wire.body).pipe(
          Effect.map((d) => Option.some({ body: d.body, origin: Option.some(d.origin) })),
          Effect.catchAll(() => Effect.succeedNone)
        )
        : yield* Envelope.decodeEnvelopeBody(wire.body).pipe(
          Effect.map((body) => Option.some({ body, origin: row.origin })),
          Effect.catchAll(() => Effect.succeedNone)
        )
      if (Option.isNone(opened)) return Option.none()
      const { clockSkewAllowance } = yield* config
      const hash = MessageCrypto.dedupHashWith(
        crypto,
        MessageCrypto.challengeWith(crypto, header, wire.body),
        header.messageSignature
      )
      const keepUntil = Number(header.expires) * 1000 + DhtConfig.millis(clockSkewAllowance)
      const inserted = yield* dedupCache.insert(hash, message.sourcePeer.publicKey, keepUntil)
      if (inserted._tag === "Inserted" && inserted.hits > 1) return Option.none()
      const accepted: InboundMessages.DecryptedDhtMessage = {
        tag: message.tag,
        sourcePeer: message.sourcePeer,
        header,
        body: wire.body,
        isSafMessage: true,
        dedupHitCount: 1,
        dedupHash: hash,
        mayForward: false,
        size: wire.body.length,
        decryption: InboundMessages.DecryptionResult.Succeeded({
          body: opened.value.body,
          authenticatedOrigin: opened.value.origin
        }),
        isForThisNode: true,
        isSafStored: Option.none(),
        isAlreadyForwarded: false
      }
      return Option.some(accepted)
    })

  const receive = (message: InboundMessages.DecryptedDhtMessage) =>
    Effect.gen(function*() {
      if (message.decryption._tag !== "Succeeded" || !message.isForThisNode) return SafStage.SafOutcome.Consumed()
      const response = yield* StoreForward.decodeStoredMessagesResponse(message.decryption.body.parts[0] ?? EMPTY)
      if (response.responseType !== StoreForward.SafResponseType.ForMe) {
        return yield* new DhtError.InvalidSafMessage({ reason: "Malformed" })
      }
      const responder = message.sourcePeer
      const entry = inflight.get(inflightKey(responder.publicKey, response.requestId))
      if (entry === undefined) return yield* new DhtError.UnrequestedSafResponse()
      inflight.delete(entry.key)
      return yield* Effect.ensuring(receiveRequested(message, response, entry), endRequest(entry))
    })

  const receiveRequested = (
    message: InboundMessages.DecryptedDhtMessage,
    response: StoreForward.StoredMessagesResponse,
    entry: Inflight
  ) =>
    Effect.gen(function*() {
      const { saf } = yield* config
      const now = yield* Clock.currentTimeMillis
      if (now - entry.sentAt > DhtConfig.millis(saf.maxInflightRequestAge)) {
        return yield* new DhtError.SafResponseTooLate()
      }
      if (response.messages.length > entry.limit) {
        return yield* new DhtError.TooManySafMessages({ received: response.messages.length, limit: entry.limit })
      }
      const { kept, last } = yield* checkRows(entry, response.messages, now)
      const delivered: Array<InboundMessages.DecryptedDhtMessage> = []
      for (const row of kept) {
        const accepted = yield* accept(message, row)
        if (Option.isSome(accepted)) delivered.push(accepted.value)
      }
      const responder = entry.responder
      const cursor = last === undefined ? entry.cursor : yield* store.advanceCursor(responder.publicKey, last)
      if (delivered.length > 0) {
        yield* Metric.incrementBy(DhtMetrics.safMessagesDelivered, delivered.length)
        yield* events.publish(DhtEvent.SafMessagesDelivered({ from: responder.nodeId, count: delivered.length }))
      }
      const cap = Math.ceil(saf.maxRowsPerDestination / saf.maxReturnedMessages)
      if (response.more && entry.continuation < cap) {
        yield* sendRequest(responder, cursor, undefined, entry.continuation + 1)
      }
      return SafStage.SafOutcome.Delivered({ messages: delivered })
    })

  // --- the stage (§7.6) ---

  const handle = (
    message: InboundMessages.DecryptedDhtMessage,
    decision: SafStage.SafDecision | undefined
  ): Effect.Effect<SafStage.SafOutcome, DhtError.StageError | DhtError.StoreError> => {
    switch (message.header.messageType) {
      case Envelope.DhtMessageType.SafRequestMessages:
        return respond(message)
      case Envelope.DhtMessageType.SafStoredMessages:
        return receive(message)
      default:
        return Effect.gen(function*() {
          const decided = decision ?? (yield* decide(message))
          const existed = decided.isSafStored && !decided.isAlreadyForwarded ? yield* storeMessage(message) : false
          return SafStage.SafOutcome.Continue({
            message: {
              ...message,
              isSafStored: Option.some(decided.isSafStored),
              isAlreadyForwarded: decided.isAlreadyForwarded || existed
            }
          })
        })
    }
  }

  // --- cleanup (§9.2) ---

  const cleanup = Effect.gen(function*() {
    const { saf } = yield* config
    const now = yield* Clock.currentTimeMillis
    const result = yield* store.cleanup
    const inflightLimit = 2 * DhtConfig.millis(saf.maxInflightRequestAge)
    for (const entry of Array.from(inflight.values())) {
      if (now - entry.sentAt > inflightLimit) {
        inflight.delete(entry.key)
        yield* endRequest(entry)
      }
    }
    const servedLimit = DhtConfig.millis(saf.minRequestInterval)
    for (const [key, value] of Array.from(served)) {
      if (now - value.at >= servedLimit) served.delete(key)
    }
    // a node online for days forgets, after the Low priority TTL, which neighbours it asked
    const askedLimit = DhtConfig.millis(saf.lowPriorityMsgStorageTtl)
    for (const [key, at] of Array.from(asked)) {
      if (now - at >= askedLimit) asked.delete(key)
    }
    return result
  })

  // the rate limit is per connection: a requester that reconnects (a restart) is served at once, not 30 s later
  const transport = yield* Effect.serviceOption(Transport.Transport)
  if (Option.isSome(transport)) {
    yield* Scope.extend(
      Transport.onEvent(transport.value, (event) => {
        if (event._tag === "PeerDisconnected") served.delete(NodeId.toHex(event.nodeId))
      }),
      scope
    )
  }

  const { saf } = yield* config
  yield* Effect.forkIn(
    Effect.repeat(
      Effect.catchAll(cleanup, (error) => Effect.logWarning("store-and-forward cleanup failed", error)),
      Schedule.spaced(saf.cleanupInterval)
    ).pipe(Effect.delay(saf.cleanupInterval)),
    scope
  )

  return StoreAndForward.of({
    requestStoredMessages,
    peerConnected,
    unsafePeerConnected,
    stage: SafStage.SafStage.of({
      mayStore,
      decide,
      handle
    }),
    inflight: Effect.sync(() => inflight.size),
    cleanup
  })
})

/**
 * The service and core's `SafStage` seam it implements.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<StoreAndForward | SafStage.SafStage, never, Requirements> = Layer.scopedContext(
  Effect.map(make, (service) =>
    Context.make(StoreAndForward, service).pipe(Context.add(SafStage.SafStage, service.stage)))
)
