/**
 * A live victim for the attack suite: a full `Dht` on sqlite (in memory) joined to an honest peer, and a raw
 * attacker endpoint on the same memory network that writes whatever bytes it likes. Every rejection the victim's
 * pipeline reports is recorded with the typed error and whom it blamed.
 */
import type * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import type * as DhtError from "@comms-dht/core/DhtError"
import type * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import * as Rejections from "@comms-dht/inbound/Rejections"
import * as NodeCrypto from "@comms-dht/node/Crypto"
import * as Dht from "@comms-dht/node/Dht"
import * as SqliteStore from "@comms-dht/store/SqliteStore"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"

export const config = DhtConfig.localTest
export const MESSAGE_TYPE = 9
export const text = (s: string) => new TextEncoder().encode(s)
export const textOf = (b: Uint8Array) => new TextDecoder().decode(b)

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

export interface Rejection {
  readonly error: Rejections.PipelineError
  readonly blame: Rejections.Blame
}

type Storage = SqliteStore.Services | NodeIdentity.NodeIdentity

export interface Victim {
  readonly id: NodeIdentity.Identity
  readonly dht: Dht.DhtService
  readonly inbox: Queue.Dequeue<InboundMessages.DomainMessage>
  /** the bodies of every application message delivered, in order */
  readonly delivered: Ref.Ref<ReadonlyArray<string>>
  readonly rejections: Ref.Ref<ReadonlyArray<Rejection>>
  readonly transport: Transport.TransportService
  readonly run: <A, E>(effect: Effect.Effect<A, E, Storage | Crypto.Crypto>) => Effect.Effect<A, E>
}

export interface Attacker {
  readonly id: NodeIdentity.Identity
  readonly transport: Transport.TransportService
  /** writes one frame to the victim; the outcome of the write, not of the processing */
  readonly send: (bytes: Uint8Array) => Effect.Effect<void, DhtError.SendFailReason>
  /** queues frames for the victim, waiting for their writes only when the batch is done (a flood) */
  readonly sendAll: (frames: ReadonlyArray<Uint8Array>) => Effect.Effect<void>
  readonly run: <A, E>(effect: Effect.Effect<A, E, Crypto.Crypto>) => Effect.Effect<A, E>
}

export interface Scene {
  readonly victim: Victim
  readonly honest: Victim
  readonly attacker: Attacker
  /** the honest peer sends the victim an encrypted direct message; resolves when the victim delivered it */
  readonly goodMessageArrives: (body: string) => Effect.Effect<void>
  /** rows of every table the victim keeps: peers, stored messages, dedup entries */
  readonly rows: Effect.Effect<{ readonly peers: number; readonly stored: number; readonly dedup: number }>
}

const startNode = (
  n: number,
  shared: Context.Context<MemoryNetwork.MemoryNetworkHub | Crypto.Crypto>,
  cfg: DhtConfig.Config
) =>
  Effect.gen(function*() {
    const id = yield* identity(n)
    const rejections = yield* Ref.make<ReadonlyArray<Rejection>>([])
    const observer = Layer.succeed(
      Rejections.Observer,
      (error, blame) => Ref.update(rejections, (all) => [...all, { error, blame }])
    )
    // the storage reads its bounds (maxKnownPeers, the per-source budget, SAF limits) from the same config
    const storage = yield* Layer.build(
      Layer.mergeAll(SqliteStore.layer({ filename: ":memory:" }), NodeIdentity.layer(id)).pipe(
        Layer.provide(DhtConfig.layer(cfg))
      )
    ).pipe(Effect.orDie)
    const context = yield* Layer.build(
      Dht.layer(cfg).pipe(
        Layer.provideMerge(
          MemoryNetwork.layer({ address: addressOf(id) }).pipe(Layer.provide(DhtConfig.layer(cfg)))
        ),
        Layer.provide(observer),
        Layer.orDie
      )
    ).pipe(Effect.provide(Context.merge(storage, shared)))
    const dht = Context.get(context, Dht.Dht)
    const inbox = yield* Queue.unbounded<InboundMessages.DomainMessage>()
    const bodies: Array<string> = []
    const delivered = yield* Ref.make<ReadonlyArray<string>>(bodies)
    yield* Effect.forkScoped(Stream.runForEach(dht.inbound, (m) =>
      Effect.zipRight(Effect.sync(() => bodies.push(textOf(m.body))), Queue.offer(inbox, m))))
    yield* Effect.yieldNow()
    const all = Context.merge(storage, shared)
    const victim: Victim = {
      id,
      dht,
      inbox,
      delivered,
      rejections,
      transport: Context.get(context, Transport.Transport),
      run: (effect) => Effect.provide(effect, all)
    }
    return victim
  })

const knows = (node: Victim, other: NodeIdentity.Identity) =>
  node.run(Effect.flatMap(PeerManager.PeerManager, (peers) =>
    Effect.flatMap(peers.exists(other.nodeId), (known) =>
      known ? Effect.void : Effect.asVoid(peers.add(Peer.make({
        publicKey: other.publicKey,
        addresses: [addressOf(other)],
        features: other.features,
        source: "Config",
        nowMs: 0
      })))))).pipe(Effect.orDie)

/** A victim and an honest peer, both full nodes, connected; an attacker endpoint connected to the victim. */
export const scene = (cfg: DhtConfig.Config = config) =>
  Effect.gen(function*() {
    const shared = yield* Layer.build(Layer.mergeAll(MemoryNetwork.layerHub(), NodeCrypto.layerNode()))
    const victim = yield* startNode(1, shared, cfg)
    const honest = yield* startNode(2, shared, cfg)
    yield* knows(honest, victim.id)
    yield* Effect.orDie(honest.dht.dialOrDiscover(victim.id.publicKey))

    const attackerId = yield* identity(66)
    const attackerContext = yield* Layer.build(
      MemoryNetwork.layer({ address: addressOf(attackerId) }).pipe(
        Layer.provideMerge(Layer.mergeAll(PeerManager.layerMemory, NodeIdentity.layer(attackerId))),
        Layer.provide(DhtConfig.layer(cfg)),
        Layer.orDie
      )
    ).pipe(Effect.provide(shared))
    const transport = Context.get(attackerContext, Transport.Transport)
    yield* Context.get(attackerContext, PeerManager.PeerManager).add(Peer.make({
      publicKey: victim.id.publicKey,
      addresses: [addressOf(victim.id)],
      features: victim.id.features,
      source: "Config",
      nowMs: 0
    })).pipe(Effect.orDie)
    yield* Effect.orDie(transport.dial(victim.id.nodeId))
    const attacker: Attacker = {
      id: attackerId,
      transport,
      send: (bytes) =>
        Effect.gen(function*() {
          const reply = yield* Deferred.make<void, DhtError.SendFailReason>()
          yield* transport.send({ peer: victim.id.nodeId, tag: 0n, bytes, reply })
          yield* Deferred.await(reply)
        }),
      sendAll: (frames) =>
        Effect.gen(function*() {
          const replies: Array<Deferred.Deferred<void, DhtError.SendFailReason>> = []
          for (const bytes of frames) {
            const reply = yield* Deferred.make<void, DhtError.SendFailReason>()
            yield* transport.send({ peer: victim.id.nodeId, tag: 0n, bytes, reply })
            replies.push(reply)
          }
          yield* Effect.forEach(replies, (reply) => Effect.ignore(Deferred.await(reply)), { discard: true })
        }),
      run: (effect) => Effect.provide(effect, shared)
    }

    const goodMessageArrives = (body: string) =>
      Effect.gen(function*() {
        const sent = yield* OutboundRequester.sendDirectEncrypted(victim.id.publicKey, MESSAGE_TYPE, text(body)).pipe(
          Effect.flatMap(OutboundRequester.resolve),
          Effect.provideService(OutboundRequester.OutboundRequester, honest.dht.requester),
          Effect.orDie
        )
        yield* sent.waitAll
        while (true) {
          const message = yield* Queue.take(victim.inbox)
          if (textOf(message.body) === body) return
        }
      })

    const rows = victim.run(Effect.gen(function*() {
      const peers = yield* Effect.orDie(Effect.flatMap(PeerManager.PeerManager, (p) => p.count))
      const stored = yield* Effect.flatMap(MessageStore.MessageStore, (s) => s.count)
      const dedup = yield* Effect.flatMap(DedupCache.DedupCache, (d) => d.size)
      return { peers, stored, dedup }
    }))

    const result: Scene = { victim, honest, attacker, goodMessageArrives, rows }
    return result
  })

/** yields until `condition` holds (bounded, so a bug fails the test instead of hanging it) */
export const eventually = <E, R>(condition: Effect.Effect<boolean, E, R>) =>
  Effect.zipRight(Effect.yieldNow(), condition).pipe(
    Effect.repeat({ until: (ok) => ok, times: 20_000 }),
    Effect.flatMap((ok) => ok ? Effect.void : Effect.dieMessage("condition never held"))
  )

/** The rejections recorded since `from` (an index into the list). */
export const rejectionsSince = (victim: Victim, from: number) =>
  Effect.map(Ref.get(victim.rejections), (all) => all.slice(from))

/** Whether the victim's peer table has `id` banned now. */
export const isBanned = (victim: Victim, id: NodeIdentity.Identity) =>
  victim.run(Effect.flatMap(PeerManager.PeerManager, (peers) =>
    Effect.map(
      Effect.zip(peers.get(id.nodeId), Effect.clockWith((clock) => clock.currentTimeMillis)),
      ([peer, now]) => peer.isBanned(now)
    ))).pipe(Effect.orDie)

export const counter = (metric: Metric.Metric.Counter<number>, reason?: string) =>
  Effect.map(
    Metric.value(reason === undefined ? metric : Metric.tagged(metric, "reason", reason)),
    (s) => s.count
  )

export const drain = <A>(queue: Queue.Dequeue<A>) => Effect.map(Queue.takeAll(queue), Chunk.toReadonlyArray)
