/**
 * The per-origin gossip budget of SPEC §7.5: a node forwards at most `gossipBudgetPerOrigin` F3 messages (signed
 * cleartext with an unknown destination) per origin per minute. One token bucket per origin key, holding up to the
 * budget and refilled continuously at the budget per minute; buckets idle for 10 minutes are dropped (a bucket
 * idle that long is full again, so dropping it changes nothing), and at most 10,000 are kept, the least recently
 * used going first.
 *
 * @since 0.1.0
 */
import * as NodeId from "@comms-dht/core/NodeId"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * A bucket unused for this long is discarded (SPEC §7.5).
 *
 * @since 0.1.0
 * @category constants
 */
export const IDLE_MS = 10 * 60_000

/**
 * Most buckets kept (SPEC §7.5).
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_BUCKETS = 10_000

const MINUTE_MS = 60_000

/**
 * @since 0.1.0
 * @category models
 */
export interface GossipBudgetService {
  /**
   * Spends one token of `origin`'s bucket if it has one: `true` when the F3 message may be forwarded. `budget` is
   * the bucket's size and its refill per minute (`gossipBudgetPerOrigin`).
   */
  readonly take: (origin: NodeId.PublicKey, budget: number) => Effect.Effect<boolean>
  /** Buckets held now. */
  readonly size: Effect.Effect<number>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class GossipBudget extends Context.Tag("@comms-dht/inbound/GossipBudget")<GossipBudget, GossipBudgetService>() {}

interface Bucket {
  tokens: number
  updatedAt: number
}

/**
 * A fresh set of buckets. The map is touched only inside `Effect.sync`, so each `take` is atomic between fibers;
 * insertion order is recency order (a bucket is re-inserted when used), which makes both the idle sweep and the
 * least-recently-used eviction a walk from the front.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<GossipBudgetService> = Effect.sync(() => {
  const buckets = new Map<string, Bucket>()
  let sweptAt = Number.NEGATIVE_INFINITY

  const sweep = (now: number) => {
    if (now - sweptAt < MINUTE_MS && buckets.size < MAX_BUCKETS) return
    sweptAt = now
    for (const [key, bucket] of buckets) {
      if (now - bucket.updatedAt < IDLE_MS && buckets.size < MAX_BUCKETS) break
      buckets.delete(key)
    }
  }

  return GossipBudget.of({
    take: (origin, budget) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        if (budget <= 0) return false
        const key = NodeId.toHex(origin)
        const found = buckets.get(key)
        let bucket: Bucket
        if (found === undefined || now - found.updatedAt >= IDLE_MS) {
          bucket = { tokens: budget, updatedAt: now }
        } else {
          const refill = Math.max(0, now - found.updatedAt) * budget / MINUTE_MS
          bucket = { tokens: Math.min(budget, found.tokens + refill), updatedAt: now }
        }
        buckets.delete(key)
        sweep(now)
        const allowed = bucket.tokens >= 1
        if (allowed) bucket.tokens -= 1
        buckets.set(key, bucket)
        return allowed
      }),
    size: Effect.sync(() => buckets.size)
  })
})

/**
 * `make` as a Layer: empty buckets each time it is built.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<GossipBudget> = Layer.effect(GossipBudget, make)
