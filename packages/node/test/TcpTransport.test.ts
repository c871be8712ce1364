import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import type * as DhtError from "@comms-dht/core/DhtError"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import * as Net from "node:net"
import * as NodeCrypto from "../src/Crypto.js"
import * as Dht from "../src/Dht.js"
import * as TcpTransport from "../src/TcpTransport.js"

const crypto = NodeCrypto.layerNode()

const identity = (n: number) =>
  Effect.map(NodeCrypto.makeNode(), (c) => {
    const secretKey = NodeId.SecretKey.make(new Uint8Array(32).fill(n))
    const features = Peer.PeerFeatures.COMMUNICATION_NODE
    return NodeIdentity.make({ secretKey, publicKey: c.publicKeyOf(secretKey), features })
  })

interface Node {
  readonly id: NodeIdentity.Identity
  readonly transport: TcpTransport.TcpTransportService
  readonly peers: PeerManager.PeerManagerService
  readonly address: string
}

/** A transport on 127.0.0.1 with a fresh peer table, living as long as `scope`. */
const start = (
  n: number,
  scope: Scope.Scope,
  options: Partial<TcpTransport.Options> = {},
  config: DhtConfig.Config = DhtConfig.localTest
) =>
  Effect.gen(function*() {
    const id = yield* identity(n)
    const context = yield* Layer.buildWithScope(
      Layer.mergeAll(PeerManager.layerMemory, NodeIdentity.layer(id), crypto, DhtConfig.layer(config)),
      scope
    )
    const transport = yield* TcpTransport.make({ listen: "127.0.0.1:0", ...options }).pipe(
      Effect.provide(context),
      Scope.extend(scope)
    )
    const peers = yield* Effect.provide(PeerManager.PeerManager, context)
    return { id, transport, peers, address: transport.listenAddresses[0]! } satisfies Node
  })

/** `from` learns `to`'s key at `address` (default: its real address). */
const introduce = (from: Node, to: { readonly id: NodeIdentity.Identity }, address: string) =>
  Effect.asVoid(from.peers.add(Peer.make({
    publicKey: to.id.publicKey,
    addresses: [address],
    features: to.id.features,
    source: "Config",
    nowMs: Date.now()
  })))

const bytes = (...values: Array<number>) => Uint8Array.from(values)

const sendTo = (from: Node, to: NodeId.NodeId, payload: Uint8Array) =>
  Effect.gen(function*() {
    const reply = yield* Deferred.make<void, DhtError.SendFailReason>()
    yield* from.transport.send({ peer: to, tag: 0n, bytes: payload, reply })
    return yield* Deferred.await(reply)
  })

const counter = (metric: Metric.Metric.Counter<number>, key: string, value: string) =>
  Effect.map(Metric.value(Metric.tagged(metric, key, value)), (s) => s.count)

/** Polls a live condition (real sockets) until it holds, for at most 5 s. */
const eventually = <E, R>(condition: Effect.Effect<boolean, E, R>) =>
  condition.pipe(
    Effect.repeat({ schedule: Schedule.spaced("10 millis"), until: (ok) => ok }),
    Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => "condition not reached in 5 s" })
  )

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")

describe("TcpTransport", () => {
  it.scopedLive("two transports handshake and exchange frames both ways, reusing one connection", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const a = yield* start(1, scope)
      const b = yield* start(2, scope)
      expect(a.address).toMatch(/^tcp:\/\/127\.0\.0\.1:[1-9][0-9]*$/)
      expect(a.address).toBe(`tcp://127.0.0.1:${a.transport.address.port}`)
      const connectedAtB = yield* b.transport.events.pipe(Stream.take(1), Stream.runCollect, Effect.fork)
      yield* Effect.yieldNow()
      yield* introduce(a, b, b.address)

      yield* sendTo(a, b.id.nodeId, bytes(1, 2, 3))
      const first = yield* Queue.take(b.transport.inbound)
      expect(Array.from(first.bytes)).toEqual([1, 2, 3])
      expect(hex(first.sourcePeer)).toBe(hex(a.id.nodeId))

      // the responder learnt the dialler from the handshake: verified, with its claimed address
      const known = yield* b.peers.get(a.id.nodeId)
      expect(known.isVerified).toBe(true)
      expect(known.addresses.map((x) => x.address)).toContain(a.address)
      const [event] = Chunk.toReadonlyArray(yield* Fiber.join(connectedAtB))
      expect(event?._tag).toBe("PeerConnected")

      // back the other way, and a frame spanning several Noise records (> 65,519 bytes)
      const big = new Uint8Array(300_000).map((_, i) => i & 0xff)
      yield* sendTo(b, a.id.nodeId, bytes(9))
      yield* sendTo(b, a.id.nodeId, big)
      expect(Array.from((yield* Queue.take(a.transport.inbound)).bytes)).toEqual([9])
      expect(hex((yield* Queue.take(a.transport.inbound)).bytes)).toBe(hex(big))

      expect(yield* a.transport.connectionCount).toBe(1)
      expect(yield* b.transport.connectionCount).toBe(1)
      expect((yield* a.transport.connectedPeers).map(hex)).toEqual([hex(b.id.nodeId)])
      expect(yield* b.transport.isConnected(a.id.nodeId)).toBe(true)
    }))

  it.scopedLive("a screen sees each frame and its sender's key as it is read; what it refuses is not queued", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const a = yield* start(1, scope)
      const b = yield* start(2, scope)
      yield* introduce(a, b, b.address)
      const senders = new Set<string>()
      const screens = yield* Scope.fork(scope, ExecutionStrategy.sequential)
      const install = b.transport.screen
      if (install === undefined) return yield* Effect.dieMessage("TcpTransport offers screens")
      yield* install((m, sender) => {
        senders.add(hex(sender))
        return m.bytes[0] !== 0
      }).pipe(Scope.extend(screens))

      for (const first of [0, 1, 0, 2, 0, 3]) yield* sendTo(a, b.id.nodeId, bytes(first, 9))
      const taken = yield* Effect.replicateEffect(Queue.take(b.transport.inbound), 3)
      expect(taken.map((m) => m.bytes[0])).toEqual([1, 2, 3])
      expect([...senders]).toEqual([hex(a.id.publicKey)])
      expect(yield* Queue.size(b.transport.inbound)).toBe(0)

      yield* Scope.close(screens, Exit.void)
      yield* sendTo(a, b.id.nodeId, bytes(0, 9))
      expect((yield* Queue.take(b.transport.inbound)).bytes[0]).toBe(0)
    }))

  it.scopedLive("a dialler reaching another identity than the one it meant refuses it: HandshakeFailed, counted", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const a = yield* start(1, scope)
      const b = yield* start(2, scope)
      const x = { id: yield* identity(3) } // nobody runs X; its key is announced at B's address
      yield* introduce(a, x, b.address)
      const mismatches = counter(DhtMetrics.handshakeFailures, "reason", "IdentityMismatch")
      const before = yield* mismatches
      const result = yield* Effect.either(a.transport.dial(x.id.nodeId))
      expect(Either.isLeft(result) && result.left._tag).toBe("DialFailed")
      expect((yield* mismatches) - before).toBe(1)
      expect(yield* a.transport.connectedPeers).toEqual([])
      // B never records A: the dialler hung up before its message 3
      yield* eventually(Effect.map(b.transport.connectionCount, (n) => n === 0))
      expect(yield* Effect.either(b.peers.get(a.id.nodeId))).toSatisfy(Either.isLeft)
    }))

  it.scopedLive("a static key not signed by the identity is refused (SPEC §20 scenario 34)", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const a = yield* start(1, scope)
      const b = yield* start(2, scope, { staticSignature: new Uint8Array(64).fill(7) })
      yield* introduce(a, b, b.address)
      const unbound = counter(DhtMetrics.handshakeFailures, "reason", "StaticKeyNotBound")
      const before = yield* unbound
      const result = yield* Effect.either(a.transport.dial(b.id.nodeId))
      expect(Either.isLeft(result) && result.left._tag).toBe("DialFailed")
      expect((yield* unbound) - before).toBe(1)
    }))

  it.scopedLive("64 KiB of random bytes close that connection only; another peer's connection keeps working", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const a = yield* start(1, scope)
      const b = yield* start(2, scope)
      yield* introduce(a, b, b.address)
      yield* sendTo(a, b.id.nodeId, bytes(1))
      yield* Queue.take(b.transport.inbound)

      const garbage = Uint8Array.from(randomBytes(64 * 1024))
      const closed = yield* Effect.async<boolean>((resume) => {
        const socket = Net.createConnection({ host: "127.0.0.1", port: b.transport.address.port }, () => {
          socket.write(garbage)
        })
        socket.on("error", () => undefined)
        socket.on("close", () => resume(Effect.succeed(true)))
        return Effect.sync(() => socket.destroy())
      }).pipe(Effect.timeoutFail({ duration: "7 seconds", onTimeout: () => "garbage connection left open" }))
      expect(closed).toBe(true)

      yield* sendTo(a, b.id.nodeId, bytes(2))
      expect(Array.from((yield* Queue.take(b.transport.inbound)).bytes)).toEqual([2])
      yield* sendTo(b, a.id.nodeId, bytes(3))
      expect(Array.from((yield* Queue.take(a.transport.inbound)).bytes)).toEqual([3])
      expect(yield* b.transport.connectionCount).toBe(1)
    }))

  it.scopedLive("an oversize frame closes the connection and bans its sender Low", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const a = yield* start(1, scope)
      const b = yield* start(2, scope, { maxFrameSize: 1024 })
      yield* introduce(a, b, b.address)
      const rejected = counter(DhtMetrics.inboundRejected, "reason", "FrameTooLarge")
      const before = yield* rejected
      yield* sendTo(a, b.id.nodeId, new Uint8Array(1024)) // at the limit: fine
      expect((yield* Queue.take(b.transport.inbound)).bytes.length).toBe(1024)
      yield* sendTo(a, b.id.nodeId, new Uint8Array(1025))
      yield* eventually(Effect.map(a.transport.isConnected(b.id.nodeId), (c) => !c))
      expect((yield* rejected) - before).toBe(1)
      const banned = yield* b.peers.get(a.id.nodeId)
      expect(banned.isBanned(Date.now())).toBe(true)
      expect(banned.bannedReason).toBe("FrameTooLarge")
      // the ban holds: A's next connection is refused after its handshake
      yield* Effect.either(sendTo(a, b.id.nodeId, bytes(1)))
      expect(yield* Queue.size(b.transport.inbound)).toBe(0)
    }))

  it.scopedLive("a flood of frames bans its sender short and closes the connection", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const a = yield* start(1, scope)
      const flood = DhtConfig.unsafeMake({ floodBanMaxMsgCount: 20 }, DhtConfig.localTest)
      const b = yield* start(2, scope, {}, flood)
      yield* introduce(a, b, b.address)
      const rejected = counter(DhtMetrics.inboundRejected, "reason", "Flooding")
      const before = yield* rejected
      for (let i = 0; i < 21; i++) yield* Effect.either(sendTo(a, b.id.nodeId, bytes(i)))
      yield* eventually(Effect.map(a.transport.isConnected(b.id.nodeId), (c) => !c))
      expect((yield* rejected) - before).toBe(1)
      expect((yield* b.peers.get(a.id.nodeId)).bannedReason).toBe("Flooding")
      // the frames within the limit were delivered
      expect(yield* Queue.size(b.transport.inbound)).toBe(20)
    }))

  it.scopedLive("a connection quiet for the idle timeout is closed", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const a = yield* start(1, scope)
      const b = yield* start(2, scope, { idleTimeout: "300 millis" })
      yield* introduce(a, b, b.address)
      yield* sendTo(a, b.id.nodeId, bytes(1))
      expect(yield* a.transport.isConnected(b.id.nodeId)).toBe(true)
      yield* eventually(Effect.map(a.transport.isConnected(b.id.nodeId), (c) => !c))
      yield* eventually(Effect.map(b.transport.connectionCount, (n) => n === 0))
    }))

  it.live("two transports dialling each other at once end with one connection and lose no frame", () =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => logs.push(String(message))))
      for (let round = 0; round < 3; round++) {
        const scope = yield* Scope.make()
        const [a, b] = yield* Effect.all([start(1, scope), start(2, scope)]).pipe(
          Effect.provide(capture),
          Logger.withMinimumLogLevel(LogLevel.Debug)
        )
        yield* introduce(a, b, b.address)
        yield* introduce(b, a, a.address)
        const n = 100
        const payload = (from: number, i: number) => bytes(from, i)
        // both dial and start sending before either handshake is done
        yield* Effect.all([
          Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => sendTo(a, b.id.nodeId, payload(1, i)), {
            concurrency: "unbounded"
          }),
          Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => sendTo(b, a.id.nodeId, payload(2, i)), {
            concurrency: "unbounded"
          })
        ], { concurrency: 2 })
        const atB = yield* Queue.takeN(b.transport.inbound, n)
        const atA = yield* Queue.takeN(a.transport.inbound, n)
        expect(new Set(Chunk.toReadonlyArray(atB).map((m) => m.bytes[1])).size).toBe(n)
        expect(new Set(Chunk.toReadonlyArray(atA).map((m) => m.bytes[1])).size).toBe(n)
        yield* eventually(Effect.map(
          Effect.all([a.transport.connectionCount, b.transport.connectionCount]),
          ([x, y]) => x === 1 && y === 1
        ))
        // the kept connection carries on both ways
        yield* sendTo(a, b.id.nodeId, bytes(7))
        yield* sendTo(b, a.id.nodeId, bytes(8))
        expect(Array.from((yield* Queue.take(b.transport.inbound)).bytes)).toEqual([7])
        expect(Array.from((yield* Queue.take(a.transport.inbound)).bytes)).toEqual([8])
        yield* Scope.close(scope, Exit.void)
      }
      // the race did happen: each side kept one of two connections (observed on every round)
      expect(logs.filter((m) => m.includes("duplicate tcp connection retired")).length).toBeGreaterThan(0)
    }))

  it.scopedLive("closing the scope closes the server and every socket, and fails what is queued", () =>
    Effect.gen(function*() {
      const handles = () =>
        process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap" || r === "TCPServerWrap").length
      const outer = yield* Scope.make()
      const a = yield* start(1, outer)
      const scope = yield* Scope.make()
      const b = yield* start(2, scope)
      yield* introduce(a, b, b.address)
      const disconnected = yield* a.transport.events.pipe(
        Stream.filter((e) => e._tag === "PeerDisconnected"),
        Stream.take(1),
        Stream.runCollect,
        Effect.fork
      )
      yield* Effect.yieldNow()
      yield* sendTo(a, b.id.nodeId, bytes(1))
      yield* Queue.take(b.transport.inbound)
      const port = b.transport.address.port

      yield* Scope.close(scope, Exit.void)
      yield* Fiber.join(disconnected).pipe(Effect.timeout("5 seconds"))
      const refused = yield* Effect.async<string>((resume) => {
        const socket = Net.createConnection({ host: "127.0.0.1", port })
        socket.on("connect", () => {
          socket.destroy()
          resume(Effect.succeed("connected"))
        })
        socket.on("error", (e) => resume(Effect.succeed(e.message)))
      })
      expect(refused).toMatch(/ECONNREFUSED/)
      const queued = yield* Effect.either(sendTo(b, a.id.nodeId, bytes(2)))
      expect(Either.isLeft(queued) && queued.left._tag).toBe("TransportShutdown")
      // this file's tests run one at a time: once earlier ones' sockets are gone, only A's server is left
      yield* eventually(Effect.sync(() => handles() === 1))
      yield* Scope.close(outer, Exit.void)
      yield* eventually(Effect.sync(() => handles() === 0))
    }))
})

/** A full node over TCP with core's memory storage. */
const dhtNode = (id: NodeIdentity.Identity) =>
  Dht.layer(DhtConfig.localTest).pipe(
    Layer.provideMerge(TcpTransport.layer({ listen: "127.0.0.1:0" })),
    Layer.provideMerge(Layer.mergeAll(
      PeerManager.layerMemory,
      DedupCache.layerMemory,
      MessageStore.layerMemory,
      DhtMetadata.layerMemory,
      NodeIdentity.layer(id),
      DhtConfig.layer(DhtConfig.localTest)
    )),
    Layer.orDie
  )

describe("Dht over TcpTransport", () => {
  it.live("two nodes exchange an encrypted direct message over Noise", () =>
    Effect.gen(function*() {
      const shared = yield* Layer.build(crypto)
      const alice = yield* identity(1)
      const bob = yield* identity(2)
      const a = yield* Layer.build(dhtNode(alice)).pipe(Effect.provide(shared))
      const b = yield* Layer.build(dhtNode(bob)).pipe(Effect.provide(shared))
      const bobDht = yield* Effect.provide(Dht.Dht, b)
      const bobAddress = (yield* Effect.provide(TcpTransport.TcpTransport, b)).listenAddresses[0]!
      const received = yield* bobDht.inbound.pipe(Stream.take(1), Stream.runCollect, Effect.fork)
      yield* Effect.yieldNow()

      yield* Effect.gen(function*() {
        const peers = yield* PeerManager.PeerManager
        yield* peers.add(Peer.make({
          publicKey: bob.publicKey,
          addresses: [bobAddress],
          features: bob.features,
          source: "Config",
          nowMs: Date.now()
        }))
        yield* (yield* Transport.Transport).dial(bob.nodeId)
      }).pipe(Effect.provide(a), Effect.orDie)

      const dht = yield* Effect.provide(Dht.Dht, a)
      const states = yield* OutboundRequester.sendDirectEncrypted(bob.publicKey, 7, new TextEncoder().encode("hi bob"))
        .pipe(
          Effect.flatMap(OutboundRequester.resolve),
          Effect.provideService(OutboundRequester.OutboundRequester, dht.requester)
        )
      const results = yield* states.waitAll
      expect(results.failed).toEqual([])

      const [message] = Chunk.toReadonlyArray(yield* Fiber.join(received).pipe(Effect.timeout("10 seconds")))
      expect(new TextDecoder().decode(message!.body)).toBe("hi bob")
      expect(message!.wasEncrypted).toBe(true)
      expect(Option.map(message!.origin, NodeId.toHex)).toEqual(Option.some(NodeId.toHex(alice.publicKey)))
    }).pipe(Effect.scoped))
})
