/**
 * The seam between the inbound pipeline and store-and-forward (SPEC §7.5, §7.6, §9): an optional `SafStage`
 * service. The pipeline (`@comms-dht/inbound`) asks it, before forwarding a message, whether this node stores it
 * (`decide`, reads only: §9.1), and then hands it every first occurrence (`handle`, §7.6), which stores what was
 * decided, answers SAF requests and validates SAF responses. The implementation belongs to `@comms-dht/store`;
 * without one in the Layer graph nothing is stored, SAF requests are dropped and SAF responses are unrequested.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Effect from "effect/Effect"
import type { StageError, StoreError } from "./DhtError.js"
import type { DecryptedDhtMessage } from "./InboundMessages.js"

/**
 * The store-and-forward decision for one message (SPEC §9.1), taken before the forward stage runs.
 *
 * @since 0.1.0
 * @category models
 */
export interface SafDecision {
  /** this node stores the message (§9.1 says "store"), or a row with its hash already exists */
  readonly isSafStored: boolean
  /** a row with its hash already exists: the message was stored, hence forwarded, before */
  readonly isAlreadyForwarded: boolean
}

/**
 * What the store-and-forward stage did with a message (SPEC §7.6): pass it on to the DHT handler (with
 * `isSafStored`/`isAlreadyForwarded` filled in), consume it (a SAF request answered, a SAF message dropped), or
 * replace it by the messages a SAF response delivered, which re-enter the pipeline at the DHT handler (§9.4 step 5)
 * with `isSafMessage = true` and the responder as their source.
 *
 * @since 0.1.0
 * @category models
 */
export type SafOutcome = Data.TaggedEnum<{
  Continue: { readonly message: DecryptedDhtMessage }
  Consumed: {}
  Delivered: { readonly messages: ReadonlyArray<DecryptedDhtMessage> }
}>

/**
 * Constructors and matchers of `SafOutcome`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const SafOutcome = Data.taggedEnum<SafOutcome>()

/**
 * @since 0.1.0
 * @category models
 */
export interface SafStageService {
  /**
   * SPEC §9.1's rules that read nothing (features, first occurrence, body, expiry, size, type, an encrypted message
   * for another key), as a plain function of the message and the time: `false` when they already rule storing out.
   * Optional. When it answers `false`, the pipeline takes `{ isSafStored: false, isAlreadyForwarded: false }` as
   * the decision without running `decide`, and a message of a type other than the SAF request and response goes
   * past `handle` as `Continue` with that decision: a stage that gives `mayStore` promises that `decide` and
   * `handle` would answer so. Most first occurrences (joins, peer syncs, gossip in cleartext) are such messages.
   */
  readonly mayStore?: ((message: DecryptedDhtMessage, nowMs: number) => boolean) | undefined
  /** SPEC §9.1 for a first occurrence: reads only (peer lookups, "a row with this hash exists"). */
  readonly decide: (message: DecryptedDhtMessage) => Effect.Effect<SafDecision, StoreError>
  /**
   * SPEC §7.6 for a first occurrence (`dedupHitCount = 1`; later copies bypass the stage). `decision` is what
   * `decide` answered before forwarding, or `undefined` when it was not asked (the message matched no forward rule,
   * or this node does not forward). A failure is a §14.1 rejection: the pipeline logs it, counts it (SAF response
   * tags in `comms_dht_saf_responses_rejected_total`) and bans as §14.1 says, blaming the source peer.
   */
  readonly handle: (
    message: DecryptedDhtMessage,
    decision: SafDecision | undefined
  ) => Effect.Effect<SafOutcome, StageError | StoreError>
}

/**
 * Optional: the pipeline reads it with `Effect.serviceOption`.
 *
 * @since 0.1.0
 * @category tags
 */
export class SafStage extends Context.Tag("@comms-dht/core/SafStage")<SafStage, SafStageService>() {}
