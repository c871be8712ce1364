/**
 * Connectivity on a `MemoryNetwork` under `TestClock` (SPEC §11.1–§11.4, §15, scenario 29): the pools a node builds
 * from its peer table, how they follow connections, dial failures, bans and new peers, the online/offline events,
 * and the join and hook run when the node comes online.
 */
import * as CoreCrypto from "@comms-dht/core/Crypto"
import * as DhtActor from "@comms-dht/core/DhtActor"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Connectivity from "../src/Connectivity.js"
import * as Crypto from "../src/Crypto.js"

// --- fixtures ---

const shared = Layer.mergeAll(MemoryNetwork.layerHub(), Crypto.layerNode())

const localTest = DhtConfig.localTest

/** A deterministic communication node: the seed is 32 bytes derived from `n`. */
const identityOf = (n: number) =>
  Effect.map(CoreCrypto.Crypto, (crypto) => {
    const seed = new Uint8Array(32)
    new DataView(seed.buffer).setUint32(0, n + 1, true)
    seed[31] = 0x29
    const secretKey = NodeId.SecretKey.make(seed)
    return NodeIdentity.make({
      secretKey,
      publicKey: crypto.publicKeyOf(secretKey),
      features: Peer.PeerFeatures.COMMUNICATION_NODE
    })
  })

const identities = (count: number, from = 0) =>
  Effect.forEach(Array.from({ length: count }, (_, i) => from + i), identityOf)

const addressOf = (identity: NodeIdentity.Identity) => `mem://${NodeId.toHex(identity.nodeId)}`

/** How a node knows a peer it has connected to before: verified, never banned, not offline. */
const verifiedRecord = (identity: NodeIdentity.Identity) =>
  new Peer.Peer({
    ...Peer.make({
      publicKey: identity.publicKey,
      addresses: [addressOf(identity)],
      features: identity.features,
      source: "Config",
      nowMs: 0
    }),
    verifiedAt: 0
  })

const hexes = (ids: ReadonlyArray<NodeId.NodeId>) => ids.map(NodeId.toHex)

const closestTo = (target: NodeIdentity.Identity, others: ReadonlyArray<NodeIdentity.Identity>) =>
  [...others].sort((a, b) => NodeId.byDistanceTo(target.nodeId)(a.nodeId, b.nodeId))

/** yields until `condition` holds (bounded, so a bug fails the test instead of hanging it) */
const eventually = <E, R>(condition: Effect.Effect<boolean, E, R>) =>
  Effect.zipRight(Effect.yieldNow(), condition).pipe(
    Effect.repeat({ until: (ok) => ok, times: 20_000 }),
    Effect.flatMap((ok) => ok ? Effect.void : Effect.dieMessage("condition never held"))
  )

/** lets every runnable fiber run for a while: for asserting that something did not happen */
const settle = Effect.repeatN(Effect.yieldNow(), 300)

// --- nodes ---

type Endpoint = Transport.Transport | PeerManager.PeerManager | NodeIdentity.NodeIdentity

const endpoint = (identity: NodeIdentity.Identity) =>
  MemoryNetwork.layer().pipe(
    Layer.provideMerge(Layer.mergeAll(PeerManager.layerMemory, NodeIdentity.layer(identity))),
    Layer.orDie
  )

interface Raw {
  readonly identity: NodeIdentity.Identity
  readonly scope: Scope.CloseableScope
  readonly context: Context.Context<Endpoint>
}

/** A peer that only has a transport endpoint; closing its scope takes it offline. */
const startRaw = (identity: NodeIdentity.Identity) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(endpoint(identity), scope).pipe(
      Effect.provideService(DhtConfig.DhtConfig, localTest)
    )
    const raw: Raw = { identity, scope, context }
    return raw
  })

const stop = (raw: Raw) => Scope.close(raw.scope, Exit.void)

interface NodeOptions {
  readonly config?: DhtConfig.Config
  /** peer records in the table before connectivity starts */
  readonly known?: ReadonlyArray<Peer.Peer>
  /** optional services connectivity uses (`DhtActor`, `ConnectivityHooks`) */
  readonly extra?: Layer.Layer<DhtActor.DhtActor | Connectivity.ConnectivityHooks>
  /** the transport as connectivity sees it, made from the node's own */
  readonly transport?: (own: Transport.TransportService) => Transport.TransportService
}

type NodeServices = Endpoint | DhtEvents.DhtEvents | Connectivity.Connectivity

interface TestNode {
  readonly identity: NodeIdentity.Identity
  readonly context: Context.Context<NodeServices>
  /** every event published since the node started */
  readonly events: Queue.Dequeue<DhtEvent.DhtEvent>
  readonly connectivity: Connectivity.ConnectivityService
  readonly peers: PeerManager.PeerManagerService
  readonly transport: Transport.TransportService
}

const startNode = (identity: NodeIdentity.Identity, options: NodeOptions = {}) =>
  Effect.gen(function*() {
    const config = options.config ?? localTest
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const base = yield* Layer.buildWithScope(Layer.merge(endpoint(identity), DhtEvents.layer), scope).pipe(
      Effect.provideService(DhtConfig.DhtConfig, config)
    )
    const peers = Context.get(base, PeerManager.PeerManager)
    yield* Effect.forEach(options.known ?? [], (peer) => Effect.orDie(peers.add(peer)), { discard: true })
    const events = yield* Scope.extend(Context.get(base, DhtEvents.DhtEvents).subscribe, scope)
    const seen = options.transport === undefined
      ? base
      : Context.add(base, Transport.Transport, options.transport(Context.get(base, Transport.Transport)))
    const built = yield* Layer.buildWithScope(
      Connectivity.layer.pipe(Layer.provide(Layer.merge(Layer.succeedContext(seen), options.extra ?? Layer.empty))),
      scope
    ).pipe(Effect.provideService(DhtConfig.DhtConfig, config))
    const context = Context.merge(base, built)
    const node: TestNode = {
      identity,
      context,
      events,
      connectivity: Context.get(context, Connectivity.Connectivity),
      peers,
      transport: Context.get(context, Transport.Transport)
    }
    return node
  })

const eventsOf = (node: TestNode) => Effect.map(Queue.takeAll(node.events), Chunk.toReadonlyArray)

const poolsEqual = (node: TestNode, neighbours: ReadonlyArray<NodeIdentity.Identity>) =>
  Effect.map(
    node.connectivity.neighbours,
    (ids) => hexes(ids).join() === neighbours.map((i) => NodeId.toHex(i.nodeId)).join()
  )

/** online, with `n` connections the pools know of */
const settledWith = (node: TestNode, n: number) =>
  Effect.map(node.connectivity.status, (status) => status.online && status.connected === n)

const connectedTo = (node: TestNode, identity: NodeIdentity.Identity) => node.transport.isConnected(identity.nodeId)

const gauge = (metric: Metric.Metric.Gauge<number>) => Effect.map(Metric.value(metric), (state) => state.value)

const withConfig = (overrides: DhtConfig.Overrides) => DhtConfig.unsafeMake(overrides, localTest)

// --- tests ---

describe("Connectivity", () => {
  it.scoped("scenario 29: 30 verified peers give 8 closest neighbours and 4 random others; an offline neighbour is replaced by the next closest after its redial fails; the random pool is re-drawn after 2 h", () =>
    Effect.gen(function*() {
      const [me, ...others] = yield* identities(31)
      const raws = yield* Effect.forEach(others, startRaw)
      // the spec's random pool of 4 (ours defaults to 12: docs/spec-departures.md §6)
      const node = yield* startNode(me!, {
        known: others.map(verifiedRecord),
        config: withConfig({ numRandomNodes: 4 })
      })
      const byDistance = closestTo(me!, others)

      // the 8 closest, connected and pinned; 4 random others
      yield* eventually(poolsEqual(node, byDistance.slice(0, 8)))
      yield* eventually(Effect.map(node.connectivity.randomPeers, (random) => random.length === 4))
      const status = yield* node.connectivity.status
      const neighbourHexes = hexes(status.neighbours)
      expect(hexes(status.random).every((id) => !neighbourHexes.includes(id))).toBe(true)
      expect(hexes(status.random).every((id) => others.some((o) => NodeId.toHex(o.nodeId) === id))).toBe(true)
      for (const neighbour of byDistance.slice(0, 8)) {
        yield* eventually(connectedTo(node, neighbour))
        expect(yield* node.connectivity.isPinned(neighbour.nodeId)).toBe(true)
      }
      expect(yield* node.connectivity.isPinned(byDistance[20]!.nodeId)).toBe(
        hexes(status.random).includes(NodeId.toHex(byDistance[20]!.nodeId))
      )
      expect(yield* gauge(DhtMetrics.neighbourPoolSize)).toBe(8)
      expect(yield* gauge(DhtMetrics.randomPoolSize)).toBe(4)
      const changes = (yield* eventsOf(node)).filter(DhtEvent.DhtEvent.$is("NeighboursChanged"))
      expect(changes.length).toBeGreaterThan(0)
      const last = changes[changes.length - 1]!
      expect(hexes(last.neighbours)).toEqual(neighbourHexes)
      expect(hexes(last.random)).toEqual(hexes(status.random))

      // the 4th closest goes offline: its connection drops, the redial fails, the 9th closest takes its place
      const leaving = byDistance[3]!
      yield* stop(raws[others.indexOf(leaving)]!)
      const remaining = byDistance.filter((i) => i !== leaving)
      yield* eventually(poolsEqual(node, remaining.slice(0, 8)))
      const record = yield* Effect.orDie(node.peers.get(leaving.nodeId))
      expect(record.isOffline).toBe(true)
      yield* eventually(connectedTo(node, remaining[7]!))
      yield* eventually(Effect.map(node.connectivity.randomPeers, (random) => random.length === 4))
      const replaced = (yield* eventsOf(node)).filter(DhtEvent.DhtEvent.$is("NeighboursChanged"))
      expect(replaced.length).toBeGreaterThan(0)
      const lastChange = replaced[replaced.length - 1]!
      expect(hexes(lastChange.neighbours)).toEqual(hexes(remaining.slice(0, 8).map((i) => i.nodeId)))

      // the random pool is drawn once at start and again 2 h later, not before
      const before = hexes(yield* node.connectivity.randomPeers)
      yield* TestClock.adjust("118 minutes")
      yield* settle
      expect(hexes(yield* node.connectivity.randomPeers)).toEqual(before)
      yield* TestClock.adjust("2 minutes")
      yield* eventually(Effect.map(node.connectivity.randomPeers, (random) => hexes(random).join() !== before.join()))
      const redrawn = yield* node.connectivity.status
      expect(redrawn.random.length).toBe(4)
      expect(hexes(redrawn.random).every((id) => !hexes(redrawn.neighbours).includes(id))).toBe(true)
      expect(hexes(redrawn.random)).not.toContain(NodeId.toHex(leaving.nodeId))
      expect(hexes(redrawn.neighbours)).toEqual(hexes(remaining.slice(0, 8).map((i) => i.nodeId)))
      // seeded: a draw within buckets of a few peers each can repeat itself (about 1 in 200 here)
    }).pipe(Effect.provide(shared), Effect.withRandom(Random.make(7))))

  it.scoped("a neighbour whose connection drops while it is still up is redialled and stays in the pool", () =>
    Effect.gen(function*() {
      const [me, ...others] = yield* identities(4, 100)
      const raws = yield* Effect.forEach(others, startRaw)
      const node = yield* startNode(me!, { known: others.map(verifiedRecord) })
      yield* eventually(poolsEqual(node, closestTo(me!, others)))
      for (const other of others) yield* eventually(connectedTo(node, other))
      yield* eventsOf(node)
      const peer = raws[0]!
      yield* Context.get(peer.context, Transport.Transport).disconnect(me!.nodeId)
      yield* eventually(connectedTo(node, peer.identity))
      yield* settle
      expect(yield* connectedTo(node, peer.identity)).toBe(true)
      expect(hexes(yield* node.connectivity.neighbours)).toEqual(hexes(closestTo(me!, others).map((i) => i.nodeId)))
      const seen = yield* eventsOf(node)
      expect(seen.filter(DhtEvent.DhtEvent.$is("NeighboursChanged"))).toEqual([])
      expect(seen.filter(DhtEvent.DhtEvent.$is("ConnectivityOffline"))).toEqual([])
    }).pipe(Effect.provide(shared)))

  it.scoped("changes: the status when subscribed, then every change of it", () =>
    Effect.gen(function*() {
      const [me, other] = yield* identities(2, 300)
      const node = yield* startNode(me!)
      const seen: Array<Connectivity.ConnectivityStatus> = []
      yield* Effect.forkScoped(Stream.runForEach(node.connectivity.changes, (s) => Effect.sync(() => seen.push(s))))
      yield* settle
      expect(seen).toEqual([{ neighbours: [], random: [], online: false, connected: 0 }])

      // a peer dials in: connected, online, and it takes a neighbour slot
      const raw = yield* startRaw(other!)
      yield* Effect.orDie(Context.get(raw.context, PeerManager.PeerManager).add(verifiedRecord(me!)))
      yield* Effect.orDie(Context.get(raw.context, Transport.Transport).dial(me!.nodeId))
      yield* eventually(Effect.map(node.connectivity.neighbours, (ids) => ids.length === 1))
      yield* settle
      expect(seen[seen.length - 1]).toEqual(yield* node.connectivity.status)
      expect(seen[seen.length - 1]).toMatchObject({ online: true, connected: 1 })
      expect(seen.slice(1).every((s) => s.connected === 1)).toBe(true)

      // it goes away: offline again, the last change seen
      yield* stop(raw)
      yield* eventually(Effect.map(node.connectivity.isOnline, (online) => !online))
      yield* settle
      expect(seen[seen.length - 1]).toEqual(yield* node.connectivity.status)
      expect(seen[seen.length - 1]).toMatchObject({ online: false, connected: 0 })
    }).pipe(Effect.provide(shared)))

  it.scoped("online and offline: ConnectivityOnline on the first connection, ConnectivityOffline on the last, and 15 s later a refresh that revives offline peers", () =>
    Effect.gen(function*() {
      const [me, other] = yield* identities(2, 200)
      const raw = yield* startRaw(other!)
      const node = yield* startNode(me!, { known: [verifiedRecord(other!)] })
      yield* node.connectivity.awaitOnline
      expect((yield* eventsOf(node)).filter(DhtEvent.DhtEvent.$is("ConnectivityOnline"))).toEqual([
        DhtEvent.ConnectivityOnline({ connected: 1 })
      ])

      // the only peer goes away: offline; the redial fails and marks it offline
      yield* stop(raw)
      yield* eventually(Effect.map(node.connectivity.isOnline, (online) => !online))
      yield* eventually(Effect.map(Effect.orDie(node.peers.get(other!.nodeId)), (peer) => peer.isOffline))
      yield* eventually(Effect.map(node.connectivity.neighbours, (ids) => ids.length === 0))
      const offline = yield* eventsOf(node)
      expect(offline.filter(DhtEvent.DhtEvent.$is("ConnectivityOffline"))).toEqual([
        DhtEvent.ConnectivityOffline({ connected: 0 })
      ])

      // it comes back; within the 15 s nothing redials it (it is marked offline for 24 h) ...
      yield* startRaw(other!)
      const waiting = yield* Effect.fork(node.connectivity.awaitOnline)
      yield* TestClock.adjust("14999 millis")
      yield* settle
      expect(yield* node.connectivity.isOnline).toBe(false)
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)

      // ... then the reviving refresh does, and the node is online again
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(waiting)
      expect(yield* connectedTo(node, other!)).toBe(true)
      expect((yield* eventsOf(node)).filter(DhtEvent.DhtEvent.$is("ConnectivityOnline"))).toEqual([
        DhtEvent.ConnectivityOnline({ connected: 1 })
      ])
      expect(hexes(yield* node.connectivity.neighbours)).toEqual([NodeId.toHex(other!.nodeId)])
    }).pipe(Effect.provide(shared)))

  it.scoped("a node offline for longer than 15 s reconnects at the next update interval, reviving its peers", () =>
    Effect.gen(function*() {
      const [me, other] = yield* identities(2, 250)
      const raw = yield* startRaw(other!)
      const node = yield* startNode(me!, { known: [verifiedRecord(other!)] })
      yield* node.connectivity.awaitOnline
      yield* stop(raw)
      yield* eventually(Effect.map(node.connectivity.isOnline, (online) => !online))
      yield* TestClock.adjust("30 seconds")
      yield* settle
      expect(yield* node.connectivity.isOnline).toBe(false)
      yield* startRaw(other!)
      // the tick at 2 min
      yield* TestClock.adjust("90 seconds")
      yield* settle
      expect(yield* node.connectivity.isOnline).toBe(true)
    }).pipe(Effect.provide(shared)))

  it.scoped("a peer connecting that is closer than the farthest neighbour takes its slot; the farthest moves to the random pool", () =>
    Effect.gen(function*() {
      const [me, ...all] = yield* identities(10, 300)
      const byDistance = closestTo(me!, all)
      const newcomer = byDistance[2]!
      const known = byDistance.filter((i) => i !== newcomer).slice(0, 8)
      yield* Effect.forEach(known, startRaw)
      const node = yield* startNode(me!, { known: known.map(verifiedRecord) })
      yield* eventually(poolsEqual(node, known))
      for (const peer of known) yield* eventually(connectedTo(node, peer))
      yield* settle
      expect(yield* node.connectivity.randomPeers).toEqual([])
      yield* eventsOf(node)

      // the newcomer dials us
      const joining = yield* startRaw(newcomer)
      yield* Effect.gen(function*() {
        yield* Effect.orDie((yield* PeerManager.PeerManager).add(verifiedRecord(me!)))
        yield* Effect.orDie((yield* Transport.Transport).dial(me!.nodeId))
      }).pipe(Effect.provide(joining.context))
      const expected = closestTo(me!, [...known, newcomer]).slice(0, 8)
      yield* eventually(poolsEqual(node, expected))
      expect(hexes(yield* node.connectivity.randomPeers)).toEqual([NodeId.toHex(known[7]!.nodeId)])
      const changed = (yield* eventsOf(node)).filter(DhtEvent.DhtEvent.$is("NeighboursChanged"))
      expect(changed.map((e) => [hexes(e.neighbours), hexes(e.random)])).toEqual([
        [hexes(expected.map((i) => i.nodeId)), [NodeId.toHex(known[7]!.nodeId)]]
      ])
    }).pipe(Effect.provide(shared)))

  it.scoped("a banned neighbour leaves the pools, is disconnected and replaced by the next closest", () =>
    Effect.gen(function*() {
      const [me, ...others] = yield* identities(11, 400)
      yield* Effect.forEach(others, startRaw)
      const node = yield* startNode(me!, {
        known: others.map(verifiedRecord),
        config: withConfig({ numRandomNodes: 0 })
      })
      const byDistance = closestTo(me!, others)
      yield* eventually(poolsEqual(node, byDistance.slice(0, 8)))
      yield* eventually(settledWith(node, 8))
      const culprit = byDistance[0]!

      // what the actor does on a ban (SPEC §11.4): record it, publish PeerBanned
      const banned = yield* Effect.orDie(node.peers.ban(culprit.nodeId, 600_000, "test"))
      const events = Context.get(node.context, DhtEvents.DhtEvents)
      yield* events.publish(DhtEvent.PeerBanned({
        publicKey: culprit.publicKey,
        until: banned.bannedUntil ?? 0,
        severity: "Medium",
        reason: "test"
      }))
      yield* eventually(poolsEqual(node, byDistance.slice(1, 9)))
      yield* eventually(Effect.map(connectedTo(node, culprit), (connected) => !connected))
      yield* eventually(connectedTo(node, byDistance[8]!))
    }).pipe(Effect.provide(shared)))

  // A node settled on its 5 farthest of 7 peers, whose table has just learnt the 3 closest (as network discovery
  // would) without the event that says so: nothing has happened to its pools yet.
  const withCloserPeersLearnt = (seed: number, overrides: DhtConfig.Overrides = {}) =>
    Effect.gen(function*() {
      const [me, ...others] = yield* identities(8, seed)
      yield* Effect.forEach(others, startRaw)
      const byDistance = closestTo(me!, others)
      const far = byDistance.slice(3)
      const node = yield* startNode(me!, {
        known: far.map(verifiedRecord),
        config: withConfig({ numRandomNodes: 0, ...overrides })
      })
      yield* eventually(poolsEqual(node, far))
      yield* eventually(settledWith(node, far.length))
      yield* Effect.forEach(byDistance.slice(0, 3), (i) => Effect.orDie(node.peers.add(verifiedRecord(i))))
      yield* settle
      expect(yield* poolsEqual(node, far)).toBe(true)
      return { node, byDistance }
    })

  const peersAdded = DhtEvent.NetworkDiscoveryPeersAdded({
    roundInfo: { numNewPeers: 3, numDuplicatePeers: 0, numSucceeded: 1, syncPeers: [] }
  })

  it.scoped("NetworkDiscoveryPeersAdded refreshes the pools with the new peers", () =>
    Effect.gen(function*() {
      const { byDistance, node } = yield* withCloserPeersLearnt(500)
      yield* Context.get(node.context, DhtEvents.DhtEvents).publish(peersAdded)
      yield* eventually(poolsEqual(node, byDistance))
      for (const peer of byDistance) yield* eventually(connectedTo(node, peer))
    }).pipe(Effect.provide(shared)))

  it.scoped("NetworkDiscoveryPeersAdded refreshes the pools when it comes among more events than eventBufferSize in one step", () =>
    Effect.gen(function*() {
      const { byDistance, node } = yield* withCloserPeersLearnt(520, { eventBufferSize: 4 })
      // the round's news among the many events that make no command (a peer sync's answers learnt, each peer an
      // event), all in one step: a queue of the last 4 events would have lost the one that mattered
      const events = Context.get(node.context, DhtEvents.DhtEvents)
      const strangers = yield* identities(22, 5_500)
      const learnt = (stranger: NodeIdentity.Identity) =>
        events.publish(DhtEvent.PeerAdded({ publicKey: stranger.publicKey, source: "PeerSync" }))
      yield* Effect.forEach(strangers.slice(0, 2), learnt)
      yield* events.publish(peersAdded)
      yield* Effect.forEach(strangers.slice(2), learnt)
      yield* eventually(poolsEqual(node, byDistance))
    }).pipe(Effect.provide(shared)))

  it.scoped("a burst of connection changes beyond the command queue is shed and counted; the next is acted on", () =>
    Effect.gen(function*() {
      const [me, ...others] = yield* identities(8, 550)
      yield* Effect.forEach(others, startRaw)
      const byDistance = closestTo(me!, others)
      const far = byDistance.slice(3)
      // connectivity's listener of connection changes, kept so that the test can call it as the transport would
      const listeners: Array<(event: Transport.ConnectionEvent) => void> = []
      const node = yield* startNode(me!, {
        known: far.map(verifiedRecord),
        config: withConfig({ numRandomNodes: 0 }),
        transport: (own) => ({
          ...own,
          listen: (f) => {
            listeners.push(f)
            return own.listen === undefined ? Effect.void : own.listen(f)
          }
        })
      })
      yield* eventually(poolsEqual(node, far))
      yield* eventually(settledWith(node, far.length))
      const listener = listeners[0]!
      const shed = Metric.tagged(DhtMetrics.inboundShed, "where", "connectivity")
      const before = (yield* Metric.value(shed)).count

      // 300 dial failures of strangers in one step: the loop takes none of them before the queue (256) is full
      const strangers = yield* identities(300, 5_000)
      for (const stranger of strangers) listener({ _tag: "DialFailed", nodeId: stranger.nodeId })
      const lost = (yield* Metric.value(shed)).count - before
      expect(lost).toBeGreaterThanOrEqual(300 - 256)
      expect(lost).toBeLessThan(300)

      // once the loop has worked through the queue, a change is a command again: a closer peer connecting takes a
      // neighbour's slot
      yield* settle
      const closest = byDistance[0]!
      yield* Effect.orDie(node.peers.add(verifiedRecord(closest)))
      yield* Effect.orDie(node.transport.dial(closest.nodeId))
      const key = NodeId.toHex(closest.nodeId)
      yield* eventually(Effect.map(node.connectivity.neighbours, (ids) => hexes(ids).includes(key)))
    }).pipe(Effect.provide(shared)))

  it.scoped("the random pool takes a peer from each of the farthest distance buckets beyond the neighbours (departures §12)", () =>
    Effect.gen(function*() {
      const [me, ...others] = yield* identities(61, 1_000)
      yield* Effect.forEach(others, startRaw)
      const node = yield* startNode(me!, {
        known: others.map(verifiedRecord),
        config: withConfig({ numRandomNodes: 4 })
      })
      const neighbours = closestTo(me!, others).slice(0, 8)
      yield* eventually(poolsEqual(node, neighbours))
      yield* eventually(Effect.map(node.connectivity.randomPeers, (random) => random.length === 4))
      const bucketOf = (id: NodeId.NodeId) => NodeId.bucketIndex(me!.nodeId, id)
      const candidateBuckets = Array.from(
        new Set(others.filter((o) => !neighbours.includes(o)).map((o) => bucketOf(o.nodeId)))
      ).sort((a, b) => a - b)
      expect(candidateBuckets.length).toBeGreaterThanOrEqual(4)
      // a uniform draw of 4 from these 52 peers rarely lands one in each of the four farthest buckets
      const random = yield* node.connectivity.randomPeers
      expect(random.map(bucketOf).sort((a, b) => a - b)).toEqual(candidateBuckets.slice(0, 4))
    }).pipe(Effect.provide(shared), Effect.withRandom(Random.make(29))))

  it.scoped("new peers from network discovery keep the random members that still fit; only the buckets they open are drawn (departures §12)", () =>
    Effect.gen(function*() {
      const [me, ...others] = yield* identities(200, 1_100)
      const bucketOf = (i: NodeIdentity.Identity) => NodeId.bucketIndex(me!.nodeId, i.nodeId)
      const inBucket = (b: number) => others.filter((i) => bucketOf(i) === b)
      const nearest = closestTo(me!, others)[0]!
      const far = [...inBucket(0).slice(0, 6), ...inBucket(1).slice(0, 6)]
      const newcomers = [inBucket(2)[0]!, inBucket(3)[0]!]
      yield* Effect.forEach([nearest, ...far, ...newcomers], startRaw)
      const node = yield* startNode(me!, {
        known: [nearest, ...far].map(verifiedRecord),
        config: withConfig({ numNeighbouringNodes: 1, numRandomNodes: 4 })
      })
      yield* eventually(poolsEqual(node, [nearest]))
      yield* eventually(settledWith(node, 5))
      // two buckets known: two slots each
      const before = yield* node.connectivity.randomPeers
      expect(before.map((id) => NodeId.bucketIndex(me!.nodeId, id)).sort()).toEqual([0, 0, 1, 1])

      yield* Effect.forEach(newcomers, (i) => Effect.orDie(node.peers.add(verifiedRecord(i))))
      yield* Context.get(node.context, DhtEvents.DhtEvents).publish(DhtEvent.NetworkDiscoveryPeersAdded({
        roundInfo: { numNewPeers: 2, numDuplicatePeers: 0, numSucceeded: 1, syncPeers: [] }
      }))
      yield* eventually(Effect.map(node.connectivity.randomPeers, (random) => random.length === 4 && newcomers.every(
        (i) => hexes(random).includes(NodeId.toHex(i.nodeId))
      )))
      const after = yield* node.connectivity.randomPeers
      // one member of each old bucket stays; the two new buckets' peers are the only ones dialled
      expect(after.map((id) => NodeId.bucketIndex(me!.nodeId, id)).sort()).toEqual([0, 1, 2, 3])
      expect(hexes(after).filter((id) => hexes(before).includes(id))).toHaveLength(2)
      yield* eventually(settledWith(node, 7))
      yield* settle
      expect((yield* node.connectivity.status).connected).toBe(7)
    }).pipe(Effect.provide(shared), Effect.withRandom(Random.make(12))))

  it.scoped("an unverified candidate takes its slot only once its connection succeeds; one that cannot be reached leaves room for the next", () =>
    Effect.gen(function*() {
      const [me, ...others] = yield* identities(4, 600)
      const byDistance = closestTo(me!, others)
      const [unreachable, unverified, verified] = byDistance
      yield* startRaw(unverified!)
      yield* startRaw(verified!)
      const fresh = (i: NodeIdentity.Identity) =>
        Peer.make({ publicKey: i.publicKey, addresses: [addressOf(i)], features: i.features, source: "Join", nowMs: 0 })
      const node = yield* startNode(me!, {
        known: [fresh(unreachable!), fresh(unverified!), verifiedRecord(verified!)],
        config: withConfig({ numNeighbouringNodes: 2, numRandomNodes: 0 })
      })
      // the verified peer holds a slot at once; the unverified ones are dialled: one fails, one connects
      yield* eventually(poolsEqual(node, [unverified!, verified!]))
      const seen = (yield* eventsOf(node)).filter(DhtEvent.DhtEvent.$is("NeighboursChanged"))
      expect(hexes(seen[0]!.neighbours)).toEqual([NodeId.toHex(verified!.nodeId)])
      expect((yield* Effect.orDie(node.peers.get(unreachable!.nodeId))).isOffline).toBe(true)
      expect((yield* Effect.orDie(node.peers.get(unverified!.nodeId))).isVerified).toBe(true)
    }).pipe(Effect.provide(shared)))

  it.scoped("coming online sends a join through the actor (autoJoin, at most once per joinCooldownInterval) and runs the onOnline hook every time", () =>
    Effect.gen(function*() {
      const [me, other] = yield* identities(2, 700)
      const joins = yield* Ref.make(0)
      const hooked = yield* Ref.make(0)
      const unused = Effect.dieMessage("not used by connectivity")
      const actor = Layer.succeed(DhtActor.DhtActor, DhtActor.DhtActor.of({
        insertDedup: () => unused,
        hitCount: () => unused,
        selectPeers: () => unused,
        getMetadata: () => unused,
        setMetadata: () => unused,
        dialDiscoverPeer: () => unused,
        banPeer: () => unused,
        sendJoin: Ref.update(joins, (n) => n + 1),
        trimDedupCache: unused
      }))
      const hooks = Layer.succeed(Connectivity.ConnectivityHooks, { onOnline: Ref.update(hooked, (n) => n + 1) })
      let raw = yield* startRaw(other!)
      const node = yield* startNode(me!, {
        known: [verifiedRecord(other!)],
        config: withConfig({ autoJoin: true }),
        extra: Layer.merge(actor, hooks)
      })
      yield* node.connectivity.awaitOnline
      yield* eventually(Effect.map(Ref.get(hooked), (n) => n === 1))
      expect(yield* Ref.get(joins)).toBe(1)

      // offline, and back 15 s later: the hook runs again, the join waits for its cooldown
      yield* stop(raw)
      yield* eventually(Effect.map(node.connectivity.isOnline, (online) => !online))
      raw = yield* startRaw(other!)
      yield* TestClock.adjust("15 seconds")
      yield* node.connectivity.awaitOnline
      yield* eventually(Effect.map(Ref.get(hooked), (n) => n === 2))
      expect(yield* Ref.get(joins)).toBe(1)

      // offline until after the cooldown: the next time online sends a join again
      yield* stop(raw)
      yield* eventually(Effect.map(node.connectivity.isOnline, (online) => !online))
      yield* TestClock.adjust("10 minutes")
      yield* startRaw(other!)
      yield* TestClock.adjust("2 minutes")
      yield* node.connectivity.awaitOnline
      yield* eventually(Effect.map(Ref.get(hooked), (n) => n === 3))
      expect(yield* Ref.get(joins)).toBe(2)
    }).pipe(Effect.provide(shared)))

  it.scoped("with minimizeConnections, a connection beyond the pools is closed and a neighbour that drops is replaced, not redialled", () =>
    Effect.gen(function*() {
      const [me, ...others] = yield* identities(4, 900)
      const [a, b, far] = closestTo(me!, others)
      const rawA = yield* startRaw(a!)
      yield* startRaw(b!)
      const node = yield* startNode(me!, {
        known: [verifiedRecord(a!), verifiedRecord(b!)],
        config: withConfig({ numNeighbouringNodes: 2, numRandomNodes: 0, minimizeConnections: true })
      })
      yield* eventually(poolsEqual(node, [a!, b!]))
      yield* eventually(settledWith(node, 2))

      // a farther peer dials in: it fits no pool and its connection is closed
      const farther = yield* startRaw(far!)
      yield* Effect.gen(function*() {
        yield* Effect.orDie((yield* PeerManager.PeerManager).add(verifiedRecord(me!)))
        yield* Effect.orDie((yield* Transport.Transport).dial(me!.nodeId))
      }).pipe(Effect.provide(farther.context))
      yield* eventually(Effect.map(connectedTo(node, far!), (connected) => !connected))
      yield* settle
      expect(yield* connectedTo(node, far!)).toBe(false)
      expect(hexes(yield* node.connectivity.neighbours)).toEqual(hexes([a!.nodeId, b!.nodeId]))

      // a neighbour's connection drops: the next closest takes its slot at once
      yield* Context.get(rawA.context, Transport.Transport).disconnect(me!.nodeId)
      yield* eventually(poolsEqual(node, [b!, far!]))
      yield* eventually(connectedTo(node, far!))
      yield* settle
      expect(yield* connectedTo(node, a!)).toBe(false)
    }).pipe(Effect.provide(shared)))

  it.scoped("closing the scope releases awaitOnline with DhtShutdown", () =>
    Effect.gen(function*() {
      const [me] = yield* identities(1, 800)
      const scope = yield* Scope.make()
      const node = yield* startNode(me!).pipe(Scope.extend(scope))
      const waiting = yield* Effect.fork(node.connectivity.awaitOnline)
      yield* settle
      yield* Scope.close(scope, Exit.void)
      const error = yield* Effect.flip(Fiber.join(waiting))
      expect(error._tag).toBe("DhtShutdown")
    }).pipe(Effect.provide(shared)))
})
