/**
 * Broadcast strategies and peer selection (SPEC §6.1–§6.2), region thresholds (§2.3) and the
 * `excludedDialAddresses` matcher (§17.1).
 *
 * Selection is a function of a snapshot (`SelectionContext`: this node, the known peers, the connected set, the
 * time and the config values it needs), so the DHT actor can take one snapshot and answer without further I/O. The
 * only effect is Effect's `Random`, used by the random strategies: seeded `Random`/`TestRandom` make them
 * reproducible, and candidates are put in NodeId order before drawing so the table's iteration order does not leak
 * into the result.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type { Config } from "./DhtConfig.js"
import { PeerSelectionFailed } from "./DhtError.js"
import {
  closestOf,
  compareBytes,
  equals,
  fromPublicKey,
  isCloser,
  type NodeId,
  type PublicKey,
  toHex
} from "./NodeId.js"
import { hasFeatures, type Peer, PeerFeatures } from "./Peer.js"
import { sample, sampleWhere } from "./PeerManager.js"

/**
 * Where a propagated message is going: structurally `Envelope.NodeDestination` (`Unknown | PublicKey(pk)`), which
 * can be passed as is.
 *
 * @since 0.1.0
 * @category models
 */
export type Destination =
  | { readonly _tag: "Unknown" }
  | { readonly _tag: "PublicKey"; readonly publicKey: PublicKey }

/**
 * How the outbound pipeline picks the peers a message goes to (SPEC §6.2). `excluded` lists NodeIds never to pick
 * (typically the peer the message came from).
 *
 * @since 0.1.0
 * @category models
 */
export type BroadcastStrategy = Data.TaggedEnum<{
  /** the known peer with this key */
  DirectPublicKey: { readonly publicKey: PublicKey }
  /** the known peer with this NodeId */
  DirectNodeId: { readonly nodeId: NodeId }
  /** every connected communication node */
  Flood: { readonly excluded: ReadonlyArray<NodeId> }
  /** `broadcastFactor` random connected communication nodes */
  Broadcast: { readonly excluded: ReadonlyArray<NodeId> }
  /** `n` random known communication nodes, connected or not */
  Random: { readonly n: number; readonly excluded: ReadonlyArray<NodeId> }
  /** the `broadcastFactor` communication nodes closest to `id` */
  ClosestNodes: { readonly id: NodeId; readonly excluded: ReadonlyArray<NodeId>; readonly connectedOnly: boolean }
  /** `[id]` when connected to it, else `ClosestNodes` */
  DirectOrClosestNodes: {
    readonly id: NodeId
    readonly excluded: ReadonlyArray<NodeId>
    readonly connectedOnly: boolean
  }
  /** exactly these peers */
  SelectedPeers: { readonly ids: ReadonlyArray<NodeId> }
  /**
   * greedy routing towards a key, or gossip when the destination is unknown; `factor` (at least 1) caps the closer
   * peers a hop takes in place of `propagationFactor` (a join's re-propagation, docs/spec-departures.md §14)
   */
  Propagate: {
    readonly destination: Destination
    readonly excluded: ReadonlyArray<NodeId>
    readonly factor?: number | undefined
  }
}>

/**
 * Constructors, guards (`$is`) and matchers (`$match`) of `BroadcastStrategy`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const BroadcastStrategy = Data.taggedEnum<BroadcastStrategy>()

/**
 * @since 0.1.0
 * @category constructors
 */
export const {
  Broadcast,
  ClosestNodes,
  DirectNodeId,
  DirectOrClosestNodes,
  DirectPublicKey,
  Flood,
  Propagate,
  Random,
  SelectedPeers
} = BroadcastStrategy

/**
 * What selection reads: one consistent snapshot of the node's view.
 *
 * @since 0.1.0
 * @category models
 */
export interface SelectionContext {
  /** this node */
  readonly self: NodeId
  /** the known peers (the `PeerManager` table) */
  readonly peers: ReadonlyArray<Peer>
  /** NodeIds (hex) with a live transport connection */
  readonly connected: ReadonlySet<string>
  /** `Clock` millis, for bans */
  readonly nowMs: number
  readonly broadcastFactor: number
  readonly propagationFactor: number
  readonly gossipFactor: number
  /** `tcp://HOST:PORT` patterns with `*` wildcards */
  readonly excludedDialAddresses: ReadonlyArray<string>
  /** the request originates here (no `customHeader`), as opposed to a forward */
  readonly isOrigin: boolean
}

const connectedSets = new WeakMap<ReadonlyArray<NodeId>, ReadonlySet<string>>()

/**
 * The hex set of `SelectionContext.connected` for a transport's `connectedPeers`. A transport that hands out the
 * same array until its connections change (`MemoryNetwork`) gets the same set back, built once rather than on every
 * request.
 *
 * @since 0.1.0
 * @category constructors
 */
export const connectedSet = (connected: ReadonlyArray<NodeId>): ReadonlySet<string> => {
  let set = connectedSets.get(connected)
  if (set === undefined) {
    set = new Set(connected.map(toHex))
    connectedSets.set(connected, set)
  }
  return set
}

/**
 * A `SelectionContext` with the factors and patterns of `config`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeContext = (
  config: Config,
  snapshot: {
    readonly self: NodeId
    readonly peers: ReadonlyArray<Peer>
    readonly connected: ReadonlySet<string>
    readonly nowMs: number
    readonly isOrigin: boolean
  }
): SelectionContext => ({
  // field by field: `{ ...snapshot, more }` takes V8's slow object-spread path, ~7 µs on every request
  self: snapshot.self,
  peers: snapshot.peers,
  connected: snapshot.connected,
  nowMs: snapshot.nowMs,
  isOrigin: snapshot.isOrigin,
  broadcastFactor: config.broadcastFactor,
  propagationFactor: config.propagationFactor,
  gossipFactor: config.gossipFactor,
  excludedDialAddresses: config.excludedDialAddresses
})

/**
 * How many of the closest connected peers an origin falls back to when no connected propagator is closer to the
 * destination than itself (SPEC §6.2).
 *
 * @since 0.1.0
 * @category constants
 */
export const PROPAGATE_ORIGIN_FALLBACK = 2

// --- address patterns ---

/**
 * Whether `address` matches `pattern`, where `*` stands for any run of characters (possibly empty) and everything
 * else matches itself (the host case-insensitively, as DNS names are). `tcp://127.*:*` matches every loopback
 * address; `tcp://*:18189` one port on any host.
 *
 * @since 0.1.0
 * @category utils
 */
export const matchesAddressPattern = (pattern: string, address: string): boolean => {
  const p = pattern.toLowerCase()
  const a = address.toLowerCase()
  // iterative wildcard match: linear backtracking to the last `*` only, no regular expression to blow up
  let pi = 0
  let ai = 0
  let star = -1
  let mark = 0
  while (ai < a.length) {
    if (pi < p.length && p[pi] !== "*" && p[pi] === a[ai]) {
      pi++
      ai++
    } else if (pi < p.length && p[pi] === "*") {
      star = pi++
      mark = ai
    } else if (star >= 0) {
      pi = star + 1
      ai = ++mark
    } else {
      return false
    }
  }
  while (pi < p.length && p[pi] === "*") pi++
  return pi === p.length
}

/**
 * Every address of `peer` matches one of `patterns` (a peer without addresses, or with no patterns, is not
 * excluded: there is nothing it would be refused a dial to).
 *
 * @since 0.1.0
 * @category utils
 */
export const allAddressesExcluded = (peer: Peer, patterns: ReadonlyArray<string>): boolean =>
  patterns.length > 0 && peer.addresses.length > 0 &&
  peer.addresses.every((a) => patterns.some((pattern) => matchesAddressPattern(pattern, a.address)))

// --- distance thresholds (§2.3) ---

/**
 * Larger than any distance between two 13-byte NodeIds.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_DISTANCE: bigint = 1n << 104n

/**
 * `a XOR b` as an unsigned big-endian integer.
 *
 * @since 0.1.0
 * @category utils
 */
export const distanceValue = (a: NodeId, b: NodeId): bigint => {
  let value = 0n
  for (let i = 0; i < a.length; i++) value = (value << 8n) | BigInt((a[i] ?? 0) ^ (b[i] ?? 0))
  return value
}

const eligibleForThreshold = (peer: Peer, features: number, nowMs: number) =>
  peer.features === features && peer.isVerified && !peer.isBanned(nowMs) && !peer.isOffline

/**
 * The n-th smallest distance to `target` among known verified peers with exactly `features`, not banned, not
 * offline; `MAX_DISTANCE` when `n = 0` or fewer than `n` such peers are known (SPEC §2.3).
 *
 * @since 0.1.0
 * @category utils
 */
export const threshold = (
  ctx: { readonly peers: ReadonlyArray<Peer>; readonly nowMs: number },
  target: NodeId,
  n: number,
  features: number
): bigint => {
  if (n <= 0) return MAX_DISTANCE
  const distances = ctx.peers
    .filter((peer) => eligibleForThreshold(peer, features, ctx.nowMs))
    .map((peer) => distanceValue(peer.nodeId, target))
  if (distances.length < n) return MAX_DISTANCE
  distances.sort((x, y) => x < y ? -1 : x > y ? 1 : 0)
  return distances[n - 1]!
}

/**
 * `x` is in the network region of `target` for `n`: within the communication-node or the client threshold
 * (SPEC §2.3; diagnostics only).
 *
 * @since 0.1.0
 * @category utils
 */
export const inRegion = (
  ctx: { readonly peers: ReadonlyArray<Peer>; readonly nowMs: number },
  x: NodeId,
  target: NodeId,
  n: number
): boolean => {
  const d = distanceValue(x, target)
  return d <= threshold(ctx, target, n, PeerFeatures.COMMUNICATION_NODE) ||
    d <= threshold(ctx, target, n, PeerFeatures.COMMUNICATION_CLIENT)
}

// --- selection (§6.2) ---

/**
 * `isBroadcast` of SPEC §6.1 step 5: the message goes to a set of peers rather than to its one target.
 *
 * @since 0.1.0
 * @category utils
 */
export const isBroadcast = (strategy: BroadcastStrategy, resolved: ReadonlyArray<NodeId>): boolean => {
  switch (strategy._tag) {
    case "Flood":
    case "Broadcast":
    case "Random":
    case "ClosestNodes":
    case "Propagate":
      return true
    case "DirectOrClosestNodes":
      return !(resolved.length === 1 && compareBytes(resolved[0]!, strategy.id) === 0)
    case "DirectPublicKey":
    case "DirectNodeId":
    case "SelectedPeers":
      return false
  }
}

const byHex = (a: Peer, b: Peer) => compareBytes(a.nodeId, b.nodeId)

const closestTo = (target: NodeId, peers: ReadonlyArray<Peer>, n: number): Array<Peer> =>
  closestOf(target, peers, n, (peer) => peer.nodeId)

const randomOf = (peers: ReadonlyArray<Peer>, n: number): Effect.Effect<Array<Peer>> =>
  sample(peers.slice().sort(byHex), n)

const ids = (peers: ReadonlyArray<Peer>): Array<NodeId> => peers.map((peer) => peer.nodeId)

/**
 * The view a strategy selects from: only peers that may be chosen at all (not banned, not this node, not in
 * `excluded`, and — when `dialable` — not refused by `excludedDialAddresses`).
 */
interface View {
  readonly ctx: SelectionContext
  readonly dialable: boolean
}

const eligible = (view: View, excluded: ReadonlyArray<NodeId>) => {
  const skip = new Set(excluded.map(toHex))
  skip.add(toHex(view.ctx.self))
  return (peer: Peer): boolean =>
    !peer.isBanned(view.ctx.nowMs) && !skip.has(toHex(peer.nodeId)) &&
    !(view.dialable && allAddressesExcluded(peer, view.ctx.excludedDialAddresses))
}

const isConnected = (ctx: SelectionContext, id: NodeId) => ctx.connected.has(toHex(id))

const findPeer = (ctx: SelectionContext, id: NodeId): Peer | undefined =>
  ctx.peers.find((peer) => equals(peer.nodeId, id))

// A connected id or a direct target may be absent from the table (unknown features, no addresses): only what the
// table says against it (a ban, refused addresses) rules it out.
const allowedId = (view: View, id: NodeId, excluded: ReadonlyArray<NodeId>): boolean => {
  const peer = findPeer(view.ctx, id)
  if (peer !== undefined) return eligible(view, excluded)(peer)
  const hex = toHex(id)
  return hex !== toHex(view.ctx.self) && !excluded.some((e) => toHex(e) === hex)
}

const connectedPeers = (view: View, excluded: ReadonlyArray<NodeId>) => {
  const ok = eligible(view, excluded)
  return view.ctx.peers.filter((peer) => isConnected(view.ctx, peer.nodeId) && ok(peer))
}

const connectedCommunicationNodes = (view: View, excluded: ReadonlyArray<NodeId>) =>
  connectedPeers(view, excluded).filter((peer) => peer.isCommunicationNode)

const closestNodes = (view: View, id: NodeId, excluded: ReadonlyArray<NodeId>, connectedOnly: boolean) => {
  const ok = eligible(view, excluded)
  const candidates = connectedOnly
    ? connectedCommunicationNodes(view, excluded)
    : view.ctx.peers.filter((peer) => peer.isCommunicationNode && peer.isVerified && !peer.isOffline && ok(peer))
  return ids(closestTo(id, candidates, view.ctx.broadcastFactor))
}

const propagate = (
  view: View,
  destination: Destination,
  excluded: ReadonlyArray<NodeId>,
  factor: number
): Effect.Effect<Array<NodeId>> => {
  const { ctx } = view
  if (destination._tag === "Unknown") {
    return Effect.map(randomOf(connectedCommunicationNodes(view, excluded), ctx.gossipFactor), ids)
  }
  const target = fromPublicKey(destination.publicKey)
  if (isConnected(ctx, target) && allowedId(view, target, excluded)) return Effect.succeed([target])
  const connected = connectedPeers(view, excluded)
  const closer = connected.filter((peer) =>
    hasFeatures(peer.features, PeerFeatures.MESSAGE_PROPAGATION) && isCloser(target, peer.nodeId, ctx.self)
  )
  if (closer.length > 0) return Effect.succeed(ids(closestTo(target, closer, factor)))
  // this node is the closest it knows: an origin still hands the message on, a forwarder stops here (SAF holds it)
  return Effect.succeed(ctx.isOrigin ? ids(closestTo(target, connected, PROPAGATE_ORIGIN_FALLBACK)) : [])
}

const selectIn = (view: View, strategy: BroadcastStrategy): Effect.Effect<Array<NodeId>> => {
  const { ctx } = view
  switch (strategy._tag) {
    case "DirectPublicKey": {
      const peer = ctx.peers.find((p) => equals(p.publicKey, strategy.publicKey))
      return Effect.succeed(peer !== undefined && eligible(view, [])(peer) ? [peer.nodeId] : [])
    }
    case "DirectNodeId": {
      const peer = findPeer(ctx, strategy.nodeId)
      return Effect.succeed(peer !== undefined && eligible(view, [])(peer) ? [peer.nodeId] : [])
    }
    case "Flood":
      return Effect.succeed(ids(connectedCommunicationNodes(view, strategy.excluded).sort(byHex)))
    case "Broadcast":
      return Effect.map(randomOf(connectedCommunicationNodes(view, strategy.excluded), ctx.broadcastFactor), ids)
    case "Random": {
      const ok = eligible(view, strategy.excluded)
      const candidates = ctx.peers.filter((peer) => peer.isCommunicationNode && !peer.isOffline && ok(peer))
      return Effect.map(randomOf(candidates, strategy.n), ids)
    }
    case "ClosestNodes":
      return Effect.succeed(closestNodes(view, strategy.id, strategy.excluded, strategy.connectedOnly))
    case "DirectOrClosestNodes":
      return Effect.succeed(
        isConnected(ctx, strategy.id) && allowedId(view, strategy.id, [])
          ? [strategy.id]
          : closestNodes(view, strategy.id, strategy.excluded, strategy.connectedOnly)
      )
    case "SelectedPeers": {
      const seen = new Set<string>()
      return Effect.succeed(strategy.ids.filter((id) => {
        const hex = toHex(id)
        if (seen.has(hex)) return false
        seen.add(hex)
        return allowedId(view, id, [])
      }))
    }
    case "Propagate":
      return propagate(view, strategy.destination, strategy.excluded, strategy.factor ?? ctx.propagationFactor)
  }
}

/**
 * The peer records `select` reads for `strategy`, given the live connections: `"All"` for the strategies that choose
 * from the whole table (`Random`, `ClosestNodes` over known peers, `DirectOrClosestNodes`), otherwise the connected
 * peers and the strategy's own targets, once each. A context made from just those records selects exactly what one
 * made from the whole table would (every other strategy looks only at connected peers and its targets), so a forward
 * or a direct send costs a few lookups instead of a pass over a table of thousands.
 *
 * @since 0.1.0
 * @category utils
 */
export const peersToRead = (strategy: BroadcastStrategy, connected: ReadonlyArray<NodeId>): "All" | Array<NodeId> => {
  const unique = (ids: ReadonlyArray<NodeId>): Array<NodeId> => {
    const seen = new Set<string>()
    return ids.filter((id) => {
      const hex = toHex(id)
      if (seen.has(hex)) return false
      seen.add(hex)
      return true
    })
  }
  // the targets, then the connections: with no repeat among the connections (a transport's list has none) their
  // memoised set spares a set built per request
  const withTargets = (targets: ReadonlyArray<NodeId>): Array<NodeId> => {
    if (connectedSet(connected).size !== connected.length) return unique([...targets, ...connected])
    if (targets.length === 0) return connected.slice()
    const first = unique(targets)
    const taken = new Set(first.map(toHex))
    return [...first, ...connected.filter((id) => !taken.has(toHex(id)))]
  }
  switch (strategy._tag) {
    case "DirectPublicKey":
      return [fromPublicKey(strategy.publicKey)]
    case "DirectNodeId":
      return [strategy.nodeId]
    case "SelectedPeers":
      return unique(strategy.ids)
    case "Flood":
    case "Broadcast":
      return withTargets([])
    case "ClosestNodes":
      return strategy.connectedOnly ? withTargets([]) : "All"
    case "Propagate":
      return strategy.destination._tag === "PublicKey"
        ? withTargets([fromPublicKey(strategy.destination.publicKey)])
        : withTargets([])
    case "Random":
    case "DirectOrClosestNodes":
      return "All"
  }
}

/**
 * The NodeIds `strategy` sends to (SPEC §6.2). Banned peers are never chosen, nor this node. Peers whose every
 * address matches `excludedDialAddresses` are left out before choosing; when that leaves nothing although the
 * strategy would otherwise have chosen someone, the result is `PeerSelectionFailed` (Tari's "all addresses
 * excluded"). Random strategies draw from Effect's `Random`.
 *
 * @since 0.1.0
 * @category utils
 */
export const select = (
  strategy: BroadcastStrategy,
  ctx: SelectionContext
): Effect.Effect<ReadonlyArray<NodeId>, PeerSelectionFailed> =>
  Effect.flatMap(selectIn({ ctx, dialable: true }, strategy), (chosen) => {
    if (chosen.length > 0 || ctx.excludedDialAddresses.length === 0) return Effect.succeed(chosen)
    return Effect.flatMap(
      selectIn({ ctx, dialable: false }, strategy),
      (unfiltered) =>
        unfiltered.length === 0
          ? Effect.succeed(chosen)
          : Effect.fail(
            new PeerSelectionFailed({
              reason: `all ${unfiltered.length} selected peers have only excluded dial addresses`
            })
          )
    )
  })

const inNodeIdOrder = new WeakMap<ReadonlyArray<NodeId>, ReadonlyArray<NodeId>>()

// A transport that hands out the same array until its connections change (`MemoryNetwork`) has it sorted once.
const sortedConnections = (connected: ReadonlyArray<NodeId>): ReadonlyArray<NodeId> => {
  let sorted = inNodeIdOrder.get(connected)
  if (sorted === undefined) {
    sorted = connected.slice().sort(compareBytes)
    inNodeIdOrder.set(connected, sorted)
  }
  return sorted
}

/**
 * The strategies that draw at random among the connections: `Broadcast` (`broadcastFactor` of them) and `Propagate`
 * to an unknown destination (gossip, `gossipFactor`). How many they draw, or `undefined` for any other strategy.
 *
 * @since 0.1.0
 * @category utils
 */
export const drawsFromConnections = (strategy: BroadcastStrategy, config: Config): number | undefined => {
  switch (strategy._tag) {
    case "Broadcast":
      return config.broadcastFactor
    case "Propagate":
      return strategy.destination._tag === "Unknown" ? config.gossipFactor : undefined
    default:
      return undefined
  }
}

/**
 * `select` for a strategy that `drawsFromConnections`, reading only the records of the connections it draws (`read`
 * returns the records of the NodeIds it is given that the table holds, in their order): a node with a hundred
 * connections that forwards a gossiped message reads about `gossipFactor` records, not a hundred, for every copy it
 * receives first. The rules are `select`'s — connected communication nodes with a record, not banned, not this
 * node, not excluded, not refused by `excludedDialAddresses` (`PeerSelectionFailed` when that alone leaves nothing)
 * — and so is the distribution (uniform among the eligible, the connections in NodeId order before drawing), though
 * not the draw itself. `undefined` for a strategy that does not draw from connections.
 *
 * @since 0.1.0
 * @category utils
 */
export const drawFromConnections = <E>(
  strategy: BroadcastStrategy,
  config: Config,
  snapshot: { readonly self: NodeId; readonly connected: ReadonlyArray<NodeId>; readonly nowMs: number },
  read: (ids: ReadonlyArray<NodeId>) => Effect.Effect<ReadonlyArray<Peer>, E>
): Effect.Effect<ReadonlyArray<NodeId>, E | PeerSelectionFailed> | undefined => {
  const n = drawsFromConnections(strategy, config)
  if (n === undefined || (strategy._tag !== "Broadcast" && strategy._tag !== "Propagate")) return undefined
  const skip = new Set(strategy.excluded.map(toHex))
  skip.add(toHex(snapshot.self))
  const patterns = config.excludedDialAddresses
  let refusedByAddress = 0
  const accept = (batch: ReadonlyArray<NodeId>) =>
    Effect.map(read(batch.filter((id) => !skip.has(toHex(id)))), (records) => {
      const kept: Array<NodeId> = []
      for (const peer of records) {
        if (!peer.isCommunicationNode || peer.isBanned(snapshot.nowMs)) continue
        if (allAddressesExcluded(peer, patterns)) refusedByAddress++
        else kept.push(peer.nodeId)
      }
      return kept
    })
  return Effect.flatMap(sampleWhere(sortedConnections(snapshot.connected), n, accept), (chosen) =>
    chosen.length > 0 || refusedByAddress === 0
      ? Effect.succeed(chosen)
      : Effect.fail(
        new PeerSelectionFailed({
          reason: `all ${Math.min(n, refusedByAddress)} selected peers have only excluded dial addresses`
        })
      ))
}
