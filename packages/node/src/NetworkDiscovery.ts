/**
 * Network discovery (SPEC §12): a scoped fiber running the state machine that fills the peer table through peer
 * sync (§12.4). `Initializing` waits for connectivity (at least `connectivity.minConnectivity`, and at least one,
 * connected peer: polled every `connectivityPollInterval` and woken by the transport's `PeerConnected`), then
 * `Ready` decides each round (§12.2), `Discovering` syncs with the chosen peers, `Waiting` sleeps, and `OnConnect`
 * syncs once with every communication node that connects later among this node's closest. A round that found no new
 * neighbour (a new peer within the §12.3 threshold) settles the node, not only one that found no new peer at all
 * (docs/spec-departures.md §6). Every transition publishes
 * `NetworkDiscoveryStateChanged{from, to}`; a round or an on-connect sync that found new peers publishes
 * `NetworkDiscoveryPeersAdded`; each round counts `comms_dht_network_discovery_rounds_total{result}`.
 *
 * Time is Effect's `Clock`: `TestClock` in tests, the simulation's virtual clock in `comms-dht sim`. Disabled
 * (`networkDiscovery.enabled = false`) no fiber runs; the responder side of peer sync is `PeerSync`'s and runs
 * regardless.
 *
 * @since 0.1.0
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import type * as DhtError from "@comms-dht/core/DhtError"
import * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as DhtLog from "@comms-dht/core/DhtLog"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberSet from "effect/FiberSet"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as PeerSync from "./PeerSync.js"

// --- states and events (§12.1) ---

/**
 * The peers of one round and the `n` asked of each.
 *
 * @since 0.1.0
 * @category models
 */
export interface DiscoveryParams {
  readonly peers: ReadonlyArray<NodeId.NodeId>
  readonly n: number
}

/**
 * The states of SPEC §12.1.
 *
 * @since 0.1.0
 * @category models
 */
export type State = Data.TaggedEnum<{
  Initializing: {}
  Ready: {}
  Discovering: { readonly params: DiscoveryParams }
  Waiting: { readonly duration: Duration.Duration }
  OnConnect: {}
  Shutdown: {}
}>

/**
 * Constructors, guards and matchers of `State`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const State = Data.taggedEnum<State>()

/**
 * What a state's work ends with (SPEC §12.1); `transition` maps it to the next state.
 *
 * @since 0.1.0
 * @category models
 */
export type Event = Data.TaggedEnum<{
  Initialized: {}
  Ready: {}
  BeginDiscovery: { readonly params: DiscoveryParams }
  Idle: {}
  OnConnectMode: {}
  DiscoveryComplete: { readonly roundInfo: DhtEvent.RoundInfo }
  Errored: { readonly error: DhtError.StoreError }
  Shutdown: {}
}>

/**
 * Constructors, guards and matchers of `Event`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const Event = Data.taggedEnum<Event>()

/**
 * A round succeeded ⇔ at least one peer answered (SPEC §12.1).
 *
 * @since 0.1.0
 * @category utils
 */
export const isSuccess = (round: DhtEvent.RoundInfo): boolean => round.numSucceeded > 0

/**
 * The transitions of SPEC §12.1: the next state, or none for a (state, event) pair the table does not list, which
 * keeps the state (and publishes nothing). `Shutdown` is terminal.
 *
 * @since 0.1.0
 * @category utils
 */
export const transition = (
  config: DhtConfig.NetworkDiscoveryConfig,
  state: State,
  event: Event
): Option.Option<State> => {
  if (state._tag === "Shutdown") return Option.none()
  switch (event._tag) {
    case "Shutdown":
      return Option.some(State.Shutdown())
    case "Errored":
      return Option.some(State.Waiting({ duration: config.onFailureIdlePeriod }))
    case "Ready":
      return Option.some(State.Ready())
    case "Initialized":
      return state._tag === "Initializing" ? Option.some(State.Ready()) : Option.none()
    case "BeginDiscovery":
      return state._tag === "Ready" ? Option.some(State.Discovering({ params: event.params })) : Option.none()
    case "OnConnectMode":
      return state._tag === "Ready" ? Option.some(State.OnConnect()) : Option.none()
    case "Idle":
      return state._tag === "Ready" ? Option.some(State.Waiting({ duration: config.idlePeriod })) : Option.none()
    case "DiscoveryComplete":
      if (state._tag !== "Discovering") return Option.none()
      return Option.some(
        isSuccess(event.roundInfo) ? State.Ready() : State.Waiting({ duration: config.onFailureIdlePeriod })
      )
  }
}

/**
 * "Settled" (SPEC §12.2): in `OnConnect`, or waiting out the idle period.
 *
 * @since 0.1.0
 * @category utils
 */
export const isSettled = (config: DhtConfig.NetworkDiscoveryConfig, state: State): boolean =>
  state._tag === "OnConnect" ||
  (state._tag === "Waiting" && Duration.equals(state.duration, config.idlePeriod))

// --- the context (§12.1) ---

/**
 * What the machine remembers between rounds (SPEC §12.1, §12.3).
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  readonly state: State
  /** completed rounds since the last reset (§12.2) */
  readonly numRounds: number
  /** every peer selected for a round since the last reset */
  readonly attempted: ReadonlyArray<NodeId.NodeId>
  readonly lastRound: Option.Option<DhtEvent.RoundInfo>
  /** the neighbourhood threshold computed at the start of the last round (§12.3), for diagnostics */
  readonly threshold: Option.Option<bigint>
  /** the machine has entered `Ready` at least once */
  readonly readyReached: boolean
}

interface Memory {
  readonly numRounds: number
  readonly attempted: HashSet.HashSet<string>
  readonly attemptedIds: ReadonlyArray<NodeId.NodeId>
  readonly lastRound: Option.Option<DhtEvent.RoundInfo>
  readonly threshold: Option.Option<bigint>
  /** the last round's new peers within the threshold taken at its start (docs/spec-departures.md §6) */
  readonly lastNewNeighbours: number
}

const emptyMemory: Memory = {
  numRounds: 0,
  attempted: HashSet.empty(),
  attemptedIds: [],
  lastRound: Option.none(),
  threshold: Option.none(),
  lastNewNeighbours: 0
}

const reset = (memory: Memory): Memory => ({ ...memory, numRounds: 0, attempted: HashSet.empty(), attemptedIds: [] })

const attempt = (memory: Memory, peers: ReadonlyArray<NodeId.NodeId>): Memory => {
  let attempted = memory.attempted
  const ids = memory.attemptedIds.slice()
  for (const peer of peers) {
    const key = NodeId.toHex(peer)
    if (HashSet.has(attempted, key)) continue
    attempted = HashSet.add(attempted, key)
    ids.push(peer)
  }
  return { ...memory, attempted, attemptedIds: ids }
}

// --- the service ---

/**
 * @since 0.1.0
 * @category models
 */
export interface NetworkDiscoveryService {
  /** `networkDiscovery.enabled` when the service was built. */
  readonly enabled: boolean
  /** The current state; `Shutdown` once the scope has closed, and throughout when disabled (nothing runs). */
  readonly state: Effect.Effect<State>
  /** The state and the context of §12.1. */
  readonly snapshot: Effect.Effect<Snapshot>
  /**
   * Completes once the machine has entered `Ready` (connectivity came online, SPEC §12.2's "Ready"); at once when
   * network discovery is disabled, since there is then nothing to wait for.
   */
  readonly awaitReady: Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class NetworkDiscovery extends Context.Tag("@comms-dht/node/NetworkDiscovery")<
  NetworkDiscovery,
  NetworkDiscoveryService
>() {}

/**
 * What the machine reads from the Layer graph.
 *
 * @since 0.1.0
 * @category models
 */
export type Requirements =
  | PeerManager.PeerManager
  | Transport.Transport
  | NodeIdentity.NodeIdentity
  | DhtEvents.DhtEvents
  | PeerSync.PeerSync

const roundsOk = DhtMetrics.tagged(DhtMetrics.networkDiscoveryRounds, "result", "ok")
const roundsFailed = DhtMetrics.tagged(DhtMetrics.networkDiscoveryRounds, "result", "failed")

/**
 * Starts the machine in the current scope (unless disabled). Closing the scope stops it: the state becomes
 * `Shutdown` and that transition is published.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<NetworkDiscoveryService, never, Requirements | Scope.Scope> = Effect.gen(function*() {
  const config = yield* DhtConfig.DhtConfig
  const nd = config.networkDiscovery
  const readyReached = yield* Deferred.make<void>()
  const current = yield* Ref.make<State>(nd.enabled ? State.Initializing() : State.Shutdown())
  const memory = yield* Ref.make(emptyMemory)

  const snapshot = Effect.map(
    Effect.all([Ref.get(current), Ref.get(memory), Deferred.isDone(readyReached)]),
    ([state, m, ready]): Snapshot => ({
      state,
      numRounds: m.numRounds,
      attempted: m.attemptedIds,
      lastRound: m.lastRound,
      threshold: m.threshold,
      readyReached: ready
    })
  )

  if (!nd.enabled) {
    yield* Effect.logDebug("network discovery disabled")
    return NetworkDiscovery.of({ enabled: false, state: Ref.get(current), snapshot, awaitReady: Effect.void })
  }

  const peers = yield* PeerManager.PeerManager
  const transport = yield* Transport.Transport
  const identity = yield* NodeIdentity.NodeIdentity
  const events = yield* DhtEvents.DhtEvents
  const peerSync = yield* PeerSync.PeerSync

  const minConnected = Math.max(1, config.connectivity.minConnectivity)
  // the transport's own sliding buffer holds them: 256 for MemoryNetwork and TCP
  // subscribed here, before a caller can connect: a connection made right after the service is built wakes
  // `Initializing` at once instead of at the next poll
  const connections = yield* transport.subscribe

  // --- Initializing ---

  const online = Effect.map(transport.connectedPeers, (connected) => connected.length >= minConnected)

  const nextConnected = Queue.take(connections).pipe(
    Effect.repeat({ until: (event) => event._tag === "PeerConnected" }),
    Effect.asVoid
  )

  const awaitOnline: Effect.Effect<void> = Effect.flatMap(online, (ok) =>
    ok
      ? Effect.void
      : Effect.raceFirst(Effect.sleep(nd.connectivityPollInterval), nextConnected).pipe(
        Effect.zipRight(Effect.suspend(() => awaitOnline))
      ))

  const initializing = awaitOnline.pipe(
    Effect.zipRight(Option.match(nd.initialPeerSyncDelay, { onNone: () => Effect.void, onSome: Effect.sleep })),
    Effect.as(Event.Initialized())
  )

  // --- Ready (§12.2) ---

  const ready = Effect.gen(function*() {
    const m = yield* Ref.get(memory)
    if (m.numRounds >= nd.idleAfterNumRounds) {
      yield* Ref.update(memory, reset)
      return Event.Idle()
    }
    const known = yield* peers.count
    const last = m.lastRound
    // Settled once a round finds no new neighbour, rather than SPEC §12.2's no new peer at all: in a network larger
    // than a few responses nearly every round finds someone new, so every node ran `idleAfterNumRounds` rounds and
    // learnt the whole network (docs/spec-departures.md §6).
    if (known >= nd.minDesiredPeers && Option.isSome(last) && isSuccess(last.value) && m.lastNewNeighbours === 0) {
      yield* Ref.update(memory, reset)
      return Event.OnConnectMode()
    }
    const excluded = [...m.attemptedIds, identity.nodeId]
    const closest = known >= nd.minDesiredPeers && Option.isSome(last) && isSuccess(last.value) &&
      last.value.numNewPeers > 0
    const selected = closest
      ? yield* peers.closest(identity.nodeId, nd.maxSyncPeers, {
        features: Peer.PeerFeatures.COMMUNICATION_NODE,
        excluded,
        excludeBanned: true
      })
      : yield* peers.random(nd.maxSyncPeers, { excluded, excludeBanned: true })
    if (selected.length === 0) return Event.Idle()
    return Event.BeginDiscovery({
      params: { peers: selected.map((peer) => peer.nodeId), n: nd.maxPeersToSyncPerRound }
    })
  })

  // --- Discovering ---

  const neighbourhoodThreshold = Effect.gen(function*() {
    const all = yield* peers.all
    const nowMs = yield* Clock.currentTimeMillis
    return BroadcastStrategy.threshold(
      { peers: all, nowMs },
      identity.nodeId,
      config.numNeighbouringNodes,
      Peer.PeerFeatures.COMMUNICATION_NODE
    )
  })

  const reachedPeer = (error: PeerSync.RequestError): boolean =>
    error._tag !== "PeerNotFound" && error._tag !== "DialFailed" && error._tag !== "PeerBanned" &&
    error._tag !== "TransportShutdown" && error._tag !== "StoreError"

  const discovering = (params: DiscoveryParams) =>
    Effect.gen(function*() {
      const threshold = yield* neighbourhoodThreshold
      yield* Ref.update(memory, (m) => ({ ...attempt(m, params.peers), threshold: Option.some(threshold) }))
      yield* DhtLog.debug("network discovery round", {
        peers: params.peers.length,
        n: params.n,
        threshold: threshold.toString(16)
      })
      const results = yield* Effect.forEach(
        params.peers,
        (peer) =>
          peerSync.requestPeers(peer, { n: params.n, includeClients: true }).pipe(
            Effect.either,
            Effect.map((result) => [peer, result] as const)
          ),
        { concurrency: "unbounded" }
      )
      let numNewPeers = 0
      let numNewNeighbours = 0
      let numDuplicatePeers = 0
      let numSucceeded = 0
      const syncPeers: Array<NodeId.NodeId> = []
      for (const [peer, result] of results) {
        if (Either.isRight(result)) {
          numSucceeded++
          numNewPeers += result.right.numNew
          for (const peer of result.right.newPeers) {
            if (BroadcastStrategy.distanceValue(peer, identity.nodeId) < threshold) numNewNeighbours++
          }
          numDuplicatePeers += result.right.numDuplicate
          syncPeers.push(peer)
        } else {
          if (reachedPeer(result.left)) syncPeers.push(peer)
          yield* DhtLog.debug("peer sync failed", { peer: NodeId.toHex(peer), reason: result.left._tag })
        }
      }
      const roundInfo: DhtEvent.RoundInfo = { numNewPeers, numDuplicatePeers, numSucceeded, syncPeers }
      yield* Ref.update(memory, (m) => ({ ...m, lastNewNeighbours: numNewNeighbours }))
      return Event.DiscoveryComplete({ roundInfo })
    })

  // --- OnConnect ---

  const syncOnConnect = (peer: NodeId.NodeId) =>
    peerSync.requestPeers(peer, { n: nd.onConnectFetchPeers, includeClients: false }).pipe(
      Effect.flatMap((outcome) =>
        outcome.numNew > 0
          ? events.publish(DhtEvent.NetworkDiscoveryPeersAdded({
            roundInfo: {
              numNewPeers: outcome.numNew,
              numDuplicatePeers: outcome.numDuplicate,
              numSucceeded: 1,
              syncPeers: [peer]
            }
          }))
          : Effect.void
      ),
      Effect.catchAll((error) =>
        DhtLog.debug("on-connect peer sync failed", { peer: NodeId.toHex(peer), reason: error._tag })
      )
    )

  // A connection is synced with when the peer is one of this node's `numNeighbouringNodes` closest known
  // communication nodes (or fewer are known): it knows this node's neighbourhood at least as well as this node does.
  // SPEC §12.1 syncs with every new connection, which in a settled node of a large network mostly brings the far
  // peers it had stopped looking for (docs/spec-departures.md §6). Fewer than n closer is what being among the n
  // closest means; counted rather than selected, since this runs on every new connection.
  const isNeighbour = (peer: NodeId.NodeId) =>
    Effect.map(
      PeerManager.closerCount(peers, identity.nodeId, peer, config.numNeighbouringNodes, {
        features: Peer.PeerFeatures.COMMUNICATION_NODE,
        excludeBanned: true
      }),
      (closer) => closer < config.numNeighbouringNodes
    ).pipe(Effect.orElseSucceed(() => true)) // the table unreadable: sync as SPEC §12.1 would

  const onConnect: Effect.Effect<Event> = Effect.scoped(Effect.gen(function*() {
    const jobs = yield* FiberSet.make<void, never>()
    const permits = yield* Effect.makeSemaphore(Math.max(1, nd.maxSyncPeers))
    const synced = yield* Ref.make(HashSet.empty<string>())
    return yield* Queue.take(connections).pipe(
      Effect.flatMap((event) => {
        if (event._tag !== "PeerConnected" || !event.peer.isCommunicationNode) return Effect.void
        const peer = event.peer.nodeId
        const key = NodeId.toHex(peer)
        // a peer synced with already is passed over before the table is read; one that is not a neighbour now is
        // not recorded, so it is asked if it connects again once it is one
        return Effect.flatMap(Ref.get(synced), (set) =>
          HashSet.has(set, key)
            ? Effect.void
            : Effect.flatMap(isNeighbour(peer), (near) =>
              near
                // this loop alone adds to the set, so nothing can have added the key since it was read
                ? Effect.zipRight(
                  Ref.update(synced, HashSet.add(key)),
                  FiberSet.run(jobs, permits.withPermits(1)(syncOnConnect(peer)))
                )
                : Effect.void))
      }),
      Effect.forever
    )
  }))

  // --- the machine ---

  const nextEvent = (state: State): Effect.Effect<Event> => {
    const work: Effect.Effect<Event, DhtError.StoreError> = State.$match(state, {
      Initializing: () => initializing,
      Ready: () => ready,
      Discovering: ({ params }) => discovering(params),
      Waiting: ({ duration }) => Effect.as(Effect.sleep(duration), Event.Ready()),
      OnConnect: () => onConnect,
      Shutdown: () => Effect.succeed(Event.Shutdown())
    })
    return Effect.catchAll(work, (error) =>
      Effect.as(
        Effect.logWarning("network discovery errored", error),
        Event.Errored({ error })
      ))
  }

  const completeRound = (roundInfo: DhtEvent.RoundInfo) =>
    Effect.gen(function*() {
      yield* Ref.update(memory, (m) => ({ ...m, numRounds: m.numRounds + 1, lastRound: Option.some(roundInfo) }))
      yield* Metric.increment(isSuccess(roundInfo) ? roundsOk : roundsFailed)
      if (roundInfo.numNewPeers > 0) yield* events.publish(DhtEvent.NetworkDiscoveryPeersAdded({ roundInfo }))
    })

  const step = (state: State): Effect.Effect<State> =>
    Effect.gen(function*() {
      const event = yield* nextEvent(state)
      if (event._tag === "DiscoveryComplete" && state._tag === "Discovering") yield* completeRound(event.roundInfo)
      const next = transition(nd, state, event)
      if (Option.isNone(next)) {
        yield* DhtLog.debug("no transition", { state: state._tag, event: event._tag })
        return state
      }
      // connections made before `OnConnect` are not new to it (Tari subscribes on entry); dropped before the state
      // is visible, so that whoever sees `OnConnect` knows that any connection it makes from then on is synced
      if (next.value._tag === "OnConnect") yield* Queue.takeAll(connections)
      yield* Ref.set(current, next.value)
      yield* events.publish(DhtEvent.NetworkDiscoveryStateChanged({ from: state._tag, to: next.value._tag }))
      if (next.value._tag === "Ready") yield* Deferred.succeed(readyReached, undefined)
      return next.value
    })

  // registered before the fiber is forked, so it runs after the fiber has stopped (finalizers run in reverse)
  yield* Effect.addFinalizer(() =>
    Ref.getAndSet(current, State.Shutdown()).pipe(
      Effect.flatMap((last) =>
        last._tag === "Shutdown"
          ? Effect.void
          : events.publish(DhtEvent.NetworkDiscoveryStateChanged({ from: last._tag, to: "Shutdown" }))
      )
    )
  )

  const initial: State = State.Initializing()
  yield* Effect.iterate(initial, {
    while: (state) => state._tag !== "Shutdown",
    body: step
  }).pipe(Effect.annotateLogs({ service: "NetworkDiscovery" }), Effect.forkScoped)

  return NetworkDiscovery.of({
    enabled: true,
    state: Ref.get(current),
    snapshot,
    awaitReady: Deferred.await(readyReached)
  })
})

/**
 * `make` as a Layer: the machine runs while the Layer's scope is open.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<NetworkDiscovery, never, Requirements> = Layer.scoped(NetworkDiscovery, make)
