/**
 * The messages of the inbound pipeline (SPEC §5, §7): what each stage hands to the next, from a decoded envelope
 * (`DhtInboundMessage`) through the result of decryption (`DecryptedDhtMessage`) to what the application receives
 * (`DomainMessage`). They live in `core` because the pipeline (`@comms-dht/inbound`), the store-and-forward stage
 * (`@comms-dht/store`, through `SafStage`) and the composition root (`@comms-dht/node`) all read them.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Option from "effect/Option"
import type * as Envelope from "./Envelope.js"
import type { NodeId, PublicKey } from "./NodeId.js"
import type { Peer } from "./Peer.js"

/**
 * A decoded envelope on its way through the pipeline (SPEC §5). `dedupHitCount` is 0 and `dedupHash` empty until
 * the dedup stage has run; `mayForward` turns false when the dedup insert was `Full` or `Failed` (§7.3).
 *
 * @since 0.1.0
 * @category models
 */
export interface DhtInboundMessage {
  /** local, random: for tracing only */
  readonly tag: bigint
  /** the connected peer that delivered the frame (authenticated by the transport) */
  readonly sourcePeer: Peer
  readonly header: Envelope.DhtMessageHeader
  /** the envelope body as received: `EnvelopeBody` bytes, or ciphertext when encrypted */
  readonly body: Uint8Array
  /** it came out of a store-and-forward response (§9.4) */
  readonly isSafMessage: boolean
  readonly dedupHitCount: number
  /** `DSH("dedup", 32, challenge, message_signature)` (§8.1) */
  readonly dedupHash: Uint8Array
  readonly mayForward: boolean
  /** the frame's size in bytes */
  readonly size: number
}

/**
 * What decrypting (or, for cleartext, verifying and decoding) a message gave (SPEC §5, §7.4): its body and the
 * origin whose signature verified, or, for an encrypted message addressed to another key, only the ciphertext.
 *
 * @since 0.1.0
 * @category models
 */
export type DecryptionResult = Data.TaggedEnum<{
  Succeeded: { readonly body: Envelope.EnvelopeBody; readonly authenticatedOrigin: Option.Option<PublicKey> }
  NotForUs: { readonly ciphertext: Uint8Array }
}>

/**
 * Constructors, guards and matchers of `DecryptionResult`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const DecryptionResult = Data.taggedEnum<DecryptionResult>()

/**
 * A message after the decrypt stage (SPEC §5). `isForThisNode`: the destination is this node's key, or it is
 * `Unknown` and decryption succeeded. `isSafStored`/`isAlreadyForwarded` come from the store-and-forward decision
 * (§7.5, §9.1); none when no decision was taken.
 *
 * @since 0.1.0
 * @category models
 */
export interface DecryptedDhtMessage extends DhtInboundMessage {
  readonly decryption: DecryptionResult
  readonly isForThisNode: boolean
  readonly isSafStored: Option.Option<boolean>
  readonly isAlreadyForwarded: boolean
}

/**
 * The authenticated origin of a decrypted message: the key whose signature verified, if any.
 *
 * @since 0.1.0
 * @category utils
 */
export const authenticatedOrigin = (message: DecryptedDhtMessage): Option.Option<PublicKey> =>
  message.decryption._tag === "Succeeded" ? message.decryption.authenticatedOrigin : Option.none()

/**
 * `dedupHitCount > 1` (SPEC §5).
 *
 * @since 0.1.0
 * @category utils
 */
export const isDuplicate = (message: DhtInboundMessage): boolean => message.dedupHitCount > 1

/**
 * An application message as the application receives it (`Dht.inbound`, SPEC §5, §7.8).
 *
 * @since 0.1.0
 * @category models
 */
export interface DomainMessage {
  /** local, random: for tracing only */
  readonly tag: bigint
  /** the connected peer that delivered it (for a SAF message: the responder) */
  readonly sourcePeer: NodeId
  /** the key whose signature verified; none for an unsigned cleartext message */
  readonly origin: Option.Option<PublicKey>
  readonly header: Envelope.DhtMessageHeader
  /** `MessageHeader.message_type`: the application's own type tag */
  readonly messageType: number
  /** `MessageHeader.nonce` */
  readonly nonce: bigint
  /** `parts[1]`, or empty */
  readonly body: Uint8Array
  /** it came out of a store-and-forward response */
  readonly isSafMessage: boolean
  /** it travelled encrypted (to this node) */
  readonly wasEncrypted: boolean
}
