/**
 * What the inbound pipeline does with bad input (SPEC §14): every rejection is logged (warn when it bans, debug
 * otherwise), counted in `comms_dht_inbound_rejected_total{reason=<tag>}` (duplicates in
 * `comms_dht_inbound_duplicates_total`, SAF response rows in `comms_dht_saf_responses_rejected_total`), and the
 * peer SPEC §14.1 blames is banned: the source (the connection that delivered the frame) for how it delivered it,
 * the authenticated origin for what it signed, never a forwarder for an encrypted message it could not read.
 *
 * @since 0.1.0
 */
import type * as DhtError from "@comms-dht/core/DhtError"
import { Duplicate } from "@comms-dht/core/DhtError"
import * as DhtLog from "@comms-dht/core/DhtLog"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Envelope from "@comms-dht/core/Envelope"
import * as NodeId from "@comms-dht/core/NodeId"
import type * as DhtActor from "@comms-dht/core/DhtActor"
import type * as PeerManager from "@comms-dht/core/PeerManager"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Actor from "./internal/actor.js"

/**
 * What an inbound stage can fail with: a §14.1 tag, or a storage failure of the peer table or a store.
 *
 * @since 0.1.0
 * @category errors
 */
export type PipelineError = DhtError.StageError | DhtError.StoreError

/**
 * Who is to blame: the peer that delivered the frame, and what the pipeline knew of the message when it failed.
 *
 * @since 0.1.0
 * @category models
 */
export interface Blame {
  readonly source: NodeId.NodeId
  /** the source's key, once the peer table has been read */
  readonly sourceKey: Option.Option<NodeId.PublicKey>
  /** the authenticated origin, once a signature has verified */
  readonly origin: Option.Option<NodeId.PublicKey>
  /** the envelope's message type, once it has been decoded */
  readonly messageType: Option.Option<Envelope.DhtMessageType>
}

/**
 * A blame naming only the source peer.
 *
 * @since 0.1.0
 * @category constructors
 */
export const blameSource = (source: NodeId.NodeId): Blame => ({
  source,
  sourceKey: Option.none(),
  origin: Option.none(),
  messageType: Option.none()
})

/**
 * The ban of SPEC §14.1: whom (the source or the authenticated origin) and how hard.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ban {
  readonly target: "source" | "origin"
  readonly severity: PeerManager.Severity
}

const source = (severity: PeerManager.Severity): Ban => ({ target: "source", severity })
const origin = (severity: PeerManager.Severity): Ban => ({ target: "origin", severity })

/**
 * The ban SPEC §14.1 prescribes for `error`, given the type of the message it was raised on; none for the rows that
 * ban nobody (and for the transport's own rows, which the transport enforces).
 *
 * @since 0.1.0
 * @category utils
 */
export const banOf = (
  error: PipelineError,
  messageType: Option.Option<Envelope.DhtMessageType>
): Option.Option<Ban> => {
  switch (error._tag) {
    case "BadEncryptedMessageSemantics":
    case "InvalidSignature":
      return Option.some(source("High"))
    case "DestinationIsSource":
    case "DiscoveryResponseRelayed":
      return Option.some(source("Medium"))
    case "OriginRequired":
      return Option.some(source("Low"))
    case "OriginMismatch":
      return Option.some(origin("High"))
    case "DiscoveryKeyMismatch":
      return Option.some(origin("Medium"))
    case "InvalidMessageBody":
      // an undecodable SAF request is its sender's; an undecodable DHT body is its signer's
      return Option.some(
        Option.contains(messageType, Envelope.DhtMessageType.SafRequestMessages) ? source("High") : origin("High")
      )
    case "PeerValidationError":
      return Option.match(messageType, {
        onNone: () => Option.none(),
        onSome: (type) => {
          switch (type) {
            case Envelope.DhtMessageType.Join:
            case Envelope.DhtMessageType.Discovery:
              return Option.some(origin("Medium"))
            case Envelope.DhtMessageType.DiscoveryResponse:
              return Option.some(origin("High"))
            case Envelope.DhtMessageType.PeerSyncRequest:
            case Envelope.DhtMessageType.PeerSyncResponse:
              // a sync handler fails with it only when the responder broke the count limits (§12.4)
              return Option.some(source("High"))
            default:
              return Option.none()
          }
        }
      })
    case "TooManySafMessages":
    case "TooManyPeersReceived":
    case "DuplicatePeerReceived":
    case "EmptyPeerMessageReceived":
      return Option.some(source("High"))
    case "InvalidSafMessage":
      return Option.some(source(error.reason === "DhtMessageViaSaf" ? "Medium" : "High"))
    default:
      return Option.none()
  }
}

const isSafResponseRow = (tag: PipelineError["_tag"]): boolean =>
  tag === "UnrequestedSafResponse" || tag === "SafResponseTooLate" || tag === "TooManySafMessages" ||
  tag === "InvalidSafMessage"

// tagging a metric builds a new key each time: one per reason, made once
const counters = new Map<string, Metric.Metric.Counter<number>>()
const counterOf = (metric: Metric.Metric.Counter<number>, name: string, reason: string) => {
  const key = `${name}/${reason}`
  let counter = counters.get(key)
  if (counter === undefined) {
    counter = DhtMetrics.tagged(metric, "reason", reason)
    counters.set(key, counter)
  }
  return counter
}

/**
 * Counts one rejection under `reason` in `comms_dht_inbound_rejected_total`; also for drops that are counted
 * without being errors (SPEC §14.1, last paragraph).
 *
 * @since 0.1.0
 * @category utils
 */
export const countRejected = (reason: string): Effect.Effect<void> =>
  Metric.increment(counterOf(DhtMetrics.inboundRejected, "inbound", reason))

// most frames of a flood are duplicates: counted in one step
const countDuplicate = DhtMetrics.withLabels((labels) => DhtMetrics.inboundDuplicates.unsafeUpdate(1, labels))

const count = (error: PipelineError): Effect.Effect<void> => {
  if (error._tag === "Duplicate") return countDuplicate
  if (isSafResponseRow(error._tag)) {
    return Metric.increment(counterOf(DhtMetrics.safResponsesRejected, "saf", error._tag))
  }
  return countRejected(error._tag)
}

/**
 * Sees every rejection after it was handled: the exact error and whom it blamed. Optional; the composition root or
 * a test provides it to the pipeline's Layer (diagnostics, assertions on the typed errors).
 *
 * @since 0.1.0
 * @category tags
 */
export class Observer extends Context.Tag("@comms-dht/inbound/RejectionObserver")<
  Observer,
  (error: PipelineError, blame: Blame) => Effect.Effect<void>
>() {}

const targetKey = (ban: Ban, blame: Blame): Option.Option<NodeId.PublicKey> =>
  ban.target === "source" ? blame.sourceKey : blame.origin

/**
 * SPEC §14 for one rejection: log, count, and ban whom §14.1 blames. Never fails.
 *
 * @since 0.1.0
 * @category utils
 */
export const report = (
  error: PipelineError,
  blame: Blame
): Effect.Effect<void, never, DhtActor.DhtActor> =>
  Effect.gen(function*() {
    yield* count(error)
    const observer = yield* Effect.serviceOption(Observer)
    if (Option.isSome(observer)) yield* observer.value(error, blame)
    const ban = banOf(error, blame.messageType)
    // decryption failures are logged by tag only (SPEC §4.5); a store failure is the node's own problem
    const annotations = {
      reason: error._tag,
      source: NodeId.toHex(blame.source),
      ...(error._tag === "StoreError" ? { detail: error.message } : {})
    }
    if (Option.isNone(ban)) {
      return yield* error._tag === "StoreError"
        ? Effect.annotateLogs(Effect.logWarning("inbound message dropped"), annotations)
        : DhtLog.debug("inbound message dropped", annotations)
    }
    const target = targetKey(ban.value, blame)
    yield* Effect.logWarning("inbound message dropped, peer banned").pipe(
      Effect.annotateLogs({
        ...annotations,
        banned: ban.value.target,
        severity: ban.value.severity,
        ...(Option.isSome(blame.origin) ? { origin: NodeId.toHex(blame.origin.value) } : {})
      })
    )
    if (Option.isSome(target)) yield* Actor.banPeer(target.value, ban.value.severity, error._tag)
  })

/**
 * `report` for a `Duplicate` of `hits` copies, building the error (and its blame) only when an `Observer` is there
 * to see it: a duplicate is counted, never logged or banned (§8), and most frames a node receives in a flood are
 * duplicates, for which an error object with its stack trace was the largest single cost of dropping one.
 *
 * @since 0.1.0
 * @category utils
 */
export const reportDuplicate = (hits: number, blame: () => Blame): Effect.Effect<void> =>
  Effect.flatMap(Effect.serviceOption(Observer), (observer) =>
    Option.isNone(observer)
      ? countDuplicate
      : Effect.zipRight(countDuplicate, observer.value(new Duplicate({ hits }, true), blame())))
