/**
 * The inbound pipeline (SPEC §7): frames from the transport through deserialize → validate → dedup → decrypt
 * (and verify) → forward → store-and-forward → DHT handler → delivery, each stage a typed Effect function, composed
 * over a `Stream` by `handle`, which turns every failure into a log line, a metric and the ban of SPEC §14
 * (`Rejections.report`), so bad input never ends the stream. `layer` runs it on `Transport.inbound` for as long as
 * its scope and publishes the application's messages to its subscribers' sliding queues (`Inbound.messages`).
 *
 * Signatures are verified after dedup, on the first copy only (SPEC §7): the dedup hash covers the signature and
 * every field it signs, so the copies of one hash are all valid or all invalid, and a duplicate costs a decode, one
 * hash and a map lookup. Forwards reuse the received bytes (`customHeader`: nothing is re-encrypted or re-signed)
 * and are offered without waiting (a full outbound queue sheds them, §13.1).
 *
 * Messages this package does not own plug in from outside: store-and-forward through the optional `SafStage`
 * service of `core` (the store's), peer sync through `Options.peerSync` (the node's), discovery responses through
 * the optional `Discovery` service.
 *
 * @since 0.1.0
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import type * as DhtActor from "@comms-dht/core/DhtActor"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import type * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Envelope from "@comms-dht/core/Envelope"
import * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as LightQueue from "@comms-dht/core/LightQueue"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as SafStage from "@comms-dht/core/SafStage"
import * as Transport from "@comms-dht/core/Transport"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as DhtHandler from "./DhtHandler.js"
import * as GossipBudget from "./GossipBudget.js"
import * as Rejections from "./Rejections.js"

/**
 * What the stages read from the Layer graph. `SafStage`, `Discovery` and `Rejections.Observer` are optional and read
 * when present.
 *
 * @since 0.1.0
 * @category models
 */
export type Requirements =
  | PeerManager.PeerManager
  | DedupCache.DedupCache
  | Crypto.Crypto
  | NodeIdentity.NodeIdentity
  | OutboundRequester.OutboundRequester
  | Transport.Transport
  | GossipBudget.GossipBudget
  | DhtActor.DhtActor
  | DhtEvents.DhtEvents

/**
 * Options of the pipeline: a handler for the message types this package does not own, and two sizes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * `PeerSyncRequest`/`PeerSyncResponse` (SPEC §12.4), first occurrences with a successful decryption. Without it
   * they are dropped. A failure is reported like the failure of a stage (`PeerValidationError` and the peer-sync tags
   * ban the source `High`).
   */
  readonly peerSync?: ((message: InboundMessages.DecryptedDhtMessage) => Effect.Effect<void, Rejections.PipelineError>)
    | undefined
  /**
   * Delivery receipts (ours, docs/spec-departures.md §2): `handle` takes first occurrences of type `Receipt` that
   * decrypted (or, in clear, came for anyone); `delivered` is told of each message delivered to the application whose
   * header asks for a receipt. Without it receipts are dropped and none are sent.
   */
  readonly receipts?: {
    readonly handle: (message: InboundMessages.DecryptedDhtMessage) => Effect.Effect<void, Rejections.PipelineError>
    readonly delivered: (message: InboundMessages.DecryptedDhtMessage) => Effect.Effect<void>
  } | undefined
  /** Capacity of each subscriber's sliding queue (default `SUBSCRIBER_CAPACITY`, SPEC §13.1). */
  readonly subscriberCapacity?: number | undefined
  /** Frames handled at once (default `CONCURRENCY`, SPEC §7); output keeps arrival order either way. */
  readonly concurrency?: number | undefined
}

/**
 * Frames in flight through `handle` at once (SPEC §7).
 *
 * @since 0.1.0
 * @category constants
 */
export const CONCURRENCY = 16

const EMPTY = new Uint8Array(0)

const secondsOf = (ms: number): bigint => BigInt(Math.floor(ms / 1000))

// tagging a metric builds a new key each time: one per label value, made once
const byType = new Map(
  Object.entries(Envelope.DhtMessageType).map(([name, value]) =>
    [value, DhtMetrics.tagged(DhtMetrics.inboundMessages, "type", name)] as const
  )
)
const forwardedBy = {
  F1: DhtMetrics.tagged(DhtMetrics.forwarded, "rule", "F1"),
  F2: DhtMetrics.tagged(DhtMetrics.forwarded, "rule", "F2"),
  F3: DhtMetrics.tagged(DhtMetrics.forwarded, "rule", "F3"),
  saf: DhtMetrics.tagged(DhtMetrics.forwarded, "rule", "saf")
} as const
const deliveredDirect = DhtMetrics.tagged(DhtMetrics.delivered, "via", "direct")
const deliveredSaf = DhtMetrics.tagged(DhtMetrics.delivered, "via", "saf")
const shedSubscriber = DhtMetrics.tagged(DhtMetrics.inboundShed, "where", "subscriber")

const blameOf = (message: InboundMessages.DhtInboundMessage): Rejections.Blame => ({
  source: message.sourcePeer.nodeId,
  sourceKey: Option.some(message.sourcePeer.publicKey),
  origin: Option.none(),
  messageType: Option.some(message.header.messageType)
})

const blameOfDecrypted = (message: InboundMessages.DecryptedDhtMessage): Rejections.Blame => ({
  source: message.sourcePeer.nodeId,
  sourceKey: Option.some(message.sourcePeer.publicKey),
  origin: InboundMessages.authenticatedOrigin(message),
  messageType: Option.some(message.header.messageType)
})

// --- deserialize (§7.1) ---

/**
 * What `deserialize` can fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type DeserializeError =
  | DhtError.PeerNotFound
  | DhtError.PeerBanned
  | DhtError.EnvelopeDecodeError
  | DhtError.StoreError

/**
 * SPEC §7.1: the source must be a known peer (`PeerNotFound`) that is not banned (`PeerBanned`); the bytes must be
 * a `DhtEnvelope` passing the decoding rules of §3.7 (one tag per rule). Counts the message by type and its
 * (diagnostic) hop count.
 *
 * @since 0.1.0
 * @category stages
 */
export const deserialize = (
  raw: Transport.InboundMessage
): Effect.Effect<Option.Option<InboundMessages.DhtInboundMessage>, DeserializeError, PeerManager.PeerManager> =>
  Effect.gen(function*() {
    const peers = yield* PeerManager.PeerManager
    const sourcePeer = yield* peers.get(raw.sourcePeer)
    const nowMs = yield* Clock.currentTimeMillis
    const decoded = yield* DhtMetrics.withLabels((labels) => decodeFrom(raw, sourcePeer, nowMs, labels))
    return Option.some(yield* decoded)
  })

// `deserialize` once the source's record is read: the ban check, the decoding and the frame's two metrics
const decodeFrom = (
  raw: Transport.InboundMessage,
  sourcePeer: Peer.Peer,
  nowMs: number,
  labels: ReadonlyArray<MetricLabel.MetricLabel>,
  screened?: Screened
): Either.Either<InboundMessages.DhtInboundMessage, DhtError.PeerBanned | DhtError.EnvelopeDecodeError> => {
  if (sourcePeer.isBanned(nowMs)) {
    return Either.left(new DhtError.PeerBanned({ nodeId: raw.sourcePeer, reason: sourcePeer.bannedReason }))
  }
  const decoded = screened === undefined ? Envelope.decodeEnvelopeEither(raw.bytes) : Either.right(screened)
  if (Either.isLeft(decoded)) return Either.left(decoded.left)
  const { body, header } = decoded.right
  countFrame(header, labels)
  return Either.right({
    tag: raw.tag,
    sourcePeer,
    header,
    body,
    isSafMessage: false,
    dedupHitCount: 0,
    dedupHash: EMPTY,
    mayForward: true,
    size: raw.bytes.length
  })
}

// the frame's two metrics: counted by the worker, or by the screen for a copy it drops
const countFrame = (header: Envelope.DhtMessageHeader, labels: ReadonlyArray<MetricLabel.MetricLabel>): void => {
  const counter = byType.get(header.messageType)
  if (counter !== undefined) counter.unsafeUpdate(1, labels)
  DhtMetrics.inboundHopCount.unsafeUpdate(header.hopCount, labels)
}

// --- validate (§7.2) ---

/**
 * What `validate` can fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type ValidateError =
  | DhtError.MessageTooLarge
  | DhtError.UnsupportedVersion
  | DhtError.MissingExpiry
  | DhtError.MessageExpired
  | DhtError.ExpiryTooFar
  | DhtError.BadEncryptedMessageSemantics
  | DhtError.SafNotSupported

/**
 * SPEC §7.2, rules 1–7 in order, the first failure winning: size, version, an expiry that is set, not past and
 * not beyond `maxMessageExpiry + clockSkewAllowance` (on the Effect clock), the semantics of an encrypted message,
 * and SAF requests only on a node that stores.
 *
 * @since 0.1.0
 * @category stages
 */
export const validate = <M extends InboundMessages.DhtInboundMessage>(
  message: M
): Effect.Effect<Option.Option<M>, ValidateError, NodeIdentity.NodeIdentity> =>
  Effect.gen(function*() {
    const problem = validationError(
      message,
      yield* DhtConfig.DhtConfig,
      yield* NodeIdentity.NodeIdentity,
      yield* Clock.currentTimeMillis
    )
    return problem === undefined ? Option.some(message) : yield* problem
  })

// `validate`'s rules as a plain function: the front and the screen run them without an Effect step per rule
const validationError = (
  message: Pick<InboundMessages.DhtInboundMessage, "header" | "body" | "size">,
  config: DhtConfig.Config,
  identity: NodeIdentity.Identity,
  nowMs: number
): ValidateError | undefined => {
  const { header } = message
  if (message.size > config.maxMessageSize) {
    return new DhtError.MessageTooLarge({ size: message.size, limit: config.maxMessageSize })
  }
  if (!config.supportedVersions.includes(header.version)) {
    return new DhtError.UnsupportedVersion({ version: header.version })
  }
  if (header.expires === 0n) return new DhtError.MissingExpiry()
  const now = secondsOf(nowMs)
  if (header.expires < now) return new DhtError.MessageExpired({ expires: header.expires, now })
  const limit = now + secondsOf(DhtConfig.millis(config.maxMessageExpiry) + DhtConfig.millis(config.clockSkewAllowance))
  if (header.expires > limit) return new DhtError.ExpiryTooFar({ expires: header.expires, limit })
  if (header.isEncrypted) {
    const problem = header.destination._tag === "Unknown"
      ? "destination unknown"
      : Option.isNone(header.ephemeralPublicKey)
      ? "no ephemeral public key"
      : header.messageSignature.length === 0
      ? "no signature"
      : message.body.length === 0
      ? "empty body"
      : undefined
    if (problem !== undefined) return new DhtError.BadEncryptedMessageSemantics({ reason: problem })
  }
  if (
    header.messageType === Envelope.DhtMessageType.SafRequestMessages &&
    !Peer.hasFeatures(identity.features, Peer.PeerFeatures.DHT_STORE_FORWARD)
  ) {
    return new DhtError.SafNotSupported()
  }
  return undefined
}

// --- dedup (§7.3, §8.1) ---

/**
 * The dedup hash of SPEC §8.1: `DSH("dedup", 32, challenge, message_signature)`, the challenge taken over the
 * header and body as received. It covers every signed field and the signature, and neither `hop_count` nor
 * `message_tag`: copies over different paths share it, and a tampered copy can never pre-empt the genuine one.
 *
 * @since 0.1.0
 * @category utils
 */
export const dedupHash = (
  header: MessageCrypto.ReceivedHeader,
  body: Uint8Array
): Effect.Effect<Uint8Array, never, Crypto.Crypto> => MessageCrypto.dedupHash(header, body, header.messageSignature)

/**
 * SPEC §7.3: records the copy in the `DedupCache` (kept until the expiry plus the skew allowance) and drops it as
 * `Duplicate` beyond `dedupAllowedMessageOccurrences`. A `Full` or `Failed` cache is counted and the message goes on
 * as a first occurrence that may be delivered but never forwarded.
 *
 * @since 0.1.0
 * @category stages
 */
export const dedup = <M extends InboundMessages.DhtInboundMessage>(
  message: M
): Effect.Effect<
  Option.Option<M>,
  DhtError.Duplicate,
  DedupCache.DedupCache | Crypto.Crypto | DhtActor.DhtActor
> =>
  Effect.gen(function*() {
    const hash = yield* dedupHash(message.header, message.body)
    const cache = yield* DedupCache.DedupCache
    return yield* dedupInsert(message, hash, yield* DhtConfig.DhtConfig, cache, failDuplicate<M>)
  })

const failDuplicate = <M>(hits: number): Effect.Effect<Option.Option<M>, DhtError.Duplicate> =>
  Effect.fail(new DhtError.Duplicate({ hits }, true))

// a duplicate ends the message: counted (and shown to an observer) without building an error for it
const dropDuplicate = <M extends InboundMessages.DhtInboundMessage>(message: M) => (hits: number) =>
  Effect.as(Rejections.reportDuplicate(hits, () => blameOf(message)), Option.none<M>())

// `Object.assign` rather than `{ ...message, more }`: on Node 20 the spread takes V8's slow path, microseconds a
// message; a fresh object either way, keeping whatever else `M` carries
const deduplicated = <M extends InboundMessages.DhtInboundMessage>(
  message: M,
  hits: number,
  hash: Uint8Array,
  mayForward: boolean
): M => Object.assign({}, message, { dedupHitCount: hits, dedupHash: hash, mayForward })

const keepUntilOf = (message: Pick<InboundMessages.DhtInboundMessage, "header">, config: DhtConfig.Config) =>
  Number(message.header.expires) * 1000 + DhtConfig.millis(config.clockSkewAllowance)

// the insert of a dedup hash (§8.1) the cache may not hold yet: new (written through by a persistent cache), full or
// failed; `front` records a copy of a hash the cache holds without it
const dedupInsert = <M extends InboundMessages.DhtInboundMessage, E>(
  message: M,
  hash: Uint8Array,
  config: DhtConfig.Config,
  cache: DedupCache.DedupCacheService,
  onDuplicate: (hits: number) => Effect.Effect<Option.Option<M>, E>
): Effect.Effect<Option.Option<M>, E, DhtActor.DhtActor> =>
  Effect.flatMap(
    cache.insert(hash, message.sourcePeer.publicKey, keepUntilOf(message, config)),
    afterInsert(message, hash, config, onDuplicate)
  )

// what an insert's result means for the message: a copy too many, a first occurrence, or one the cache could not
// record (reported, and the message goes on unforwarded)
const afterInsert = <M extends InboundMessages.DhtInboundMessage, E>(
  message: M,
  hash: Uint8Array,
  config: DhtConfig.Config,
  onDuplicate: (hits: number) => Effect.Effect<Option.Option<M>, E>
) =>
(result: DedupCache.DedupInsertResult): Effect.Effect<Option.Option<M>, E, DhtActor.DhtActor> => {
  switch (result._tag) {
    case "Inserted":
      return result.hits > config.dedupAllowedMessageOccurrences
        ? onDuplicate(result.hits)
        : Effect.succeed(Option.some(deduplicated(message, result.hits, hash, message.mayForward)))
    case "Full":
      return Effect.as(
        Rejections.report(new DhtError.DedupFull(), blameOf(message)),
        Option.some(deduplicated(message, 1, hash, false))
      )
    case "Failed":
      return Effect.as(
        Rejections.report(result.error, blameOf(message)),
        Option.some(deduplicated(message, 1, hash, false))
      )
  }
}

// --- decrypt and verify (§7.4, §4.6) ---

/**
 * What `decrypt` can fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type DecryptError =
  | DhtError.InvalidSignature
  | DhtError.EnvelopeBodyDecodeFailed
  | DhtError.DecryptionFailed
  | DhtError.InvalidEncryptedSignature

/**
 * SPEC §7.4: a cleartext message's signature, if any, is verified (through the memo; its signer is the
 * authenticated origin) and its body decoded; an encrypted message for another key is `NotForUs`; one for this
 * node is opened in the order of §4.6.
 *
 * @since 0.1.0
 * @category stages
 */
export const decrypt = (
  message: InboundMessages.DhtInboundMessage
): Effect.Effect<
  Option.Option<InboundMessages.DecryptedDhtMessage>,
  DecryptError,
  Crypto.Crypto | NodeIdentity.NodeIdentity
> =>
  Effect.flatMap(NodeIdentity.NodeIdentity, (identity) =>
    Effect.flatMap(Crypto.Crypto, (crypto) =>
      Effect.map(decryptWith(message, identity, crypto, undefined), Option.some)))

// field by field: `{ ...message, more }` takes V8's slow object-spread path on Node 20, microseconds a message
const decryptedOf = (
  message: InboundMessages.DhtInboundMessage,
  decryption: InboundMessages.DecryptionResult,
  isForThisNode: boolean
): InboundMessages.DecryptedDhtMessage => ({
  tag: message.tag,
  sourcePeer: message.sourcePeer,
  header: message.header,
  body: message.body,
  isSafMessage: message.isSafMessage,
  dedupHitCount: message.dedupHitCount,
  dedupHash: message.dedupHash,
  mayForward: message.mayForward,
  size: message.size,
  decryption,
  isForThisNode,
  isSafStored: Option.none(),
  isAlreadyForwarded: false
})

// `decrypt`, given the message's challenge when `front` has it from the dedup hash (the body is hashed once). Plain
// functions around the one effect a message may need, the memoised signature check.
const decryptWith = (
  message: InboundMessages.DhtInboundMessage,
  identity: NodeIdentity.Identity,
  crypto: Crypto.CryptoService,
  challenge: Uint8Array | undefined
): Effect.Effect<InboundMessages.DecryptedDhtMessage, DecryptError> => {
  const { header } = message
  const forUs = Envelope.isDestinedTo(header.destination, identity.publicKey)
  if (!header.isEncrypted) {
    const clear = (origin: Option.Option<NodeId.PublicKey>) =>
      Either.map(Envelope.decodeEnvelopeBodyEither(message.body), (body) =>
        decryptedOf(
          message,
          InboundMessages.DecryptionResult.Succeeded({ body, authenticatedOrigin: origin }),
          forUs || header.destination._tag === "Unknown"
        ))
    return header.messageSignature.length === 0
      ? clear(Option.none())
      : Effect.flatMap(
        MessageCrypto.verifyWith(crypto, header, message.body, header.messageSignature, challenge),
        (origin) => clear(Option.some(origin))
      )
  }
  if (!forUs) {
    return Either.right(
      decryptedOf(message, InboundMessages.DecryptionResult.NotForUs({ ciphertext: message.body }), false)
    )
  }
  return Effect.map(MessageCrypto.decryptWith(crypto, identity, header, message.body, challenge), (opened) =>
    decryptedOf(
      message,
      InboundMessages.DecryptionResult.Succeeded({
        body: opened.body,
        authenticatedOrigin: Option.some(opened.origin)
      }),
      true
    ))
}

// --- forward (§7.5) ---

/**
 * The forwarding rule a message matches (SPEC §7.5), if any: F1 an encrypted message for another key of type
 * None, Join, Discovery or (ours) Receipt; F2 signed cleartext of type None for another key; F3 signed cleartext of
 * type None with an unknown destination (gossip, also delivered).
 *
 * @since 0.1.0
 * @category utils
 */
export const forwardRule = (
  message: InboundMessages.DecryptedDhtMessage,
  self: NodeId.PublicKey
): "F1" | "F2" | "F3" | undefined => {
  const { decryption, header } = message
  const type = header.messageType
  if (decryption._tag === "NotForUs") {
    // receipts (ours) travel like the messages they answer: encrypted to the origin, opaque to forwarders
    return type === Envelope.DhtMessageType.None || type === Envelope.DhtMessageType.Join ||
        type === Envelope.DhtMessageType.Discovery || type === Envelope.DhtMessageType.Receipt
      ? "F1"
      : undefined
  }
  if (header.isEncrypted || type !== Envelope.DhtMessageType.None) return undefined
  if (Option.isNone(decryption.authenticatedOrigin)) return undefined
  if (header.destination._tag === "Unknown") return "F3"
  return Envelope.isDestinedTo(header.destination, self) ? undefined : "F2"
}

const safDecision = (
  message: InboundMessages.DecryptedDhtMessage,
  stage: SafStage.SafStageService
): Effect.Effect<Option.Option<SafStage.SafDecision>, never, DhtActor.DhtActor> =>
  stage.decide(message).pipe(
    Effect.map(Option.some),
    Effect.catchTag("StoreError", (error) =>
      Effect.as(Rejections.report(error, blameOfDecrypted(message)), Option.none<SafStage.SafDecision>()))
  )

// the decision §9.1's plain rules already take (`SafStage.mayStore`): none stored, none forwarded before
const notStored: Option.Option<SafStage.SafDecision> = Option.some({ isSafStored: false, isAlreadyForwarded: false })

const rulesOutStoring = (
  message: InboundMessages.DecryptedDhtMessage,
  stage: SafStage.SafStageService,
  nowMs: number
): boolean => stage.mayStore !== undefined && !stage.mayStore(message, nowMs)

/**
 * SPEC §7.5 on a node with `MESSAGE_PROPAGATION`, for a first occurrence that may be forwarded and matches F1–F3:
 * takes the store-and-forward decision, then — unless the destination is the source peer (`DestinationIsSource`,
 * reported, the message goes on), it has expired, or it was stored (so forwarded) before — offers it to the
 * outbound queue with the received header and body: greedily towards a destination key (to its closest nodes when
 * stored here), gossip for an unknown one, excluding the source and the origin. An F3 message beyond its origin's
 * budget fails `RateLimited` (neither forwarded nor delivered). Duplicates are never forwarded.
 * `comms_dht_forwarded_total{rule}` counts the forwards the outbound queue accepted; whom they reach is its
 * selection's (greedy propagation may find nobody closer).
 *
 * @since 0.1.0
 * @category stages
 */
export const forward = (
  message: InboundMessages.DecryptedDhtMessage
): Effect.Effect<
  Option.Option<InboundMessages.DecryptedDhtMessage>,
  DhtError.RateLimited,
  | NodeIdentity.NodeIdentity
  | OutboundRequester.OutboundRequester
  | GossipBudget.GossipBudget
  | DhtActor.DhtActor
> =>
  Effect.flatMap(Effect.context<ForwardRequirements>(), (context) =>
    Effect.flatMap(Clock.currentTimeMillis, (nowMs) =>
      Effect.map(forwardWith(message, forwardServicesOf(context), nowMs), Option.some)))

type ForwardRequirements =
  | NodeIdentity.NodeIdentity
  | OutboundRequester.OutboundRequester
  | GossipBudget.GossipBudget
  | DhtActor.DhtActor

// what forwarding reads from the Layer graph, once per worker (or per call of the exported stage)
interface ForwardServices {
  readonly identity: NodeIdentity.Identity
  readonly config: DhtConfig.Config
  readonly stage: Option.Option<SafStage.SafStageService>
  readonly requester: OutboundRequester.OutboundRequesterService
  readonly budget: GossipBudget.GossipBudgetService
}

const forwardServicesOf = (context: Context.Context<ForwardRequirements>): ForwardServices => ({
  identity: Context.get(context, NodeIdentity.NodeIdentity),
  config: Context.get(context, DhtConfig.DhtConfig),
  stage: Context.getOption(context, SafStage.SafStage),
  requester: Context.get(context, OutboundRequester.OutboundRequester),
  budget: Context.get(context, GossipBudget.GossipBudget)
})

const forwardWith = (
  message: InboundMessages.DecryptedDhtMessage,
  services: ForwardServices,
  nowMs: number
): Effect.Effect<InboundMessages.DecryptedDhtMessage, DhtError.RateLimited, DhtActor.DhtActor> => {
  const { identity } = services
  if (
    !Peer.hasFeatures(identity.features, Peer.PeerFeatures.MESSAGE_PROPAGATION) || message.dedupHitCount !== 1 ||
    !message.mayForward || message.isSafMessage
  ) return Either.right(message)
  const rule = forwardRule(message, identity.publicKey)
  if (rule === undefined) return Either.right(message)
  const then = (decision: Option.Option<SafStage.SafDecision>) => {
    const decided: InboundMessages.DecryptedDhtMessage = Option.isNone(decision) ? message : Object.assign(
      {},
      message,
      { isSafStored: Option.some(decision.value.isSafStored), isAlreadyForwarded: decision.value.isAlreadyForwarded }
    )
    const { header, sourcePeer } = decided
    if (Envelope.isDestinedTo(header.destination, sourcePeer.publicKey)) {
      return Effect.as(Rejections.report(new DhtError.DestinationIsSource(), blameOfDecrypted(decided)), decided)
    }
    if (header.expires < secondsOf(nowMs) || decided.isAlreadyForwarded) return Either.right(decided)
    const origin = InboundMessages.authenticatedOrigin(decided)
    if (rule === "F3" && Option.isSome(origin)) {
      return Effect.flatMap(
        services.budget.take(origin.value, services.config.gossipBudgetPerOrigin),
        (allowed) => allowed ? offerForward(decided, origin, rule, services) : Either.left(rateLimited)
      )
    }
    return offerForward(decided, origin, rule, services)
  }
  const stage = services.stage
  if (Option.isNone(stage)) return then(Option.none())
  // most forwarded messages are gossip in cleartext: the decision without a step of the fiber
  if (rulesOutStoring(message, stage.value, nowMs)) return then(notStored)
  return Effect.flatMap(safDecision(message, stage.value), then)
}

const rateLimited = new DhtError.RateLimited({ what: "gossip" })

const offerForward = (
  decided: InboundMessages.DecryptedDhtMessage,
  origin: Option.Option<NodeId.PublicKey>,
  rule: "F1" | "F2" | "F3",
  services: ForwardServices
): Effect.Effect<InboundMessages.DecryptedDhtMessage> => {
  const { header, sourcePeer } = decided
  const excluded = Option.isNone(origin)
    ? [sourcePeer.nodeId]
    : [sourcePeer.nodeId, NodeId.fromPublicKey(origin.value)]
  // stored here for a known destination: on to it, or to its closest nodes, which store it too (rule "saf")
  const storedFor = header.destination._tag === "PublicKey" && Option.getOrElse(decided.isSafStored, () => false)
    ? header.destination.nodeId
    : undefined
  const strategy = storedFor === undefined
    ? BroadcastStrategy.Propagate({ destination: header.destination, excluded })
    : BroadcastStrategy.DirectOrClosestNodes({ id: storedFor, excluded, connectedOnly: false })
  const params = OutboundRequester.makeParams({
    strategy,
    destination: header.destination,
    messageType: header.messageType,
    customHeader: Option.some(header)
  })
  return Effect.flatMap(services.requester.offerForward(params, decided.body), (offered) =>
    offered
      ? Effect.as(Metric.increment(forwardedBy[storedFor === undefined ? rule : "saf"]), decided)
      : Effect.succeed(decided))
}

// --- store and forward (§7.6) ---

/**
 * SPEC §7.6 through the optional `SafStage` (the store's): first occurrences are handed to it with the decision
 * the forward stage took; it passes them on, consumes them, or replaces a SAF response by the messages it
 * delivered. Without a `SafStage`, SAF requests are dropped and SAF responses are `UnrequestedSafResponse` (this
 * node sent no request). Returns the messages that go on to the DHT handler.
 *
 * @since 0.1.0
 * @category stages
 */
export const storeAndForward = (
  message: InboundMessages.DecryptedDhtMessage
): Effect.Effect<ReadonlyArray<InboundMessages.DecryptedDhtMessage>, Rejections.PipelineError> =>
  Effect.flatMap(Effect.serviceOption(SafStage.SafStage), (stage) =>
    Effect.flatMap(Clock.currentTimeMillis, (nowMs) => storeAndForwardWith(message, stage, nowMs)))

const storeAndForwardWith = (
  message: InboundMessages.DecryptedDhtMessage,
  stage: Option.Option<SafStage.SafStageService>,
  nowMs: number
): Effect.Effect<ReadonlyArray<InboundMessages.DecryptedDhtMessage>, Rejections.PipelineError> => {
  if (message.dedupHitCount !== 1 || message.isSafMessage) return Either.right([message])
  const type = message.header.messageType
  if (Option.isSome(stage) && !Envelope.isSafMessage(type) && rulesOutStoring(message, stage.value, nowMs)) {
    // what `handle` answers for it (`SafStage.mayStore`'s promise), without a step of the fiber
    return Either.right([Object.assign({}, message, { isSafStored: Option.some(false), isAlreadyForwarded: false })])
  }
  if (Option.isNone(stage)) {
    if (!Envelope.isSafMessage(type)) return Either.right([message])
    // SAF messages for another key are dropped (§7.6); a response nobody asked for is counted as such
    if (message.decryption._tag === "Succeeded" && type === Envelope.DhtMessageType.SafStoredMessages) {
      return Either.left(new DhtError.UnrequestedSafResponse())
    }
    return Effect.as(Effect.logDebug("SAF message dropped: no store-and-forward service"), none)
  }
  const decision = Option.isSome(message.isSafStored)
    ? { isSafStored: message.isSafStored.value, isAlreadyForwarded: message.isAlreadyForwarded }
    : undefined
  return Effect.map(stage.value.handle(message, decision), (outcome) =>
    SafStage.SafOutcome.$match(outcome, {
      Continue: ({ message }) => [message],
      Consumed: () => none,
      Delivered: ({ messages }) => messages
    }))
}

// --- DHT handler (§7.7) ---

/**
 * A message that reached the application stage: decrypted, with its body and origin.
 *
 * @since 0.1.0
 * @category models
 */
export type Opened = DhtHandler.Opened

/**
 * SPEC §7.7: `NotForUs` messages stop (they were forwarded or stored); DHT messages are handled on their first
 * occurrence (Join §10.1, Discovery §10.2 when addressed to this node, DiscoveryResponse §10.3, peer sync through
 * `options.peerSync`) and stop; application messages (`None`) go on to delivery.
 *
 * @since 0.1.0
 * @category stages
 */
export const dhtHandler = (
  message: InboundMessages.DecryptedDhtMessage,
  options: Options = {}
): Effect.Effect<Option.Option<Opened>, Rejections.PipelineError, DhtHandler.Requirements> => {
  const { decryption, header } = message
  if (decryption._tag === "NotForUs") return Effect.succeedNone
  const opened: Opened = { message, body: decryption.body, origin: decryption.authenticatedOrigin }
  const type = header.messageType
  if (type === Envelope.DhtMessageType.None) return Effect.succeed(Option.some(opened))
  if (message.dedupHitCount !== 1) return Effect.succeedNone
  return Effect.as(handleDht(opened, type, options), Option.none())
}

const handleDht = (
  opened: Opened,
  type: Envelope.DhtMessageType,
  options: Options
): Effect.Effect<void, Rejections.PipelineError, DhtHandler.Requirements> => {
  const { message } = opened
  switch (type) {
    case Envelope.DhtMessageType.Join:
      return DhtHandler.handleJoin(opened)
    case Envelope.DhtMessageType.Discovery:
      return Effect.flatMap(NodeIdentity.NodeIdentity, (identity) =>
        Envelope.isDestinedTo(message.header.destination, identity.publicKey)
          ? DhtHandler.handleDiscovery(opened)
          : Effect.void)
    case Envelope.DhtMessageType.DiscoveryResponse:
      return DhtHandler.handleDiscoveryResponse(opened)
    case Envelope.DhtMessageType.PeerSyncRequest:
    case Envelope.DhtMessageType.PeerSyncResponse:
      return options.peerSync !== undefined ? options.peerSync(message) : Effect.void
    case Envelope.DhtMessageType.Receipt:
      return options.receipts !== undefined ? options.receipts.handle(message) : Effect.void
    default:
      return Effect.void
  }
}

// --- delivery (§7.8) ---

/**
 * SPEC §7.8: an application message for this node (or for anyone) whose first part is a `MessageHeader`
 * (else `InvalidApplicationBody`, no ban) becomes a `DomainMessage`. Cleartext for another key is not delivered;
 * unsigned such messages are counted as dropped.
 *
 * @since 0.1.0
 * @category stages
 */
export const deliver = (
  opened: Opened
): Effect.Effect<Option.Option<InboundMessages.DomainMessage>, DhtError.InvalidApplicationBody> =>
  Effect.withFiberRuntime((fiber) => deliverWith(opened, fiber.getFiberRef(FiberRef.currentMetricLabels)))

const deliverWith = (
  opened: Opened,
  labels: ReadonlyArray<MetricLabel.MetricLabel>
): Effect.Effect<Option.Option<InboundMessages.DomainMessage>, DhtError.InvalidApplicationBody> => {
  const { message } = opened
  const { header } = message
  if (!message.isForThisNode && header.destination._tag !== "Unknown") {
    return Option.isNone(opened.origin)
      ? Effect.as(Rejections.countRejected("UnsignedNotForUs"), Option.none())
      : Effect.succeedNone
  }
  const applicationHeader = Envelope.decodeMessageHeaderEither(opened.body.parts[0] ?? EMPTY)
  if (Either.isLeft(applicationHeader)) return Either.left(applicationHeader.left)
  ;(message.isSafMessage ? deliveredSaf : deliveredDirect).unsafeUpdate(1, labels)
  return Effect.succeed(Option.some({
    tag: message.tag,
    sourcePeer: message.sourcePeer.nodeId,
    origin: opened.origin,
    header,
    messageType: applicationHeader.right.messageType,
    nonce: applicationHeader.right.nonce,
    body: opened.body.parts[1] ?? EMPTY,
    isSafMessage: message.isSafMessage,
    wasEncrypted: header.isEncrypted
  }))
}

// --- handle ---

class Rejected {
  constructor(readonly error: Rejections.PipelineError, readonly blame: Rejections.Blame) {}
}

const none: ReadonlyArray<never> = []

// What the stages read from the Layer graph, taken once per worker (or per call of `handle`) rather than a step of
// the fiber per service and stage.
interface Services extends ForwardServices {
  readonly peers: PeerManager.PeerManagerService
  readonly cache: DedupCache.DedupCacheService
  readonly crypto: Crypto.CryptoService
  /** what the transport's screen computed for the frames it let on, when the node installed one */
  readonly screened: ScreenedFrames | undefined
}

const servicesOf = (context: Context.Context<Requirements>): Services => ({
  ...forwardServicesOf(context),
  peers: Context.get(context, PeerManager.PeerManager),
  cache: Context.get(context, DedupCache.DedupCache),
  crypto: Context.get(context, Crypto.Crypto),
  screened: undefined
})

// A frame the screen decoded and hashed before letting it on: its worker need not do either again (for a 6 KB
// encrypted message, about 25 µs of a node's fresh frames).
interface Screened {
  readonly header: Envelope.DhtMessageHeader
  readonly body: Uint8Array
  readonly challenge: Uint8Array
  readonly hash: Uint8Array
}

// What the screen computed, by frame, until a worker takes the frame. A plain map held to the inbox's capacity: a
// frame dropped after the screen (a connection closing, a full connection queue) leaves its entry until newer ones
// push it out, and a frame whose entry was pushed out is decoded and hashed again by its worker.
class ScreenedFrames {
  private readonly frames = new Map<Transport.InboundMessage, Screened>()
  constructor(private readonly limit: number) {}
  keep(raw: Transport.InboundMessage, screened: Screened): void {
    this.frames.set(raw, screened)
    if (this.frames.size > this.limit) this.frames.delete(this.frames.keys().next().value!)
  }
  take(raw: Transport.InboundMessage): Screened | undefined {
    const screened = this.frames.get(raw)
    if (screened !== undefined) this.frames.delete(raw)
    return screened
  }
}

// What frames decoded and hashed to, by their bytes (the object) and the Crypto service that hashed them. A sender
// encodes a message once for all its peers (`OutboundPipeline.serialize`), and a transport within one process
// (`MemoryNetwork`) hands each of them that very array, so of a broadcast's copies only the first to arrive is
// decoded and hashed; every receiver still validates the frame against its own config and clock and looks the hash
// up in its own cache. In the 100-node simulation's traffic 86 % of the frames screened were such copies. Frames
// are never changed once written (`Transport.InboundMessage`); an entry lives as long as its bytes.
const framesRead = new WeakMap<Crypto.CryptoService, WeakMap<Uint8Array, Screened>>()
const framesReadWith = (crypto: Crypto.CryptoService): WeakMap<Uint8Array, Screened> => {
  const known = framesRead.get(crypto)
  if (known !== undefined) return known
  const reads = new WeakMap<Uint8Array, Screened>()
  framesRead.set(crypto, reads)
  return reads
}

// The screen the live node installs on its transport (`Transport.Screen`) when `dedupAllowedMessageOccurrences` is
// 1: the front's deserialize, validate and dedup lookup, run as the frame arrives. A copy of a message the cache
// holds is recorded and dropped there, counted as a worker would count it (a duplicate is never logged or banned,
// SPEC §8). A new message goes on with its decoded envelope and hashes kept for its worker (`ScreenedFrames`); a
// frame the screen could not decode or validate goes on untouched, and its worker reports it as before. The
// source's ban is not checked here (the peer record is read through an Effect): a banned peer's connection is
// closed with its ban.
const screenOf = (
  services: Services,
  screened: ScreenedFrames,
  clock: Clock.Clock,
  labels: ReadonlyArray<MetricLabel.MetricLabel>
): Transport.Screen => {
  const { cache, config, crypto, identity } = services
  const reads = framesReadWith(crypto)
  // hashed only once valid here: an invalid frame goes on to a worker, which reports it
  const hashed = (bytes: Uint8Array, header: Envelope.DhtMessageHeader, body: Uint8Array): Screened => {
    const challenge = MessageCrypto.challengeWith(crypto, header, body)
    const hash = MessageCrypto.dedupHashWith(crypto, challenge, header.messageSignature)
    const frame = { header, body, challenge, hash }
    reads.set(bytes, frame)
    return frame
  }
  return (raw, sender) => {
    const nowMs = clock.unsafeCurrentTimeMillis()
    const known = reads.get(raw.bytes)
    const envelope = known ?? Either.getOrUndefined(Envelope.decodeEnvelopeEither(raw.bytes))
    if (envelope === undefined) return true
    const { body, header } = envelope
    if (validationError({ header, body, size: raw.bytes.length }, config, identity, nowMs) !== undefined) return true
    const frame = known ?? hashed(raw.bytes, header, body)
    // with k = 1 every copy the cache holds is one too many; a new hash is not recorded here
    if (cache.unsafeRecordHit(frame.hash, sender, nowMs, keepUntilOf({ header }, config)) === undefined) {
      screened.keep(raw, frame)
      return true
    }
    countFrame(header, labels)
    DhtMetrics.inboundDuplicates.unsafeUpdate(1, labels)
    DhtMetrics.inboundPipelineMs.unsafeUpdate(0, labels)
    return false
  }
}

// What a frame reads from its fiber, in the one step that starts it: the clock (for its arrival-to-end time), the
// time it started, and the metric labels.
interface Turn {
  readonly clock: Clock.Clock
  readonly nowMs: number
  readonly labels: ReadonlyArray<MetricLabel.MetricLabel>
}

const withTurn = <A, E, R>(f: (turn: Turn) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) => {
    const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
    return f({ clock, nowMs: clock.unsafeCurrentTimeMillis(), labels: fiber.getFiberRef(FiberRef.currentMetricLabels) })
  })

type Decrypted = InboundMessages.DecryptedDhtMessage

// deserialize → validate → dedup → decrypt → forward → store-and-forward: what reaches the DHT handler. A failure is
// blamed on what the stages had learnt when it happened (the source, then the message, then its origin); one handler
// for the whole front rather than one per stage, which every frame would pay for. The stages are plain functions
// between the few effects a frame needs (the peer record, a new hash's insert, a signature check, the forward).
const front = (
  services: Services,
  turn: Turn,
  raw: Transport.InboundMessage
): Effect.Effect<ReadonlyArray<Decrypted>, Rejected, DhtActor.DhtActor> => {
  let blame = Rejections.blameSource(raw.sourcePeer)
  const { cache, config, crypto, identity, peers } = services
  const early = services.screened?.take(raw)
  const { labels, nowMs } = turn
  const opened = (unique: InboundMessages.DhtInboundMessage, challenge: Uint8Array) =>
    Effect.flatMap(decryptWith(unique, identity, crypto, challenge), (decrypted) => {
      blame = blameOfDecrypted(decrypted)
      return Effect.flatMap(
        forwardWith(decrypted, services, nowMs),
        (forwarded) => storeAndForwardWith(forwarded, services.stage, nowMs)
      )
    })
  const fromSource = (
    sourcePeer: Peer.Peer
  ): Effect.Effect<ReadonlyArray<Decrypted>, Rejections.PipelineError, DhtActor.DhtActor> => {
    const decoded = decodeFrom(raw, sourcePeer, nowMs, labels, early)
    if (Either.isLeft(decoded)) return Either.left(decoded.left)
    const message = decoded.right
    blame = blameOf(message)
    const invalid = validationError(message, config, identity, nowMs)
    if (invalid !== undefined) return Either.left(invalid)
    // one hash of the body for the dedup hash and the signature check (SPEC §8.1, §4.3)
    const challenge = early?.challenge ?? MessageCrypto.challengeWith(crypto, message.header, message.body)
    const hash = early?.hash ?? MessageCrypto.dedupHashWith(crypto, challenge, message.header.messageSignature)
    // A copy of a message the cache holds is recorded at once: in a flood nearly every frame is one, and dropping
    // it costs this step alone. A hash the cache does not hold goes through `insert` (a write, for sqlite).
    const keepUntil = keepUntilOf(message, config)
    const hits = cache.unsafeRecordHit(hash, message.sourcePeer.publicKey, nowMs, keepUntil)
    if (hits !== undefined && hits > config.dedupAllowedMessageOccurrences) {
      return Effect.as(dropDuplicate(message)(hits), none)
    }
    if (hits !== undefined) return opened(deduplicated(message, hits, hash, message.mayForward), challenge)
    // a new hash: recorded in this step when the cache needs no write for it
    const inserted = cache.unsafeInsert?.(hash, message.sourcePeer.publicKey, nowMs, keepUntil, labels)
    return Effect.flatMap(
      inserted !== undefined
        ? afterInsert(message, hash, config, dropDuplicate(message))(inserted)
        : dedupInsert(message, hash, config, cache, dropDuplicate(message)),
      (unique) => Option.isNone(unique) ? Effect.succeed(none) : opened(unique.value, challenge)
    )
  }
  // the source's record read in this step when the table holds it in memory
  const known = peers.unsafeGet?.(raw.sourcePeer)
  const stages = known !== undefined ? fromSource(known) : Effect.flatMap(peers.get(raw.sourcePeer), fromSource)
  return Effect.mapError(stages, (error) => new Rejected(error, blame))
}

const reportRejected = (rejected: Rejected) => Rejections.report(rejected.error, rejected.blame)

const noDelivery: Effect.Effect<ReadonlyArray<InboundMessages.DomainMessage>> = Effect.succeed(none)

// DHT handler → delivery for one message, its failures reported on its own (SAF responses carry several): what it
// delivered, as the array the frame's result is made of (no step to convert it for the one message of most frames)
const back = (
  message: Decrypted,
  options: Options,
  labels: ReadonlyArray<MetricLabel.MetricLabel>
): Effect.Effect<ReadonlyArray<InboundMessages.DomainMessage>, never, Requirements> =>
  Effect.catchAll(
    Effect.flatMap(dhtHandler(message, options), (opened) =>
      Option.isNone(opened) ? noDelivery : Effect.flatMap(deliverWith(opened.value, labels), (delivered) =>
        Option.isSome(delivered) && options.receipts !== undefined && Envelope.isReceiptRequested(message.header.flags)
          ? Effect.as(options.receipts.delivered(message), [delivered.value])
          : Effect.succeed(Option.isSome(delivered) ? [delivered.value] : none))),
    (error) => Effect.as(Rejections.report(error, blameOfDecrypted(message)), none)
  )

/**
 * One frame through every stage: the application messages it yields (none, one, or those of a SAF response).
 * Every failure is reported (`Rejections.report`: log, metric, ban) and yields nothing; so does a defect, logged
 * as an error. Records `comms_dht_inbound_pipeline_ms` from the frame's arrival.
 *
 * @since 0.1.0
 * @category pipeline
 */
export const handle = (options: Options = {}) =>
(
  raw: Transport.InboundMessage
): Effect.Effect<ReadonlyArray<InboundMessages.DomainMessage>, never, Requirements> =>
  Effect.flatMap(Effect.context<Requirements>(), (context) =>
    withTurn((turn) => handleWith(servicesOf(context), options, turn, raw)))

const handleWith = (
  services: Services,
  options: Options,
  turn: Turn,
  raw: Transport.InboundMessage
): Effect.Effect<ReadonlyArray<InboundMessages.DomainMessage>, never, Requirements> =>
  Effect.matchEffect(front(services, turn, raw), {
    onFailure: (rejected) =>
      Effect.as(Effect.annotateLogs(reportRejected(rejected), { messageTag: raw.tag.toString() }), none),
    onSuccess: (messages): Effect.Effect<ReadonlyArray<InboundMessages.DomainMessage>, never, Requirements> => {
      // one message is the common case: no `forEach` for it
      const only = messages.length === 1 ? messages[0] : undefined
      return messages.length === 0
        ? Effect.succeed(none)
        : only !== undefined
        ? back(only, options, turn.labels)
        : Effect.map(
          Effect.forEach(messages, (message) => back(message, options, turn.labels)),
          (delivered) => delivered.flat()
        )
    }
  }).pipe(
    Effect.map((delivered) => {
      DhtMetrics.inboundPipelineMs.unsafeUpdate(
        Math.max(0, turn.clock.unsafeCurrentTimeMillis() - raw.receivedAt),
        turn.labels
      )
      return delivered
    }),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.failCause(cause)
        : Effect.as(
          Effect.annotateLogs(Effect.logError("inbound message failed unexpectedly", cause), {
            messageTag: raw.tag.toString()
          }),
          none
        )
    )
  )

/**
 * The stream of SPEC §7: every frame through `handle`, up to `options.concurrency` (16) at a time, output in
 * arrival order.
 *
 * Each pulled chunk is handled by `Effect.forEach` with that concurrency (a lone frame inline), rather than by
 * `Stream.mapEffect(handle, { concurrency: 16 })`, whose per-element race and forks cost more than the whole of a
 * message's work: measured in one run on the encrypted-direct benchmark, 1,264 against 384 messages/s in bursts
 * of 16, and 1,473 against 743 one at a time. The semantics are the same: at most 16 frames in flight, results in
 * input order; a chunk's frames all finish before the next chunk starts.
 *
 * @since 0.1.0
 * @category pipeline
 */
export const pipeline = (options: Options = {}) =>
<E, R>(
  source: Stream.Stream<Transport.InboundMessage, E, R>
): Stream.Stream<InboundMessages.DomainMessage, E, R | Requirements> => {
  const concurrency = Math.max(1, options.concurrency ?? CONCURRENCY)
  const one = handle(options)
  return source.pipe(
    Stream.mapChunksEffect((chunk) =>
      Chunk.size(chunk) === 1
        ? Effect.map(one(Chunk.unsafeHead(chunk)), Chunk.unsafeFromArray)
        : Effect.map(Effect.forEach(chunk, one, { concurrency }), (all) => Chunk.unsafeFromArray(all.flat()))
    )
  )
}

// --- the service ---

/**
 * Capacity of each subscriber's queue behind `Inbound.messages` (SPEC §13.1): sliding, so a slow subscriber loses
 * the oldest.
 *
 * @since 0.1.0
 * @category constants
 */
export const SUBSCRIBER_CAPACITY = 1_000

/**
 * @since 0.1.0
 * @category models
 */
export interface InboundService {
  /** The application messages delivered from the moment the stream is run (`Dht.inbound`). */
  readonly messages: Stream.Stream<InboundMessages.DomainMessage>
  /** A subscription taken now, for a caller that must not miss what arrives before it starts reading. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<InboundMessages.DomainMessage>, never, Scope.Scope>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Inbound extends Context.Tag("@comms-dht/inbound/Inbound")<Inbound, InboundService>() {}

/**
 * The pipeline running on `Transport.inbound` for as long as the scope, its application messages published to
 * every subscriber's sliding queue of `options.subscriberCapacity` (what a slow subscriber loses is counted
 * `comms_dht_inbound_shed_total{where="subscriber"}`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<InboundService, never, Requirements | Scope.Scope> =>
  Effect.gen(function*() {
    const transport = yield* Transport.Transport
    const capacity = Math.max(1, options.subscriberCapacity ?? SUBSCRIBER_CAPACITY)
    // Each subscriber reads its own sliding queue, as it would a sliding PubSub's subscription, but a `LightQueue`:
    // a subscriber waiting for the next message costs no Deferred per message (docs/spec-departures.md §7).
    const fanout = yield* LightQueue.slidingFanout<InboundMessages.DomainMessage>(capacity)
    yield* Effect.addFinalizer(() => fanout.shutdown)
    // a subscriber `capacity` behind loses its oldest message, counted
    const publish = (message: InboundMessages.DomainMessage): Effect.Effect<void> => {
      const behind = fanout.unsafePublish(message)
      return behind === 0 ? Effect.void : Metric.incrementBy(shedSubscriber, behind)
    }
    // The live node runs `handle` on worker fibers taking from the transport's bounded inbox, not `pipeline` on a
    // stream of it: same stages and concurrency, without the stream's pull machinery and per-element forks, which
    // cost more than dropping a duplicate does (docs/spec-departures.md §3). Frames taken together may be delivered
    // in either order, as on any two connections. Each worker loops on its own rather than through
    // `Effect.forever`, whose yield each turn is a step more; the take suspends whenever the inbox is empty.
    // The transport's screen drops the copies of messages already handled as they arrive (`screenOf`). Not with a
    // `Rejections.Observer`, which sees every rejection, duplicates included, from the workers, nor when more than
    // one copy of a message may go on.
    const context = yield* Effect.context<Requirements>()
    const base = servicesOf(context)
    const observed = Option.isSome(Context.getOption(context, Rejections.Observer))
    const screening = transport.screen !== undefined && !observed && base.config.dedupAllowedMessageOccurrences === 1
    const screened = screening ? new ScreenedFrames(base.config.inboundQueueCapacity) : undefined
    const services: Services = { ...base, screened }
    if (screened !== undefined && transport.screen !== undefined) {
      const labels = yield* FiberRef.get(FiberRef.currentMetricLabels)
      yield* transport.screen(screenOf(services, screened, yield* Effect.clock, labels))
    }
    const one = (raw: Transport.InboundMessage) =>
      withTurn((turn) =>
        Effect.flatMap(handleWith(services, options, turn, raw), (messages) => {
          const only = messages.length === 1 ? messages[0] : undefined
          return only !== undefined
            ? publish(only)
            : messages.length === 0
            ? Effect.void
            : Effect.forEach(messages, publish, { discard: true })
        })
      )
    const concurrency = Math.max(1, options.concurrency ?? CONCURRENCY)
    yield* Effect.forkScoped(LightQueue.consume(transport.inbound, one, { concurrency }))
    return Inbound.of({ messages: fanout.stream, subscribe: fanout.subscribe })
  })

/**
 * `make` as a Layer, with its own gossip budget.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<Inbound, never, Exclude<Requirements, GossipBudget.GossipBudget>> =>
  Layer.scoped(Inbound, make(options)).pipe(Layer.provide(GossipBudget.layer))
