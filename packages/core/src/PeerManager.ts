/**
 * The `PeerManager` tag (SPEC §2.5, §11.4): the table of known peers. The memory Layer lives here; the sqlite one
 * in `@comms-dht/store`. Methods are keyed by NodeId (the table's index) or public key.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { PeerNotFound, StoreError } from "./DhtError.js"
import type { NodeId, PublicKey } from "./NodeId.js"
import type { Peer } from "./Peer.js"

/**
 * What `add` did: stored a new peer, updated a known one, or skipped it (table full of unevictable peers, or the
 * source's hourly budget spent — SPEC §2.5).
 *
 * @since 0.1.0
 * @category models
 */
export type AddResult = "Added" | "Updated" | "SkippedCapacity" | "SkippedBudget"

/**
 * Ban severity (SPEC §14): `Low` and `Medium` ban for `banDurationShort`, `High` for `banDuration`.
 *
 * @since 0.1.0
 * @category models
 */
export type Severity = "Low" | "Medium" | "High"

/**
 * A filter for selections. Every field narrows; omitted fields do not.
 *
 * @since 0.1.0
 * @category models
 */
export interface PeerQuery {
  /** peers whose features are exactly this value */
  readonly features?: number
  /** peers having every one of these feature bits */
  readonly hasFeatures?: number
  readonly excluded?: ReadonlyArray<NodeId>
  readonly excludeBanned?: boolean
  readonly excludeOffline?: boolean
  readonly verifiedOnly?: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface PeerManagerService {
  /**
   * Inserts or replaces a peer record. `source` (the NodeId of the connection that delivered it) is charged
   * against the per-source hourly budget; omit it for config seeds and the transport's own registrations.
   */
  readonly add: (peer: Peer, options?: { readonly source?: NodeId }) => Effect.Effect<AddResult, StoreError>
  readonly get: (nodeId: NodeId) => Effect.Effect<Peer, PeerNotFound | StoreError>
  readonly getByPublicKey: (key: PublicKey) => Effect.Effect<Peer, PeerNotFound | StoreError>
  readonly exists: (nodeId: NodeId) => Effect.Effect<boolean, StoreError>
  readonly all: Effect.Effect<ReadonlyArray<Peer>, StoreError>
  readonly count: Effect.Effect<number, StoreError>
  /** The `n` peers matching `query` closest to `target`, ascending distance (ties by NodeId bytes). */
  readonly closest: (target: NodeId, n: number, query?: PeerQuery) => Effect.Effect<ReadonlyArray<Peer>, StoreError>
  /** `n` peers matching `query`, uniformly at random from Effect's `Random`. */
  readonly random: (n: number, query?: PeerQuery) => Effect.Effect<ReadonlyArray<Peer>, StoreError>
  /**
   * Bans until `now + duration` (never shortening a longer ban); returns the updated record. Expiry is by
   * time: `isBanned` compares with the clock.
   */
  readonly ban: (
    nodeId: NodeId,
    durationMs: number,
    reason: string
  ) => Effect.Effect<Peer, PeerNotFound | StoreError>
  readonly unban: (nodeId: NodeId) => Effect.Effect<void, PeerNotFound | StoreError>
  /** Applies `f` to a known peer atomically and stores the result. */
  readonly update: (nodeId: NodeId, f: (peer: Peer) => Peer) => Effect.Effect<Peer, PeerNotFound | StoreError>
  readonly remove: (nodeId: NodeId) => Effect.Effect<void, StoreError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class PeerManager extends Context.Tag("@comms-dht/core/PeerManager")<PeerManager, PeerManagerService>() {}
