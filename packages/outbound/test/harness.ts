/**
 * A memory network for the outbound tests: one sender running the pipeline, and peers that only have a transport
 * endpoint, whose inboxes show what actually arrived.
 */
import * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as Discovery from "@comms-dht/core/Discovery"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import type * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as OutboundPipeline from "../src/OutboundPipeline.js"

export const { COMMUNICATION_CLIENT, COMMUNICATION_NODE, MESSAGE_PROPAGATION } = Peer.PeerFeatures

/** A deterministic identity: the seed is 32 bytes derived from `n`. */
export const identityOf = (n: number, features: number): Effect.Effect<NodeIdentity.Identity, never, Crypto.Crypto> =>
  Effect.map(Crypto.Crypto, (crypto) => {
    const seed = new Uint8Array(32)
    new DataView(seed.buffer).setUint32(0, n + 1, true)
    seed[31] = 0x5a
    const secretKey = NodeId.SecretKey.make(seed)
    return NodeIdentity.make({ secretKey, publicKey: crypto.publicKeyOf(secretKey), features })
  })

export type EndpointServices = Transport.Transport | PeerManager.PeerManager | NodeIdentity.NodeIdentity

export type SenderServices = EndpointServices | DedupCache.DedupCache | OutboundRequester.OutboundRequester

export interface Node<S> {
  readonly identity: NodeIdentity.Identity
  readonly context: Context.Context<S>
  readonly scope: Scope.CloseableScope
  readonly run: <A, E>(effect: Effect.Effect<A, E, S>) => Effect.Effect<A, E>
}

const endpointLayer = (identity: NodeIdentity.Identity) =>
  MemoryNetwork.layer().pipe(
    Layer.provideMerge(Layer.mergeAll(PeerManager.layerMemory, NodeIdentity.layer(identity))),
    Layer.orDie
  )

/** Wraps a node's transport: every `send` waits for `gate` first and is counted in `blocked` while it waits. */
export const gatedTransport = (gate: Effect.Latch, blocked: Ref.Ref<number>) =>
  Layer.effect(
    Transport.Transport,
    Effect.map(Transport.Transport, (transport) =>
      Transport.Transport.of({
        ...transport,
        send: (message) =>
          Ref.update(blocked, (n) => n + 1).pipe(
            Effect.zipRight(gate.await),
            Effect.zipRight(Ref.update(blocked, (n) => n - 1)),
            Effect.zipRight(transport.send(message))
          )
      }))
  )

const start = <S>(
  identity: NodeIdentity.Identity,
  layer: Layer.Layer<S, never, MemoryNetwork.MemoryNetworkHub | Crypto.Crypto>
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(layer, scope)
    const node: Node<S> = { identity, context, scope, run: (effect) => Effect.provide(effect, context) }
    return node
  })

export const startPeer = (identity: NodeIdentity.Identity) => start(identity, endpointLayer(identity))

export interface SenderOptions extends OutboundPipeline.Options {
  /** put a gate in front of the transport's `send` */
  readonly gate?: { readonly latch: Effect.Latch; readonly blocked: Ref.Ref<number> }
  /** a `Discovery` service in the sender's Layer graph */
  readonly discovery?: Discovery.DiscoveryService
}

export const startSender = (identity: NodeIdentity.Identity, options: SenderOptions = {}) => {
  const endpoint = options.gate === undefined
    ? endpointLayer(identity)
    : gatedTransport(options.gate.latch, options.gate.blocked).pipe(Layer.provideMerge(endpointLayer(identity)))
  const discovery = options.discovery === undefined
    ? Layer.empty
    : Layer.succeed(Discovery.Discovery, options.discovery)
  return start(
    identity,
    OutboundPipeline.layer(options).pipe(
      Layer.provide(discovery),
      Layer.provideMerge(Layer.mergeAll(endpoint, DedupCache.layerMemory))
    )
  )
}

export const addressOf = (identity: NodeIdentity.Identity) => `mem://${NodeId.toHex(identity.nodeId)}`

/** A record of `identity` as a node that has never connected knows it. */
export const peerRecord = (identity: NodeIdentity.Identity, extra: Partial<Peer.Peer> = {}) =>
  new Peer.Peer({
    ...Peer.make({
      publicKey: identity.publicKey,
      addresses: [addressOf(identity)],
      features: identity.features,
      source: "Config",
      nowMs: 0
    }),
    ...extra
  })

/** The frames waiting in a node's inbox, taken. */
export const received = (node: Node<EndpointServices>) =>
  node.run(Effect.flatMap(Transport.Transport, (t) => Queue.takeAll(t.inbound)))

export const sharedNetwork = Layer.mergeAll(MemoryNetwork.layerHub(), Crypto.layerNoble())
