/**
 * Full `Dht` nodes on a `MemoryNetwork` for the node tests: storage (sqlite in memory) that outlives the node, so a
 * node can go offline and come back on what it stored, and the helpers the store-and-forward and reliable-delivery
 * scenarios share.
 */
import type * as Crypto from "@comms-dht/core/Crypto"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import type * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import * as SqliteStore from "@comms-dht/store/SqliteStore"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as NodeCrypto from "../src/Crypto.js"
import * as Dht from "../src/Dht.js"

export const config = DhtConfig.localTest
export const START = Date.UTC(2026, 10, 25)
export const MESSAGE_TYPE = 9
export const text = (s: string) => new TextEncoder().encode(s)
export const textOf = (b: Uint8Array) => new TextDecoder().decode(b)

/** node `n`'s identity: its secret key is 32 bytes of `n` */
export const identity = (n: number) =>
  Effect.map(NodeCrypto.makeNode(), (crypto) => {
    const secretKey = NodeId.SecretKey.make(new Uint8Array(32).fill(n))
    return NodeIdentity.make({
      secretKey,
      publicKey: crypto.publicKeyOf(secretKey),
      features: Peer.PeerFeatures.COMMUNICATION_NODE
    })
  })

export const addressOf = (id: NodeIdentity.Identity) => `mem://${NodeId.toHex(id.nodeId)}`

export type Storage = SqliteStore.Services | NodeIdentity.NodeIdentity
export type Shared = MemoryNetwork.MemoryNetworkHub | Crypto.Crypto

/** A node whose storage outlives its Dht: `start` and `stop` take it on and off the network. */
export interface TestNode {
  readonly id: NodeIdentity.Identity
  readonly start: Effect.Effect<void>
  readonly stop: Effect.Effect<void>
  readonly dht: Effect.Effect<Dht.DhtService>
  /** application messages delivered since the last `start` */
  readonly inbox: Effect.Effect<Queue.Dequeue<InboundMessages.DomainMessage>>
  readonly run: <A, E>(effect: Effect.Effect<A, E, Storage>) => Effect.Effect<A, E>
  readonly transport: Effect.Effect<Transport.TransportService>
}

export const makeNode = (n: number, shared: Context.Context<Shared>, cfg: DhtConfig.Config = config) =>
  Effect.gen(function*() {
    const id = yield* identity(n)
    const storage = yield* Layer.build(
      Layer.mergeAll(SqliteStore.layer({ filename: ":memory:" }), NodeIdentity.layer(id))
    ).pipe(Effect.orDie)
    let current: {
      scope: Scope.CloseableScope
      dht: Dht.DhtService
      inbox: Queue.Dequeue<InboundMessages.DomainMessage>
      transport: Transport.TransportService
    } | undefined
    const start = Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        Dht.layer(cfg).pipe(Layer.provideMerge(MemoryNetwork.layer({ address: addressOf(id) })), Layer.orDie),
        scope
      ).pipe(Effect.provide(Context.merge(storage, shared)))
      const dht = Context.get(context, Dht.Dht)
      const inbox = yield* Queue.unbounded<InboundMessages.DomainMessage>()
      yield* Effect.forkIn(Stream.runForEach(dht.inbound, (m) => Queue.offer(inbox, m)), scope)
      yield* Effect.yieldNow()
      current = { scope, dht, inbox, transport: Context.get(context, Transport.Transport) }
    })
    const stop = Effect.suspend(() => {
      const running = current
      current = undefined
      return running === undefined ? Effect.void : Scope.close(running.scope, Exit.void)
    })
    const node: TestNode = {
      id,
      start,
      stop,
      dht: Effect.suspend(() => current === undefined ? Effect.dieMessage("not started") : Effect.succeed(current.dht)),
      inbox: Effect.suspend(() =>
        current === undefined ? Effect.dieMessage("not started") : Effect.succeed(current.inbox)
      ),
      run: (effect) => Effect.provide(effect, storage),
      transport: Effect.suspend(() =>
        current === undefined ? Effect.dieMessage("not started") : Effect.succeed(current.transport)
      )
    }
    yield* Effect.addFinalizer(() => stop)
    return node
  })

/** `a` learns `b`'s address (unless it knows it) and dials it; after the handshake both know each other as verified peers. */
export const connect = (a: TestNode, b: TestNode) =>
  Effect.gen(function*() {
    yield* a.run(Effect.flatMap(PeerManager.PeerManager, (peers) =>
      Effect.flatMap(peers.exists(b.id.nodeId), (known) =>
        known ? Effect.void : peers.add(Peer.make({
          publicKey: b.id.publicKey,
          addresses: [addressOf(b.id)],
          features: b.id.features,
          source: "Config",
          nowMs: 0
        })))))
    const dht = yield* a.dht
    yield* dht.dialOrDiscover(b.id.publicKey)
  }).pipe(Effect.orDie)

export const settle = Effect.repeatN(Effect.yieldNow(), 500)

/**
 * Nodes 1, 2 and 3 (`a`, `s`, `b`) all connected to each other, then `b` gone offline: `s` is among the closest
 * peers `a` knows of `b`, and holds what is sent to `b` for store-and-forward.
 */
export const offlineTriangle = (shared: Context.Context<Shared>) =>
  Effect.gen(function*() {
    const [a, s, b] = yield* Effect.all([makeNode(1, shared), makeNode(2, shared), makeNode(3, shared)])
    yield* Effect.forEach([a, s, b], (n) => n.start, { discard: true })
    yield* connect(a, s)
    yield* connect(s, b)
    yield* connect(a, b)
    yield* b.stop
    yield* settle
    return [a, s, b] as const
  })

/** yields until `condition` holds (bounded, so a bug fails the test instead of hanging it) */
export const eventually = <E, R>(condition: Effect.Effect<boolean, E, R>) =>
  Effect.zipRight(Effect.yieldNow(), condition).pipe(
    Effect.repeat({ until: (ok) => ok, times: 20_000 }),
    Effect.flatMap((ok) => ok ? Effect.void : Effect.dieMessage("condition never held"))
  )

export const storedCount = (node: TestNode) => node.run(Effect.flatMap(MessageStore.MessageStore, (s) => s.count))

export const drain = (node: TestNode) =>
  Effect.flatMap(node.inbox, (q) => Effect.map(Queue.takeAll(q), Chunk.toReadonlyArray))
