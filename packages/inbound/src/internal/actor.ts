/** @internal */
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtActor from "@comms-dht/core/DhtActor"
import type * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtEvents from "@comms-dht/core/DhtEvents"
import type * as NodeId from "@comms-dht/core/NodeId"
import type * as PeerManager from "@comms-dht/core/PeerManager"
import * as Effect from "effect/Effect"

// The DHT operations the pipeline needs, in one place. Dedup inserts go to the `DedupCache` directly, as SPEC §7.3
// prescribes (an atomic service call; the actor's `MsgHashCacheInsert` is the same operation for API users, and
// routing every inbound copy through the actor's queue would serialise the pipeline on one fiber). Bans go
// through the actor (SPEC §13 `BanPeer`), which records them, closes the connection and publishes `PeerBanned`.

/** @internal SPEC §7.3 */
export const insertDedup = (
  hash: Uint8Array,
  sender: NodeId.PublicKey,
  keepUntil: number
): Effect.Effect<DedupCache.DedupInsertResult, never, DedupCache.DedupCache> =>
  Effect.flatMap(DedupCache.DedupCache, (cache) => cache.insert(hash, sender, keepUntil))

/** @internal the event stream of SPEC §15 */
export const publishEvent = (event: DhtEvent.DhtEvent): Effect.Effect<void, never, DhtEvents.DhtEvents> =>
  Effect.flatMap(DhtEvents.DhtEvents, (events) => events.publish(event))

/** @internal SPEC §11.4 through the actor; once it has shut down, so has the pipeline that asked */
export const banPeer = (
  publicKey: NodeId.PublicKey,
  severity: PeerManager.Severity,
  reason: string
): Effect.Effect<void, never, DhtActor.DhtActor> =>
  Effect.flatMap(DhtActor.DhtActor, (actor) => actor.banPeer(publicKey, severity, reason)).pipe(
    Effect.catchTag("DhtShutdown", () => Effect.logDebug("ban skipped: the DHT actor has shut down"))
  )
