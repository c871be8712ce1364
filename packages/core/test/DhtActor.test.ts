import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as BroadcastStrategy from "../src/BroadcastStrategy.js"
import * as DedupCache from "../src/DedupCache.js"
import * as DhtActor from "../src/DhtActor.js"
import * as DhtConfig from "../src/DhtConfig.js"
import * as DhtError from "../src/DhtError.js"
import type * as DhtEvent from "../src/DhtEvent.js"
import * as DhtEvents from "../src/DhtEvents.js"
import * as DhtMetadata from "../src/DhtMetadata.js"
import * as DhtMetrics from "../src/DhtMetrics.js"
import * as Discovery from "../src/Discovery.js"
import * as NodeId from "../src/NodeId.js"
import * as NodeIdentity from "../src/NodeIdentity.js"
import * as Peer from "../src/Peer.js"
import * as PeerManager from "../src/PeerManager.js"
import * as Transport from "../src/Transport.js"

// --- fixtures ---

const key = (i: number, salt = 0): NodeId.PublicKey => {
  const bytes = new Uint8Array(32)
  bytes[0] = salt
  new DataView(bytes.buffer).setUint32(28, i)
  return NodeId.PublicKey.make(bytes)
}

const hash = (i: number, salt = 0): Uint8Array => {
  const bytes = new Uint8Array(32)
  bytes[0] = 0xd0 + salt
  new DataView(bytes.buffer).setUint32(28, i)
  return bytes
}

const peer = (i: number) =>
  Peer.make({
    publicKey: key(i),
    addresses: [`tcp://10.0.0.${i % 250}:18189`],
    features: Peer.PeerFeatures.COMMUNICATION_NODE,
    source: "Join",
    nowMs: 0
  })

const self = NodeIdentity.make({
  secretKey: NodeId.SecretKey.make(new Uint8Array(32).fill(7)),
  publicKey: key(1, 0xee),
  features: Peer.PeerFeatures.COMMUNICATION_NODE
})

const alice = key(1, 0xaa)

const MINUTE = 60_000
const HOUR = 60 * MINUTE

const hex = NodeId.toHex

const counterOf = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => state.count)
const bans = (severity: string, reason: string) =>
  counterOf(Metric.tagged(Metric.tagged(DhtMetrics.peerBans, "severity", severity), "reason", reason))

// Lets forked fibers run up to their next suspension (a queue offer, a Deferred) without moving the clock.
const settle = Effect.repeatN(Effect.yieldNow(), 20)

// --- a transport stub that records dials and disconnects ---

interface TransportOptions {
  readonly dial?: (peer: NodeId.NodeId) => Effect.Effect<void, DhtError.DialError>
  readonly connectedPeers?: Effect.Effect<ReadonlyArray<NodeId.NodeId>>
}

const makeTransport = (options: TransportOptions) =>
  Effect.gen(function*() {
    const dials = yield* Ref.make<ReadonlyArray<string>>([])
    const disconnects = yield* Ref.make<ReadonlyArray<string>>([])
    const inbound = yield* Queue.bounded<Transport.InboundMessage>(1)
    const service = Transport.Transport.of({
      send: () => Effect.void,
      inbound,
      dial: (nodeId) =>
        Ref.update(dials, (all) => [...all, hex(nodeId)]).pipe(
          Effect.zipRight(options.dial?.(nodeId) ?? Effect.void)
        ),
      disconnect: (nodeId) => Ref.update(disconnects, (all) => [...all, hex(nodeId)]),
      isConnected: () => Effect.succeed(false),
      connectedPeers: options.connectedPeers ?? Effect.succeed([]),
      events: Stream.empty,
      subscribe: Queue.unbounded<Transport.ConnectionEvent>(),
      listenAddresses: []
    })
    return { service, dials: Ref.get(dials), disconnects: Ref.get(disconnects) }
  })

// --- the harness: dependencies live in the test's scope, each actor in a scope of its own ---

interface Options extends TransportOptions {
  readonly config?: DhtConfig.Overrides
  readonly peers?: (memory: PeerManager.PeerManagerService) => PeerManager.PeerManagerService
  /** optional services (`Discovery`, `JoinSender`) */
  readonly extra?: Layer.Layer<never>
}

const start = (options: Options = {}) =>
  Effect.gen(function*() {
    const config = DhtConfig.unsafeMake(options.config ?? {})
    const transport = yield* makeTransport(options)
    const peersLayer = options.peers === undefined
      ? PeerManager.layerMemory
      : Layer.effect(PeerManager.PeerManager, Effect.map(PeerManager.makeMemory, options.peers))
    const deps = yield* Layer.build(
      Layer.mergeAll(
        DedupCache.layerMemory,
        DhtMetadata.layerMemory,
        peersLayer,
        DhtEvents.layer,
        Layer.succeed(Transport.Transport, transport.service),
        NodeIdentity.layer(self),
        options.extra ?? Layer.empty
      ).pipe(Layer.provide(DhtConfig.layer(config)))
    )
    const launch = Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
      const context = yield* Layer.buildWithScope(
        DhtActor.layer.pipe(Layer.provide(Layer.succeedContext(deps)), Layer.provide(DhtConfig.layer(config))),
        scope
      )
      return { actor: Context.get(context, DhtActor.DhtActor), stop: Scope.close(scope, Exit.void) }
    })
    const first = yield* launch
    return {
      ...first,
      launch,
      transport,
      dedup: Context.get(deps, DedupCache.DedupCache),
      metadata: Context.get(deps, DhtMetadata.DhtMetadata),
      peers: Context.get(deps, PeerManager.PeerManager),
      events: Context.get(deps, DhtEvents.DhtEvents)
    }
  })

const takeBan = (events: Queue.Dequeue<DhtEvent.DhtEvent>) =>
  Effect.flatMap(Queue.take(events), (event) =>
    event._tag === "PeerBanned"
      ? Effect.succeed(event)
      : Effect.dieMessage(`expected PeerBanned, got ${event._tag}`))

describe("DhtActor", () => {
  it.scoped("answers 10,000 concurrent mixed requests, each once and correctly", () =>
    Effect.gen(function*() {
      const known = Array.from({ length: 20 }, (_, i) => peer(i + 1))
      const h = yield* start({ connectedPeers: Effect.succeed(known.map((p) => p.nodeId)) })
      yield* Effect.forEach(known, (p) => h.peers.add(p), { discard: true })
      // hashes the run only reads: `pre(k)` holds k hits throughout
      const pre = (k: number) => hash(k, 1)
      for (let k = 1; k <= 7; k++) {
        for (let n = 0; n < k; n++) yield* h.dedup.insert(pre(k), alice)
      }
      const stamp = DhtMetadata.encodeMillis(42)
      yield* h.metadata.set("OfflineTimestamp", stamp)

      const answered = yield* Ref.make(0)
      const hitsByHash = new Map<number, Array<number>>()
      const request = (i: number): Effect.Effect<boolean, unknown> => {
        const target = known[i % known.length]!
        switch (i % 6) {
          case 0: {
            const j = Math.floor(i / 6) % 500
            return Effect.map(h.actor.insertDedup(hash(j), alice, HOUR), (result) => {
              if (result._tag !== "Inserted") return false
              const seen = hitsByHash.get(j) ?? []
              seen.push(result.hits)
              hitsByHash.set(j, seen)
              return true
            })
          }
          case 1:
            return Effect.map(h.actor.hitCount(pre((i % 7) + 1)), (hits) => hits === (i % 7) + 1)
          case 2:
            return Effect.map(
              h.actor.selectPeers(BroadcastStrategy.DirectPublicKey({ publicKey: target.publicKey })),
              (ids) => ids.length === 1 && hex(ids[0]!) === hex(target.nodeId)
            )
          case 3:
            return Effect.map(
              h.actor.getMetadata("OfflineTimestamp"),
              (value) => Option.isSome(value) && hex(value.value) === hex(stamp)
            )
          case 4:
            return Effect.as(h.actor.setMetadata("OfflineTimestamp", stamp), true)
          default:
            return Effect.as(h.actor.dialDiscoverPeer(target.publicKey), true)
        }
      }

      const results = yield* Effect.forEach(
        Array.from({ length: 10_000 }, (_, i) => i),
        (i) => Effect.tap(request(i), () => Ref.update(answered, (n) => n + 1)),
        { concurrency: "unbounded" }
      )

      expect(yield* Ref.get(answered)).toBe(10_000)
      expect(results.filter((ok) => !ok).length).toBe(0)
      // every insert was applied exactly once: each hash saw hits 1, 2, …, n, and holds n
      expect(hitsByHash.size).toBe(500)
      for (const [i, seen] of hitsByHash) {
        expect(seen.slice().sort((a, b) => a - b)).toEqual(Array.from({ length: seen.length }, (_, n) => n + 1))
        expect(yield* h.dedup.hitCount(hash(i))).toBe(seen.length)
      }
      // concurrent dials of one key share an attempt
      const dials = yield* h.transport.dials
      expect(dials.length).toBeGreaterThanOrEqual(known.length)
      expect(dials.length).toBeLessThanOrEqual(Math.ceil(10_000 / 6))
    }))

  it.scoped("shutdown fails queued, waiting and in-progress callers with DhtShutdown and writes OfflineTimestamp", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const h = yield* start({
        config: { actorQueueCapacity: 2 },
        // selection reads the connections inline: holding them holds the loop
        connectedPeers: Effect.as(Deferred.await(gate), [])
      })
      yield* h.peers.add(peer(1))
      yield* TestClock.adjust("20 minutes")

      // each caller ends with the tag of its failure, or "answered"
      const outcome = <A, E extends { readonly _tag: string }>(call: Effect.Effect<A, E>) =>
        Effect.fork(Effect.match(call, { onFailure: (e): string => e._tag, onSuccess: () => "answered" }))
      const inProgress = yield* outcome(h.actor.selectPeers(BroadcastStrategy.Flood({ excluded: [] })))
      yield* settle
      // two fill the queue, three wait to offer
      const callers = [
        yield* outcome(h.actor.hitCount(hash(1))),
        yield* outcome(h.actor.getMetadata("OfflineTimestamp")),
        yield* outcome(h.actor.insertDedup(hash(2), alice)),
        yield* outcome(h.actor.dialDiscoverPeer(peer(1).publicKey)),
        yield* outcome(h.actor.setMetadata("OfflineTimestamp", DhtMetadata.encodeMillis(1)))
      ]
      yield* settle
      for (const fiber of [inProgress, ...callers]) expect(yield* Fiber.poll(fiber)).toEqual(Option.none())

      yield* h.stop

      for (const fiber of [inProgress, ...callers]) expect(yield* Fiber.join(fiber)).toBe("DhtShutdown")
      // nothing reached the cache or the metadata after all
      expect(yield* h.dedup.hitCount(hash(2))).toBe(0)
      const stored = yield* h.metadata.get("OfflineTimestamp")
      expect(Option.flatMap(stored, DhtMetadata.decodeMillis)).toEqual(Option.some(20 * MINUTE))
      expect(yield* h.transport.dials).toEqual([])
    }))

  it.scoped("every call after shutdown fails DhtShutdown", () =>
    Effect.gen(function*() {
      const h = yield* start()
      expect(yield* h.actor.hitCount(hash(1))).toBe(0)
      yield* h.stop
      const { actor } = h
      const errors = yield* Effect.all([
        Effect.flip(actor.insertDedup(hash(1), alice)),
        Effect.flip(actor.hitCount(hash(1))),
        Effect.flip(actor.selectPeers(BroadcastStrategy.Flood({ excluded: [] }))),
        Effect.flip(actor.getMetadata("OfflineTimestamp")),
        Effect.flip(actor.setMetadata("OfflineTimestamp", DhtMetadata.encodeMillis(1))),
        Effect.flip(actor.dialDiscoverPeer(alice)),
        Effect.flip(actor.banPeer(alice, "High", "InvalidSignature")),
        Effect.flip(actor.sendJoin),
        Effect.flip(actor.trimDedupCache)
      ])
      expect(errors.map((e) => e._tag)).toEqual(Array.from({ length: 9 }, () => "DhtShutdown"))
    }))

  it.scoped("long jobs run beside the loop, share one attempt per key, and are interrupted at shutdown", () =>
    Effect.gen(function*() {
      const interrupted = yield* Ref.make<ReadonlyArray<string>>([])
      const record = (what: string) => Ref.update(interrupted, (all) => [...all, what])
      const h = yield* start({
        dial: () => Effect.onInterrupt(Effect.never, () => record("dial")),
        extra: Layer.succeed(DhtActor.JoinSender, {
          sendJoin: Effect.onInterrupt(Effect.never, () => record("join"))
        })
      })
      const target = peer(1)
      yield* h.peers.add(target)

      const callers = yield* Effect.forEach(
        [1, 2, 3],
        () => Effect.fork(Effect.flip(h.actor.dialDiscoverPeer(target.publicKey)))
      )
      yield* h.actor.sendJoin
      yield* settle
      // the hanging dial and join do not hold the loop
      expect(yield* h.actor.insertDedup(hash(1), alice)).toEqual(DedupCache.DedupInsertResult.Inserted({ hits: 1 }))
      expect(yield* h.transport.dials).toEqual([hex(target.nodeId)])
      for (const fiber of callers) expect(yield* Fiber.poll(fiber)).toEqual(Option.none())

      yield* h.stop

      for (const fiber of callers) expect((yield* Fiber.join(fiber))._tag).toBe("DhtShutdown")
      expect((yield* Ref.get(interrupted)).slice().sort()).toEqual(["dial", "join"])
    }))

  it.scoped("a finished dial is not reused: the next request dials again", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const h = yield* start({ dial: () => Deferred.await(gate) })
      const target = peer(1)
      yield* h.peers.add(target)
      const first = yield* Effect.forEach([1, 2, 3], () => Effect.fork(h.actor.dialDiscoverPeer(target.publicKey)))
      yield* settle
      expect((yield* h.transport.dials).length).toBe(1)
      yield* Deferred.succeed(gate, undefined)
      for (const fiber of first) yield* Fiber.join(fiber)
      yield* h.actor.dialDiscoverPeer(target.publicKey)
      expect((yield* h.transport.dials).length).toBe(2)
    }))

  it.scoped("dial or discover (SPEC §10.4): known peers are dialled, unknown or unreachable ones discovered", () =>
    Effect.gen(function*() {
      const discovered = yield* Ref.make<ReadonlyArray<string>>([])
      const attempts = yield* Ref.make(HashMap.empty<string, number>())
      const unreachableOnce = peer(2)
      const banned = peer(3)
      const stranger = key(9)
      const discovery = Discovery.Discovery.of({
        discover: (publicKey) =>
          Ref.update(discovered, (all) => [...all, hex(publicKey)]).pipe(
            Effect.as(Peer.make({ publicKey, addresses: [], features: 1, source: "Discovery", nowMs: 0 }))
          ),
        pendingKey: () => Effect.succeedNone,
        handleResponse: () => Effect.succeed(false)
      })
      const h = yield* start({
        dial: (nodeId) =>
          Effect.gen(function*() {
            const n = Option.getOrElse(HashMap.get(yield* Ref.get(attempts), hex(nodeId)), () => 0)
            yield* Ref.update(attempts, HashMap.set(hex(nodeId), n + 1))
            if (hex(nodeId) === hex(banned.nodeId)) {
              return yield* new DhtError.PeerBanned({ nodeId, reason: "InvalidSignature" })
            }
            if (hex(nodeId) === hex(unreachableOnce.nodeId) && n === 0) {
              return yield* new DhtError.DialFailed({ attempts: 1 })
            }
          }),
        extra: Layer.succeed(Discovery.Discovery, discovery)
      })
      yield* Effect.forEach([peer(1), unreachableOnce, banned], (p) => h.peers.add(p), { discard: true })

      yield* h.actor.dialDiscoverPeer(peer(1).publicKey)
      expect(yield* Ref.get(discovered)).toEqual([])

      yield* h.actor.dialDiscoverPeer(unreachableOnce.publicKey)
      expect(yield* Ref.get(discovered)).toEqual([hex(unreachableOnce.publicKey)])

      yield* h.actor.dialDiscoverPeer(stranger)
      expect(yield* Ref.get(discovered)).toEqual([hex(unreachableOnce.publicKey), hex(stranger)])

      expect((yield* Effect.flip(h.actor.dialDiscoverPeer(banned.publicKey)))._tag).toBe("PeerBanned")
      expect((yield* Effect.flip(h.actor.dialDiscoverPeer(self.publicKey)))._tag).toBe("CannotDiscoverThisNode")
      expect((yield* Ref.get(discovered)).length).toBe(2)
      expect(yield* h.transport.dials).toEqual([
        hex(peer(1).nodeId),
        hex(unreachableOnce.nodeId),
        hex(unreachableOnce.nodeId),
        hex(NodeId.fromPublicKey(stranger)),
        hex(banned.nodeId)
      ])
    }))

  it.scoped("without a Discovery service an unknown key fails DialFailed", () =>
    Effect.gen(function*() {
      const h = yield* start()
      const error = yield* Effect.flip(h.actor.dialDiscoverPeer(key(9)))
      expect(error).toEqual(new DhtError.DialFailed({ attempts: 0 }))
      expect(yield* h.transport.dials).toEqual([])
    }))

  it.scoped("trims dead dedup entries every dedupCacheTrimInterval (SPEC §8.2) and a full cache accepts again", () =>
    Effect.gen(function*() {
      const h = yield* start({ config: { dedupCacheCapacity: 3 } })
      const trimmed = counterOf(DhtMetrics.dedupTrimmed)
      const before = yield* trimmed
      const inserted = DedupCache.DedupInsertResult.Inserted({ hits: 1 })

      for (const i of [1, 2, 3]) expect(yield* h.actor.insertDedup(hash(i), alice, MINUTE)).toEqual(inserted)
      // full of live entries: nothing is evicted
      expect(yield* h.actor.insertDedup(hash(4), alice, 20 * MINUTE)).toEqual(DedupCache.DedupInsertResult.Full())

      yield* TestClock.adjust("4 minutes")
      // dead but not yet trimmed; a dead entry makes room for a new one
      expect(yield* h.dedup.size).toBe(3)
      expect(yield* h.actor.insertDedup(hash(4), alice, 20 * MINUTE)).toEqual(inserted)
      expect(yield* h.dedup.size).toBe(3)
      expect((yield* trimmed) - before).toBe(0)

      yield* TestClock.adjust("1 minute")
      expect(yield* h.dedup.size).toBe(1)
      expect((yield* trimmed) - before).toBe(2)
      expect(yield* h.actor.hitCount(hash(4))).toBe(1)
      expect(yield* h.actor.hitCount(hash(2))).toBe(0)

      expect(yield* h.actor.insertDedup(hash(5), alice, 7 * MINUTE)).toEqual(inserted)
      expect(yield* h.actor.insertDedup(hash(6), alice, 20 * MINUTE)).toEqual(inserted)
      expect(yield* h.actor.insertDedup(hash(7), alice, 20 * MINUTE)).toEqual(DedupCache.DedupInsertResult.Full())

      yield* TestClock.adjust("4 minutes")
      expect(yield* h.dedup.size).toBe(3)
      yield* TestClock.adjust("1 minute")
      // the second trim, at 10 minutes, took the entry that died at 7
      expect(yield* h.dedup.size).toBe(2)
      expect((yield* trimmed) - before).toBe(3)
      expect(yield* h.actor.insertDedup(hash(7), alice, 20 * MINUTE)).toEqual(inserted)
    }))

  it.scoped("bans (SPEC §11.4): High 2 h, Low/Medium 10 min, disconnect, PeerBanned, metric, never shortened", () =>
    Effect.gen(function*() {
      const [a, b, c] = [peer(1), peer(2), peer(3)]
      const h = yield* start()
      yield* Effect.forEach([a, b, c], (p) => h.peers.add(p), { discard: true })
      const events = yield* h.events.subscribe
      const highBefore = yield* bans("High", "InvalidSignature")
      const lowBefore = yield* bans("Low", "Flooding")
      const direct = (p: Peer.Peer) =>
        h.actor.selectPeers(BroadcastStrategy.DirectPublicKey({ publicKey: p.publicKey }))

      yield* TestClock.adjust("1 minute")
      yield* h.actor.banPeer(a.publicKey, "High", "InvalidSignature")
      yield* h.actor.banPeer(b.publicKey, "Low", "Flooding")
      yield* h.actor.banPeer(c.publicKey, "Medium", "PeerValidationError")
      // commands run in order: the bans are in force for the selections queued after them
      expect(yield* direct(a)).toEqual([])
      expect(yield* direct(b)).toEqual([])
      expect(yield* direct(c)).toEqual([])

      const [banA, banB, banC] = [yield* takeBan(events), yield* takeBan(events), yield* takeBan(events)]
      expect([hex(banA.publicKey), banA.until, banA.severity, banA.reason])
        .toEqual([hex(a.publicKey), MINUTE + 2 * HOUR, "High", "InvalidSignature"])
      expect([hex(banB.publicKey), banB.until, banB.severity, banB.reason])
        .toEqual([hex(b.publicKey), MINUTE + 10 * MINUTE, "Low", "Flooding"])
      expect([hex(banC.publicKey), banC.until, banC.severity])
        .toEqual([hex(c.publicKey), MINUTE + 10 * MINUTE, "Medium"])
      expect(yield* h.transport.disconnects).toEqual([a, b, c].map((p) => hex(p.nodeId)))
      expect((yield* bans("High", "InvalidSignature")) - highBefore).toBe(1)
      expect((yield* bans("Low", "Flooding")) - lowBefore).toBe(1)

      // a shorter ban leaves the longer one in place
      yield* h.actor.banPeer(a.publicKey, "Low", "Flooding")
      const again = yield* takeBan(events)
      expect([again.until, again.severity]).toEqual([MINUTE + 2 * HOUR, "Low"])
      expect((yield* h.peers.get(a.nodeId)).bannedUntil).toBe(MINUTE + 2 * HOUR)

      // expiry is by the clock
      yield* TestClock.adjust(10 * MINUTE - 1)
      expect(yield* direct(b)).toEqual([])
      yield* TestClock.adjust(1)
      expect(yield* direct(b)).toEqual([b.nodeId])
      expect(yield* direct(c)).toEqual([c.nodeId])
      expect(yield* direct(a)).toEqual([])
      yield* TestClock.adjust(2 * HOUR - 10 * MINUTE)
      expect(yield* direct(a)).toEqual([a.nodeId])
    }))

  it.scoped("a ban of an unknown key or of this node is ignored", () =>
    Effect.gen(function*() {
      const h = yield* start()
      const events = yield* h.events.subscribe
      yield* h.actor.banPeer(key(77), "High", "InvalidSignature")
      yield* h.actor.banPeer(self.publicKey, "High", "InvalidSignature")
      expect(yield* h.actor.hitCount(hash(1))).toBe(0)
      expect(yield* Queue.size(events)).toBe(0)
      expect(yield* h.transport.disconnects).toEqual([])
    }))

  it.scoped("peer selection: an unreadable table answers [], all-excluded addresses fail PeerSelectionFailed", () =>
    Effect.gen(function*() {
      const known = [peer(1), peer(2)]
      const broken = yield* start({
        connectedPeers: Effect.succeed(known.map((p) => p.nodeId)),
        peers: (memory) => {
          const gone = new DhtError.StoreError({ reason: "Io", message: "disk gone" })
          return { ...memory, all: gone, getMany: () => gone }
        }
      })
      yield* Effect.forEach(known, (p) => broken.peers.add(p), { discard: true })
      expect(yield* broken.actor.selectPeers(BroadcastStrategy.Flood({ excluded: [] }))).toEqual([])

      const excluding = yield* start({
        config: { excludedDialAddresses: ["tcp://10.0.0.*:*"] },
        connectedPeers: Effect.succeed(known.map((p) => p.nodeId))
      })
      yield* Effect.forEach(known, (p) => excluding.peers.add(p), { discard: true })
      const error = yield* Effect.flip(excluding.actor.selectPeers(BroadcastStrategy.Flood({ excluded: [] })))
      expect(error._tag).toBe("PeerSelectionFailed")
      // the loop carries on
      expect(yield* excluding.actor.hitCount(hash(1))).toBe(0)
    }))

  it.scoped("isOrigin changes Propagate's fallback: an origin hands on, a forwarder stops", () =>
    Effect.gen(function*() {
      const known = [peer(1), peer(2), peer(3)]
      const h = yield* start({ connectedPeers: Effect.succeed(known.map((p) => p.nodeId)) })
      yield* Effect.forEach(known, (p) => h.peers.add(p), { discard: true })
      // peers without MESSAGE_PROPAGATION are never "closer": only the origin fallback can pick them
      const strategy = BroadcastStrategy.Propagate({
        destination: { _tag: "PublicKey", publicKey: key(50) },
        excluded: []
      })
      expect((yield* h.actor.selectPeers(strategy)).length).toBe(2)
      expect(yield* h.actor.selectPeers(strategy, { isOrigin: false })).toEqual([])
    }))

  it.scoped("metadata round-trips through the actor; a restart logs how long the node was offline", () =>
    Effect.gen(function*() {
      const h = yield* start()
      yield* h.actor.setMetadata("OfflineTimestamp", DhtMetadata.encodeMillis(5))
      expect(Option.map(yield* h.actor.getMetadata("OfflineTimestamp"), DhtMetadata.decodeMillis))
        .toEqual(Option.some(Option.some(5)))

      yield* TestClock.adjust("30 minutes")
      yield* h.stop
      yield* TestClock.adjust("15 minutes")

      const lines: Array<{ readonly message: unknown; readonly annotations: HashMap.HashMap<string, unknown> }> = []
      const capture = Logger.make(({ annotations, message }) => {
        lines.push({ message, annotations })
      })
      const restarted = yield* h.launch.pipe(Effect.provide(Logger.add(capture)))
      const line = lines.find((l) => JSON.stringify(l.message).includes("offline since"))
      expect(line).toBeDefined()
      expect(HashMap.get(line!.annotations, "offlineSince")).toEqual(Option.some(30 * MINUTE))
      expect(HashMap.get(line!.annotations, "offlineForMs")).toEqual(Option.some(15 * MINUTE))
      expect(yield* restarted.actor.hitCount(hash(1))).toBe(0)
    }))

  it.scoped("SendJoin goes through the JoinSender and publishes JoinSent; without one it is ignored", () =>
    Effect.gen(function*() {
      const sent = yield* Ref.make(0)
      const h = yield* start({
        extra: Layer.succeed(DhtActor.JoinSender, { sendJoin: Ref.update(sent, (n) => n + 1) })
      })
      const events = yield* h.events.subscribe
      const before = yield* counterOf(DhtMetrics.joinsSent)
      yield* h.actor.sendJoin
      expect((yield* Queue.take(events))._tag).toBe("JoinSent")
      expect(yield* Ref.get(sent)).toBe(1)
      expect((yield* counterOf(DhtMetrics.joinsSent)) - before).toBe(1)

      const failing = yield* start({
        extra: Layer.succeed(DhtActor.JoinSender, { sendJoin: Effect.fail(new DhtError.NoMessagesQueued()) })
      })
      const failingEvents = yield* failing.events.subscribe
      yield* failing.actor.sendJoin
      yield* settle
      expect(yield* Queue.size(failingEvents)).toBe(0)

      const bare = yield* start()
      yield* bare.actor.sendJoin
      expect(yield* bare.actor.hitCount(hash(1))).toBe(0)
    }))
})
