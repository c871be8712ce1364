/**
 * Network discovery (SPEC §12, scenario 28): the transition table, and the machine on a MemoryNetwork under the
 * `TestClock` — waiting for connectivity, rounds through real peer sync, `OnConnect` once enough peers are known, a
 * failed round retried after `onFailureIdlePeriod`, idling after `idleAfterNumRounds` (with a stub `PeerSync`).
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import type * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as NodeId from "@comms-dht/core/NodeId"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerSyncMessages from "@comms-dht/core/PeerSyncMessages"
import * as Transport from "@comms-dht/core/Transport"
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as NetworkDiscovery from "../src/NetworkDiscovery.js"
import type * as PeerSync from "../src/PeerSync.js"
import {
  addPeers,
  claimedRecord,
  claimOf,
  COMMUNICATION_CLIENT,
  config,
  connect,
  eventsSoFar,
  eventually,
  type FullNode,
  identityOf,
  nextRequest,
  receivedOf,
  recordOf,
  sendResponse,
  settle,
  shared,
  startNode,
  startRaw
} from "./peerSyncNetwork.js"

const { Event, State } = NetworkDiscovery
const nd = config.networkDiscovery
const quiet = DhtConfig.unsafeMake({ networkDiscovery: { enabled: false } }, config)

const machine = (node: FullNode) => node.run(NetworkDiscovery.NetworkDiscovery)
const stateOf = (node: FullNode) => Effect.flatMap(machine(node), (m) => m.state)
const snapshotOf = (node: FullNode) => Effect.flatMap(machine(node), (m) => m.snapshot)

const transitions = (events: ReadonlyArray<DhtEvent.DhtEvent>) =>
  events.flatMap((e) => e._tag === "NetworkDiscoveryStateChanged" ? [`${e.from}→${e.to}`] : [])

const peersAdded = (events: ReadonlyArray<DhtEvent.DhtEvent>) =>
  events.flatMap((e) => e._tag === "NetworkDiscoveryPeersAdded" ? [e.roundInfo] : [])

const roundsOk = Effect.map(
  Metric.value(Metric.tagged(DhtMetrics.networkDiscoveryRounds, "result", "ok")),
  (s) => s.count
)

/** Records of `count` peers nobody can reach: learnt, never connected. */
const unreachable = (count: number, from: number) =>
  Effect.forEach(Array.from({ length: count }, (_, i) => from + i), (n) =>
    Effect.map(identityOf(n), (identity) =>
      Peer.make({
        publicKey: identity.publicKey,
        addresses: [`mem://nowhere-${n}`],
        features: identity.features,
        source: "Config",
        nowMs: 0
      })))

/** Advances the clock `stepMs` at a time (at most `steps` times) until the node's state satisfies `predicate`. */
const advanceUntil = (
  node: FullNode,
  predicate: (state: NetworkDiscovery.State) => boolean,
  stepMs: number,
  steps: number
) =>
  Effect.gen(function*() {
    for (let i = 0; i <= steps; i++) {
      yield* settle
      if (predicate(yield* stateOf(node))) return
      yield* TestClock.adjust(stepMs)
    }
    return yield* Effect.dieMessage("state never reached")
  })

describe("transition (SPEC §12.1)", () => {
  const params: NetworkDiscovery.DiscoveryParams = { peers: [], n: 500 }
  const round = (numSucceeded: number): DhtEvent.RoundInfo => ({
    numNewPeers: 0,
    numDuplicatePeers: 0,
    numSucceeded,
    syncPeers: []
  })
  const states: ReadonlyArray<NetworkDiscovery.State> = [
    State.Initializing(),
    State.Ready(),
    State.Discovering({ params }),
    State.Waiting({ duration: Duration.seconds(5) }),
    State.OnConnect(),
    State.Shutdown()
  ]
  const events: ReadonlyArray<NetworkDiscovery.Event> = [
    Event.Initialized(),
    Event.Ready(),
    Event.BeginDiscovery({ params }),
    Event.Idle(),
    Event.OnConnectMode(),
    Event.DiscoveryComplete({ roundInfo: round(1) }),
    Event.DiscoveryComplete({ roundInfo: round(0) }),
    Event.Shutdown()
  ]
  const name = (s: NetworkDiscovery.State) =>
    s._tag === "Waiting" ? `Waiting(${Duration.format(s.duration)})` : s._tag
  const expected = (state: NetworkDiscovery.State, event: NetworkDiscovery.Event): string | undefined => {
    if (state._tag === "Shutdown") return undefined
    if (event._tag === "Shutdown") return "Shutdown"
    if (event._tag === "Ready") return "Ready"
    if (state._tag === "Initializing" && event._tag === "Initialized") return "Ready"
    if (state._tag === "Ready" && event._tag === "BeginDiscovery") return "Discovering"
    if (state._tag === "Ready" && event._tag === "OnConnectMode") return "OnConnect"
    if (state._tag === "Ready" && event._tag === "Idle") return "Waiting(30m)"
    if (state._tag === "Discovering" && event._tag === "DiscoveryComplete") {
      return event.roundInfo.numSucceeded > 0 ? "Ready" : "Waiting(5s)"
    }
    return undefined
  }

  it("maps every (state, event) pair as the table says; unlisted pairs keep the state", () => {
    for (const state of states) {
      for (const event of events) {
        const next = NetworkDiscovery.transition(nd, state, event)
        expect([state._tag, event._tag, Option.getOrUndefined(Option.map(next, name))]).toEqual([
          state._tag,
          event._tag,
          expected(state, event)
        ])
      }
    }
  })

  it("any state but Shutdown goes to Waiting(onFailureIdlePeriod) on Errored", () => {
    for (const state of states) {
      const error = new DhtError.StoreError({ reason: "Io", message: "disk" })
      const next = NetworkDiscovery.transition(nd, state, Event.Errored({ error }))
      expect(Option.map(next, name)).toEqual(state._tag === "Shutdown" ? Option.none() : Option.some("Waiting(5s)"))
    }
  })
})

describe("the machine on a memory network", () => {
  it.scoped("stays Initializing while offline and reaches Ready on the first connection", () =>
    Effect.gen(function*() {
      const a = yield* startNode(yield* identityOf(1))
      const b = yield* startNode(yield* identityOf(2), { config: quiet })
      yield* TestClock.adjust(Duration.minutes(5))
      yield* settle
      expect(yield* stateOf(a)).toEqual(State.Initializing())
      expect((yield* snapshotOf(a)).readyReached).toBe(false)
      expect(transitions(yield* eventsSoFar(a))).toEqual([])

      yield* connect(b, a)
      yield* eventually(Effect.map(snapshotOf(a), (s) => s.readyReached))
      yield* Effect.flatMap(machine(a), (m) => m.awaitReady)
      expect(transitions(yield* eventsSoFar(a))[0]).toBe("Initializing→Ready")
    }).pipe(Effect.provide(shared)))

  it.scoped("learns the network in rounds, then settles in OnConnect with minDesiredPeers known (scenario 28)", () =>
    Effect.gen(function*() {
      const cfg = DhtConfig.unsafeMake({ networkDiscovery: { minDesiredPeers: 5 } }, config)
      const seed = yield* startNode(yield* identityOf(100), { config: quiet })
      const others = yield* Effect.forEach([101, 102, 103, 104, 105], (n) =>
        Effect.flatMap(identityOf(n), (identity) => startNode(identity, { config: quiet })))
      yield* Effect.forEach(others, (node) => connect(node, seed), { discard: true })
      const a = yield* startNode(yield* identityOf(1), { config: cfg })
      yield* connect(a, seed)

      yield* eventually(Effect.map(stateOf(a), (s) => s._tag === "OnConnect"))
      const events = yield* eventsSoFar(a)
      expect(transitions(events)).toEqual([
        "Initializing→Ready",
        "Ready→Discovering", // the seed, the only peer known
        "Discovering→Ready",
        "Ready→Discovering", // the closest five of the new peers
        "Discovering→Ready",
        "Ready→OnConnect" // a successful round without new neighbours, with ≥ minDesiredPeers known
      ])
      const added = peersAdded(events)
      expect(added).toHaveLength(1)
      expect(added[0]).toMatchObject({ numNewPeers: 5, numSucceeded: 1, syncPeers: [seed.identity.nodeId] })
      const snapshot = yield* snapshotOf(a)
      // reset on the way to OnConnect
      expect(snapshot.numRounds).toBe(0)
      expect(snapshot.attempted).toEqual([])
      expect(Option.map(snapshot.lastRound, (r) => [r.numSucceeded, r.numNewPeers, r.numDuplicatePeers])).toEqual(
        Option.some([5, 0, 5])
      )
      // recorded at the start of the second round, when the seed was the only verified node: fewer than
      // numNeighbouringNodes (8), so every peer is within it (§12.3) and every new peer was a new neighbour
      expect(snapshot.threshold).toEqual(Option.some(BroadcastStrategy.MAX_DISTANCE))
      for (const node of others) {
        expect(Option.map(yield* recordOf(a, node.identity), (p) => p.isVerified)).toEqual(Option.some(true))
      }

      // OnConnect: a communication node connecting now, among the 8 closest known (7 are), is asked for
      // onConnectFetchPeers peers, once
      const late = yield* startRaw(yield* identityOf(106))
      const relayed = yield* identityOf(107)
      yield* connect(late, a)
      const asked = yield* nextRequest(late)
      expect(asked).toMatchObject({ n: nd.onConnectFetchPeers, includeClients: false })
      yield* sendResponse(
        late,
        a.identity,
        new PeerSyncMessages.PeerSyncResponse({
          requestId: asked.requestId,
          peers: [
            new PeerSyncMessages.PeerInfo({
              publicKey: relayed.publicKey,
              claims: [PeerSyncMessages.fromPeerClaim(yield* claimOf(relayed))]
            })
          ]
        })
      )
      yield* eventually(Effect.map(recordOf(a, relayed), Option.isSome))
      yield* settle
      expect(yield* stateOf(a)).toEqual(State.OnConnect())

      // reconnecting is not new; a client is never asked
      yield* late.run(Effect.flatMap(Transport.Transport, (t) => t.disconnect(a.identity.nodeId)))
      yield* connect(late, a)
      const client = yield* startRaw(yield* identityOf(108, COMMUNICATION_CLIENT))
      yield* connect(client, a)
      yield* settle
      expect(yield* receivedOf(late)).toEqual([])
      expect(yield* receivedOf(client)).toEqual([])
    }).pipe(Effect.provide(shared)))

  // The ids of `identityOf(from…from + count − 1)` in ascending distance to `target`.
  const byDistance = (target: NodeId.NodeId, from: number, count: number) =>
    Effect.map(
      Effect.forEach(Array.from({ length: count }, (_, i) => from + i), (n) =>
        Effect.map(identityOf(n), (identity) => ({ n, nodeId: identity.nodeId }))),
      (all) => NodeId.closestOf(target, all, count, (x) => x.nodeId).map((x) => x.n)
    )

  it.scoped("settles after a round that found new peers but no new neighbour (docs/spec-departures.md §6)", () =>
    Effect.gen(function*() {
      // one neighbour: the threshold is the distance of the closest verified peer
      const cfg = DhtConfig.unsafeMake({ networkDiscovery: { minDesiredPeers: 3 }, numNeighbouringNodes: 1 }, config)
      const self = yield* identityOf(1)
      // the seed is the closest of twenty to `a`; the others it knows are farther from `a` than it
      const [seedN, ...farther] = yield* byDistance(self.nodeId, 100, 20)
      const seed = yield* startNode(yield* identityOf(seedN!), { config: quiet })
      const others = yield* Effect.forEach(farther.slice(0, 4), (n) =>
        Effect.flatMap(identityOf(n), (identity) => startNode(identity, { config: quiet })))
      yield* Effect.forEach(others, (node) => connect(node, seed), { discard: true })
      const a = yield* startNode(self, { config: cfg })
      yield* connect(a, seed)

      yield* eventually(Effect.map(stateOf(a), (s) => s._tag === "OnConnect"))
      // SPEC §12.2 would go on to a second round: the first found four new peers
      const events = yield* eventsSoFar(a)
      expect(transitions(events)).toEqual([
        "Initializing→Ready",
        "Ready→Discovering",
        "Discovering→Ready",
        "Ready→OnConnect"
      ])
      expect(peersAdded(events)).toEqual([
        { numNewPeers: 4, numDuplicatePeers: 0, numSucceeded: 1, syncPeers: [seed.identity.nodeId] }
      ])
    }).pipe(Effect.provide(shared)))

  it.scoped("a round that found a new neighbour is followed by another", () =>
    Effect.gen(function*() {
      const cfg = DhtConfig.unsafeMake({ networkDiscovery: { minDesiredPeers: 3 }, numNeighbouringNodes: 1 }, config)
      const self = yield* identityOf(1)
      // now the seed knows a peer closer to `a` than the seed itself
      const [closer, seedN, ...farther] = yield* byDistance(self.nodeId, 100, 20)
      const seed = yield* startNode(yield* identityOf(seedN!), { config: quiet })
      const others = yield* Effect.forEach([closer!, ...farther.slice(0, 3)], (n) =>
        Effect.flatMap(identityOf(n), (identity) => startNode(identity, { config: quiet })))
      yield* Effect.forEach(others, (node) => connect(node, seed), { discard: true })
      const a = yield* startNode(self, { config: cfg })
      yield* connect(a, seed)

      yield* eventually(Effect.map(stateOf(a), (s) => s._tag === "OnConnect"))
      expect(transitions(yield* eventsSoFar(a)).filter((t) => t === "Ready→Discovering")).toHaveLength(2)
    }).pipe(Effect.provide(shared)))

  it.scoped("in OnConnect syncs with a new connection among its closest, not with a farther one", () =>
    Effect.gen(function*() {
      const cfg = DhtConfig.unsafeMake({ networkDiscovery: { minDesiredPeers: 1 }, numNeighbouringNodes: 1 }, config)
      const self = yield* identityOf(1)
      const [nearN, seedN, farN] = yield* byDistance(self.nodeId, 100, 20)
      const seed = yield* startNode(yield* identityOf(seedN!), { config: quiet })
      const a = yield* startNode(self, { config: cfg })
      yield* connect(a, seed)
      yield* eventually(Effect.map(stateOf(a), (s) => s._tag === "OnConnect"))

      // farther than the seed, a's one neighbour: not asked
      const far = yield* startRaw(yield* identityOf(farN!))
      yield* connect(far, a)
      yield* settle
      expect(yield* receivedOf(far)).toEqual([])
      // closer than the seed: asked
      const near = yield* startRaw(yield* identityOf(nearN!))
      yield* connect(near, a)
      expect(yield* nextRequest(near)).toMatchObject({ n: nd.onConnectFetchPeers, includeClients: false })
    }).pipe(Effect.provide(shared)))

  it.scoped("publishes NetworkDiscoveryPeersAdded for an OnConnect sync that found new peers", () =>
    Effect.gen(function*() {
      const cfg = DhtConfig.unsafeMake({ networkDiscovery: { minDesiredPeers: 1 } }, config)
      const seed = yield* startNode(yield* identityOf(100), { config: quiet })
      const a = yield* startNode(yield* identityOf(1), { config: cfg })
      const other = yield* startNode(yield* identityOf(101), { config: quiet })
      yield* connect(other, seed)
      yield* connect(a, seed)
      // round 1 learns `other` (new), round 2 syncs with it (nothing new): OnConnect
      yield* eventually(Effect.map(stateOf(a), (s) => s._tag === "OnConnect"))
      yield* eventsSoFar(a)
      const late = yield* startNode(yield* identityOf(102), { config: quiet })
      const relayed = yield* identityOf(103)
      yield* addPeers(late, [claimedRecord(relayed, [yield* claimOf(relayed)])])
      yield* connect(late, a)
      yield* eventually(Effect.map(recordOf(a, relayed), Option.isSome))
      yield* settle
      expect(peersAdded(yield* eventsSoFar(a))).toEqual([
        { numNewPeers: 1, numDuplicatePeers: 0, numSucceeded: 1, syncPeers: [late.identity.nodeId] }
      ])
    }).pipe(Effect.provide(shared)))

  it.scoped("a failed round with ≥ 50 known peers is retried after 5 s, not parked in OnConnect (scenario 28)", () =>
    Effect.gen(function*() {
      const a = yield* startNode(yield* identityOf(1))
      yield* addPeers(a, yield* unreachable(55, 1000))
      // the one reachable peer never answers: a round that picks it fails at peerSyncTimeout
      const b = yield* startRaw(yield* identityOf(2))
      yield* connect(b, a)

      yield* advanceUntil(a, (s) => s._tag === "Waiting", 1_000, 40)
      expect(yield* stateOf(a)).toEqual(State.Waiting({ duration: nd.onFailureIdlePeriod }))
      const after = yield* snapshotOf(a)
      expect(after.numRounds).toBe(1)
      expect(Option.map(after.lastRound, (r) => r.numSucceeded)).toEqual(Option.some(0))
      expect(after.attempted).toHaveLength(nd.maxSyncPeers)
      expect(transitions(yield* eventsSoFar(a))).toEqual([
        "Initializing→Ready",
        "Ready→Discovering",
        "Discovering→Waiting"
      ])

      yield* TestClock.adjust(Duration.toMillis(nd.onFailureIdlePeriod) - 1)
      yield* settle
      expect((yield* stateOf(a))._tag).toBe("Waiting")
      yield* TestClock.adjust(1)
      // the retry is a new round with five more peers (it may fail at once again: they are unreachable)
      yield* eventually(Effect.map(snapshotOf(a), (s) => s.attempted.length === 2 * nd.maxSyncPeers))
      const next = transitions(yield* eventsSoFar(a))
      expect(next.slice(0, 2)).toEqual(["Waiting→Ready", "Ready→Discovering"])
      // a different five: the attempted ones are not chosen again
      const retried = yield* snapshotOf(a)
      expect(new Set(retried.attempted.map(NodeId.toHex)).size).toBe(2 * nd.maxSyncPeers)
    }).pipe(Effect.provide(shared)))

  it.scoped("idles for idlePeriod after idleAfterNumRounds rounds, then starts afresh", () =>
    Effect.gen(function*() {
      const requested: Array<NodeId.NodeId> = []
      const stub: PeerSync.PeerSyncService = {
        requestPeers: (peer) =>
          Effect.sync(() => {
            requested.push(peer)
            // a new neighbour each time: fewer than numNeighbouringNodes are verified, so every peer is one
            return { numNew: 1, numDuplicate: 0, numSkipped: 0, newPeers: [peer] }
          }),
        handle: () => Effect.void,
        inFlight: Effect.succeed(0)
      }
      const a = yield* startNode(yield* identityOf(1), { peerSync: stub })
      yield* addPeers(a, yield* unreachable(60, 1000))
      const okBefore = yield* roundsOk
      const b = yield* startRaw(yield* identityOf(2))
      yield* connect(b, a)

      yield* eventually(Effect.map(stateOf(a), (s) => s._tag === "Waiting"))
      const waiting = yield* stateOf(a)
      expect(waiting).toEqual(State.Waiting({ duration: nd.idlePeriod }))
      expect(NetworkDiscovery.isSettled(nd, waiting)).toBe(true)
      const events = yield* eventsSoFar(a)
      expect(transitions(events).filter((t) => t === "Ready→Discovering")).toHaveLength(nd.idleAfterNumRounds)
      expect(transitions(events).at(-1)).toBe("Ready→Waiting")
      expect(peersAdded(events)).toHaveLength(nd.idleAfterNumRounds)
      expect((yield* roundsOk) - okBefore).toBe(nd.idleAfterNumRounds)
      expect(requested).toHaveLength(nd.idleAfterNumRounds * nd.maxSyncPeers)
      expect((yield* snapshotOf(a)).numRounds).toBe(0)

      yield* TestClock.adjust(Duration.toMillis(nd.idlePeriod) - 1)
      yield* settle
      expect(requested).toHaveLength(nd.idleAfterNumRounds * nd.maxSyncPeers)
      yield* TestClock.adjust(1)
      yield* eventually(Effect.sync(() => requested.length > nd.idleAfterNumRounds * nd.maxSyncPeers))
    }).pipe(Effect.provide(shared)))

  it.scoped("is disabled by networkDiscovery.enabled = false: nothing runs, nothing to wait for", () =>
    Effect.gen(function*() {
      const a = yield* startNode(yield* identityOf(1), { config: quiet })
      const b = yield* startNode(yield* identityOf(2), { config: quiet })
      yield* connect(a, b)
      yield* settle
      const m = yield* machine(a)
      expect(m.enabled).toBe(false)
      yield* m.awaitReady
      expect(yield* m.state).toEqual(State.Shutdown())
      expect(transitions(yield* eventsSoFar(a))).toEqual([])
    }).pipe(Effect.provide(shared)))

  it.scoped("closing the scope stops the machine", () =>
    Effect.gen(function*() {
      const a = yield* startNode(yield* identityOf(1))
      const b = yield* startNode(yield* identityOf(2), { config: quiet })
      yield* connect(b, a)
      yield* eventually(Effect.map(snapshotOf(a), (s) => s.readyReached))
      const m = yield* machine(a)
      yield* Scope.close(a.scope, Exit.void)
      expect(yield* m.state).toEqual(State.Shutdown())
    }).pipe(Effect.provide(shared)))
})
