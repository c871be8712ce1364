import { DedupCache, DhtConfig, DhtMetadata, MemoryNetwork, MessageStore, NodeIdentity, PeerManager } from "@comms-dht/core"
import { Crypto, Dht } from "@comms-dht/node"
import { Effect, Layer, Stream } from "effect"

// A node is one Layer: the Dht over a transport endpoint, a peer table, storage and an identity, all under one config
// (the transport and the storage read their limits from it too).
const node = (identity: NodeIdentity.Identity) =>
  Dht.layer(DhtConfig.localTest).pipe(
    Layer.provideMerge(MemoryNetwork.layer({ address: "mem://quickstart" })),
    Layer.provideMerge(Layer.mergeAll(PeerManager.layerMemory, DedupCache.layerMemory, MessageStore.layerMemory,
      DhtMetadata.layerMemory, NodeIdentity.layer(identity))),
    Layer.provide(DhtConfig.layer(DhtConfig.localTest))
  )

// Print the first message that reaches this node; swap any Layer (SqliteStore, TcpTransport) without touching this.
export const program = Effect.flatMap(Dht.Dht, (dht) =>
  dht.inbound.pipe(Stream.take(1), Stream.runForEach((m) => Effect.log(new TextDecoder().decode(m.body)))))

export const main = (identity: NodeIdentity.Identity) =>
  program.pipe(Effect.provide(node(identity)), Effect.provide(MemoryNetwork.layerHub()), Effect.provide(Crypto.layerNode()))
