/**
 * The `OutboundRequester` tag and the types of the outbound pipeline (SPEC §5, §6): what an application (or the
 * inbound forwarder, or a DHT handler) hands to the pipeline, what the pipeline hands back, and the per-peer send
 * states a caller may wait on. The live implementation (a bounded queue in front of broadcast → encrypt →
 * serialize) is `OutboundPipeline.layer` in `@comms-dht/outbound`.
 *
 * `send` suspends while the request queue is full (SPEC §13.1) and answers once the pipeline has handled the
 * request: `Queued(states)` (possibly empty), `PendingDiscovery(result)` when the destination must be discovered
 * first, or a `SendFailure`. `resolve` turns either answer into the send states, failing `NoMessagesQueued` on an
 * empty selection.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as BroadcastStrategy from "./BroadcastStrategy.js"
import { NoMessagesQueued, type SendFailReason, type SendFailure, TransportShutdown } from "./DhtError.js"
import * as Envelope from "./Envelope.js"
import * as LightDeferred from "./LightDeferred.js"
import * as LightQueue from "./LightQueue.js"
import { fromPublicKey, type NodeId, type PublicKey } from "./NodeId.js"

/**
 * A random u64 identifying one request for tracing; copied into `DhtHeader.message_tag` (SPEC §5).
 *
 * @since 0.1.0
 * @category models
 */
export type MessageTag = bigint

/**
 * A random u64 from Effect's `Random` (seeded in tests and the simulation).
 *
 * @since 0.1.0
 * @category constructors
 */
export const randomU64: Effect.Effect<bigint> = Effect.randomWith((random) =>
  // every request draws a tag and every application body a nonce: the service is looked up once for both halves,
  // and they are chained directly (`Effect.zipWith` runs its two effects through `Effect.all`)
  Effect.flatMap(
    random.nextIntBetween(0, 0x1_0000_0000),
    (hi) => Effect.map(random.nextIntBetween(0, 0x1_0000_0000), (lo) => (BigInt(hi) << 32n) | BigInt(lo))
  ))

/**
 * A fresh message tag.
 *
 * @since 0.1.0
 * @category constructors
 */
export const randomTag: Effect.Effect<MessageTag> = randomU64

// --- encryption (§5) ---

/**
 * `ClearText | EncryptFor(pk)` (SPEC §5).
 *
 * @since 0.1.0
 * @category models
 */
export type OutboundEncryption = Data.TaggedEnum<{
  ClearText: {}
  EncryptFor: { readonly publicKey: PublicKey }
}>

/**
 * Constructors and matchers of `OutboundEncryption`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const OutboundEncryption = Data.taggedEnum<OutboundEncryption>()

/**
 * @since 0.1.0
 * @category constructors
 */
export const clearText: OutboundEncryption = OutboundEncryption.ClearText()

/**
 * @since 0.1.0
 * @category constructors
 */
export const encryptFor = (publicKey: PublicKey): OutboundEncryption => OutboundEncryption.EncryptFor({ publicKey })

/**
 * The flags an encryption contributes: `ENCRYPTED` for `EncryptFor`, none for `ClearText`.
 *
 * @since 0.1.0
 * @category utils
 */
export const encryptionFlags = (encryption: OutboundEncryption): number =>
  encryption._tag === "EncryptFor" ? Envelope.DhtMessageFlags.ENCRYPTED : Envelope.DhtMessageFlags.NONE

// --- parameters (§5) ---

/**
 * How a request is sent (SPEC §5). Build one with `makeParams`, which fills in the defaults.
 *
 * @since 0.1.0
 * @category models
 */
export interface SendMessageParams {
  readonly strategy: BroadcastStrategy.BroadcastStrategy
  readonly destination: Envelope.NodeDestination
  readonly encryption: OutboundEncryption
  readonly messageType: Envelope.DhtMessageType
  readonly extraFlags: number
  /** an empty `DirectPublicKey` selection discovers the key first (SPEC §6.1 step 3) */
  readonly discoveryEnabled: boolean
  /** sign a cleartext message (encrypted ones are always signed) */
  readonly forceOrigin: boolean
  /** none: `saf.msgValidity`; at most `maxMessageExpiry` */
  readonly expiresIn: Option.Option<Duration.Duration>
  /** forwarding only: the received header, sent on unchanged but for `hop_count` */
  readonly customHeader: Option.Option<Envelope.DhtMessageHeader>
  /** none: the custom header's tag when forwarding, else random */
  readonly tag: Option.Option<MessageTag>
}

/**
 * Any subset of `SendMessageParams`; `makeParams` supplies the rest.
 *
 * @since 0.1.0
 * @category models
 */
export type ParamsInput = { readonly [K in keyof SendMessageParams]?: SendMessageParams[K] }

/**
 * `SendMessageParams` with the defaults of SPEC §5: `Flood([])`, destination `Unknown`, `ClearText`, type `None`,
 * no extra flags, no discovery, no forced origin, default expiry, no custom header, a random tag.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeParams = (input: ParamsInput = {}): SendMessageParams => ({
  strategy: input.strategy ?? BroadcastStrategy.Flood({ excluded: [] }),
  destination: input.destination ?? Envelope.destinationUnknown(),
  encryption: input.encryption ?? clearText,
  messageType: input.messageType ?? Envelope.DhtMessageType.None,
  extraFlags: input.extraFlags ?? Envelope.DhtMessageFlags.NONE,
  discoveryEnabled: input.discoveryEnabled ?? false,
  forceOrigin: input.forceOrigin ?? false,
  expiresIn: input.expiresIn ?? Option.none(),
  customHeader: input.customHeader ?? Option.none(),
  tag: input.tag ?? Option.none()
})

// --- bodies ---

/**
 * What a request carries: an `EnvelopeBody` (encoded by the pipeline), or bytes that are already the envelope's
 * body — an encoded `EnvelopeBody`, or, when forwarding with a `customHeader`, the received body as it was (the
 * ciphertext of an encrypted message).
 *
 * @since 0.1.0
 * @category models
 */
export type OutboundBody = Envelope.EnvelopeBody | Uint8Array

/**
 * The bytes `body` puts into the envelope before any encryption.
 *
 * @since 0.1.0
 * @category utils
 */
export const bodyBytes = (body: OutboundBody): Uint8Array =>
  body instanceof Uint8Array ? body : Envelope.encodeEnvelopeBody(body)

/**
 * An application message body (SPEC §3.1): `[MessageHeader{messageType, nonce}, body]` with a random non-zero
 * nonce from Effect's `Random`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const applicationBody = (messageType: number, body: Uint8Array): Effect.Effect<Envelope.EnvelopeBody> =>
  Effect.map(
    nonZeroU64,
    (nonce) => {
      // both fields are valid by construction (an int32, a non-zero u64): skip the constructors' checks
      const header = new Envelope.MessageHeader({ messageType: messageType | 0, nonce }, true)
      return new Envelope.EnvelopeBody({ parts: [Envelope.encodeMessageHeader(header), body] }, true)
    }
  )

const nonZeroU64: Effect.Effect<bigint> = Effect.flatMap(randomU64, (n) => n === 0n ? nonZeroU64 : Effect.succeed(n))

// --- send states (§5, §6.5) ---

/**
 * One copy of a request, on its way to one peer: pending while queued, succeeded once written to the connection,
 * failed with the reason otherwise (SPEC §5).
 *
 * @since 0.1.0
 * @category models
 */
export interface MessageSendState {
  readonly peer: NodeId
  readonly tag: MessageTag
  readonly result: Deferred.Deferred<void, SendFailReason>
}

/**
 * What the waits report: the tags of the sends that succeeded and failed (as SPEC §5 lists them; every copy of one
 * request shares its tag), and per peer, who was written to and who failed and why.
 *
 * @since 0.1.0
 * @category models
 */
export interface SendResults {
  readonly succeeded: ReadonlyArray<MessageTag>
  readonly failed: ReadonlyArray<MessageTag>
  readonly sentTo: ReadonlyArray<NodeId>
  readonly failures: ReadonlyArray<{ readonly peer: NodeId; readonly reason: SendFailReason }>
}

const emptyResults: SendResults = { succeeded: [], failed: [], sentTo: [], failures: [] }

const record = (results: SendResults, state: MessageSendState, exit: Exit.Exit<void, SendFailReason>): SendResults =>
  Exit.isSuccess(exit)
    ? { ...results, succeeded: [...results.succeeded, state.tag], sentTo: [...results.sentTo, state.peer] }
    : {
      ...results,
      failed: [...results.failed, state.tag],
      // a reply interrupted rather than failed means the transport went away under it
      failures: [...results.failures, {
        peer: state.peer,
        reason: Option.getOrElse(Cause.failureOption(exit.cause), () => new TransportShutdown())
      }]
    }

/**
 * Waits for completions in the order they happen until `enough` holds, every state is done, or `timeout` passes;
 * returns what was seen by then.
 */
const collect = (
  states: ReadonlyArray<MessageSendState>,
  enough: (results: SendResults) => boolean,
  timeout: Option.Option<Duration.DurationInput>
): Effect.Effect<SendResults> =>
  Effect.scoped(Effect.gen(function*() {
    if (states.length === 0) return emptyResults
    const done = yield* LightQueue.bounded<readonly [MessageSendState, Exit.Exit<void, SendFailReason>]>(states.length)
    yield* Effect.forEach(states, (state) =>
      Effect.exit(LightDeferred.awaitOnce(state.result)).pipe(
        Effect.flatMap((exit) => Queue.offer(done, [state, exit] as const)),
        Effect.forkScoped
      ), { discard: true })
    const seen = yield* Ref.make(emptyResults)
    const loop = Effect.iterate(emptyResults, {
      while: (results) => results.succeeded.length + results.failed.length < states.length && !enough(results),
      body: (results) =>
        Effect.flatMap(Queue.take(done), ([state, exit]) => {
          const next = record(results, state, exit)
          return Effect.as(Ref.set(seen, next), next)
        })
    })
    yield* Option.match(timeout, { onNone: () => loop, onSome: (d) => Effect.timeoutOption(loop, d) })
    return yield* Ref.get(seen)
  }))

/**
 * The send states of one request (SPEC §5) and the ways to wait on them.
 *
 * @since 0.1.0
 * @category models
 */
export class MessageSendStates {
  constructor(readonly states: ReadonlyArray<MessageSendState>) {}

  /**
   * Number of peers the request went to.
   *
   * @since 0.1.0
   */
  get size(): number {
    return this.states.length
  }

  /**
   * The tag of each state, in selection order.
   *
   * @since 0.1.0
   */
  get tags(): ReadonlyArray<MessageTag> {
    return this.states.map((state) => state.tag)
  }

  /**
   * The peers, in selection order.
   *
   * @since 0.1.0
   */
  get peers(): ReadonlyArray<NodeId> {
    return this.states.map((state) => state.peer)
  }

  /**
   * Every send finished.
   *
   * @since 0.1.0
   */
  get waitAll(): Effect.Effect<SendResults> {
    return collect(this.states, () => false, Option.none())
  }

  /**
   * `n` sends succeeded, every send finished, or `timeout` passed, whichever comes first.
   *
   * @since 0.1.0
   */
  waitN(timeout: Duration.DurationInput, n: number): Effect.Effect<SendResults> {
    return collect(this.states, (results) => results.succeeded.length >= n, Option.some(timeout))
  }

  /**
   * The fraction `p` (0..1) of the sends succeeded, or every send finished.
   *
   * @since 0.1.0
   */
  waitPercentage(p: number): Effect.Effect<SendResults> {
    const total = this.states.length
    return collect(this.states, (results) => results.succeeded.length >= p * total, Option.none())
  }

  /**
   * The first (normally the only) send's outcome: `true` once written, `false` if it failed or there is none.
   *
   * @since 0.1.0
   */
  get waitSingle(): Effect.Effect<boolean> {
    const first = this.states[0]
    if (first === undefined) return Effect.succeed(false)
    // a copy the transport has answered already (a memory network answers before its send returns) is read at once:
    // awaiting a completed Deferred still costs the suspension machinery, about fifteen steps
    return Effect.suspend(() => {
      const outcome = LightDeferred.unsafePoll(first.result)
      return outcome !== undefined && Exit.isExit(outcome)
        ? Effect.succeed(Exit.isSuccess(outcome))
        : Effect.map(Effect.exit(LightDeferred.awaitOnce(first.result)), Exit.isSuccess)
    })
  }
}

/**
 * States of no peer: what an empty selection is queued as.
 *
 * @since 0.1.0
 * @category constructors
 */
export const noSendStates: MessageSendStates = new MessageSendStates([])

// --- responses (§5) ---

/**
 * What `send` answers (SPEC §5): the request was queued for these peers, or it waits for the discovery of its
 * destination and `result` completes once that is over.
 *
 * @since 0.1.0
 * @category models
 */
export type SendMessageResponse = Data.TaggedEnum<{
  Queued: { readonly states: MessageSendStates }
  PendingDiscovery: { readonly result: Deferred.Deferred<MessageSendStates, SendFailure> }
}>

/**
 * Constructors and matchers of `SendMessageResponse`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const SendMessageResponse = Data.taggedEnum<SendMessageResponse>()

const nonEmpty = (states: MessageSendStates): Effect.Effect<MessageSendStates, NoMessagesQueued> =>
  states.size === 0 ? Effect.fail(new NoMessagesQueued()) : Effect.succeed(states)

/**
 * The send states of a response, waiting through discovery if needed; an empty selection is `NoMessagesQueued`.
 *
 * @since 0.1.0
 * @category utils
 */
export const resolve = (response: SendMessageResponse): Effect.Effect<MessageSendStates, SendFailure> =>
  response._tag === "Queued"
    ? nonEmpty(response.states)
    : Effect.flatMap(LightDeferred.awaitOnce(response.result), nonEmpty)

// --- pipeline messages (§5) ---

/**
 * A request on the outbound queue (SPEC §5). `tag` is decided when it is made, so every log line of the request
 * carries it.
 *
 * @since 0.1.0
 * @category models
 */
export interface DhtOutboundRequest {
  readonly params: SendMessageParams
  readonly body: OutboundBody
  readonly tag: MessageTag
  readonly reply: Deferred.Deferred<SendMessageResponse, SendFailure>
}

/**
 * One peer's copy of an encrypted (or signed, or plain) request (SPEC §5): every copy of a request shares body,
 * signature, ephemeral key, tag and expiry; only `peer` and `reply` differ.
 *
 * @since 0.1.0
 * @category models
 */
export interface DhtOutboundMessage {
  readonly protocolVersion: number
  readonly tag: MessageTag
  readonly peer: NodeId
  readonly destination: Envelope.NodeDestination
  readonly messageType: Envelope.DhtMessageType
  readonly flags: number
  readonly customHeader: Option.Option<Envelope.DhtMessageHeader>
  /** final bytes: ciphertext, or `EnvelopeBody` bytes */
  readonly body: Uint8Array
  readonly ephemeralPublicKey: Option.Option<Uint8Array>
  /** final bytes: sealed when encrypted, empty when unsigned */
  readonly messageSignature: Uint8Array
  readonly isBroadcast: boolean
  /** unix seconds */
  readonly expires: bigint
  readonly hopCount: number
  readonly reply: Deferred.Deferred<void, SendFailReason>
}

// --- the service ---

/**
 * @since 0.1.0
 * @category models
 */
export interface OutboundRequesterService {
  /**
   * Queues a request, suspending while the queue is full, and answers once the pipeline has handled it. After
   * shutdown: `DhtShutdown`.
   */
  readonly send: (params: SendMessageParams, body: OutboundBody) => Effect.Effect<SendMessageResponse, SendFailure>
  /**
   * Queues a request if there is room, without waiting for it to be handled: forwards and re-propagation (SPEC
   * §7.5, §10.1), whose send states nobody reads. `false` when it was shed (full queue, counted
   * `comms_dht_inbound_shed_total{where="forward"}`, or shut down).
   */
  readonly offerForward: (params: SendMessageParams, body: OutboundBody) => Effect.Effect<boolean>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class OutboundRequester extends Context.Tag("@comms-dht/core/OutboundRequester")<
  OutboundRequester,
  OutboundRequesterService
>() {}

// --- conveniences (§6.6) ---

type Send = Effect.Effect<SendMessageResponse, SendFailure, OutboundRequester>

const sendApplication = (params: SendMessageParams, messageType: number, body: Uint8Array): Send =>
  Effect.flatMap(
    applicationBody(messageType, body),
    (envelopeBody) => Effect.flatMap(OutboundRequester, (requester) => requester.send(params, envelopeBody))
  )

/**
 * An application message encrypted for `publicKey` and sent to it directly, discovering it if unknown (SPEC §6.6).
 *
 * @since 0.1.0
 * @category conveniences
 */
export const sendDirectEncrypted = (
  publicKey: PublicKey,
  messageType: number,
  body: Uint8Array,
  overrides: ParamsInput = {}
): Send =>
  sendApplication(
    makeParams({
      strategy: BroadcastStrategy.DirectPublicKey({ publicKey }),
      destination: Envelope.destinationPublicKey(publicKey),
      encryption: encryptFor(publicKey),
      discoveryEnabled: true,
      ...overrides
    }),
    messageType,
    body
  )

/**
 * The issue's `sendDirect`: `sendDirectEncrypted`.
 *
 * @since 0.1.0
 * @category conveniences
 */
export const sendDirect = sendDirectEncrypted

/**
 * An application message in clear, sent directly to `publicKey` (destination `publicKey`; Tari leaves it
 * `Unknown`), discovering it if unknown (SPEC §6.6).
 *
 * @since 0.1.0
 * @category conveniences
 */
export const sendDirectUnencrypted = (
  publicKey: PublicKey,
  messageType: number,
  body: Uint8Array,
  overrides: ParamsInput = {}
): Send =>
  sendApplication(
    makeParams({
      strategy: BroadcastStrategy.DirectPublicKey({ publicKey }),
      destination: Envelope.destinationPublicKey(publicKey),
      discoveryEnabled: true,
      ...overrides
    }),
    messageType,
    body
  )

/**
 * An application message sent directly to a known NodeId (SPEC §6.6).
 *
 * @since 0.1.0
 * @category conveniences
 */
export const sendDirectNodeId = (
  nodeId: NodeId,
  messageType: number,
  body: Uint8Array,
  overrides: ParamsInput = {}
): Send =>
  sendApplication(makeParams({ strategy: BroadcastStrategy.DirectNodeId({ nodeId }), ...overrides }), messageType, body)

/**
 * Greedy propagation towards `destination`, or gossip when it is `Unknown` (SPEC §6.2, §6.6).
 *
 * @since 0.1.0
 * @category conveniences
 */
export const propagate = (
  destination: Envelope.NodeDestination,
  encryption: OutboundEncryption,
  excluded: ReadonlyArray<NodeId>,
  messageType: number,
  body: Uint8Array,
  overrides: ParamsInput = {}
): Send =>
  sendApplication(
    makeParams({
      strategy: BroadcastStrategy.Propagate({ destination, excluded }),
      destination,
      encryption,
      ...overrides
    }),
    messageType,
    body
  )

/**
 * To the `broadcastFactor` verified communication nodes closest to `publicKey`, connected or not (SPEC §6.6): the
 * nodes that store it for an offline destination.
 *
 * @since 0.1.0
 * @category conveniences
 */
export const closestBroadcast = (
  publicKey: PublicKey,
  encryption: OutboundEncryption,
  excluded: ReadonlyArray<NodeId>,
  messageType: number,
  body: Uint8Array,
  overrides: ParamsInput = {}
): Send =>
  sendApplication(
    makeParams({
      strategy: BroadcastStrategy.ClosestNodes({ id: fromPublicKey(publicKey), excluded, connectedOnly: false }),
      destination: Envelope.destinationPublicKey(publicKey),
      encryption,
      ...overrides
    }),
    messageType,
    body
  )

/**
 * The issue's `closest`: `closestBroadcast`.
 *
 * @since 0.1.0
 * @category conveniences
 */
export const closest = closestBroadcast

/**
 * To `broadcastFactor` random connected communication nodes (SPEC §6.6).
 *
 * @since 0.1.0
 * @category conveniences
 */
export const broadcast = (
  destination: Envelope.NodeDestination,
  encryption: OutboundEncryption,
  excluded: ReadonlyArray<NodeId>,
  messageType: number,
  body: Uint8Array,
  overrides: ParamsInput = {}
): Send =>
  sendApplication(
    makeParams({ strategy: BroadcastStrategy.Broadcast({ excluded }), destination, encryption, ...overrides }),
    messageType,
    body
  )

/**
 * To every connected communication node, in clear and signed (SPEC §6.6).
 *
 * @since 0.1.0
 * @category conveniences
 */
export const flood = (
  destination: Envelope.NodeDestination,
  excluded: ReadonlyArray<NodeId>,
  messageType: number,
  body: Uint8Array,
  overrides: ParamsInput = {}
): Send =>
  sendApplication(
    makeParams({
      strategy: BroadcastStrategy.Flood({ excluded }),
      destination,
      encryption: clearText,
      forceOrigin: true,
      ...overrides
    }),
    messageType,
    body
  )

/**
 * To `n` random known communication nodes, connected or not (SPEC §6.6).
 *
 * @since 0.1.0
 * @category conveniences
 */
export const sendRandom = (
  n: number,
  destination: Envelope.NodeDestination,
  encryption: OutboundEncryption,
  messageType: number,
  body: Uint8Array,
  overrides: ParamsInput = {}
): Send =>
  sendApplication(
    makeParams({ strategy: BroadcastStrategy.Random({ n, excluded: [] }), destination, encryption, ...overrides }),
    messageType,
    body
  )
