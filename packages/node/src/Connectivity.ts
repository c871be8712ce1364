/**
 * Connectivity (SPEC §11.1–§11.4): the neighbour pool (the `numNeighbouringNodes` communication nodes closest to
 * this node) and the random pool (`numRandomNodes` others drawn at random, spread over the distance buckets of the
 * key space: docs/spec-departures.md §12), dialled and kept connected as peers come, go and get banned, and the
 * online/offline state of the node.
 *
 * One fiber owns the pools (the actor pattern: its state is threaded through its loop) and takes commands from a
 * bounded queue: connection events from the transport, `PeerBanned`, `NetworkDiscoveryPeersAdded` and `JoinSent`
 * from the event hub, its own `updateInterval` tick, and the outcomes of the dials it forked. Connection events are
 * offered as they happen; one that finds the queue full is shed and counted (docs/spec-departures.md §13). Every
 * trigger of §11.2's table is one command; whenever one changes a pool's membership, `NeighboursChanged` is published
 * and the pool gauges are set. Readers see a snapshot (`status`, `changes`) that the loop updates after each command.
 *
 * Slots are held by verified peers (§11.1): an unverified candidate is dialled and takes its slot when it connects,
 * which verifies it. A failed dial marks the peer offline (the transport does, §6.5), so it is not chosen again for
 * `offlinePeerCooldown` unless the pools are refreshed "reviving" — at start, and when the node itself has lost all
 * its connections (then every peer looks offline, and the marks say more about us than about them).
 *
 * When the node comes online it also asks the DHT actor to send a join (`autoJoin`, at most once per
 * `joinCooldownInterval`, counting joins sent by anyone) and runs the optional `ConnectivityHooks.onOnline`, where
 * the node plugs its store-and-forward requests (§9.3).
 *
 * @since 0.1.0
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as DhtActor from "@comms-dht/core/DhtActor"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as DhtLog from "@comms-dht/core/DhtLog"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as LightQueue from "@comms-dht/core/LightQueue"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberRef from "effect/FiberRef"
import * as FiberSet from "effect/FiberSet"
import { constTrue } from "effect/Function"
import * as HashMap from "effect/HashMap"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as RandomPool from "./internal/randomPool.js"

/**
 * What the pools look like now.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectivityStatus {
  /** ascending distance to this node */
  readonly neighbours: ReadonlyArray<NodeId.NodeId>
  readonly random: ReadonlyArray<NodeId.NodeId>
  /** at least `minConnectivity` connections since the last time there were none */
  readonly online: boolean
  /** open connections, pool members or not */
  readonly connected: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ConnectivityService {
  readonly status: Effect.Effect<ConnectivityStatus>
  /**
   * The current status, then every change of it; a reader more than 64 changes behind loses the oldest ones, never
   * the latest.
   */
  readonly changes: Stream.Stream<ConnectivityStatus>
  readonly neighbours: Effect.Effect<ReadonlyArray<NodeId.NodeId>>
  readonly randomPeers: Effect.Effect<ReadonlyArray<NodeId.NodeId>>
  readonly isOnline: Effect.Effect<boolean>
  /** Returns once the node is online (at once if it is); `DhtShutdown` if the service stops first. */
  readonly awaitOnline: Effect.Effect<void, DhtError.DhtShutdown>
  /** A pool member: its connection is kept open (the idle reaper of §11.6 leaves it alone). */
  readonly isPinned: (nodeId: NodeId.NodeId) => Effect.Effect<boolean>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Connectivity extends Context.Tag("@comms-dht/node/Connectivity")<Connectivity, ConnectivityService>() {}

/**
 * What the node plugs into connectivity (optional): `onOnline` runs, in a fiber of its own, each time the node
 * comes online — the store-and-forward requests of SPEC §9.3 go here.
 *
 * @since 0.1.0
 * @category tags
 */
export class ConnectivityHooks extends Context.Tag("@comms-dht/node/ConnectivityHooks")<ConnectivityHooks, {
  readonly onOnline: Effect.Effect<void>
}>() {}

/**
 * What the service reads from the Layer graph. `DhtActor` (for `SendJoin`) and `ConnectivityHooks` are used when
 * present.
 *
 * @since 0.1.0
 * @category models
 */
export type Requirements =
  | Transport.Transport
  | PeerManager.PeerManager
  | NodeIdentity.NodeIdentity
  | DhtEvents.DhtEvents

// --- commands and state ---

type PoolName = "neighbour" | "random"

type Command =
  | { readonly _tag: "Start" }
  | { readonly _tag: "Tick" }
  | { readonly _tag: "OfflineRefresh" }
  | { readonly _tag: "Connected"; readonly peer: Peer.Peer }
  | { readonly _tag: "Disconnected"; readonly nodeId: NodeId.NodeId }
  | { readonly _tag: "DialFailed"; readonly nodeId: NodeId.NodeId }
  | { readonly _tag: "DialDone"; readonly nodeId: NodeId.NodeId; readonly failed: boolean }
  | { readonly _tag: "Banned"; readonly publicKey: NodeId.PublicKey }
  | { readonly _tag: "PeersAdded" }
  | { readonly _tag: "JoinSent" }

interface Pending {
  readonly nodeId: NodeId.NodeId
  readonly pool: PoolName
}

interface State {
  readonly neighbours: ReadonlyArray<NodeId.NodeId>
  readonly random: ReadonlyArray<NodeId.NodeId>
  /** unverified candidates being dialled for a slot */
  readonly pending: HashMap.HashMap<string, Pending>
  readonly connected: HashMap.HashMap<string, NodeId.NodeId>
  readonly dialling: HashSet.HashSet<string>
  readonly online: boolean
  readonly lastRandomRefresh: Option.Option<number>
  /** the random pool before the last refresh, avoided by the next one with `minimizeConnections` */
  readonly previousRandom: ReadonlyArray<NodeId.NodeId>
  readonly lastJoinAt: Option.Option<number>
}

const COMMAND_CAPACITY = 256
// turns of the scheduler between network discovery's news and the refresh it makes (see where it is used)
const NEWS_TURNS = 3
const shedCommand = DhtMetrics.tagged(DhtMetrics.inboundShed, "where", "connectivity")
// status changes a reader of `changes` may fall behind by before it loses the oldest (the latest always arrives)
const STATUS_BUFFER = 64

const hex = NodeId.toHex

const has = (ids: ReadonlyArray<NodeId.NodeId>, nodeId: NodeId.NodeId) => ids.some((id) => NodeId.equals(id, nodeId))

const remove = (ids: ReadonlyArray<NodeId.NodeId>, nodeId: NodeId.NodeId) =>
  ids.filter((id) => !NodeId.equals(id, nodeId))

const sameMembers = (a: ReadonlyArray<NodeId.NodeId>, b: ReadonlyArray<NodeId.NodeId>) =>
  a.length === b.length && a.every((id) => has(b, id))

const pendingIn = (state: State, pool: PoolName) =>
  Array.from(HashMap.values(state.pending)).filter((p) => p.pool === pool).map((p) => p.nodeId)

const statusOf = (state: State): ConnectivityStatus => ({
  neighbours: state.neighbours,
  random: state.random,
  online: state.online,
  connected: HashMap.size(state.connected)
})

const sameStatus = (a: ConnectivityStatus, b: ConnectivityStatus) =>
  a.online === b.online && a.connected === b.connected &&
  a.neighbours.length === b.neighbours.length && a.neighbours.every((id, i) => NodeId.equals(id, b.neighbours[i]!)) &&
  sameMembers(a.random, b.random)

const initialState: State = {
  neighbours: [],
  random: [],
  pending: HashMap.empty(),
  connected: HashMap.empty(),
  dialling: HashSet.empty(),
  online: false,
  lastRandomRefresh: Option.none(),
  previousRandom: [],
  lastJoinAt: Option.none()
}

const initialStatus: ConnectivityStatus = statusOf(initialState)

// --- the service ---

/**
 * Starts connectivity in the current scope: the loop, its feeders and its tick. The first refresh (reviving offline
 * peers) runs at once, or after `networkDiscovery.initialPeerSyncDelay` when one is set.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<ConnectivityService, never, Requirements | Scope.Scope> = Effect.gen(function*() {
  const config = yield* DhtConfig.DhtConfig
  const identity = yield* NodeIdentity.NodeIdentity
  const transport = yield* Transport.Transport
  const peers = yield* PeerManager.PeerManager
  const events = yield* DhtEvents.DhtEvents
  const actor = yield* Effect.serviceOption(DhtActor.DhtActor)
  const hooks = yield* Effect.serviceOption(ConnectivityHooks)

  const self = identity.nodeId
  const order = NodeId.byDistanceTo(self)
  const sizeN = config.numNeighbouringNodes
  const sizeR = config.numRandomNodes
  const minimize = config.minimizeConnections
  const onlineAt = Math.max(1, config.connectivity.minConnectivity)
  const cooldownMs = DhtConfig.millis(config.offlinePeerCooldown)
  const randomIntervalMs = DhtConfig.millis(config.connectivity.randomPoolRefreshInterval)
  const joinCooldownMs = DhtConfig.millis(config.joinCooldownInterval)

  // The status's readers: a snapshot and a fanout of its changes. A `SubscriptionRef` took its lock and published
  // for every set (~37 steps of Effect's run loop), and the status changes with every connection.
  const statusChanges = yield* Effect.acquireRelease(
    LightQueue.slidingFanout<ConnectivityStatus>(STATUS_BUFFER),
    (fanout) => fanout.shutdown
  )
  // set only by the loop
  let published = initialStatus
  const closed = yield* Deferred.make<void>()
  const commands = yield* LightQueue.bounded<Command>(COMMAND_CAPACITY)
  // Registered first, so it runs last: once the loop and every fiber below have stopped.
  yield* Effect.addFinalizer(() =>
    Deferred.succeed(closed, undefined).pipe(
      Effect.zipRight(Queue.shutdown(commands)),
      Effect.zipRight(Metric.set(DhtMetrics.neighbourPoolSize, 0)),
      Effect.zipRight(Metric.set(DhtMetrics.randomPoolSize, 0))
    )
  )
  const jobs = yield* FiberSet.make<void, never>()
  const submit = (command: Command) => Effect.asVoid(Queue.offer(commands, command))
  const fork = (effect: Effect.Effect<void>) => Effect.asVoid(FiberSet.run(jobs, effect))

  // --- candidates (§11.1) ---

  const sorted = (ids: Iterable<NodeId.NodeId>) => Array.from(ids).sort(order)

  const isVerified = (state: State, peer: Peer.Peer) =>
    peer.isVerified || HashMap.has(state.connected, hex(peer.nodeId))

  // Eligible for a slot: reviving waives the offline cooldown and the "every address failed" mark; a connected
  // peer is always eligible, whatever its record says of past dials.
  const eligible = (state: State, peer: Peer.Peer, nowMs: number, revive: boolean) => {
    if (NodeId.equals(peer.nodeId, self) || peer.isBanned(nowMs)) return false
    if (BroadcastStrategy.allAddressesExcluded(peer, config.excludedDialAddresses)) return false
    if (revive || HashMap.has(state.connected, hex(peer.nodeId))) return true
    const recentlyOffline = peer.offlineAt !== undefined && nowMs - peer.offlineAt < cooldownMs
    return !recentlyOffline && !peer.allAddressesFailed
  }

  const readPeers = <A>(read: Effect.Effect<ReadonlyArray<A>, DhtError.StoreError>) =>
    read.pipe(Effect.catchTag("StoreError", (error) => Effect.as(Effect.logWarning("peer table not read", error), [])))

  /** Eligible communication nodes not in `excluded`, ascending distance to this node. */
  const closestCandidates = (state: State, revive: boolean, excluded: HashSet.HashSet<string>) =>
    Effect.gen(function*() {
      const nowMs = yield* Clock.currentTimeMillis
      const found = yield* readPeers(peers.closest(self, Number.MAX_SAFE_INTEGER, {
        features: Peer.PeerFeatures.COMMUNICATION_NODE,
        excludeBanned: true
      }))
      return found.filter((peer) => !HashSet.has(excluded, hex(peer.nodeId)) && eligible(state, peer, nowMs, revive))
    })

  /**
   * The random pool's draw (docs/spec-departures.md §12): up to `n` eligible communication nodes not in `excluded`,
   * spread over the distance buckets, random within each; the eligible ones of `members` keep their slots first.
   * Eligible as for the neighbour pool: a peer whose every address failed is not drawn either, unless reviving.
   */
  const randomCandidates = (
    state: State,
    n: number,
    revive: boolean,
    excluded: ReadonlyArray<NodeId.NodeId>,
    members: ReadonlyArray<NodeId.NodeId>
  ) =>
    Effect.gen(function*() {
      const nowMs = yield* Clock.currentTimeMillis
      const found = yield* readPeers(peers.closest(self, Number.MAX_SAFE_INTEGER, {
        features: Peer.PeerFeatures.COMMUNICATION_NODE,
        excludeBanned: true
      }))
      const out = new Set([...excluded, self].map(hex))
      const kept = new Set(members.map(hex))
      const candidates = found.filter((peer) => !out.has(hex(peer.nodeId)) && eligible(state, peer, nowMs, revive))
      return yield* RandomPool.draw(self, candidates, (peer) => peer.nodeId, n, (peer) => kept.has(hex(peer.nodeId)))
    })

  // --- dials ---

  const dial = (state: State, nodeId: NodeId.NodeId): Effect.Effect<State> => {
    const key = hex(nodeId)
    if (HashMap.has(state.connected, key) || HashSet.has(state.dialling, key)) return Effect.succeed(state)
    return Effect.as(
      fork(transport.dial(nodeId).pipe(
        Effect.either,
        Effect.flatMap((result) => submit({ _tag: "DialDone", nodeId, failed: Either.isLeft(result) }))
      )),
      { ...state, dialling: HashSet.add(state.dialling, key) }
    )
  }

  const dialAll = (state: State, ids: ReadonlyArray<NodeId.NodeId>) =>
    Effect.reduce(ids, state, (s, nodeId) => dial(s, nodeId))

  const disconnect = (nodeId: NodeId.NodeId) => fork(transport.disconnect(nodeId))

  const isMember = (state: State, nodeId: NodeId.NodeId) => has(state.neighbours, nodeId) || has(state.random, nodeId)

  // --- pools ---

  /** Fills the random pool up to `numRandomNodes` (counting pending dials) with random eligible peers. */
  const fillRandom = (state: State, also: ReadonlyArray<NodeId.NodeId>): Effect.Effect<State> =>
    Effect.gen(function*() {
      const need = sizeR - state.random.length - pendingIn(state, "random").length
      if (need <= 0) return state
      const members = randomMembers(state)
      const { drawn } = yield* randomCandidates(state, sizeR, false, [...notRandom(state), ...also], members)
      return yield* place(state, drawn.slice(0, need), "random")
    })

  // the random pool's members, connected or being dialled
  const randomMembers = (state: State) => [...state.random, ...pendingIn(state, "random")]

  // what the random pool may not take: the neighbours (being dialled too) and, with `minimizeConnections`, the
  // previous draw
  const notRandom = (state: State) => [
    ...state.neighbours,
    ...pendingIn(state, "neighbour"),
    ...(minimize ? state.previousRandom : [])
  ]

  /** Verified peers take a slot now; unverified ones are dialled and take it when they connect. */
  const place = (state: State, chosen: ReadonlyArray<Peer.Peer>, pool: PoolName) => {
    let next = state
    for (const peer of chosen) {
      if (isVerified(state, peer)) {
        next = pool === "neighbour"
          ? {
            ...next,
            neighbours: sorted([...next.neighbours, peer.nodeId]),
            random: remove(next.random, peer.nodeId)
          }
          : { ...next, random: [...next.random, peer.nodeId] }
      } else {
        next = { ...next, pending: HashMap.set(next.pending, hex(peer.nodeId), { nodeId: peer.nodeId, pool }) }
      }
    }
    const movedFromRandom = next.random.length < state.random.length
    return dialAll(next, chosen.map((peer) => peer.nodeId)).pipe(
      Effect.flatMap((s) => movedFromRandom ? fillRandom(s, []) : Effect.succeed(s))
    )
  }

  /** Fills the neighbour pool up to `numNeighbouringNodes` (counting pending dials) with the closest eligible. */
  const fillNeighbours = (state: State, also: ReadonlyArray<NodeId.NodeId>): Effect.Effect<State> =>
    Effect.gen(function*() {
      const need = sizeN - state.neighbours.length - pendingIn(state, "neighbour").length
      if (need <= 0) return state
      const excluded = HashSet.fromIterable([
        ...state.neighbours.map(hex),
        ...HashMap.keys(state.pending),
        ...also.map(hex)
      ])
      const candidates = yield* closestCandidates(state, false, excluded)
      return yield* place(state, candidates.slice(0, need), "neighbour")
    })

  // §11.2: keep the intersection with the new candidates, add the new ones in distance order, dial them; with no
  // candidate at all, redial the neighbours that are not connected.
  const refreshNeighbours = (state: State, revive: boolean): Effect.Effect<State> =>
    Effect.gen(function*() {
      const candidates = yield* closestCandidates(state, revive, HashSet.empty())
      if (candidates.length === 0) {
        return yield* dialAll(state, state.neighbours)
      }
      const neighbours = candidates.filter((peer) => isVerified(state, peer)).slice(0, sizeN).map((p) => p.nodeId)
      const waiting = candidates.slice(0, sizeN).filter((peer) => !isVerified(state, peer)).map((p) => p.nodeId)
      let pending = state.pending
      for (const nodeId of waiting) {
        const key = hex(nodeId)
        if (!HashMap.has(pending, key)) pending = HashMap.set(pending, key, { nodeId, pool: "neighbour" })
      }
      const random = state.random.filter((id) => !has(neighbours, id))
      if (minimize) {
        for (const id of state.neighbours) {
          if (!has(neighbours, id) && !has(random, id) && HashMap.has(state.connected, hex(id))) yield* disconnect(id)
        }
      }
      const next = yield* dialAll({ ...state, neighbours, random, pending }, [...neighbours, ...waiting])
      return random.length < state.random.length ? yield* fillRandom(next, []) : next
    })

  // Draws the random pool afresh from eligible peers that are not neighbours.
  const refreshRandom = (state: State, revive: boolean): Effect.Effect<State> =>
    Effect.gen(function*() {
      if (sizeR === 0) return state
      const { drawn } = yield* randomCandidates(state, sizeR, revive, notRandom(state), [])
      if (drawn.length === 0) {
        yield* Effect.logDebug("no candidate for the random pool")
        return state
      }
      const nowMs = yield* Clock.currentTimeMillis
      yield* closeLeaving(state, drawn.map((peer) => peer.nodeId))
      const cleared: State = {
        ...state,
        random: [],
        pending: HashMap.filter(state.pending, (p) => p.pool !== "random"),
        previousRandom: minimize ? state.random : [],
        lastRandomRefresh: Option.some(nowMs)
      }
      return yield* place(cleared, drawn, "random")
    })

  // New peers from network discovery (docs/spec-departures.md §12): the members that still fit their bucket's
  // slots stay, and only the slots the new peers' buckets take are drawn. Redrawing the whole pool on every round
  // that found someone, as §11.2 says, dialled about 12 peers a round.
  const rebalanceRandom = (state: State): Effect.Effect<State> =>
    Effect.gen(function*() {
      if (sizeR === 0) return state
      const { drawn, kept } = yield* randomCandidates(state, sizeR, false, notRandom(state), randomMembers(state))
      if (drawn.length === 0) return state
      const stays = (nodeId: NodeId.NodeId) => kept.some((peer) => NodeId.equals(peer.nodeId, nodeId))
      yield* closeLeaving(state, kept.map((peer) => peer.nodeId))
      const next: State = {
        ...state,
        random: state.random.filter(stays),
        pending: HashMap.filter(state.pending, (p) => p.pool !== "random" || stays(p.nodeId))
      }
      return yield* place(next, drawn, "random")
    })

  // with `minimizeConnections`, the connections of random members that are not staying are closed
  const closeLeaving = (state: State, staying: ReadonlyArray<NodeId.NodeId>) =>
    Effect.gen(function*() {
      if (!minimize) return
      for (const id of state.random) {
        if (!has(staying, id) && HashMap.has(state.connected, hex(id))) yield* disconnect(id)
      }
    })

  // --- online and offline (§11.2) ---

  const ownAddressesExcluded = transport.listenAddresses.length > 0 &&
    transport.listenAddresses.every((address) =>
      config.excludedDialAddresses.some((pattern) => BroadcastStrategy.matchesAddressPattern(pattern, address))
    )

  const sendJoin = (state: State) =>
    Effect.gen(function*() {
      if (!config.autoJoin || Option.isNone(actor) || ownAddressesExcluded) return state
      const nowMs = yield* Clock.currentTimeMillis
      if (Option.exists(state.lastJoinAt, (at) => nowMs - at < joinCooldownMs)) return state
      yield* fork(actor.value.sendJoin.pipe(
        Effect.catchTag("DhtShutdown", () => Effect.logDebug("join not sent: the DHT actor has shut down"))
      ))
      return { ...state, lastJoinAt: Option.some(nowMs) }
    })

  const goOnline = (state: State) =>
    Effect.gen(function*() {
      const connected = HashMap.size(state.connected)
      yield* events.publish(DhtEvent.ConnectivityOnline({ connected }))
      yield* Effect.logInfo("connectivity online").pipe(Effect.annotateLogs({ connected }))
      let next: State = { ...state, online: true }
      next = yield* refreshNeighbours(next, false)
      next = yield* refreshRandom(next, false)
      next = yield* sendJoin(next)
      if (Option.isSome(hooks)) {
        yield* fork(hooks.value.onOnline.pipe(
          Effect.catchAllCause((cause) => Effect.logWarning("connectivity onOnline hook failed", cause))
        ))
      }
      return next
    })

  const goOffline = (state: State) =>
    Effect.gen(function*() {
      yield* events.publish(DhtEvent.ConnectivityOffline({ connected: 0 }))
      yield* Effect.logInfo("connectivity offline")
      yield* fork(Effect.delay(submit({ _tag: "OfflineRefresh" }), config.connectivity.offlineRefreshDelay))
      return { ...state, online: false }
    })

  const transitions = (state: State): Effect.Effect<State> => {
    const connected = HashMap.size(state.connected)
    if (!state.online && connected >= onlineAt) return goOnline(state)
    if (state.online && connected === 0) return goOffline(state)
    return Effect.succeed(state)
  }

  // --- triggers (§11.2) ---

  const reconcile = (state: State) =>
    Effect.map(transport.connectedPeers, (ids): State => ({
      ...state,
      connected: HashMap.fromIterable(ids.map((id) => [hex(id), id] as const))
    }))

  const refreshBoth = (state: State, revive: boolean) =>
    Effect.flatMap(refreshNeighbours(state, revive), (s) => refreshRandom(s, revive))

  // With `minimizeConnections`, connections beyond the pools and the closest N + R are closed. Without it (the
  // default) nothing is: a connection event of every node passes here, so that case is not an Effect program.
  const extraConnections = (state: State): ReadonlyArray<NodeId.NodeId> => {
    if (!minimize) return []
    const closest = sorted(HashMap.values(state.connected)).slice(0, sizeN + sizeR)
    const extra: Array<NodeId.NodeId> = []
    for (const id of HashMap.values(state.connected)) {
      if (!isMember(state, id) && !has(closest, id)) extra.push(id)
    }
    return extra
  }

  // The pools' state after a connection, and the connections it closes (only with `minimizeConnections`), decided
  // in plain code: every connection of the node comes through here, and most change no pool.
  const connected = (state: State, peer: Peer.Peer): Effect.Effect<State> => {
    const nodeId = peer.nodeId
    const key = hex(nodeId)
    let next: State = {
      ...state,
      connected: HashMap.set(state.connected, key, nodeId),
      dialling: HashSet.remove(state.dialling, key)
    }
    if (!peer.isCommunicationNode || isMember(next, nodeId)) return Effect.succeed(next)
    const pending = HashMap.get(next.pending, key)
    next = { ...next, pending: HashMap.remove(next.pending, key) }
    const closing: Array<NodeId.NodeId> = []
    if (Option.exists(pending, (p) => p.pool === "random") && next.random.length < sizeR) {
      next = { ...next, random: [...next.random, nodeId] }
    } else {
      const farthest = next.neighbours[next.neighbours.length - 1]
      if (next.neighbours.length < sizeN || (farthest !== undefined && NodeId.isCloser(self, nodeId, farthest))) {
        const neighbours = sorted([...next.neighbours, nodeId])
        const displaced = neighbours.length > sizeN ? neighbours[neighbours.length - 1] : undefined
        next = { ...next, neighbours: neighbours.slice(0, sizeN) }
        if (displaced !== undefined) {
          if (next.random.length < sizeR && !has(next.random, displaced)) {
            next = { ...next, random: [...next.random, displaced] }
          } else if (minimize) {
            closing.push(displaced)
          }
        }
      }
    }
    closing.push(...extraConnections(next))
    return closing.length === 0
      ? Effect.succeed(next)
      : Effect.as(Effect.forEach(closing, disconnect, { discard: true }), next)
  }

  const disconnected = (state: State, nodeId: NodeId.NodeId) => {
    const next: State = { ...state, connected: HashMap.remove(state.connected, hex(nodeId)) }
    if (!isMember(next, nodeId)) return Effect.succeed(next)
    if (!minimize) return dial(next, nodeId)
    return replace(next, nodeId)
  }

  // A pool member or pending candidate that cannot be reached (or was banned) gives its slot to the next one.
  const replace = (state: State, nodeId: NodeId.NodeId): Effect.Effect<State> => {
    const key = hex(nodeId)
    const pending = HashMap.get(state.pending, key)
    const pool: Option.Option<PoolName> = Option.isSome(pending)
      ? Option.some(pending.value.pool)
      : has(state.neighbours, nodeId)
      ? Option.some("neighbour")
      : has(state.random, nodeId)
      ? Option.some("random")
      : Option.none()
    if (Option.isNone(pool)) return Effect.succeed(state)
    const next: State = {
      ...state,
      pending: HashMap.remove(state.pending, key),
      neighbours: remove(state.neighbours, nodeId),
      random: remove(state.random, nodeId)
    }
    return pool.value === "neighbour" ? fillNeighbours(next, [nodeId]) : fillRandom(next, [nodeId])
  }

  const dialFailed = (state: State, nodeId: NodeId.NodeId) =>
    // connected meanwhile (the peer dialled us): nothing to replace
    HashMap.has(state.connected, hex(nodeId)) ? Effect.succeed(state) : replace(state, nodeId)

  // The actor closes a banned peer's connection too; closing it here as well keeps the table's row true when the
  // ban comes from elsewhere.
  const banned = (state: State, publicKey: NodeId.PublicKey) =>
    Effect.gen(function*() {
      const nodeId = NodeId.fromPublicKey(publicKey)
      if (HashMap.has(state.connected, hex(nodeId))) yield* disconnect(nodeId)
      return yield* replace(state, nodeId)
    })

  const tick = (state: State) =>
    Effect.gen(function*() {
      let next = yield* reconcile(state)
      const connectedNeighbours = next.neighbours.filter((id) => HashMap.has(next.connected, hex(id))).length
      if (connectedNeighbours < sizeN) {
        // with no connection at all every peer looks offline: revive them
        next = yield* refreshNeighbours(next, HashMap.size(next.connected) === 0)
      }
      const nowMs = yield* Clock.currentTimeMillis
      if (sizeR > 0 && !Option.exists(next.lastRandomRefresh, (at) => nowMs - at < randomIntervalMs)) {
        next = yield* refreshRandom(next, HashMap.size(next.connected) === 0)
      }
      yield* Metric.set(DhtMetrics.neighbourPoolSize, next.neighbours.length)
      yield* Metric.set(DhtMetrics.randomPoolSize, next.random.length)
      return next
    })

  const step = (state: State, command: Command): Effect.Effect<State> => {
    switch (command._tag) {
      case "Start":
        return Effect.flatMap(reconcile(state), (s) => refreshNeighbours(s, true))
      case "Tick":
        return tick(state)
      case "OfflineRefresh":
        return refreshBoth(state, true)
      case "Connected":
        return connected(state, command.peer)
      case "Disconnected":
        return disconnected(state, command.nodeId)
      case "DialFailed":
        return dialFailed(state, command.nodeId)
      case "DialDone": {
        const next = { ...state, dialling: HashSet.remove(state.dialling, hex(command.nodeId)) }
        return command.failed ? dialFailed(next, command.nodeId) : Effect.succeed(next)
      }
      case "Banned":
        return banned(state, command.publicKey)
      case "PeersAdded":
        return Effect.flatMap(refreshNeighbours(state, false), rebalanceRandom)
      case "JoinSent":
        return Effect.map(Clock.currentTimeMillis, (nowMs) => ({ ...state, lastJoinAt: Option.some(nowMs) }))
    }
  }

  const poolsChanged = (after: State) =>
    events.publish(DhtEvent.NeighboursChanged({ neighbours: after.neighbours, random: after.random })).pipe(
      Effect.zipRight(Metric.set(DhtMetrics.neighbourPoolSize, after.neighbours.length)),
      Effect.zipRight(Metric.set(DhtMetrics.randomPoolSize, after.random.length)),
      Effect.zipRight(DhtLog.debug("neighbours changed", {
        neighbours: after.neighbours.map(hex),
        random: after.random.map(hex)
      }))
    )

  // this runs after every command, and most change nothing
  const publishChanges = (before: State, after: State): Effect.Effect<void> => {
    const pools = !sameMembers(before.neighbours, after.neighbours) || !sameMembers(before.random, after.random)
    const next = statusOf(after)
    if (!sameStatus(published, next)) {
      published = next
      statusChanges.unsafePublish(next)
    }
    return pools ? poolsChanged(after) : Effect.void
  }

  const handle = (state: State, command: Command): Effect.Effect<State> =>
    step(state, command).pipe(
      Effect.flatMap(transitions),
      Effect.tap((next) => publishChanges(state, next)),
      // a defect in one command is logged and never ends the loop
      Effect.catchAllCause((cause) =>
        Effect.as(
          Effect.logError("connectivity command failed", cause).pipe(Effect.annotateLogs({ command: command._tag })),
          state
        )
      )
    )

  // --- feeders ---

  const fromEvent = (event: DhtEvent.DhtEvent): Option.Option<Command> => {
    switch (event._tag) {
      case "PeerBanned":
        return Option.some({ _tag: "Banned", publicKey: event.publicKey })
      case "NetworkDiscoveryPeersAdded":
        return event.roundInfo.numNewPeers > 0 ? Option.some({ _tag: "PeersAdded" }) : Option.none()
      case "JoinSent":
        return Option.some({ _tag: "JoinSent" })
      default:
        return Option.none()
    }
  }

  const fromConnection = (event: Transport.ConnectionEvent): Command => {
    switch (event._tag) {
      case "PeerConnected":
        return { _tag: "Connected", peer: event.peer }
      case "PeerDisconnected":
        return { _tag: "Disconnected", nodeId: event.nodeId }
      case "DialFailed":
        return { _tag: "DialFailed", nodeId: event.nodeId }
    }
  }

  // Three kinds of event make a command. A subscription woke a fiber for every event published, a `PeerAdded` for
  // each peer a peer sync learns (about 220,000 in a 1000-node join); they are told apart in the publishing step
  // instead, and only a command wakes the fiber that hands it on. One that finds `eventBufferSize` waiting is shed
  // and counted (the subscription's sliding queue lost its oldest events, commands or not).
  //
  // Network discovery's news is handed on `NEWS_TURNS` turns of the scheduler after it was published, as it was
  // when it waited behind the `PeerAdded`s of its step: the dials of that moment finish their handshakes first, and
  // the refresh finds those peers connected instead of dialling them again. Handed on at once (or offered to the
  // loop in the publishing step, as a session before this had tried), it made the pools worse: propagation 6.89
  // against 6.39 wire messages per propagated message at 300 nodes (seed 7), 15.6 against 12.8 at 1000.
  const labels = yield* FiberRef.get(FiberRef.currentMetricLabels)
  const fromEvents = yield* LightQueue.dropping<Command>(config.eventBufferSize)
  yield* DhtEvents.onEvent(events, (event) => {
    const command = fromEvent(event)
    if (Option.isSome(command) && !fromEvents.unsafeOffer(command.value)) shedCommand.unsafeUpdate(1, labels)
  })
  const afterNewsTurns = Effect.repeatN(Effect.yieldNow(), NEWS_TURNS - 1)
  const handOn = (command: Command) =>
    command._tag === "PeersAdded" ? Effect.zipRight(afterNewsTurns, submit(command)) : submit(command)
  yield* Effect.forkScoped(LightQueue.consume(fromEvents, handOn))
  // Connection changes are offered in the step that makes them (`Transport.onEvent`): a fiber woken for each only to
  // pass it on cost more than most of the commands. One that finds the queue full is shed and counted; the next tick
  // reconciles the connections with the transport's and refills the pools.
  yield* Transport.onEvent(transport, (event) => {
    if (!commands.unsafeOffer(fromConnection(event))) shedCommand.unsafeUpdate(1, labels)
  })
  // let the events' reader start before the first refresh is submitted
  yield* Effect.yieldNow()

  yield* submit({ _tag: "Tick" }).pipe(
    Effect.delay(config.connectivity.updateInterval),
    Effect.forever,
    Effect.forkScoped
  )
  yield* Option.match(config.networkDiscovery.initialPeerSyncDelay, {
    onNone: () => submit({ _tag: "Start" }),
    onSome: (delay) => Effect.asVoid(Effect.forkScoped(Effect.delay(submit({ _tag: "Start" }), delay)))
  })

  yield* Effect.iterate(initialState, {
    while: constTrue,
    body: (state) => Effect.flatMap(Queue.take(commands), (command) => handle(state, command))
  }).pipe(Effect.annotateLogs({ service: "Connectivity" }), Effect.forkScoped)

  // --- the client ---

  const current = Effect.sync(() => published)
  // subscribed, then the snapshot read in the same step: no change can fall between the two
  const changes: Stream.Stream<ConnectivityStatus> = Stream.unwrapScoped(
    Effect.map(statusChanges.subscribe, (queue) => Stream.concat(Stream.succeed(published), Stream.fromQueue(queue)))
  )

  return Connectivity.of({
    status: current,
    changes,
    neighbours: Effect.map(current, (s) => s.neighbours),
    randomPeers: Effect.map(current, (s) => s.random),
    isOnline: Effect.map(current, (s) => s.online),
    awaitOnline: Effect.raceFirst(
      changes.pipe(Stream.filter((s) => s.online), Stream.runHead, Effect.asVoid),
      Effect.zipRight(Deferred.await(closed), Effect.fail(new DhtError.DhtShutdown()))
    ),
    isPinned: (nodeId) => Effect.map(current, (s) => has(s.neighbours, nodeId) || has(s.random, nodeId))
  })
})

/**
 * Connectivity as a Layer: its fibers run while the Layer's scope is open.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Connectivity, never, Requirements> = Layer.scoped(Connectivity, make)
