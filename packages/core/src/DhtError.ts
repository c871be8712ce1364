/**
 * Every expected failure of comms-dht as a tagged error (SPEC §14). Each inbound rejection has its own tag, so a
 * log line, a metric (`reason=<tag>`) and a ban decision can be keyed on it; the unions at the end are what the
 * public functions declare.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { NodeId } from "./NodeId.js"

// --- transport (§11.5, §11.6, §4.8) ---

/**
 * @since 0.1.0
 * @category errors
 */
export class FrameTooLarge extends Schema.TaggedError<FrameTooLarge>()("FrameTooLarge", {
  size: Schema.Number,
  limit: Schema.Number
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class Flooding extends Schema.TaggedError<Flooding>()("Flooding", {
  frames: Schema.Number,
  bytes: Schema.Number
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class HandshakeFailed extends Schema.TaggedError<HandshakeFailed>()("HandshakeFailed", {
  reason: Schema.String
}) {}

// --- inbound (§14.1) ---

/**
 * @since 0.1.0
 * @category errors
 */
export class PeerNotFound extends Schema.TaggedError<PeerNotFound>()("PeerNotFound", {
  nodeId: NodeId
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class PeerBanned extends Schema.TaggedError<PeerBanned>()("PeerBanned", {
  nodeId: NodeId,
  reason: Schema.String
}) {}

/**
 * Bytes that are not what they claim to be (not a protobuf message, a field of the wrong length).
 *
 * @since 0.1.0
 * @category errors
 */
export class DecodeError extends Schema.TaggedError<DecodeError>()("DecodeError", {
  reason: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class HeaderOmitted extends Schema.TaggedError<HeaderOmitted>()("HeaderOmitted", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class InvalidDestination extends Schema.TaggedError<InvalidDestination>()("InvalidDestination", {
  reason: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class InvalidEphemeralPublicKey extends Schema.TaggedError<InvalidEphemeralPublicKey>()(
  "InvalidEphemeralPublicKey",
  { reason: Schema.String }
) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class InvalidMessageType extends Schema.TaggedError<InvalidMessageType>()("InvalidMessageType", {
  value: Schema.Number
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class InvalidMessageFlags extends Schema.TaggedError<InvalidMessageFlags>()("InvalidMessageFlags", {
  flags: Schema.Number
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class MessageTooLarge extends Schema.TaggedError<MessageTooLarge>()("MessageTooLarge", {
  size: Schema.Number,
  limit: Schema.Number
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class UnsupportedVersion extends Schema.TaggedError<UnsupportedVersion>()("UnsupportedVersion", {
  version: Schema.Number
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class MissingExpiry extends Schema.TaggedError<MissingExpiry>()("MissingExpiry", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class MessageExpired extends Schema.TaggedError<MessageExpired>()("MessageExpired", {
  expires: Schema.BigIntFromSelf,
  now: Schema.BigIntFromSelf
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class ExpiryTooFar extends Schema.TaggedError<ExpiryTooFar>()("ExpiryTooFar", {
  expires: Schema.BigIntFromSelf,
  limit: Schema.BigIntFromSelf
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class BadEncryptedMessageSemantics extends Schema.TaggedError<BadEncryptedMessageSemantics>()(
  "BadEncryptedMessageSemantics",
  { reason: Schema.String }
) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class SafNotSupported extends Schema.TaggedError<SafNotSupported>()("SafNotSupported", {}) {}

/**
 * Not a fault: a copy seen before (SPEC §7.3).
 *
 * @since 0.1.0
 * @category errors
 */
export class Duplicate extends Schema.TaggedError<Duplicate>()("Duplicate", {
  hits: Schema.Number
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class DedupFull extends Schema.TaggedError<DedupFull>()("DedupFull", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class InvalidSignature extends Schema.TaggedError<InvalidSignature>()("InvalidSignature", {
  reason: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class EnvelopeBodyDecodeFailed extends Schema.TaggedError<EnvelopeBodyDecodeFailed>()(
  "EnvelopeBodyDecodeFailed",
  { reason: Schema.String }
) {}

/**
 * Deliberately vague: decryption failures are never reported to peers and logs carry only the tag (SPEC §4.5).
 *
 * @since 0.1.0
 * @category errors
 */
export class DecryptionFailed extends Schema.TaggedError<DecryptionFailed>()("DecryptionFailed", {
  reason: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class InvalidEncryptedSignature extends Schema.TaggedError<InvalidEncryptedSignature>()(
  "InvalidEncryptedSignature",
  { reason: Schema.String }
) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class DestinationIsSource extends Schema.TaggedError<DestinationIsSource>()("DestinationIsSource", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  what: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class InvalidApplicationBody extends Schema.TaggedError<InvalidApplicationBody>()("InvalidApplicationBody", {
  reason: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class InvalidMessageBody extends Schema.TaggedError<InvalidMessageBody>()("InvalidMessageBody", {
  reason: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class OriginRequired extends Schema.TaggedError<OriginRequired>()("OriginRequired", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class OriginMismatch extends Schema.TaggedError<OriginMismatch>()("OriginMismatch", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class DiscoveryResponseRelayed extends Schema.TaggedError<DiscoveryResponseRelayed>()(
  "DiscoveryResponseRelayed",
  {}
) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class UnexpectedDiscoveryResponse extends Schema.TaggedError<UnexpectedDiscoveryResponse>()(
  "UnexpectedDiscoveryResponse",
  { reason: Schema.String }
) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class DiscoveryKeyMismatch extends Schema.TaggedError<DiscoveryKeyMismatch>()("DiscoveryKeyMismatch", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class PeerValidationError extends Schema.TaggedError<PeerValidationError>()("PeerValidationError", {
  reason: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class NewAndExistingMismatch extends Schema.TaggedError<NewAndExistingMismatch>()(
  "NewAndExistingMismatch",
  {}
) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class UnrequestedSafResponse extends Schema.TaggedError<UnrequestedSafResponse>()(
  "UnrequestedSafResponse",
  {}
) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class SafResponseTooLate extends Schema.TaggedError<SafResponseTooLate>()("SafResponseTooLate", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class TooManySafMessages extends Schema.TaggedError<TooManySafMessages>()("TooManySafMessages", {
  received: Schema.Number,
  limit: Schema.Number
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class InvalidSafMessage extends Schema.TaggedError<InvalidSafMessage>()("InvalidSafMessage", {
  reason: Schema.Literal(
    "OutOfOrder",
    "Malformed",
    "StoredAtInFuture",
    "BadEncryptedSemantics",
    "InvalidSafDestination",
    "InvalidSignature",
    "DhtMessageViaSaf"
  )
}) {}

/**
 * A delivery receipt (docs/spec-departures.md §2) that moves nothing: undecodable (`Malformed`), for no message this
 * node waits on or holds (`UnknownMessage`), from anyone but the message's destination (`WrongSigner`), or whose
 * signature over the hash does not verify with the destination's key (`BadSignature`).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidReceipt extends Schema.TaggedError<InvalidReceipt>()("InvalidReceipt", {
  reason: Schema.Literal("Malformed", "UnknownMessage", "WrongSigner", "BadSignature")
}) {}

/**
 * A reliable send (docs/spec-departures.md §2) had neither been delivered nor expired when its caller stopped waiting.
 *
 * @since 0.1.0
 * @category errors
 */
export class DeliveryTimeout extends Schema.TaggedError<DeliveryTimeout>()("DeliveryTimeout", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class TooManyPeersReceived extends Schema.TaggedError<TooManyPeersReceived>()("TooManyPeersReceived", {
  received: Schema.Number,
  limit: Schema.Number
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class DuplicatePeerReceived extends Schema.TaggedError<DuplicatePeerReceived>()(
  "DuplicatePeerReceived",
  {}
) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class EmptyPeerMessageReceived extends Schema.TaggedError<EmptyPeerMessageReceived>()(
  "EmptyPeerMessageReceived",
  {}
) {}

// --- other tags (§14.2) ---

/**
 * @since 0.1.0
 * @category errors
 */
export class EncryptionFailed extends Schema.TaggedError<EncryptionFailed>()("EncryptionFailed", {
  reason: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class CannotDiscoverThisNode extends Schema.TaggedError<CannotDiscoverThisNode>()(
  "CannotDiscoverThisNode",
  {}
) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class DiscoveryTimeout extends Schema.TaggedError<DiscoveryTimeout>()("DiscoveryTimeout", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class DiscoveryFailed extends Schema.TaggedError<DiscoveryFailed>()("DiscoveryFailed", {
  reason: Schema.Literal("SendFailed", "Shutdown", "Timeout")
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class DialFailed extends Schema.TaggedError<DialFailed>()("DialFailed", {
  attempts: Schema.Number
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class TransportShutdown extends Schema.TaggedError<TransportShutdown>()("TransportShutdown", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class ConnectionClosed extends Schema.TaggedError<ConnectionClosed>()("ConnectionClosed", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class QueueFull extends Schema.TaggedError<QueueFull>()("QueueFull", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class Timeout extends Schema.TaggedError<Timeout>()("Timeout", {}) {}

/**
 * Storage failures, classified so that callers can tell a corrupt file from a locked one (SPEC §18).
 *
 * @since 0.1.0
 * @category errors
 */
export class StoreError extends Schema.TaggedError<StoreError>()("StoreError", {
  reason: Schema.Literal("Corrupt", "Locked", "Io", "Constraint", "Unknown"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class DhtShutdown extends Schema.TaggedError<DhtShutdown>()("DhtShutdown", {}) {}

// --- send failures (§5) ---

/**
 * @since 0.1.0
 * @category errors
 */
export class SendToOurselves extends Schema.TaggedError<SendToOurselves>()("SendToOurselves", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class PeerSelectionFailed extends Schema.TaggedError<PeerSelectionFailed>()("PeerSelectionFailed", {
  reason: Schema.String
}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class NoMessagesQueued extends Schema.TaggedError<NoMessagesQueued>()("NoMessagesQueued", {}) {}

/**
 * @since 0.1.0
 * @category errors
 */
export class FailedToGenerateMessages extends Schema.TaggedError<FailedToGenerateMessages>()(
  "FailedToGenerateMessages",
  { reason: Schema.Literal("TooLarge", "EncryptionFailed", "ExpiryTooFar") }
) {}

/**
 * A configuration value that does not decode (SPEC §17).
 *
 * @since 0.1.0
 * @category errors
 */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  reason: Schema.String
}) {}

// --- unions (§14.2, §5) ---

/**
 * @since 0.1.0
 * @category errors
 */
export type DiscoveryError = CannotDiscoverThisNode | DiscoveryTimeout | DiscoveryFailed

/**
 * @since 0.1.0
 * @category errors
 */
export type DialError = DialFailed | PeerBanned | TransportShutdown

/**
 * @since 0.1.0
 * @category errors
 */
export type SendFailure =
  | SendToOurselves
  | DiscoveryFailed
  | PeerSelectionFailed
  | NoMessagesQueued
  | FailedToGenerateMessages
  | DhtShutdown

/**
 * Why one per-peer send failed (SPEC §5).
 *
 * @since 0.1.0
 * @category errors
 */
export type SendFailReason = DialFailed | PeerBanned | ConnectionClosed | QueueFull | Timeout | TransportShutdown

/**
 * Envelope-level decoding failures (SPEC §3.7).
 *
 * @since 0.1.0
 * @category errors
 */
export type EnvelopeDecodeError =
  | DecodeError
  | HeaderOmitted
  | InvalidDestination
  | InvalidEphemeralPublicKey
  | InvalidMessageType
  | InvalidMessageFlags

/**
 * Every tag of SPEC §14.1: what an inbound stage may fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type StageError =
  | FrameTooLarge
  | Flooding
  | HandshakeFailed
  | PeerNotFound
  | PeerBanned
  | EnvelopeDecodeError
  | MessageTooLarge
  | UnsupportedVersion
  | MissingExpiry
  | MessageExpired
  | ExpiryTooFar
  | BadEncryptedMessageSemantics
  | SafNotSupported
  | Duplicate
  | DedupFull
  | InvalidSignature
  | EnvelopeBodyDecodeFailed
  | DecryptionFailed
  | InvalidEncryptedSignature
  | DestinationIsSource
  | RateLimited
  | InvalidApplicationBody
  | InvalidMessageBody
  | OriginRequired
  | OriginMismatch
  | DiscoveryResponseRelayed
  | UnexpectedDiscoveryResponse
  | DiscoveryKeyMismatch
  | PeerValidationError
  | NewAndExistingMismatch
  | UnrequestedSafResponse
  | SafResponseTooLate
  | TooManySafMessages
  | InvalidSafMessage
  | InvalidReceipt
  | TooManyPeersReceived
  | DuplicatePeerReceived
  | EmptyPeerMessageReceived
