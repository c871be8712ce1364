/**
 * The `PeerManager` tag (SPEC §2.5, §11.4): the table of known peers. The memory Layer lives here; the sqlite one
 * in `@comms-dht/store`. Methods are keyed by NodeId (the table's index) or public key.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import { DhtConfig } from "./DhtConfig.js"
import { PeerNotFound, type StoreError } from "./DhtError.js"
import * as DhtMetrics from "./DhtMetrics.js"
import {
  bucketIndex,
  closestOf,
  compareBytes,
  equals,
  fromPublicKey,
  isCloser,
  NODE_ID_LENGTH,
  type NodeId,
  type PublicKey,
  toHex
} from "./NodeId.js"
import { Peer, unsafePeer } from "./Peer.js"

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
  /**
   * `add` for each peer in turn, with the same `source`: the same results, in their order, and the same table after.
   * For a batch of relayed peers (a peer sync response): one operation, one transaction in a stored table, rather
   * than one per peer.
   */
  readonly addMany: (
    peers: ReadonlyArray<Peer>,
    options?: { readonly source?: NodeId }
  ) => Effect.Effect<ReadonlyArray<AddResult>, StoreError>
  readonly get: (nodeId: NodeId) => Effect.Effect<Peer, PeerNotFound | StoreError>
  /**
   * `get` without an Effect, for a table whose records are held in memory: the record, or `undefined` when it is
   * not known (then `get` says why). Optional: a table without it is read through `get`.
   */
  readonly unsafeGet?: (nodeId: NodeId) => Peer | undefined
  /**
   * The known peers among `nodeIds`, in their order; unknown ones are left out. For the hot paths that need a few
   * records (the connected peers a strategy chooses from, one target): no error is built for a miss and the table is
   * not read whole.
   */
  readonly getMany: (nodeIds: ReadonlyArray<NodeId>) => Effect.Effect<ReadonlyArray<Peer>, StoreError>
  readonly getByPublicKey: (key: PublicKey) => Effect.Effect<Peer, PeerNotFound | StoreError>
  readonly exists: (nodeId: NodeId) => Effect.Effect<boolean, StoreError>
  /** Every record, in NodeId order (what `countCloserSorted` and `closestSorted` read). */
  readonly all: Effect.Effect<ReadonlyArray<Peer>, StoreError>
  readonly count: Effect.Effect<number, StoreError>
  /** The `n` peers matching `query` closest to `target`, ascending distance (ties by NodeId bytes). */
  readonly closest: (target: NodeId, n: number, query?: PeerQuery) => Effect.Effect<ReadonlyArray<Peer>, StoreError>
  /**
   * How many peers matching `query`, `nodeId` itself left out, are strictly closer to `target` than `nodeId`,
   * counting no further than `limit`: whether a peer is among a node's `n` closest without selecting them (a node
   * asks on every new connection). Optional, so that a table written before it still serves; `closerCount` below
   * falls back to `closest`.
   */
  readonly closerCount?: (
    target: NodeId,
    nodeId: NodeId,
    limit: number,
    query?: PeerQuery
  ) => Effect.Effect<number, StoreError>
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

/**
 * A predicate for the peers passing every filter of `query` at `nowMs` (shared by the memory and sqlite tables).
 *
 * @since 0.1.0
 * @category utils
 */
export const matchesQuery = (query: PeerQuery | undefined, nowMs: number): (peer: Peer) => boolean => {
  if (query === undefined) return () => true
  const excluded = new Set((query.excluded ?? []).map(toHex))
  return (peer) =>
    (query.features === undefined || peer.features === query.features) &&
    (query.hasFeatures === undefined || (peer.features & query.hasFeatures) === query.hasFeatures) &&
    (query.excludeBanned !== true || !peer.isBanned(nowMs)) &&
    (query.excludeOffline !== true || !peer.isOffline) &&
    (query.verifiedOnly !== true || peer.isVerified) &&
    (excluded.size === 0 || !excluded.has(toHex(peer.nodeId)))
}

/**
 * `closerCount` over a table's records, in one pass that stops at `limit`. The distance test comes first: it is a
 * few byte comparisons, where the query reads several fields of a record.
 *
 * @since 0.1.0
 * @category utils
 */
export const countCloser = (
  peers: Iterable<Peer>,
  target: NodeId,
  nodeId: NodeId,
  limit: number,
  matches: (peer: Peer) => boolean
): number => {
  if (limit <= 0) return 0
  let count = 0
  // `nodeId`'s own record is not strictly closer than itself
  for (const peer of peers) {
    if (isCloser(target, peer.nodeId, nodeId) && matches(peer) && ++count >= limit) break
  }
  return count
}

// The first index of `sorted` (in NodeId order) from which the first `bits` bits of a NodeId compare above (`after`)
// or at least equal to (otherwise) those of `key`; within `[lo, hi)`.
const prefixBound = (
  sorted: ReadonlyArray<Peer>,
  key: NodeId,
  bits: number,
  after: boolean,
  lo: number,
  hi: number
): number => {
  const whole = bits >>> 3
  const mask = (0xff00 >>> (bits & 7)) & 0xff
  const compare = (id: NodeId): number => {
    for (let i = 0; i < whole; i++) if (id[i] !== key[i]) return id[i]! - key[i]!
    return mask === 0 ? 0 : (id[whole]! & mask) - (key[whole]! & mask)
  }
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    const c = compare(sorted[mid]!.nodeId)
    if (c < 0 || (after && c === 0)) lo = mid + 1
    else hi = mid
  }
  return lo
}

/**
 * `countCloser` over a table in NodeId order (as `PeerManagerService.all` hands it out). A peer strictly closer to
 * `target` than `nodeId` shares with `target` the leading bits `nodeId` shares with it (`b` of them), and those peers
 * are one run of the table, found by binary search. Of that run, the half on `target`'s side of bit `b` is closer
 * whatever its other bits, and is read first; the other half is compared. It reads O(log n) records and those it
 * counts or compares, where `countCloser` reads the whole table whenever `nodeId` is among the `limit` closest.
 *
 * @since 0.1.0
 * @category utils
 */
export const countCloserSorted = (
  sorted: ReadonlyArray<Peer>,
  target: NodeId,
  nodeId: NodeId,
  limit: number,
  matches: (peer: Peer) => boolean
): number => {
  const b = bucketIndex(target, nodeId)
  // nothing is closer to the target than the target itself
  if (limit <= 0 || b === NODE_ID_LENGTH * 8) return 0
  const lo = prefixBound(sorted, target, b, false, 0, sorted.length)
  const hi = prefixBound(sorted, target, b, true, lo, sorted.length)
  // the run's peers with bit b clear come first; `nodeId` has the bit `target` has not
  const targetBit = (target[b >>> 3]! >>> (7 - (b & 7))) & 1
  const split = prefixBound(sorted, targetBit === 0 ? target : nodeId, b + 1, true, lo, hi)
  const [sureFrom, sureTo, otherFrom, otherTo] = targetBit === 0 ? [lo, split, split, hi] : [split, hi, lo, split]
  let count = 0
  for (let i = sureFrom; i < sureTo; i++) if (matches(sorted[i]!) && ++count >= limit) return count
  for (let i = otherFrom; i < otherTo; i++) {
    const peer = sorted[i]!
    if (isCloser(target, peer.nodeId, nodeId) && matches(peer) && ++count >= limit) return count
  }
  return count
}

/**
 * `closest` over a table's records, read in whatever order they are stored: `closestOf` picks the same peers in any
 * order (distinct NodeIds are at distinct distances), so a table need not sort itself to answer.
 *
 * @since 0.1.0
 * @category utils
 */
export const closestAmong = (
  peers: Iterable<Peer>,
  target: NodeId,
  n: number,
  matches: (peer: Peer) => boolean
): Array<Peer> => {
  const candidates: Array<Peer> = []
  for (const peer of peers) if (matches(peer)) candidates.push(peer)
  return closestOf(target, candidates, n, (peer) => peer.nodeId)
}

/**
 * `closestAmong` over a table in NodeId order (as `PeerManagerService.all` hands it out), with the same answer. The
 * peers sharing the most leading bits with `target` are one run of the table, and every peer of a run is closer to
 * `target` than any peer outside it: the narrowest run of `n` records is found by binary search, widened a bit at a
 * time until `n` of it match, and only that run is ranked. A peer sync answer or a forward picks a few of a table
 * of hundreds, which `closestAmong` reads and filters whole.
 *
 * @since 0.1.0
 * @category utils
 */
export const closestSorted = (
  sorted: ReadonlyArray<Peer>,
  target: NodeId,
  n: number,
  matches: (peer: Peer) => boolean
): Array<Peer> => {
  if (n <= 0 || sorted.length === 0) return []
  const runOf = (bits: number): readonly [number, number] => {
    const from = prefixBound(sorted, target, bits, false, 0, sorted.length)
    return [from, prefixBound(sorted, target, bits, true, from, sorted.length)]
  }
  // the most leading bits whose run still holds n records (none: the whole table)
  let shallow = 0
  let deep = NODE_ID_LENGTH * 8
  while (shallow < deep) {
    const mid = (shallow + deep + 1) >>> 1
    const [from, to] = runOf(mid)
    if (to - from >= n) shallow = mid
    else deep = mid - 1
  }
  let bits = shallow
  let [lo, hi] = runOf(bits)
  const candidates: Array<Peer> = []
  const take = (from: number, to: number) => {
    for (let i = from; i < to; i++) if (matches(sorted[i]!)) candidates.push(sorted[i]!)
  }
  take(lo, hi)
  while (candidates.length < n && bits > 0) {
    bits--
    const [from, to] = runOf(bits)
    take(from, lo)
    take(hi, to)
    lo = from
    hi = to
  }
  return closestOf(target, candidates, n, (peer) => peer.nodeId)
}

/**
 * How many peers matching `query` (`nodeId` left out) are strictly closer to `target` than `nodeId`, up to `limit`:
 * the table's own `closerCount` when it has one, else counted in its `limit + 1` closest (every closer peer is among
 * them until `limit` are). `nodeId` is among the `n` closest matching peers exactly when it matches and this is
 * below `n`.
 *
 * @since 0.1.0
 * @category utils
 */
export const closerCount = (
  peers: PeerManagerService,
  target: NodeId,
  nodeId: NodeId,
  limit: number,
  query?: PeerQuery
): Effect.Effect<number, StoreError> =>
  peers.closerCount !== undefined
    ? peers.closerCount(target, nodeId, limit, query)
    : Effect.map(
      peers.closest(target, limit + 1, query),
      (closest) => Math.min(limit, closest.filter((p) => isCloser(target, p.nodeId, nodeId)).length)
    )

/**
 * The peer a full table gives up for a newcomer (SPEC §2.5): the unverified peer added first, else the verified peer
 * seen least recently (never seen counts as oldest); seeds and peers banned at `nowMs` never. Ties break by NodeId
 * bytes so the choice is deterministic.
 *
 * @since 0.1.0
 * @category utils
 */
export const evictionCandidate = (peers: Iterable<Peer>, nowMs: number): Option.Option<Peer> => {
  let unverified: Peer | undefined
  let verified: Peer | undefined
  const older = (a: number, b: number, x: Peer, y: Peer) => a < b || (a === b && compareBytes(x.nodeId, y.nodeId) < 0)
  for (const peer of peers) {
    if (peer.isSeed || peer.isBanned(nowMs)) continue
    if (!peer.isVerified) {
      if (unverified === undefined || older(peer.addedAt, unverified.addedAt, peer, unverified)) unverified = peer
    } else {
      const seen = peer.lastSeen ?? Number.NEGATIVE_INFINITY
      if (verified === undefined || older(seen, verified.lastSeen ?? Number.NEGATIVE_INFINITY, peer, verified)) {
        verified = peer
      }
    }
  }
  return Option.fromNullable(unverified ?? verified)
}

const MINUTE_MS = 60_000
const BUDGET_WINDOW_MINUTES = 60

interface Bucket {
  readonly minute: number
  readonly count: number
}

interface State {
  readonly peers: HashMap.HashMap<string, Peer>
  /** per source NodeId hex: one bucket per minute with additions, the last hour only */
  readonly budgets: HashMap.HashMap<string, ReadonlyArray<Bucket>>
  readonly sweptAtMinute: number
}

type AddOutcome = { readonly result: AddResult; readonly size: number; readonly evicted: boolean }

const live = (buckets: ReadonlyArray<Bucket>, minute: number) =>
  buckets.filter((b) => b.minute > minute - BUDGET_WINDOW_MINUTES)

const spent = (buckets: ReadonlyArray<Bucket>) => buckets.reduce((n, b) => n + b.count, 0)

const charge = (buckets: ReadonlyArray<Bucket>, minute: number): ReadonlyArray<Bucket> => {
  const last = buckets[buckets.length - 1]
  return last !== undefined && last.minute === minute
    ? [...buckets.slice(0, -1), { minute, count: last.count + 1 }]
    : [...buckets, { minute, count: 1 }]
}

// Drops the buckets of sources silent for an hour, at most once a minute, so the map stays bounded by active sources.
const sweep = (budgets: HashMap.HashMap<string, ReadonlyArray<Bucket>>, minute: number) =>
  HashMap.filterMap(budgets, (buckets) => {
    const kept = live(buckets, minute)
    return kept.length === 0 ? Option.none() : Option.some(kept)
  })

const step = (
  state: State,
  peer: Peer,
  source: NodeId | undefined,
  nowMs: number,
  limits: { readonly maxKnownPeers: number; readonly perSourcePerHour: number }
): readonly [AddOutcome, State] => {
  const key = toHex(peer.nodeId)
  const size = HashMap.size(state.peers)
  if (HashMap.has(state.peers, key)) {
    return [{ result: "Updated", size, evicted: false }, { ...state, peers: HashMap.set(state.peers, key, peer) }]
  }
  const minute = Math.floor(nowMs / MINUTE_MS)
  const budgets = minute > state.sweptAtMinute ? sweep(state.budgets, minute) : state.budgets
  const swept: State = { ...state, budgets, sweptAtMinute: Math.max(minute, state.sweptAtMinute) }
  const sourceKey = source === undefined ? undefined : toHex(source)
  const buckets = sourceKey === undefined
    ? []
    : live(Option.getOrElse(HashMap.get(budgets, sourceKey), () => []), minute)
  if (sourceKey !== undefined && spent(buckets) >= limits.perSourcePerHour) {
    return [{ result: "SkippedBudget", size, evicted: false }, swept]
  }
  let peers = state.peers
  let evicted = false
  if (size >= limits.maxKnownPeers) {
    const victim = evictionCandidate(HashMap.values(peers), nowMs)
    if (Option.isSome(victim)) {
      peers = HashMap.remove(peers, toHex(victim.value.nodeId))
      evicted = true
    } else if (sourceKey !== undefined) {
      return [{ result: "SkippedCapacity", size, evicted: false }, swept]
    }
    // without a source (config seeds, the transport's own registrations) the peer is added even over the bound
  }
  peers = HashMap.set(peers, key, peer)
  return [
    { result: "Added", size: HashMap.size(peers), evicted },
    {
      peers,
      budgets: sourceKey === undefined ? budgets : HashMap.set(budgets, sourceKey, charge(buckets, minute)),
      sweptAtMinute: swept.sweptAtMinute
    }
  ]
}

const skippedBy = {
  budget: DhtMetrics.tagged(DhtMetrics.peersSkipped, "cause", "budget"),
  capacity: DhtMetrics.tagged(DhtMetrics.peersSkipped, "cause", "capacity")
}

const withoutBan = (peer: Peer): Peer => {
  const { bannedUntil: _until, ...rest } = peer
  return unsafePeer({ ...rest, bannedReason: "" })
}

/**
 * An in-memory peer table, empty when made. Its bounds (`maxKnownPeers`, `maxPeersAddedPerSourcePerHour`) are read
 * from the `DhtConfig` reference when it is made.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<PeerManagerService> = Effect.gen(function*() {
  const config = yield* DhtConfig
  const limits = {
    maxKnownPeers: config.maxKnownPeers,
    perSourcePerHour: config.maxPeersAddedPerSourcePerHour
  }
  const state = yield* Ref.make<State>({ peers: HashMap.empty(), budgets: HashMap.empty(), sweptAtMinute: 0 })
  const peers = Effect.map(Ref.get(state), (s) => s.peers)
  const publishSize = (size: number) => Metric.set(DhtMetrics.knownPeers, size)

  const get = (nodeId: NodeId) =>
    Effect.flatMap(peers, (map) =>
      Option.match(HashMap.get(map, toHex(nodeId)), {
        onNone: () => Effect.fail(new PeerNotFound({ nodeId }, true)),
        onSome: Effect.succeed
      }))

  const sortedMatches = (query: PeerQuery | undefined) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const map = yield* peers
      const matches = matchesQuery(query, now)
      const out: Array<readonly [string, Peer]> = []
      for (const [key, peer] of map) if (matches(peer)) out.push([key, peer])
      // HashMap order depends on hashing; a stable order makes seeded random choices reproducible
      out.sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
      return out.map(([, peer]) => peer)
    })

  const update = (nodeId: NodeId, f: (peer: Peer) => Peer) =>
    Ref.modify(state, (s): readonly [Option.Option<Peer>, State] => {
      const key = toHex(nodeId)
      return Option.match(HashMap.get(s.peers, key), {
        onNone: () => [Option.none(), s],
        onSome: (peer) => {
          const next = f(peer)
          return [Option.some(next), { ...s, peers: HashMap.set(s.peers, key, next) }]
        }
      })
    }).pipe(
      Effect.flatMap((o) => Option.isSome(o) ? Effect.succeed(o.value) : Effect.fail(new PeerNotFound({ nodeId }, true)))
    )

  const addAll = (batch: ReadonlyArray<Peer>, source: NodeId | undefined) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const outcomes = yield* Ref.modify(state, (s) => {
        const out: Array<AddOutcome> = []
        let next = s
        for (const peer of batch) {
          const [outcome, after] = step(next, peer, source, now, limits)
          out.push(outcome)
          next = after
        }
        return [out, next] as const
      })
      const skipped = { budget: 0, capacity: 0 }
      for (const outcome of outcomes) {
        if (outcome.result === "SkippedBudget") skipped.budget++
        else if (outcome.result === "SkippedCapacity") skipped.capacity++
      }
      if (skipped.budget > 0) yield* Metric.incrementBy(skippedBy.budget, skipped.budget)
      if (skipped.capacity > 0) yield* Metric.incrementBy(skippedBy.capacity, skipped.capacity)
      const last = outcomes[outcomes.length - 1]
      if (last !== undefined) yield* publishSize(last.size)
      return outcomes.map((outcome) => outcome.result)
    })

  return PeerManager.of({
    add: (peer, options) => Effect.map(addAll([peer], options?.source), (results) => results[0]!),
    addMany: (batch, options) => addAll(batch, options?.source),
    get,
    getMany: (nodeIds) =>
      Effect.map(peers, (map) => {
        const found: Array<Peer> = []
        for (const nodeId of nodeIds) {
          const peer = HashMap.get(map, toHex(nodeId))
          if (Option.isSome(peer)) found.push(peer.value)
        }
        return found
      }),
    getByPublicKey: (key) => {
      const nodeId = fromPublicKey(key)
      return Effect.flatMap(
        get(nodeId),
        (peer) => equals(peer.publicKey, key) ? Effect.succeed(peer) : Effect.fail(new PeerNotFound({ nodeId }, true))
      )
    },
    exists: (nodeId) => Effect.map(peers, HashMap.has(toHex(nodeId))),
    all: sortedMatches(undefined),
    count: Effect.map(peers, HashMap.size),
    closest: (target, n, query) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.map(peers, (map) => closestAmong(HashMap.values(map), target, n, matchesQuery(query, now)))),
    closerCount: (target, nodeId, limit, query) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.map(peers, (map) => countCloser(HashMap.values(map), target, nodeId, limit, matchesQuery(query, now)))),
    random: (n, query) =>
      Effect.flatMap(sortedMatches(query), (candidates) => sample(candidates, n)),
    ban: (nodeId, durationMs, reason) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        update(nodeId, (peer) => {
          const until = now + durationMs
          return peer.isBanned(now) && peer.bannedUntil !== undefined && peer.bannedUntil >= until
            ? peer
            : unsafePeer({ ...peer, bannedUntil: until, bannedReason: reason })
        })),
    unban: (nodeId) => Effect.asVoid(update(nodeId, withoutBan)),
    update,
    remove: (nodeId) =>
      Ref.modify(state, (s) => {
        const next = HashMap.remove(s.peers, toHex(nodeId))
        return [HashMap.size(next), { ...s, peers: next }] as const
      }).pipe(Effect.flatMap(publishSize))
  })
})

// Mulberry32: a 32-bit generator for one shuffle, seeded from Effect's `Random`. A draw from Effect's `Random` is an
// Effect; a peer sync answer drew up to 500 of them (0.3 µs each alone, about 90 µs for 300 peers) where one seed and
// plain arithmetic do (SPEC §19: the run stays a function of its seed).
const shuffler = (seed: number) => {
  let state = seed | 0
  return (): number => {
    state = (state + 0x6d2b79f5) | 0
    let t = Math.imul(state ^ (state >>> 15), 1 | state)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

/**
 * `n` of `candidates` (all of them if fewer), uniformly at random (partial Fisher–Yates), in the order drawn. One
 * draw of Effect's `Random` seeds the shuffle, so the result is deterministic for a given `Random` seed and candidate
 * order; nothing is drawn when there is nothing to choose.
 *
 * @since 0.1.0
 * @category utils
 */
export const sample = <A>(candidates: ReadonlyArray<A>, n: number): Effect.Effect<Array<A>> => {
  const k = Math.min(Math.max(0, n), candidates.length)
  if (k === 0) return Effect.succeed([])
  return Effect.map(Random.nextIntBetween(0, 0x1_0000_0000), (seed) => {
    const next = shuffler(seed)
    const pool = candidates.slice()
    for (let i = 0; i < k; i++) {
      const j = i + Math.floor(next() * (pool.length - i))
      const picked = pool[j]!
      pool[j] = pool[i]!
      pool[i] = picked
    }
    return pool.slice(0, k)
  })
}

/**
 * `n` of `candidates` that `accept` keeps, uniformly at random among those it would keep, in the order drawn, for a
 * test that needs a read: the same shuffle as `sample` (one seed from Effect's `Random`), drawn in batches of as many
 * as are still wanted, each batch handed to `accept`, until `n` are kept or every candidate has been drawn. Only the
 * candidates drawn are tested, so a few kept among many cost a few reads. Not draw for draw the result of `sample`
 * over the kept candidates (that shuffles a different array), but the same distribution.
 *
 * @since 0.1.0
 * @category utils
 */
export const sampleWhere = <A, B, E, R>(
  candidates: ReadonlyArray<A>,
  n: number,
  accept: (batch: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<B>, E, R>
): Effect.Effect<Array<B>, E, R> => {
  const k = Math.max(0, n)
  if (k === 0 || candidates.length === 0) return Effect.succeed([])
  return Effect.flatMap(Random.nextIntBetween(0, 0x1_0000_0000), (seed) => {
    const next = shuffler(seed)
    const pool = candidates.slice()
    const kept: Array<B> = []
    let drawn = 0
    const more: Effect.Effect<Array<B>, E, R> = Effect.suspend(() => {
      const batch: Array<A> = []
      while (batch.length < k - kept.length && drawn < pool.length) {
        const j = drawn + Math.floor(next() * (pool.length - drawn))
        const picked = pool[j]!
        pool[j] = pool[drawn]!
        pool[drawn++] = picked
        batch.push(picked)
      }
      return Effect.flatMap(accept(batch), (accepted) => {
        for (const b of accepted) kept.push(b)
        return kept.length >= k || drawn >= pool.length ? Effect.succeed(kept.slice(0, k)) : more
      })
    })
    return more
  })
}

/**
 * The peer stored under `nodeId`, if any: a lookup that expects absence (a join or a connection from a stranger)
 * without building a `PeerNotFound` error, whose stack trace costs more than the lookup. One step when the table
 * holds its records in memory (`unsafeGet`): about 160,000 lookups in a 300-node simulation.
 *
 * @since 0.1.0
 * @category utils
 */
export const getOption = (
  peers: PeerManagerService,
  nodeId: NodeId
): Effect.Effect<Option.Option<Peer>, StoreError> => {
  const unsafeGet = peers.unsafeGet
  return unsafeGet !== undefined
    ? Effect.sync(() => Option.fromNullable(unsafeGet(nodeId)))
    : Effect.map(peers.getMany([nodeId]), (found) => Option.fromNullable(found[0]))
}

/**
 * Whether the peer stored under `nodeId` is banned now: what a transport asks of a peer that dialled it. A table
 * that cannot answer counts as no ban; the handshake's own checks of the peer still run.
 *
 * @since 0.1.0
 * @category utils
 */
export const isBannedNow = (peers: PeerManagerService, nodeId: NodeId): Effect.Effect<boolean> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.map(
      Effect.orElseSucceed(getOption(peers, nodeId), Option.none),
      (known) => Option.isSome(known) && known.value.isBanned(now)
    ))

/**
 * `makeMemory` as a Layer: a fresh, empty table each time it is built.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<PeerManager> = Layer.effect(PeerManager, makeMemory)
