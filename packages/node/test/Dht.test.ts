import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import * as NodeCrypto from "../src/Crypto.js"
import * as Dht from "../src/Dht.js"
import * as FullNodes from "./fullNodes.js"

const identity = (n: number) =>
  Effect.map(NodeCrypto.makeNode(), (crypto) => {
    const seed = new Uint8Array(32).fill(n)
    const secretKey = NodeId.SecretKey.make(seed)
    return NodeIdentity.make({
      secretKey,
      publicKey: crypto.publicKeyOf(secretKey),
      features: Peer.PeerFeatures.COMMUNICATION_NODE
    })
  })

/** A full node on the memory network with core's memory storage. */
const node = (id: NodeIdentity.Identity) =>
  Dht.layer(DhtConfig.localTest).pipe(
    Layer.provideMerge(MemoryNetwork.layer({ address: `mem://${NodeId.toHex(id.nodeId)}` })),
    Layer.provideMerge(Layer.mergeAll(
      PeerManager.layerMemory,
      DedupCache.layerMemory,
      MessageStore.layerMemory,
      DhtMetadata.layerMemory,
      NodeIdentity.layer(id)
    )),
    Layer.orDie
  )

describe("Dht.layer", () => {
  it.scoped("two nodes exchange an encrypted direct message and the receiver learns its origin", () =>
    Effect.gen(function*() {
      const shared = yield* Layer.build(Layer.mergeAll(MemoryNetwork.layerHub(), NodeCrypto.layerNode()))
      const alice = yield* identity(1)
      const bob = yield* identity(2)
      const a = yield* Layer.build(node(alice)).pipe(Effect.provide(shared))
      const b = yield* Layer.build(node(bob)).pipe(Effect.provide(shared))
      const bobDht = Effect.provide(Dht.Dht, b)
      const received = yield* (yield* bobDht).inbound.pipe(Stream.take(1), Stream.runCollect, Effect.fork)
      // the same messages and events as queues of their own, for a consumer that takes in a loop
      const bobMessages = yield* (yield* bobDht).subscribeInbound
      const bobEvents = yield* (yield* bobDht).subscribeEvents
      // and as a callback in the publishing step
      const heard: Array<string> = []
      yield* (yield* bobDht).listenEvents((event) => heard.push(event._tag))
      yield* Effect.yieldNow()

      // alice knows bob's address and dials him
      yield* Effect.gen(function*() {
        const peers = yield* PeerManager.PeerManager
        yield* peers.add(Peer.make({
          publicKey: bob.publicKey,
          addresses: [`mem://${NodeId.toHex(bob.nodeId)}`],
          features: bob.features,
          source: "Config",
          nowMs: 0
        }))
        yield* (yield* Transport.Transport).dial(bob.nodeId)
      }).pipe(Effect.provide(a), Effect.orDie)

      const dht = yield* Effect.provide(Dht.Dht, a)
      const states = yield* OutboundRequester.sendDirectEncrypted(bob.publicKey, 7, new TextEncoder().encode("hi bob"))
        .pipe(Effect.flatMap(OutboundRequester.resolve), Effect.provideService(OutboundRequester.OutboundRequester, dht.requester))
      const results = yield* states.waitAll
      expect(results.failed).toEqual([])

      const [message] = Chunk.toReadonlyArray(yield* Fiber.join(received))
      expect(new TextDecoder().decode(message!.body)).toBe("hi bob")
      expect(message!.messageType).toBe(7)
      expect(message!.wasEncrypted).toBe(true)
      expect(Option.map(message!.origin, NodeId.toHex)).toEqual(Option.some(NodeId.toHex(alice.publicKey)))
      expect(yield* Queue.take(bobMessages)).toBe(message)
      const events = Chunk.toReadonlyArray(yield* Queue.takeAll(bobEvents))
      expect(events.map((e) => e._tag)).toContain("ConnectivityOnline")
      // the queue holds what was published since it subscribed, up to now; the listener heard the same, in order
      expect(heard.slice(0, events.length)).toEqual(events.map((e) => e._tag))
    }))

  it.scoped("connected nodes shut down at the same moment all close cleanly", () =>
    Effect.gen(function*() {
      const shared = yield* Layer.build(Layer.mergeAll(MemoryNetwork.layerHub(), NodeCrypto.layerNode()))
      const nodes = yield* Effect.forEach([1, 2, 3], (n) => FullNodes.makeNode(n, shared))
      yield* Effect.forEach(nodes, (node) => node.start)
      yield* FullNodes.connect(nodes[0]!, nodes[1]!)
      yield* FullNodes.connect(nodes[0]!, nodes[2]!)
      yield* FullNodes.connect(nodes[1]!, nodes[2]!)
      yield* FullNodes.settle
      // each closing tears down connections whose other end may finish closing first: that must not interrupt it
      const exits = yield* Effect.forEach(nodes, (node) => Effect.exit(node.stop), { concurrency: "unbounded" })
      expect(exits.map(Exit.isSuccess)).toEqual([true, true, true])
      expect(yield* Effect.flatMap(MemoryNetwork.MemoryNetworkHub, (hub) => hub.addresses).pipe(Effect.provide(shared)))
        .toEqual([])
    }))
})
