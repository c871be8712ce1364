/**
 * TCP transport benchmarks over 127.0.0.1. `tcp.handshake`: a dial to a known peer — TCP connect, the Noise XX
 * handshake with both payloads validated (identity signature, static-key binding, claim), the peer recorded — then
 * a disconnect, so each dial is a fresh handshake; bound: the three Noise messages alone in memory on the same
 * `node:crypto` backend (`tcp.noise-only`), so the ratio is the share of a connection's cost that is the Noise
 * arithmetic. `tcp.encrypted-direct`: one encrypted direct message (1 KiB body) between two `Dht` nodes, from
 * `send` until the receiver's `Dht.inbound` yields it, Noise records included; bound: the same round on two `Dht`
 * nodes over `MemoryNetwork` (`tcp.memory-direct`), so the ratio is what TCP and Noise add to a delivery.
 */
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as Noise from "@comms-dht/core/Noise"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import * as NodeCrypto from "@comms-dht/node/Crypto"
import * as Dht from "@comms-dht/node/Dht"
import * as TcpTransport from "@comms-dht/node/TcpTransport"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Task } from "./main.js"

const BODY_BYTES = 1024
const config = DhtConfig.localTest

const identity = Effect.gen(function*() {
  const crypto = yield* NodeCrypto.makeNode()
  const secretKey = yield* crypto.generateSecretKey
  return NodeIdentity.make({
    secretKey,
    publicKey: crypto.publicKeyOf(secretKey),
    features: Peer.PeerFeatures.COMMUNICATION_NODE
  })
})

const storage = (id: NodeIdentity.Identity) =>
  Layer.mergeAll(
    PeerManager.layerMemory,
    DedupCache.layerMemory,
    MessageStore.layerMemory,
    DhtMetadata.layerMemory,
    NodeIdentity.layer(id),
    DhtConfig.layer(config)
  )

/** Two `Dht` nodes on `transport`; one message from the first to the second, until the second delivers it. */
const dhtPair = <E, R, S>(
  transport: (id: NodeIdentity.Identity) => Layer.Layer<Transport.Transport, E, R>,
  shared: Layer.Layer<S>
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const cryptoContext = yield* Layer.buildWithScope(NodeCrypto.layerNode(), scope)
    const node = (id: NodeIdentity.Identity) =>
      Dht.layer(config).pipe(
        Layer.provideMerge(transport(id)),
        Layer.provideMerge(storage(id)),
        Layer.provide(Layer.merge(Layer.succeedContext(cryptoContext), shared)),
        Layer.orDie
      )
    const alice = yield* identity
    const bob = yield* identity
    const a = yield* Layer.buildWithScope(node(alice), scope)
    const b = yield* Layer.buildWithScope(node(bob), scope)
    const received = yield* Queue.bounded<Uint8Array>(16)
    yield* Effect.flatMap(Dht.Dht, (dht) => Stream.runForEach(dht.inbound, (m) => Queue.offer(received, m.body))).pipe(
      Effect.provide(b),
      Effect.forkIn(scope)
    )
    const bobAddress = (yield* Effect.provide(Transport.Transport, b)).listenAddresses[0]!
    yield* Effect.gen(function*() {
      yield* Effect.orDie((yield* PeerManager.PeerManager).add(Peer.make({
        publicKey: bob.publicKey,
        addresses: [bobAddress],
        features: bob.features,
        source: "Config",
        nowMs: 0
      })))
      yield* Effect.orDie((yield* Transport.Transport).dial(bob.nodeId))
    }).pipe(Effect.provide(a))
    const requester = (yield* Effect.provide(Dht.Dht, a)).requester
    const payload = new Uint8Array(BODY_BYTES).fill(7)
    return OutboundRequester.sendDirectEncrypted(bob.publicKey, 1, payload).pipe(
      Effect.flatMap(OutboundRequester.resolve),
      Effect.zipRight(Queue.take(received)),
      Effect.provideService(OutboundRequester.OutboundRequester, requester)
    )
  })

const tcpTransport = () => TcpTransport.layer({ listen: "127.0.0.1:0" })

/** Two bare transports; one dial + disconnect. */
const handshakes = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const cryptoContext = yield* Layer.buildWithScope(NodeCrypto.layerNode(), scope)
  const endpoint = (id: NodeIdentity.Identity) =>
    TcpTransport.layer({ listen: "127.0.0.1:0" }).pipe(
      Layer.provideMerge(Layer.mergeAll(PeerManager.layerMemory, NodeIdentity.layer(id), DhtConfig.layer(config))),
      Layer.provide(Layer.succeedContext(cryptoContext)),
      Layer.orDie
    )
  const alice = yield* identity
  const bob = yield* identity
  const a = yield* Layer.buildWithScope(endpoint(alice), scope)
  const b = yield* Layer.buildWithScope(endpoint(bob), scope)
  const tb = yield* Effect.provide(TcpTransport.TcpTransport, b)
  const ta = yield* Effect.provide(TcpTransport.TcpTransport, a)
  yield* Effect.orDie((yield* Effect.provide(PeerManager.PeerManager, a)).add(Peer.make({
    publicKey: bob.publicKey,
    addresses: [tb.listenAddresses[0]!],
    features: bob.features,
    source: "Config",
    nowMs: 0
  })))
  return Effect.zipRight(Effect.orDie(ta.dial(bob.nodeId)), ta.disconnect(bob.nodeId))
})

/** The three XX messages in memory, on the transport's backend. */
const noiseOnly = () => {
  const prologue = new TextEncoder().encode("comms-dht.v1.noise")
  const backend = TcpTransport.noiseBackend
  const secret = (n: number) => new Uint8Array(32).fill(n)
  let counter = 0
  return () => {
    counter++
    const start = (role: Noise.Role, s: number) =>
      Either.getOrThrow(Noise.initialize({ role, prologue, staticSecret: secret(s), backend }))
    const i = start("initiator", 1 + (counter & 1))
    const r = start("responder", 3)
    const m1 = Either.getOrThrow(Noise.writeMessage(i, new Uint8Array(0)))
    Either.getOrThrow(Noise.readMessage(r, m1))
    const m2 = Either.getOrThrow(Noise.writeMessage(r, new Uint8Array(200)))
    Either.getOrThrow(Noise.readMessage(i, m2))
    const m3 = Either.getOrThrow(Noise.writeMessage(i, new Uint8Array(200)))
    Either.getOrThrow(Noise.readMessage(r, m3))
    return Noise.split(i)
  }
}

/** `tcp.*` */
export const tcpBenches = async (): Promise<ReadonlyArray<Task>> => {
  const muted = <A, E>(effect: Effect.Effect<A, E>) =>
    Effect.runPromise(Logger.withMinimumLogLevel(effect, LogLevel.Error))
  const dial = await muted(handshakes)
  // Built on first use, not with the other tasks: a pair connected now would sit through the benchmarks before it,
  // which keep the event loop busy for seconds at a time; the responder's handshake timeout (6 s) then fires before
  // it reads the initiator's last Noise message, and the first message sent is lost on the closed connection.
  const connectOverTcp = () => muted(dhtPair(() => tcpTransport(), Layer.empty))
  let overTcp: ReturnType<typeof connectOverTcp> | undefined
  const overTcpLazily = async () => muted(await (overTcp ??= connectOverTcp()))
  const hub = await muted(
    Effect.flatMap(Scope.make(), (scope) => Layer.buildWithScope(MemoryNetwork.layerHub(), scope))
  )
  const overMemory = await muted(dhtPair(
    (id) => MemoryNetwork.layer({ address: `mem://${NodeId.toHex(id.nodeId)}` }),
    Layer.succeedContext(hub)
  ))
  return [
    { name: "tcp.noise-only", fn: noiseOnly() },
    { name: "tcp.handshake", fn: () => muted(dial), bound: "tcp.noise-only" },
    { name: "tcp.memory-direct", fn: () => muted(overMemory) },
    { name: "tcp.encrypted-direct", fn: overTcpLazily, bound: "tcp.memory-direct" }
  ]
}
