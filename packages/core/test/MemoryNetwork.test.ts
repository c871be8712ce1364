import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MutableRef from "effect/MutableRef"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Crypto from "../src/Crypto.js"
import * as DhtConfig from "../src/DhtConfig.js"
import type { SendFailReason } from "../src/DhtError.js"
import * as DhtMetrics from "../src/DhtMetrics.js"
import * as MemoryNetwork from "../src/MemoryNetwork.js"
import * as NodeId from "../src/NodeId.js"
import * as NodeIdentity from "../src/NodeIdentity.js"
import * as Peer from "../src/Peer.js"
import * as PeerManager from "../src/PeerManager.js"
import * as PeerValidator from "../src/PeerValidator.js"
import {
  type ConnectionEvent,
  type InboundMessage,
  onEvent,
  Transport,
  type TransportService
} from "../src/Transport.js"

// --- a small harness: one hub, nodes built in their own scopes so a test can take one offline ---

interface Node {
  readonly identity: NodeIdentity.Identity
  readonly nodeId: NodeId.NodeId
  readonly address: string
  readonly transport: TransportService
  readonly peers: PeerManager.PeerManagerService
  readonly events: Queue.Queue<ConnectionEvent>
  readonly offline: Effect.Effect<void>
}

const newIdentity = Effect.gen(function*() {
  const crypto = yield* Crypto.Crypto
  const secretKey = yield* crypto.generateSecretKey
  return NodeIdentity.make({
    secretKey,
    publicKey: crypto.publicKeyOf(secretKey),
    features: Peer.PeerFeatures.COMMUNICATION_NODE
  })
})

let counter = 0

/** A delivery handed to a test's `schedule` hook: the arrival itself, and as an Effect on the test's clock. */
interface Scheduled {
  readonly at: number
  readonly arrival: MemoryNetwork.Arrival
  readonly run: Effect.Effect<void>
}

const scheduledOf = (at: number, arrival: MemoryNetwork.Arrival): Scheduled => ({
  at,
  arrival,
  run: Effect.flatMap(Clock.currentTimeMillis, (now) => arrival(now, []) ?? Effect.void)
})

const startNode = (
  hub: Context.Context<MemoryNetwork.MemoryNetworkHub>,
  options: {
    readonly config?: DhtConfig.Config
    readonly claim?: (
      identity: NodeIdentity.Identity,
      address: string
    ) => Effect.Effect<Peer.PeerClaim, never, Crypto.Crypto>
    readonly identity?: NodeIdentity.Identity
  } = {}
) =>
  Effect.gen(function*() {
    const crypto = yield* Crypto.Crypto
    const identity = options.identity ?? (yield* newIdentity)
    const address = `mem://node-${counter++}`
    const claim = options.claim === undefined ? undefined : yield* options.claim(identity, address)
    const scope = yield* Scope.fork(yield* Scope.Scope, ExecutionStrategy.sequential)
    const layer = MemoryNetwork.layer({ address, ...(claim === undefined ? {} : { claim }) }).pipe(
      Layer.provideMerge(PeerManager.layerMemory),
      Layer.provide(NodeIdentity.layer(identity)),
      Layer.provide(Layer.succeedContext(hub)),
      Layer.provide(Layer.succeed(Crypto.Crypto, crypto))
    )
    const context = yield* Layer.buildWithScope(layer, scope).pipe(
      Effect.provideService(DhtConfig.DhtConfig, options.config ?? DhtConfig.localTest)
    )
    const transport = Context.get(context, Transport)
    const events = yield* Queue.unbounded<ConnectionEvent>()
    yield* transport.events.pipe(Stream.runForEach((e) => Queue.offer(events, e)), Effect.forkIn(scope))
    // let the subscriber subscribe: events are delivered from the moment of subscription
    yield* Effect.repeatN(Effect.yieldNow(), 3)
    const node: Node = {
      identity,
      nodeId: identity.nodeId,
      address,
      transport,
      peers: Context.get(context, PeerManager.PeerManager),
      events,
      offline: Scope.close(scope, Exit.void)
    }
    return node
  })

const startHub = (options: MemoryNetwork.HubOptions = {}) => Layer.build(MemoryNetwork.layerHub(options))

/**
 * Two nodes on a hub whose deliveries go to the test's `schedule` hook, `a` connected to `b`: the handshake's entry
 * (one round trip of 5 ms each way, due at 10 ms) already run.
 */
const connectedOnSchedule = (latency: NonNullable<MemoryNetwork.HubOptions["latency"]>) =>
  Effect.gen(function*() {
    const scheduled = MutableRef.make<Array<Scheduled>>([])
    const hub = yield* startHub({
      latency,
      schedule: (at, arrival) => MutableRef.update(scheduled, (xs) => [...xs, scheduledOf(at, arrival)])
    })
    const [a, b] = [yield* startNode(hub), yield* startNode(hub)]
    yield* knows(a, b)
    const dial = yield* Effect.fork(a.transport.dial(b.nodeId))
    yield* Effect.repeatN(Effect.yieldNow(), 5)
    const [handshake] = MutableRef.getAndSet(scheduled, [])
    expect(handshake!.at).toBe(10)
    yield* TestClock.adjust("10 millis")
    yield* handshake!.run
    yield* Fiber.join(dial)
    return { a, b, hub, scheduled }
  })

/** `a` learns `b`'s key and address, as a config seed. */
const knows = (a: Node, b: Node, addresses: ReadonlyArray<string> = [b.address]) =>
  a.peers.add(Peer.make({
    publicKey: b.identity.publicKey,
    addresses,
    features: Peer.PeerFeatures.COMMUNICATION_NODE,
    source: "Config",
    nowMs: 0
  }))

const send = (from: Node, to: Node, bytes: Uint8Array, tag = 0n) =>
  Effect.gen(function*() {
    const reply = yield* Deferred.make<void, SendFailReason>()
    yield* from.transport.send({ peer: to.nodeId, tag, bytes, reply })
    return reply
  })

const frame = (i: number, size = 8) => {
  const bytes = new Uint8Array(size)
  new DataView(bytes.buffer).setUint32(0, i)
  return bytes
}
const frameNumber = (m: InboundMessage) => new DataView(m.bytes.buffer, m.bytes.byteOffset).getUint32(0)

const burst = (a: Node, b: Node, from: number, n: number, size = 8) =>
  Effect.forEach(Array.from({ length: n }, (_, i) => from + i), (i) => send(a, b, frame(i, size)))

const takeN = (node: Node, n: number) =>
  Effect.map(Effect.replicateEffect(Queue.take(node.transport.inbound), n), (ms) => ms)

const nextEvent = (node: Node) => Queue.take(node.events)

const counterValue = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (s) => s.count)
const tagged = (metric: Metric.Metric.Counter<number>, key: string, value: string) => Metric.tagged(metric, key, value)

const replyOf = (reply: Deferred.Deferred<void, SendFailReason>) =>
  Effect.map(Deferred.poll(reply), Option.map((e) => Effect.either(e)))

/** The outcome of a completed send: "sent" or the failure's tag; "pending" when not completed. */
const outcome = (reply: Deferred.Deferred<void, SendFailReason>) =>
  Effect.flatMap(replyOf(reply), (o) =>
    Option.isNone(o)
      ? Effect.succeed("pending")
      : Effect.map(o.value, (e) => e._tag === "Right" ? "sent" : e.left._tag))

const withCrypto = Effect.provide(Crypto.layerNoble())

const MIB = 1024 * 1024

describe("MemoryNetwork: connecting", () => {
  it.scoped("the handshake verifies both peers, exchanges features, addresses and claims, and both see it", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("1 hour")
      const hub = yield* startHub()
      const a = yield* startNode(hub)
      const b = yield* startNode(hub)
      yield* knows(a, b)
      yield* a.peers.update(b.nodeId, (p) => new Peer.Peer({ ...p, offlineAt: 5 }))
      expect(yield* b.peers.exists(a.nodeId)).toBe(false)

      yield* a.transport.dial(b.nodeId)
      const now = 3_600_000
      expect(yield* a.transport.isConnected(b.nodeId)).toBe(true)
      expect(yield* b.transport.isConnected(a.nodeId)).toBe(true)
      expect(yield* a.transport.connectedPeers).toEqual([b.nodeId])

      // the responder learnt the dialler from the handshake alone: key, features, claimed address, verified
      const aAtB = yield* b.peers.get(a.nodeId)
      expect(aAtB.publicKey).toEqual(a.identity.publicKey)
      expect(aAtB.features).toBe(Peer.PeerFeatures.COMMUNICATION_NODE)
      expect(aAtB.verifiedAt).toBe(now)
      expect(aAtB.lastSeen).toBe(now)
      expect(aAtB.claimUpdatedAt).toBe(3600n)
      expect(aAtB.addresses.map((x) => [x.address, x.source])).toEqual([[a.address, "Inbound"]])
      expect(yield* PeerValidator.verifyClaim(a.identity.publicKey, aAtB.addresses[0]!.claim!)).toBe(true)

      // the dialler's record: verified, seen, back online, the dialled address seen
      const bAtA = yield* a.peers.get(b.nodeId)
      expect(bAtA.verifiedAt).toBe(now)
      expect(bAtA.isOffline).toBe(false)
      expect(bAtA.addresses.map((x) => [x.address, x.source, x.lastSeen, x.lastAttempt])).toEqual([
        [b.address, "Config", now, now]
      ])

      const atA = yield* nextEvent(a)
      const atB = yield* nextEvent(b)
      expect(atA._tag === "PeerConnected" && atA.outbound && NodeId.equals(atA.peer.nodeId, b.nodeId)).toBe(true)
      expect(atB._tag === "PeerConnected" && !atB.outbound && atB.peer.verifiedAt === now).toBe(true)
      expect(a.transport.listenAddresses).toEqual([a.address])

      // a second dial reuses the connection
      yield* b.transport.dial(a.nodeId)
      yield* Effect.repeatN(Effect.yieldNow(), 5)
      expect(yield* Queue.size(a.events)).toBe(0)
      expect(yield* Queue.size(b.events)).toBe(0)
    }).pipe(withCrypto))

  it.scoped("bytes flow both ways in order; wire statistics and the frame observer count every frame", () =>
    Effect.gen(function*() {
      const observed = yield* Ref.make<Array<bigint>>([])
      const hubContext = yield* startHub({
        onFrame: (f) => Ref.update(observed, (tags) => [...tags, f.tag])
      })
      const hub = Context.get(hubContext, MemoryNetwork.MemoryNetworkHub)
      const [a, b] = [yield* startNode(hubContext), yield* startNode(hubContext)]
      yield* knows(a, b)
      const [outBefore, inBefore] = [
        yield* counterValue(tagged(DhtMetrics.transportFrames, "direction", "out")),
        yield* counterValue(tagged(DhtMetrics.transportBytes, "direction", "in"))
      ]

      // sent before any connection exists: the first send dials
      const replies = yield* Effect.forEach(
        Array.from({ length: 50 }, (_, i) => i),
        (i) => send(a, b, frame(i), BigInt(i))
      )
      const received = yield* takeN(b, 50)
      expect(received.map(frameNumber)).toEqual(Array.from({ length: 50 }, (_, i) => i))
      expect(received.every((m) => NodeId.equals(m.sourcePeer, a.nodeId))).toBe(true)
      expect(yield* Effect.forEach(replies, outcome)).toEqual(Array(50).fill("sent"))

      const back = yield* send(b, a, frame(7, 100))
      const [reply] = yield* takeN(a, 1)
      expect(frameNumber(reply!)).toBe(7)
      expect(yield* outcome(back)).toBe("sent")

      expect(yield* hub.stats).toEqual({ frames: 51, bytes: 50 * 8 + 100 })
      expect(yield* Ref.get(observed)).toEqual([...Array.from({ length: 50 }, (_, i) => BigInt(i)), 0n])
      expect((yield* counterValue(tagged(DhtMetrics.transportFrames, "direction", "out"))) - outBefore).toBe(51)
      expect((yield* counterValue(tagged(DhtMetrics.transportBytes, "direction", "in"))) - inBefore).toBe(500)
    }).pipe(withCrypto))

  it.scoped("three nodes: each pair has one connection and frames reach the right node", () =>
    Effect.gen(function*() {
      const hub = yield* startHub()
      const [a, b, c] = [yield* startNode(hub), yield* startNode(hub), yield* startNode(hub)]
      yield* knows(a, b)
      yield* knows(a, c)
      yield* knows(c, b)
      yield* Effect.all([send(a, b, frame(1)), send(a, c, frame(2)), send(c, b, frame(3))])
      const atB = yield* takeN(b, 2)
      const atC = yield* takeN(c, 1)
      expect(atB.map((m) => [NodeId.toHex(m.sourcePeer), frameNumber(m)]).sort()).toEqual(
        [[NodeId.toHex(a.nodeId), 1], [NodeId.toHex(c.nodeId), 3]].sort()
      )
      expect(frameNumber(atC[0]!)).toBe(2)
      expect((yield* b.transport.connectedPeers).length).toBe(2)
      // c learnt a from a's inbound connection and can answer without any configuration
      yield* send(c, a, frame(4))
      expect(frameNumber((yield* takeN(a, 1))[0]!)).toBe(4)
      expect((yield* a.transport.connectedPeers).length).toBe(2)
    }).pipe(withCrypto))

  it.scoped("onEvent follows every connection change in order, in the changing step or through a subscription", () =>
    Effect.gen(function*() {
      const hub = yield* startHub()
      const [a, b, c] = [yield* startNode(hub), yield* startNode(hub), yield* startNode(hub)]
      const heard: Array<string> = []
      const followed: Array<string> = []
      const name = (e: ConnectionEvent) => {
        const peer = e._tag === "PeerConnected" ? e.peer.nodeId : e.nodeId
        return `${e._tag}:${[b, c].findIndex((n) => NodeId.equals(n.nodeId, peer))}`
      }
      yield* onEvent(a.transport, (e) => heard.push(name(e)))
      // a transport without `listen`: the same changes, through `subscribe` and a fiber
      const { listen: _, ...plain } = a.transport
      yield* onEvent(plain, (e) => followed.push(name(e)))
      yield* knows(a, b)
      yield* knows(a, c)
      yield* a.transport.dial(b.nodeId)
      // with `listen`, heard by the time the dial returns
      expect(heard).toEqual(["PeerConnected:0"])
      yield* a.transport.dial(c.nodeId)
      yield* a.transport.disconnect(b.nodeId)
      yield* c.offline
      const expected = ["PeerConnected:0", "PeerConnected:1", "PeerDisconnected:0", "PeerDisconnected:1"]
      expect(heard).toEqual(expected)
      yield* Effect.repeatN(Effect.yieldNow(), 10)
      expect(followed).toEqual(expected)
    }).pipe(withCrypto))

  it.scoped("dials every address once, most recently seen first; all failing marks the peer offline", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("1 minute")
      const hub = yield* startHub()
      const [a, b] = [yield* startNode(hub), yield* startNode(hub)]
      yield* knows(a, b, ["mem://never-seen", b.address, "mem://gone"])
      yield* a.peers.update(b.nodeId, (p) =>
        new Peer.Peer({
          ...p,
          addresses: p.addresses.map((x) =>
            x.address === "mem://never-seen"
              ? x
              : new Peer.PeerAddress({ ...x, lastSeen: x.address === b.address ? 10 : 20 })
          )
        }))
      yield* a.transport.dial(b.nodeId)
      const record = yield* a.peers.get(b.nodeId)
      expect(record.addresses.map((x) => [x.address, x.lastAttempt, x.connectionFailures])).toEqual([
        ["mem://never-seen", undefined, 0],
        [b.address, 60_000, 0],
        ["mem://gone", 60_000, 1]
      ])

      // a peer nobody listens for
      const c = yield* startNode(hub)
      yield* knows(a, c, ["mem://nowhere", "mem://nowhere-else"])
      yield* c.offline
      const failed = yield* Effect.flip(a.transport.dial(c.nodeId))
      expect(failed).toMatchObject({ _tag: "DialFailed", attempts: 2 })
      expect((yield* a.peers.get(c.nodeId)).offlineAt).toBe(60_000)
      const reply = yield* send(a, c, frame(1))
      expect(yield* Effect.flip(Deferred.await(reply))).toMatchObject({ _tag: "DialFailed" })
      // one DialFailed event per failed dial (connection events of the first dial aside)
      const seen = yield* Effect.replicateEffect(nextEvent(a), 3)
      const dialFailed = { _tag: "DialFailed", nodeId: c.nodeId }
      expect(seen.filter((e) => e._tag === "DialFailed")).toEqual([dialFailed, dialFailed])

      // unknown peers and ourselves have nothing to dial
      const stranger = NodeId.fromPublicKey(NodeId.PublicKey.make(new Uint8Array(32).fill(1)))
      expect(yield* Effect.flip(a.transport.dial(stranger))).toMatchObject({ _tag: "DialFailed", attempts: 0 })
      expect(yield* Effect.flip(a.transport.dial(a.nodeId))).toMatchObject({ _tag: "DialFailed", attempts: 0 })
    }).pipe(withCrypto))

  it.scoped("banned peers are neither dialled nor accepted", () =>
    Effect.gen(function*() {
      const hub = yield* startHub()
      const [a, b] = [yield* startNode(hub), yield* startNode(hub)]
      yield* knows(a, b)
      yield* knows(b, a)
      yield* a.peers.ban(b.nodeId, 60_000, "test")
      expect(yield* Effect.flip(a.transport.dial(b.nodeId))).toMatchObject({ _tag: "PeerBanned", reason: "test" })
      // b may not dial a either: a refuses a peer it banned
      expect(yield* Effect.flip(b.transport.dial(a.nodeId))).toMatchObject({ _tag: "DialFailed", attempts: 1 })
      expect(yield* a.transport.isConnected(b.nodeId)).toBe(false)
      // bans expire by time
      yield* TestClock.adjust("1 minute")
      yield* b.transport.dial(a.nodeId)
      expect(yield* a.transport.isConnected(b.nodeId)).toBe(true)
    }).pipe(withCrypto))
})

describe("MemoryNetwork: refused handshakes (scenario 52)", () => {
  const forged = (identity: NodeIdentity.Identity, address: string) =>
    Effect.map(
      PeerValidator.signClaim({ ...identity, addresses: [address], features: identity.features }),
      // claims to be a client: the signature no longer covers the claim
      (claim) => new Peer.PeerClaim({ ...claim, features: Peer.PeerFeatures.COMMUNICATION_CLIENT })
    )

  it.scoped("a peer whose claim signature is invalid is refused either way: HandshakeFailed, counted", () =>
    Effect.gen(function*() {
      const hub = yield* startHub()
      const honest = yield* startNode(hub)
      const forger = yield* startNode(hub, { claim: forged })
      const invalidClaims = tagged(DhtMetrics.handshakeFailures, "reason", "InvalidClaim")
      const before = yield* counterValue(invalidClaims)

      yield* knows(honest, forger)
      expect(yield* Effect.flip(honest.transport.dial(forger.nodeId)))
        .toMatchObject({ _tag: "DialFailed", attempts: 1 })
      expect((yield* counterValue(invalidClaims)) - before).toBe(1)
      const record = yield* honest.peers.get(forger.nodeId)
      expect(record.verifiedAt).toBeUndefined()
      expect(record.addresses[0]!.connectionFailures).toBe(1)
      expect(yield* forger.peers.exists(honest.nodeId)).toBe(false)

      yield* knows(forger, honest)
      expect(yield* Effect.flip(forger.transport.dial(honest.nodeId))).toMatchObject({ _tag: "DialFailed" })
      expect((yield* counterValue(invalidClaims)) - before).toBe(2)
      expect(yield* honest.transport.isConnected(forger.nodeId)).toBe(false)
      expect(yield* forger.transport.isConnected(honest.nodeId)).toBe(false)
      // honest saw its own dial fail, and no connection either way
      expect(yield* nextEvent(honest)).toEqual({ _tag: "DialFailed", nodeId: forger.nodeId })
      yield* Effect.repeatN(Effect.yieldNow(), 5)
      expect(yield* Queue.size(honest.events)).toBe(0)
    }).pipe(withCrypto))

  it.scoped("a malformed payload, another identity at the address and an unsupported version are refused too", () =>
    Effect.gen(function*() {
      const hub = yield* startHub()
      const failures = (reason: string) => counterValue(tagged(DhtMetrics.handshakeFailures, "reason", reason))
      const honest = yield* startNode(hub)

      const short = yield* startNode(hub, {
        claim: (identity, address) =>
          Effect.map(
            PeerValidator.signClaim({ ...identity, addresses: [address], features: identity.features }),
            (claim) =>
              new Peer.PeerClaim({
                ...claim,
                identitySignature: new Peer.IdentitySignature({
                  ...claim.identitySignature,
                  signature: claim.identitySignature.signature.subarray(0, 32)
                })
              }, true)
          )
      })
      yield* knows(honest, short)
      const decode = yield* failures("Decode")
      yield* Effect.flip(honest.transport.dial(short.nodeId))
      expect((yield* failures("Decode")) - decode).toBe(1)

      // the address leads to someone else: the dialler checks it reached the key it meant
      const impostor = yield* startNode(hub)
      const victim = yield* startNode(hub)
      yield* knows(honest, victim, [impostor.address])
      const mismatch = yield* failures("IdentityMismatch")
      yield* Effect.flip(honest.transport.dial(victim.nodeId))
      expect((yield* failures("IdentityMismatch")) - mismatch).toBe(1)
      expect(yield* impostor.peers.exists(honest.nodeId)).toBe(false)

      const future = yield* startNode(hub, {
        config: DhtConfig.unsafeMake({ protocolVersion: 2, supportedVersions: [2] }, DhtConfig.localTest)
      })
      yield* knows(honest, future)
      const version = yield* failures("UnsupportedVersion")
      yield* Effect.flip(honest.transport.dial(future.nodeId))
      expect((yield* failures("UnsupportedVersion")) - version).toBe(1)
    }).pipe(withCrypto))
})

describe("MemoryNetwork: a node going offline", () => {
  it.scoped("closing a node's scope disconnects its peers, unregisters it and fails what it had pending", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const gated = yield* Ref.make(false)
      const hub = yield* startHub({
        // holds the writer on a frame, so that later messages stay queued on the connection
        onFrame: () => Effect.flatMap(Ref.get(gated), (g) => g ? Deferred.await(gate) : Effect.void)
      })
      const [a, b] = [yield* startNode(hub), yield* startNode(hub)]
      yield* knows(a, b)
      yield* a.transport.dial(b.nodeId)
      yield* nextEvent(a)
      yield* nextEvent(b)
      const gaugeBefore = (yield* Metric.value(DhtMetrics.connectedPeers)).value

      yield* Ref.set(gated, true)
      const held = yield* send(a, b, frame(1))
      const queued = yield* send(a, b, frame(2))
      yield* Effect.repeatN(Effect.yieldNow(), 3)
      expect([yield* outcome(held), yield* outcome(queued)]).toEqual(["pending", "pending"])

      yield* b.offline
      expect(yield* nextEvent(a)).toEqual({ _tag: "PeerDisconnected", nodeId: b.nodeId })
      expect(yield* a.transport.isConnected(b.nodeId)).toBe(false)
      expect([yield* outcome(held), yield* outcome(queued)]).toEqual(["ConnectionClosed", "ConnectionClosed"])
      expect((yield* Metric.value(DhtMetrics.connectedPeers)).value).toBe(gaugeBefore - 2)
      expect(yield* Context.get(hub, MemoryNetwork.MemoryNetworkHub).addresses).toEqual([a.address])

      // unreachable now: the dial fails and the peer is marked offline
      yield* Ref.set(gated, false)
      expect(yield* Effect.flip(a.transport.dial(b.nodeId))).toMatchObject({ _tag: "DialFailed" })
      expect((yield* a.peers.get(b.nodeId)).isOffline).toBe(true)

      // the offline node's own transport refuses work
      const late = yield* send(b, a, frame(3))
      expect(yield* outcome(late)).toBe("TransportShutdown")
    }).pipe(withCrypto))

  it.scoped("sends waiting for a dial fail TransportShutdown when their node goes offline", () =>
    Effect.gen(function*() {
      const hub = yield* startHub({ latency: () => Effect.succeed(10) })
      const [a, b] = [yield* startNode(hub), yield* startNode(hub)]
      yield* knows(a, b)
      const reply = yield* send(a, b, frame(1))
      yield* Effect.repeatN(Effect.yieldNow(), 3)
      yield* a.offline
      expect(yield* outcome(reply)).toBe("TransportShutdown")
      yield* TestClock.adjust("1 second")
      expect(yield* b.transport.isConnected(a.nodeId)).toBe(false)
      expect(yield* Queue.size(b.transport.inbound)).toBe(0)
    }).pipe(withCrypto))
})

describe("MemoryNetwork: frame limit and flood rule", () => {
  it.scoped("8 MiB is accepted; 8 MiB + 1 bans the sender for 10 minutes and closes the connection (scenario 16)", () =>
    Effect.gen(function*() {
      const hub = yield* startHub()
      const [a, b] = [yield* startNode(hub), yield* startNode(hub)]
      yield* knows(a, b)
      const rejected = yield* counterValue(tagged(DhtMetrics.inboundRejected, "reason", "FrameTooLarge"))

      const exact = yield* send(a, b, new Uint8Array(8 * MIB))
      const [big] = yield* takeN(b, 1)
      expect(big!.bytes.length).toBe(8 * MIB)
      expect(yield* outcome(exact)).toBe("sent")
      yield* nextEvent(a)
      yield* nextEvent(b)

      yield* send(a, b, new Uint8Array(8 * MIB + 1))
      expect(yield* nextEvent(b)).toEqual({ _tag: "PeerDisconnected", nodeId: a.nodeId })
      expect(yield* nextEvent(a)).toEqual({ _tag: "PeerDisconnected", nodeId: b.nodeId })
      const banned = yield* b.peers.get(a.nodeId)
      expect([banned.bannedUntil, banned.bannedReason]).toEqual([10 * 60_000, "FrameTooLarge"])
      expect(yield* Queue.size(b.transport.inbound)).toBe(0)
      expect((yield* counterValue(tagged(DhtMetrics.inboundRejected, "reason", "FrameTooLarge"))) - rejected).toBe(1)
      expect(yield* Effect.flip(a.transport.dial(b.nodeId))).toMatchObject({ _tag: "DialFailed" })
      yield* TestClock.adjust("10 minutes")
      yield* a.transport.dial(b.nodeId)
    }).pipe(withCrypto))

  // the thresholds come from the config: 100 frames here instead of 100,000, so the boundary is cheap to reach
  const flood = DhtConfig.unsafeMake({ floodBanMaxMsgCount: 100, floodBanMaxBytes: 1_000_000 }, DhtConfig.localTest)

  const pair = (config: DhtConfig.Config) =>
    Effect.gen(function*() {
      const hub = yield* startHub()
      const a = yield* startNode(hub)
      const b = yield* startNode(hub, { config })
      yield* knows(a, b)
      yield* a.transport.dial(b.nodeId)
      yield* nextEvent(a)
      yield* nextEvent(b)
      return [a, b] as const
    })

  it.scoped("100 frames within the window pass; the 101st bans the sender and disconnects (scenario 30)", () =>
    Effect.gen(function*() {
      const [a, b] = yield* pair(flood)
      yield* burst(a, b, 0, 100)
      expect((yield* takeN(b, 100)).map(frameNumber)).toEqual(Array.from({ length: 100 }, (_, i) => i))
      expect(yield* b.transport.isConnected(a.nodeId)).toBe(true)
      // 99 seconds later the first 100 frames are still inside the 100 s window
      yield* TestClock.adjust("99 seconds")
      yield* burst(a, b, 100, 1)
      expect(yield* nextEvent(b)).toEqual({ _tag: "PeerDisconnected", nodeId: a.nodeId })
      const banned = yield* b.peers.get(a.nodeId)
      expect([banned.bannedUntil, banned.bannedReason]).toEqual([99_000 + 10 * 60_000, "Flooding"])
      expect(yield* Queue.size(b.transport.inbound)).toBe(0)
    }).pipe(withCrypto))

  it.scoped("frames older than the window no longer count", () =>
    Effect.gen(function*() {
      const [a, b] = yield* pair(flood)
      yield* burst(a, b, 0, 100)
      yield* TestClock.adjust("100 seconds")
      yield* burst(a, b, 100, 100)
      expect((yield* takeN(b, 200)).map(frameNumber)).toEqual(Array.from({ length: 200 }, (_, i) => i))
      expect(yield* b.transport.isConnected(a.nodeId)).toBe(true)
      expect((yield* b.peers.get(a.nodeId)).isBanned(100_000)).toBe(false)
    }).pipe(withCrypto))

  it.scoped("more bytes than floodBanMaxBytes within the window ban too", () =>
    Effect.gen(function*() {
      const [a, b] = yield* pair(DhtConfig.unsafeMake({ floodBanMaxBytes: 1_000 }, DhtConfig.localTest))
      yield* burst(a, b, 0, 2, 500)
      expect((yield* takeN(b, 2)).length).toBe(2)
      yield* burst(a, b, 2, 1, 4)
      expect(yield* nextEvent(b)).toEqual({ _tag: "PeerDisconnected", nodeId: a.nodeId })
      expect((yield* b.peers.get(a.nodeId)).bannedReason).toBe("Flooding")
    }).pipe(withCrypto))
})

describe("MemoryNetwork: bounded queues", () => {
  it.scoped("the 101st message queued for one peer fails QueueFull; the 100 before it go out in order", () =>
    Effect.gen(function*() {
      // a handshake takes a 20 ms round trip: messages queue meanwhile
      const hub = yield* startHub({ latency: () => Effect.succeed(10) })
      const [a, b] = [yield* startNode(hub), yield* startNode(hub)]
      yield* knows(a, b)
      const replies = yield* Effect.forEach(Array.from({ length: 101 }, (_, i) => i), (i) => send(a, b, frame(i)))
      expect(yield* outcome(replies[100]!)).toBe("QueueFull")
      expect(yield* outcome(replies[0]!)).toBe("pending")
      yield* TestClock.adjust("20 millis")
      expect(yield* Effect.forEach(replies.slice(0, 100), outcome)).toEqual(Array(100).fill("sent"))
      yield* TestClock.adjust("10 millis")
      expect((yield* takeN(b, 100)).map(frameNumber)).toEqual(Array.from({ length: 100 }, (_, i) => i))
    }).pipe(withCrypto))

  it.scoped("a full inbox stops the connection's reader; its own queue then sheds, counted where=connection", () =>
    Effect.gen(function*() {
      const hub = yield* startHub()
      const a = yield* startNode(hub)
      const config = DhtConfig.unsafeMake({ inboundQueueCapacity: 10 }, DhtConfig.localTest)
      const b = yield* startNode(hub, { config })
      yield* knows(a, b)
      const shed = tagged(DhtMetrics.inboundShed, "where", "connection")
      const before = yield* counterValue(shed)
      const total = 1_020
      // in rounds of 100, each written before the next, so that no send meets a full outbound queue
      for (let round = 0; round < total / 100; round++) {
        const n = Math.min(100, total - round * 100)
        yield* Effect.forEach(yield* burst(a, b, round * 100, n), Deferred.await)
      }
      const dropped = (yield* counterValue(shed)) - before
      // 10 in the inbox, 1 held by the reader, 1,000 in the connection's queue: the rest is shed
      expect(dropped).toBeGreaterThanOrEqual(total - 1_011)
      const delivered = (yield* takeN(b, total - dropped)).map(frameNumber)
      expect(delivered.every((n, i) => i === 0 || n > delivered[i - 1]!)).toBe(true)
      expect(delivered.slice(0, 10)).toEqual(Array.from({ length: 10 }, (_, i) => i))
      expect(yield* Queue.size(b.transport.inbound)).toBe(0)
    }).pipe(withCrypto))
})

describe("MemoryNetwork: screens", () => {
  it.scoped("a screen sees each frame and its sender's key as it arrives; what it refuses is never queued", () =>
    Effect.gen(function*() {
      const hub = yield* startHub()
      const [a, b] = [yield* startNode(hub), yield* startNode(hub)]
      yield* knows(a, b)
      const seen: Array<[number, string]> = []
      const screens = yield* Scope.fork(yield* Scope.Scope, ExecutionStrategy.sequential)
      const install = b.transport.screen
      if (install === undefined) return yield* Effect.dieMessage("MemoryNetwork offers screens")
      yield* install((m, sender) => {
        seen.push([frameNumber(m), NodeId.toHex(sender)])
        return frameNumber(m) % 2 === 0
      }).pipe(Scope.extend(screens))

      yield* Effect.forEach(yield* burst(a, b, 0, 20), Deferred.await)
      expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => [i, NodeId.toHex(a.identity.publicKey)]))
      expect((yield* takeN(b, 10)).map(frameNumber)).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18])
      expect(yield* Queue.size(b.transport.inbound)).toBe(0)

      // a second screen: a frame must pass both
      yield* install((m) => frameNumber(m) % 4 !== 0).pipe(Scope.extend(screens))
      yield* Effect.forEach(yield* burst(a, b, 20, 8), Deferred.await)
      expect((yield* takeN(b, 2)).map(frameNumber)).toEqual([22, 26])
      expect(yield* Queue.size(b.transport.inbound)).toBe(0)

      // both leave with their scope
      yield* Scope.close(screens, Exit.void)
      yield* Effect.forEach(yield* burst(a, b, 40, 3), Deferred.await)
      expect((yield* takeN(b, 3)).map(frameNumber)).toEqual([40, 41, 42])
      expect(seen.length).toBe(28)

      // a screen that throws lets the frame go on, and the connection lives
      yield* install(() => {
        throw new Error("a broken screen")
      })
      yield* Effect.forEach(yield* burst(a, b, 50, 2), Deferred.await)
      expect((yield* takeN(b, 2)).map(frameNumber)).toEqual([50, 51])
    }).pipe(withCrypto))
})

describe("MemoryNetwork: latency and the simulation's hooks", () => {
  it.scoped("with latency each link delivers FIFO at max(previous delivery, now + latency), on the TestClock", () =>
    Effect.gen(function*() {
      const draws = yield* Ref.make([30, 10, 20])
      const inFlight = MutableRef.make(0)
      const hub = yield* startHub({
        latency: (link) =>
          link.handshake ? Effect.succeed(0) : Ref.modify(draws, ([next, ...rest]) => [next ?? 0, rest] as const),
        inFlight: {
          increment: () => MutableRef.update(inFlight, (n) => n + 1),
          decrement: () => MutableRef.update(inFlight, (n) => n - 1)
        }
      })
      const [a, b] = [yield* startNode(hub), yield* startNode(hub)]
      yield* knows(a, b)
      yield* a.transport.dial(b.nodeId)
      const first = yield* send(a, b, frame(1))
      const second = yield* send(a, b, frame(2))
      yield* Effect.all([Deferred.await(first), Deferred.await(second)])
      expect(MutableRef.get(inFlight)).toBe(2)

      // the second frame drew 10 ms but may not overtake the first
      yield* TestClock.adjust("29 millis")
      expect(yield* Queue.size(b.transport.inbound)).toBe(0)
      yield* TestClock.adjust("1 millis")
      const [one, two] = yield* takeN(b, 2)
      expect([frameNumber(one!), one!.receivedAt, frameNumber(two!), two!.receivedAt]).toEqual([1, 30, 2, 30])
      expect(MutableRef.get(inFlight)).toBe(0)

      yield* Deferred.await(yield* send(a, b, frame(3)))
      yield* TestClock.adjust("19 millis")
      expect(yield* Queue.size(b.transport.inbound)).toBe(0)
      yield* TestClock.adjust("1 millis")
      const [three] = yield* takeN(b, 1)
      expect([frameNumber(three!), three!.receivedAt]).toEqual([3, 50])
    }).pipe(withCrypto))

  it.scoped("a schedule hook receives every pending delivery instead of a fiber, in FIFO order per link", () =>
    Effect.gen(function*() {
      const { a, b, scheduled } = yield* connectedOnSchedule((link) =>
        Effect.succeed(link.handshake ? 5 : 40 - 10 * Number(link.size % 4))
      )
      // sizes 8, 9, 10 draw 40, 30, 20 ms
      yield* Effect.forEach([8, 9, 10], (size, i) => Effect.flatMap(send(a, b, frame(i, size)), Deferred.await))
      const entries = MutableRef.get(scheduled)
      expect(entries.map((e) => e.at)).toEqual([50, 50, 50])
      expect(yield* Queue.size(b.transport.inbound)).toBe(0)
      yield* TestClock.adjust("40 millis")
      // each arrival is a plain function: a frame that reaches the inbox leaves nothing to run
      const left = entries.map((e) => e.arrival(50, []))
      expect(left).toEqual([undefined, undefined, undefined])
      expect((yield* takeN(b, 3)).map(frameNumber)).toEqual([0, 1, 2])
    }).pipe(withCrypto))

  it.scoped("with a schedule hook, a send never overtakes the frames queued for the writer before it", () =>
    Effect.gen(function*() {
      const scheduled = MutableRef.make<Array<Scheduled>>([])
      const hub = yield* startHub({
        latency: () => Effect.succeed(5),
        schedule: (at, arrival) => MutableRef.update(scheduled, (xs) => [...xs, scheduledOf(at, arrival)])
      })
      const [a, b] = [yield* startNode(hub), yield* startNode(hub)]
      yield* knows(a, b)
      // sent while the dial is in flight: they wait in the connection's queue for its writer
      const early = yield* Effect.forEach([0, 1, 2], (i) => send(a, b, frame(i)))
      yield* Effect.repeatN(Effect.yieldNow(), 5)
      const [handshake] = MutableRef.getAndSet(scheduled, [])
      yield* TestClock.adjust("10 millis")
      yield* handshake!.run
      // sent the moment the connection is up, before the writer has written what was queued
      const late = yield* Effect.forEach([3, 4], (i) => send(a, b, frame(i)))
      yield* Effect.forEach([...early, ...late], Deferred.await)
      yield* TestClock.adjust("10 millis")
      yield* Effect.forEach(MutableRef.get(scheduled), (e) => e.run)
      expect((yield* takeN(b, 5)).map(frameNumber)).toEqual([0, 1, 2, 3, 4])
      // and once nothing waits, frames are written in the sender's step, still in order
      MutableRef.set(scheduled, [])
      const direct = yield* Effect.forEach([5, 6, 7], (i) => send(a, b, frame(i)))
      expect(yield* Effect.forEach(direct, outcome)).toEqual(["sent", "sent", "sent"])
      yield* TestClock.adjust("10 millis")
      yield* Effect.forEach(MutableRef.get(scheduled), (e) => e.run)
      expect((yield* takeN(b, 3)).map(frameNumber)).toEqual([5, 6, 7])
      // the answering side never dialled and has no writer of its own: its sends are written in its own steps
      MutableRef.set(scheduled, [])
      const back = yield* Effect.forEach([8, 9], (i) => send(b, a, frame(i)))
      expect(yield* Effect.forEach(back, outcome)).toEqual(["sent", "sent"])
      yield* TestClock.adjust("10 millis")
      yield* Effect.forEach(MutableRef.get(scheduled), (e) => e.run)
      expect((yield* takeN(a, 2)).map(frameNumber)).toEqual([8, 9])
    }).pipe(withCrypto))

  it.scoped("both sides dialling at once keep the smaller NodeId's connection and lose no message (scenario 49)", () =>
    Effect.gen(function*() {
      const hub = yield* startHub({ latency: () => Effect.succeed(10) })
      const [x, y] = [yield* startNode(hub), yield* startNode(hub)]
      const [small, large] = NodeId.compareBytes(x.nodeId, y.nodeId) < 0 ? [x, y] : [y, x]
      yield* knows(small, large)
      yield* knows(large, small)
      // each send dials; the larger NodeId's handshake starts first and completes first (at 20 ms), while the
      // smaller's (5 ms to 25 ms) is still in flight: the larger must wait for it rather than keep its own
      const fromLarge = yield* Effect.forEach([0, 1, 2], (i) => send(large, small, frame(i)))
      yield* TestClock.adjust("5 millis")
      const fromSmall = yield* Effect.forEach([10, 11, 12], (i) => send(small, large, frame(i)))
      yield* TestClock.adjust("15 millis")
      expect(yield* large.transport.isConnected(small.nodeId)).toBe(false)
      yield* TestClock.adjust("5 millis")
      yield* TestClock.adjust("10 millis")
      expect((yield* takeN(small, 3)).map(frameNumber)).toEqual([0, 1, 2])
      expect((yield* takeN(large, 3)).map(frameNumber)).toEqual([10, 11, 12])
      expect(yield* Effect.forEach([...fromLarge, ...fromSmall], outcome)).toEqual(Array(6).fill("sent"))

      // exactly one connection event each; the kept connection is the one the smaller NodeId dialled
      const atSmall = yield* nextEvent(small)
      const atLarge = yield* nextEvent(large)
      expect(atSmall._tag === "PeerConnected" && atSmall.outbound).toBe(true)
      expect(atLarge._tag === "PeerConnected" && !atLarge.outbound).toBe(true)
      yield* Effect.repeatN(Effect.yieldNow(), 5)
      expect([yield* Queue.size(small.events), yield* Queue.size(large.events)]).toEqual([0, 0])
      expect(yield* small.transport.connectedPeers).toEqual([large.nodeId])
      expect(yield* large.transport.connectedPeers).toEqual([small.nodeId])
    }).pipe(withCrypto))

  it.prop(
    "seededUniformLatency draws whole milliseconds within its bounds, the same sequence for the same seed",
    [FastCheck.integer(), FastCheck.nat(60), FastCheck.nat(60)],
    ([seed, min, extra]) => {
      const key = NodeId.fromPublicKey(NodeId.PublicKey.make(new Uint8Array(32)))
      const link = { from: key, to: key, size: 1, handshake: false }
      const drawsOf = (s: number) => {
        const latency = MemoryNetwork.seededUniformLatency(min, min + extra, s)
        return Array.from({ length: 200 }, () => latency(link))
      }
      const draws = drawsOf(seed)
      expect(draws.every((d) => Number.isInteger(d) && d >= min && d <= min + extra)).toBe(true)
      expect(drawsOf(seed)).toEqual(draws)
      // 200 draws over at most 61 values: nearly all of the range comes up (about 96 % of 61 on average)
      expect(new Set(draws).size).toBeGreaterThanOrEqual(Math.ceil(0.8 * (extra + 1)))
    },
    { fastCheck: { numRuns: 200 } }
  )

  it.scoped("sendAll writes what the sender can in its own step and hands the rest to send, in order", () =>
    Effect.gen(function*() {
      const { a, b, hub, scheduled } = yield* connectedOnSchedule((link) => link.handshake ? 5 : 7)
      const c = yield* startNode(hub)
      yield* knows(a, c)
      const sendAll = a.transport.sendAll
      if (sendAll === undefined) return yield* Effect.dieMessage("a memory transport offers sendAll")
      const to = [b, b, c, b]
      const replies = yield* Effect.forEach(to, () => Deferred.make<void, SendFailReason>())
      yield* sendAll(to.map((node, i) => ({ peer: node.nodeId, tag: 0n, bytes: frame(i), reply: replies[i]! })))
      // written at 10 ms, due at 17: b's three frames; c's waits for its dial
      expect(yield* Effect.forEach(replies, outcome)).toEqual(["sent", "sent", "pending", "sent"])
      const written = MutableRef.getAndSet(scheduled, [])
      expect(written.map((e) => e.at)).toEqual([17, 17, 17])
      yield* TestClock.adjust("7 millis")
      yield* Effect.forEach(written, (e) => e.run)
      expect((yield* takeN(b, 3)).map(frameNumber)).toEqual([0, 1, 3])
      // the dial's handshake, then c's frame
      yield* Effect.repeatN(Effect.yieldNow(), 5)
      const [handshake] = MutableRef.getAndSet(scheduled, [])
      yield* TestClock.adjust("10 millis")
      yield* handshake!.run
      yield* Deferred.await(replies[2]!)
      yield* TestClock.adjust("10 millis")
      yield* Effect.forEach(MutableRef.getAndSet(scheduled, []), (e) => e.run)
      expect((yield* takeN(c, 1)).map(frameNumber)).toEqual([2])
    }).pipe(withCrypto))

  it.scoped("a plain-number latency schedules each frame that many milliseconds after its write", () =>
    Effect.gen(function*() {
      const { a, b, scheduled } = yield* connectedOnSchedule((link) => link.handshake ? 5 : 7 + link.size)
      // written at 10 ms: 8 bytes arrive at 25, 10 bytes at 27
      yield* Effect.forEach([8, 10], (size, i) => Effect.flatMap(send(a, b, frame(i, size)), Deferred.await))
      expect(MutableRef.get(scheduled).map((e) => e.at)).toEqual([25, 27])
    }).pipe(withCrypto))

  it.effect("uniformLatency draws whole milliseconds within its bounds from Effect's Random", () =>
    Effect.gen(function*() {
      const latency = MemoryNetwork.uniformLatency(5, 50)
      const key = NodeId.fromPublicKey(NodeId.PublicKey.make(new Uint8Array(32)))
      const draws = yield* Effect.replicateEffect(latency({ from: key, to: key, size: 1, handshake: false }), 500)
      expect(draws.every((d) => Number.isInteger(d) && d >= 5 && d <= 50)).toBe(true)
      expect(new Set(draws).size).toBeGreaterThan(30)
    }))
})
