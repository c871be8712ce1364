/**
 * Reliable delivery with end-to-end receipts (ours, docs/spec-departures.md §2).
 *
 * Origin: `sendReliable` encrypts an application message for its destination with `RECEIPT_REQUESTED` set, once;
 * its dedup hash (SPEC §8.1) names the receipt that will answer it. Every attempt re-sends those very bytes (as a
 * forward does, with the header as custom header) over the next strategy — direct, then closest and propagate in
 * turn — on the caller's `Schedule`, so the destination, its store-and-forward nodes and every forwarder see one
 * message whatever the number of attempts: one delivery, one receipt, one stored row per holder. When the schedule
 * is spent, store-and-forward holds the message until its expiry. The `Delivery` moves `Sent` → `Stored` (a closest
 * attempt reached a node other than the destination: those nodes store it, SPEC §9.1 rule 7; holders send no notice
 * of their own) → `Delivered` (a receipt signed by the destination over the hash) or `Expired` (its expiry passed).
 *
 * Destination: a message it delivers that asks for a receipt is answered once (dedup lets one copy through), by a
 * `Receipt` encrypted for the authenticated origin. If it came through store-and-forward or a relay, the same
 * receipt goes in clear to this node's closest nodes — those that store for it — and each holder removes its copy
 * once the signature verifies against the destination of the row it holds.
 *
 * @since 0.1.0
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import type * as Crypto from "@comms-dht/core/Crypto"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import * as DhtLog from "@comms-dht/core/DhtLog"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Envelope from "@comms-dht/core/Envelope"
import * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Receipts from "@comms-dht/core/Receipts"
import * as OutboundPipeline from "@comms-dht/outbound/OutboundPipeline"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"

/**
 * Where a reliable send stands. `Delivered` and `Expired` are final.
 *
 * @since 0.1.0
 * @category models
 */
export type DeliveryStatus = Data.TaggedEnum<{
  /** queued to at least one peer, or waiting for the next attempt; `attempts` made so far */
  Sent: { readonly attempts: number }
  /** a closest attempt reached store-and-forward nodes of the destination */
  Stored: { readonly attempts: number }
  /** the destination's receipt verified, `elapsedMs` after the send (on the Effect clock) */
  Delivered: { readonly elapsedMs: number }
  /** no receipt before the message's expiry */
  Expired: {}
}>

/**
 * Constructors and matchers of `DeliveryStatus`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const DeliveryStatus = Data.taggedEnum<DeliveryStatus>()

/**
 * @since 0.1.0
 * @category utils
 */
export const isFinal = (status: DeliveryStatus): boolean => status._tag === "Delivered" || status._tag === "Expired"

/**
 * One reliable send.
 *
 * @since 0.1.0
 * @category models
 */
export interface Delivery {
  /** the message's dedup hash: what its receipt carries */
  readonly messageHash: Uint8Array
  readonly destination: NodeId.PublicKey
  /** unix seconds: when it stops being retried, stored and awaited */
  readonly expires: bigint
  /** the status now */
  readonly status: Effect.Effect<DeliveryStatus>
  /** the status now, then each change */
  readonly changes: Stream.Stream<DeliveryStatus>
  /** the final status (`Delivered` or `Expired`), or `DeliveryTimeout` if neither came within `timeout` */
  readonly await: (timeout: Duration.DurationInput) => Effect.Effect<DeliveryStatus, DhtError.DeliveryTimeout>
}

/**
 * A strategy of one attempt: `DirectPublicKey`, `ClosestNodes` (the nodes that store for the destination) or
 * greedy `Propagate`, all toward the destination.
 *
 * @since 0.1.0
 * @category models
 */
export type AttemptStrategy = "direct" | "closest" | "propagate"

/**
 * What to send reliably: an application message (`messageType`, `body`) for `destination`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReliableRequest {
  readonly destination: NodeId.PublicKey
  readonly messageType: number
  readonly body: Uint8Array
  /** default `saf.msgValidity`; at most `maxMessageExpiry` */
  readonly expiresIn?: Duration.DurationInput | undefined
  /**
   * Strategies of successive attempts: the first for the first attempt, then the others in turn (default
   * `["direct", "closest", "propagate"]`). A first attempt that reaches nobody moves on to the next strategy at once.
   */
  readonly strategies?: ReadonlyArray<AttemptStrategy> | undefined
}

/**
 * When to retry: 5 s, 10 s, 20 s, 40 s after the first attempt; store-and-forward holds the message after that.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultPolicy: Schedule.Schedule<unknown> = Schedule.exponential("5 seconds").pipe(
  Schedule.intersect(Schedule.recurs(4))
)

const defaultStrategies: ReadonlyArray<AttemptStrategy> = ["direct", "closest", "propagate"]

/**
 * @since 0.1.0
 * @category models
 */
export interface ReliableService {
  /**
   * Encrypts, sends and follows one message (see the module comment). Fails only when no message can be made
   * (`SendToOurselves`, `FailedToGenerateMessages`); attempts that reach nobody are retried.
   */
  readonly sendReliable: (
    request: ReliableRequest,
    policy?: Schedule.Schedule<unknown>
  ) => Effect.Effect<Delivery, DhtError.SendFailure>
  /** The inbound pipeline's seam (`InboundPipeline.Options.receipts`). */
  readonly receipts: {
    readonly handle: (
      message: InboundMessages.DecryptedDhtMessage
    ) => Effect.Effect<void, DhtError.InvalidReceipt | DhtError.StoreError>
    readonly delivered: (message: InboundMessages.DecryptedDhtMessage) => Effect.Effect<void>
  }
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Reliable extends Context.Tag("@comms-dht/node/Reliable")<Reliable, ReliableService>() {}

/**
 * What the service reads from the Layer graph.
 *
 * @since 0.1.0
 * @category models
 */
export type Requirements =
  | OutboundRequester.OutboundRequester
  | NodeIdentity.NodeIdentity
  | Crypto.Crypto
  | MessageStore.MessageStore

interface Pending {
  readonly destination: NodeId.PublicKey
  readonly sentAt: number
  readonly status: SubscriptionRef.SubscriptionRef<DeliveryStatus>
  readonly final: Deferred.Deferred<DeliveryStatus>
}

const byEvent = {
  sent: DhtMetrics.tagged(DhtMetrics.receipts, "event", "sent"),
  accepted: DhtMetrics.tagged(DhtMetrics.receipts, "event", "accepted"),
  rejected: DhtMetrics.tagged(DhtMetrics.receipts, "event", "rejected"),
  safCleaned: DhtMetrics.tagged(DhtMetrics.receipts, "event", "safCleaned")
} as const

const invalid = (reason: DhtError.InvalidReceipt["reason"]) =>
  Effect.zipRight(Metric.increment(byEvent.rejected), Effect.fail(new DhtError.InvalidReceipt({ reason })))

// attempt k's strategy: the first, then the others in turn
const strategyAt = (strategies: ReadonlyArray<AttemptStrategy>, k: number): AttemptStrategy => {
  const last = strategies.length - 1
  if (last <= 0) return strategies[0] ?? "direct"
  return strategies[k <= last ? k : 1 + ((k - 1) % last)] ?? "direct"
}

const broadcastOf = (strategy: AttemptStrategy, destination: NodeId.PublicKey): BroadcastStrategy.BroadcastStrategy => {
  switch (strategy) {
    case "direct":
      return BroadcastStrategy.DirectPublicKey({ publicKey: destination })
    case "closest":
      return BroadcastStrategy.ClosestNodes({
        id: NodeId.fromPublicKey(destination),
        excluded: [],
        connectedOnly: false
      })
    case "propagate":
      return BroadcastStrategy.Propagate({ destination: Envelope.destinationPublicKey(destination), excluded: [] })
  }
}

/**
 * Starts the service in the current scope: the fibers that follow deliveries and send receipts end with it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<ReliableService, never, Requirements | Scope.Scope> = Effect.gen(function*() {
  const context = yield* Effect.context<Requirements>()
  const scope = yield* Effect.scope
  const identity = Context.get(context, NodeIdentity.NodeIdentity)
  const requester = Context.get(context, OutboundRequester.OutboundRequester)
  const store = Context.get(context, MessageStore.MessageStore)
  const pending = yield* Ref.make(HashMap.empty<string, Pending>())

  const settle = (key: string, entry: Pending, status: DeliveryStatus) =>
    Effect.zipRight(
      Ref.update(pending, HashMap.remove(key)),
      Effect.zipRight(SubscriptionRef.set(entry.status, status), Deferred.succeed(entry.final, status))
    )

  // --- origin ---

  const encryptOnce = (request: ReliableRequest) =>
    Effect.gen(function*() {
      if (NodeId.equals(request.destination, identity.publicKey)) return yield* new DhtError.SendToOurselves()
      const config = yield* DhtConfig.DhtConfig
      const nowMs = yield* Clock.currentTimeMillis
      const params = OutboundRequester.makeParams(
        request.expiresIn === undefined ? {} : { expiresIn: Option.some(Duration.decode(request.expiresIn)) }
      )
      const expires = yield* OutboundPipeline.expiryOf(params, nowMs, config)
      const destination = Envelope.destinationPublicKey(request.destination)
      const body = yield* OutboundRequester.applicationBody(request.messageType, request.body)
      const sealed = yield* MessageCrypto.encrypt(identity, request.destination, {
        version: config.protocolVersion,
        destination,
        messageType: Envelope.DhtMessageType.None,
        flags: Envelope.DhtMessageFlags.RECEIPT_REQUESTED,
        expires
      }, Envelope.encodeEnvelopeBody(body)).pipe(
        Effect.mapError(() => new DhtError.FailedToGenerateMessages({ reason: "EncryptionFailed" }))
      )
      const header = new Envelope.DhtMessageHeader({
        version: config.protocolVersion,
        destination,
        messageSignature: sealed.messageSignature,
        ephemeralPublicKey: Option.some(sealed.ephemeralPublicKey),
        messageType: Envelope.DhtMessageType.None,
        flags: sealed.flags,
        messageTag: yield* OutboundRequester.randomTag,
        expires,
        hopCount: 0
      }, true)
      return new Envelope.DhtEnvelope({ header, body: sealed.body }, true)
    })

  // the same bytes each time, as a forward sends them: one message however many attempts
  const attempt = (
    envelope: Envelope.DhtEnvelope,
    destination: NodeId.PublicKey,
    strategy: AttemptStrategy,
    entry: Pending
  ) =>
    requester.send(
      OutboundRequester.makeParams({
        strategy: broadcastOf(strategy, destination),
        destination: envelope.header.destination,
        messageType: envelope.header.messageType,
        customHeader: Option.some(envelope.header)
      }),
      envelope.body
    ).pipe(
      Effect.flatMap(OutboundRequester.resolve),
      Effect.tap((states) =>
        strategy !== "closest"
          ? Effect.void
          : Effect.forkIn(
            Effect.flatMap(states.waitAll, (results) => {
              const self = NodeId.fromPublicKey(destination)
              return results.sentTo.some((peer) => !NodeId.equals(peer, self))
                ? SubscriptionRef.update(entry.status, (status) =>
                  status._tag === "Sent" ? DeliveryStatus.Stored({ attempts: status.attempts }) : status)
                : Effect.void
            }),
            scope
          )
      ),
      Effect.as(true),
      Effect.catchAll((error) =>
        Effect.as(
          DhtLog.debug("reliable send attempt reached nobody", { strategy, reason: error._tag }),
          false
        )
      )
    )

  const counted = (entry: Pending) =>
    SubscriptionRef.update(entry.status, (status) =>
      status._tag === "Sent"
        ? DeliveryStatus.Sent({ attempts: status.attempts + 1 })
        : status._tag === "Stored"
        ? DeliveryStatus.Stored({ attempts: status.attempts + 1 })
        : status)

  const sendReliable = (request: ReliableRequest, policy: Schedule.Schedule<unknown> = defaultPolicy) =>
    Effect.gen(function*() {
      const strategies = request.strategies === undefined || request.strategies.length === 0
        ? defaultStrategies
        : request.strategies
      const envelope = yield* encryptOnce(request).pipe(Effect.provide(context))
      const messageHash = yield* Receipts.messageHash(envelope).pipe(Effect.provide(context))
      const key = NodeId.toHex(messageHash)
      const entry: Pending = {
        destination: request.destination,
        sentAt: yield* Clock.currentTimeMillis,
        status: yield* SubscriptionRef.make<DeliveryStatus>(DeliveryStatus.Sent({ attempts: 0 })),
        final: yield* Deferred.make<DeliveryStatus>()
      }
      // registered before anything is sent: the receipt may come back before the send returns
      yield* Ref.update(pending, HashMap.set(key, entry))
      const next = yield* Ref.make(0)
      const one = Effect.gen(function*() {
        const k = yield* Ref.getAndUpdate(next, (n) => n + 1)
        yield* counted(entry)
        return yield* attempt(envelope, request.destination, strategyAt(strategies, k), entry)
      })
      // a first attempt that reaches nobody (an unknown destination, nobody closer) tries the next strategy at once
      const first = Effect.iterate(false, {
        while: (reached) => !reached,
        body: () =>
          Effect.flatMap(Ref.get(next), (k) => k >= strategies.length ? Effect.succeed(true) : one)
      })
      yield* first
      const expiresAt = Number(envelope.header.expires) * 1000
      const lifecycle = Effect.race(
        Deferred.await(entry.final),
        Effect.zipRight(Effect.schedule(Effect.unlessEffect(one, Deferred.isDone(entry.final)), policy), Effect.never)
      ).pipe(
        Effect.timeoutOption(Duration.millis(Math.max(0, expiresAt - entry.sentAt))),
        Effect.flatMap((done) => Option.isSome(done) ? Effect.void : settle(key, entry, DeliveryStatus.Expired()))
      )
      yield* Effect.forkIn(lifecycle, scope)
      const delivery: Delivery = {
        messageHash,
        destination: request.destination,
        expires: envelope.header.expires,
        status: SubscriptionRef.get(entry.status),
        changes: entry.status.changes,
        await: (timeout) =>
          Deferred.await(entry.final).pipe(
            Effect.timeoutFail({ duration: timeout, onTimeout: () => new DhtError.DeliveryTimeout() })
          )
      }
      return delivery
    })

  // an encrypted receipt, for this node as the origin: from the destination, over a message it waits on
  const acceptReceipt = (receipt: Receipts.Receipt, signer: Option.Option<NodeId.PublicKey>) =>
    Effect.gen(function*() {
      const key = NodeId.toHex(receipt.messageHash)
      const entry = HashMap.get(yield* Ref.get(pending), key)
      if (Option.isNone(entry)) return yield* invalid("UnknownMessage")
      const { destination } = entry.value
      if (Option.isNone(signer) || !NodeId.equals(signer.value, destination)) return yield* invalid("WrongSigner")
      if (!(yield* Receipts.verify(destination, receipt))) return yield* invalid("BadSignature")
      const now = yield* Clock.currentTimeMillis
      yield* Metric.increment(byEvent.accepted)
      yield* settle(key, entry.value, DeliveryStatus.Delivered({ elapsedMs: Math.max(0, now - entry.value.sentAt) }))
    })

  // a receipt in clear, for this node as a store-and-forward node: only the row's destination may remove it
  const cleanStored = (receipt: Receipts.Receipt) =>
    Effect.gen(function*() {
      const destination = yield* store.destinationOf(receipt.messageHash)
      if (Option.isNone(destination)) return
      if (!(yield* Receipts.verify(destination.value, receipt))) return yield* invalid("BadSignature")
      if (yield* store.removeByBodyHash(receipt.messageHash)) yield* Metric.increment(byEvent.safCleaned)
    })

  const handle = (message: InboundMessages.DecryptedDhtMessage) =>
    Effect.gen(function*() {
      if (message.decryption._tag !== "Succeeded") return
      const receipt = yield* Effect.tapError(Receipts.fromBody(message.decryption.body), () =>
        Metric.increment(byEvent.rejected))
      return yield* message.header.isEncrypted
        ? acceptReceipt(receipt, message.decryption.authenticatedOrigin)
        : cleanStored(receipt)
    }).pipe(Effect.provide(context))

  // --- destination ---

  const sendReceipt = (message: InboundMessages.DecryptedDhtMessage, origin: NodeId.PublicKey) =>
    Effect.gen(function*() {
      const receipt = yield* Receipts.sign(identity, message.dedupHash)
      const body = Receipts.toBody(receipt)
      const destination = Envelope.destinationPublicKey(origin)
      yield* requester.send(
        OutboundRequester.makeParams({
          strategy: BroadcastStrategy.Propagate({ destination, excluded: [] }),
          destination,
          encryption: OutboundRequester.encryptFor(origin),
          messageType: Envelope.DhtMessageType.Receipt
        }),
        body
      )
      yield* Metric.increment(byEvent.sent)
      // it reached us through other nodes, which may hold a copy: those that store for us are our closest
      if (message.isSafMessage || !NodeId.equals(message.sourcePeer.publicKey, origin)) {
        yield* requester.send(
          OutboundRequester.makeParams({
            strategy: BroadcastStrategy.ClosestNodes({ id: identity.nodeId, excluded: [], connectedOnly: false }),
            messageType: Envelope.DhtMessageType.Receipt
          }),
          body
        )
      }
    }).pipe(
      Effect.provide(context),
      Effect.catchAll((error) =>
        DhtLog.debug("receipt not sent", { reason: error._tag })
      )
    )

  const delivered = (message: InboundMessages.DecryptedDhtMessage): Effect.Effect<void> => {
    // receipts answer encrypted messages for this node, once: dedup lets one copy through (k = 1)
    if (!message.header.isEncrypted || !message.isForThisNode || message.dedupHitCount !== 1) return Effect.void
    const origin = InboundMessages.authenticatedOrigin(message)
    if (Option.isNone(origin) || NodeId.equals(origin.value, identity.publicKey)) return Effect.void
    return Effect.asVoid(Effect.forkIn(sendReceipt(message, origin.value), scope))
  }

  return Reliable.of({
    sendReliable: (request, policy) => sendReliable(request, policy),
    receipts: { handle, delivered }
  })
})

/**
 * `make` as a Layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Reliable, never, Requirements> = Layer.scoped(Reliable, make)
