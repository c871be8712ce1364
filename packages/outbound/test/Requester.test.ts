/**
 * The live `OutboundRequester` (SPEC §5, §6.1, §6.4–§6.5, §13.1, §16): typed failures that send nothing, per-peer
 * send states, discovery, backpressure (scenario 46, sender side), shutdown, and the outbound metrics.
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as Crypto from "@comms-dht/core/Crypto"
import * as DhtError from "@comms-dht/core/DhtError"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import type * as Discovery from "@comms-dht/core/Discovery"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import type * as NodeId from "@comms-dht/core/NodeId"
import type * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import {
  COMMUNICATION_NODE as N,
  type EndpointServices,
  identityOf,
  type Node,
  peerRecord,
  received,
  type SenderOptions,
  type SenderServices,
  sharedNetwork,
  startPeer,
  startSender
} from "./harness.js"

interface Net {
  readonly sender: Node<SenderServices>
  /** connected */
  readonly peers: ReadonlyArray<Node<EndpointServices>>
  /** known to the sender, with an address nobody listens on */
  readonly absent: NodeIdentity.Identity
}

const network = (options: SenderOptions = {}, connected = 3) =>
  Effect.gen(function*() {
    const sender = yield* startSender(yield* identityOf(0, N), options)
    const peers = yield* Effect.forEach(Array.from({ length: connected }, (_, i) => i + 1), (i) =>
      Effect.flatMap(identityOf(i, N), startPeer))
    const absent = yield* identityOf(99, N)
    yield* sender.run(Effect.gen(function*() {
      const table = yield* PeerManager.PeerManager
      const transport = yield* Transport.Transport
      for (const peer of peers) {
        yield* table.add(peerRecord(peer.identity))
        yield* transport.dial(peer.identity.nodeId)
      }
      yield* table.add(peerRecord(absent, { verifiedAt: 1 }))
    }).pipe(Effect.orDie))
    const net: Net = { sender, peers, absent }
    return net
  })

const withNetwork = <A, E>(
  f: (net: Net) => Effect.Effect<A, E, Crypto.Crypto | MemoryNetwork.MemoryNetworkHub | Scope.Scope>,
  options: SenderOptions = {},
  hub: Layer.Layer<MemoryNetwork.MemoryNetworkHub | Crypto.Crypto> = sharedNetwork,
  connected = 3
) => Effect.scoped(Effect.flatMap(network(options, connected), f)).pipe(Effect.provide(hub))

const text = (s: string) => new TextEncoder().encode(s)

const requester = (net: Net) => net.sender.run(OutboundRequester.OutboundRequester)

const send = (net: Net, params: OutboundRequester.SendMessageParams, body: OutboundRequester.OutboundBody) =>
  Effect.flatMap(requester(net), (r) => r.send(params, body))

const flood = OutboundRequester.makeParams({ strategy: BroadcastStrategy.Flood({ excluded: [] }), forceOrigin: true })

const toNode = (node: NodeIdentity.Identity) =>
  OutboundRequester.makeParams({ strategy: BroadcastStrategy.DirectNodeId({ nodeId: node.nodeId }) })

const count = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => state.count)

const failures = (reason: string) => count(Metric.tagged(DhtMetrics.sendFailures, "reason", reason))

const nothingArrived = (net: Net) =>
  Effect.forEach(net.peers, (peer) => Effect.map(received(peer), Chunk.size)).pipe(
    Effect.map((sizes) => sizes.every((n) => n === 0))
  )

const frames = Effect.map(MemoryNetwork.MemoryNetworkHub, (hub) => hub.stats)

/** yields until `condition` holds (bounded, so a bug fails the test instead of hanging it) */
const eventually = (condition: Effect.Effect<boolean>) =>
  Effect.zipRight(Effect.yieldNow(), condition).pipe(
    Effect.repeat({ until: (ok) => ok, times: 10_000 }),
    Effect.tap((ok) => expect(ok).toBe(true))
  )

const settle = Effect.repeatN(Effect.yieldNow(), 200)

describe("OutboundRequester", () => {
  it.effect("an envelope over maxMessageSize fails TooLarge for the whole request and nothing is sent", () =>
    withNetwork((net) =>
      Effect.gen(function*() {
        const tooLarge = yield* failures("TooLarge")
        const before = yield* Effect.flatten(frames)
        const body = yield* OutboundRequester.applicationBody(1, new Uint8Array(8 * 1024 * 1024))
        const error = yield* Effect.flip(send(net, flood, body))
        expect(error).toEqual(new DhtError.FailedToGenerateMessages({ reason: "TooLarge" }))
        expect(yield* Effect.flatten(frames)).toEqual(before)
        expect(yield* nothingArrived(net)).toBe(true)
        expect((yield* failures("TooLarge")) - tooLarge).toBe(1)
        // a little under the limit goes out to every peer
        const fits = yield* OutboundRequester.applicationBody(1, new Uint8Array(8 * 1024 * 1024 - 1024))
        const states = yield* Effect.flatMap(send(net, flood, fits), OutboundRequester.resolve)
        expect((yield* states.waitAll).sentTo).toHaveLength(3)
      })
    ))

  it.effect("expiresIn of 4 days fails ExpiryTooFar and sends nothing; 3 days is the limit, 3 hours the default", () =>
    withNetwork((net) =>
      Effect.gen(function*() {
        const body = yield* OutboundRequester.applicationBody(1, text("later"))
        const tooFar = yield* failures("ExpiryTooFar")
        const error = yield* Effect.flip(send(net, { ...flood, expiresIn: Option.some(Duration.days(4)) }, body))
        expect(error).toEqual(new DhtError.FailedToGenerateMessages({ reason: "ExpiryTooFar" }))
        expect((yield* failures("ExpiryTooFar")) - tooFar).toBe(1)
        expect(yield* nothingArrived(net)).toBe(true)

        yield* TestClock.setTime(1_700_000_000_000)
        const expiresAt = (expiresIn: Option.Option<Duration.Duration>) =>
          Effect.gen(function*() {
            const states = yield* Effect.flatMap(send(net, { ...flood, expiresIn }, body), OutboundRequester.resolve)
            yield* states.waitAll
            const [first] = yield* Effect.forEach(net.peers, (peer) =>
              Effect.flatMap(received(peer), (chunk) => Envelope.decodeEnvelope(Chunk.unsafeHead(chunk).bytes)))
            return first!.header.expires
          })
        expect(yield* expiresAt(Option.some(Duration.days(3)))).toBe(1_700_000_000n + 3n * 86_400n)
        expect(yield* expiresAt(Option.none())).toBe(1_700_000_000n + 3n * 3_600n)
      })
    ))

  it.effect("a direct send to this node's own key fails SendToOurselves", () =>
    withNetwork((net) =>
      Effect.gen(function*() {
        const own = net.sender.identity.publicKey
        const error = yield* Effect.flip(
          net.sender.run(OutboundRequester.sendDirectUnencrypted(own, 1, text("me")))
        )
        expect(error._tag).toBe("SendToOurselves")
        expect(yield* nothingArrived(net)).toBe(true)
      })
    ))

  it.effect("an unknown destination: NoMessagesQueued without discovery, DiscoveryFailed with no discovery", () =>
    withNetwork((net) =>
      Effect.gen(function*() {
        const stranger = (yield* identityOf(500, N)).publicKey
        const withoutDiscovery = yield* Effect.flip(
          net.sender.run(
            OutboundRequester.sendDirectEncrypted(stranger, 1, text("?"), { discoveryEnabled: false })
          ).pipe(Effect.flatMap(OutboundRequester.resolve))
        )
        expect(withoutDiscovery._tag).toBe("NoMessagesQueued")
        const response = yield* net.sender.run(OutboundRequester.sendDirectEncrypted(stranger, 1, text("?")))
        expect(response._tag).toBe("PendingDiscovery")
        const error = yield* Effect.flip(OutboundRequester.resolve(response))
        expect(error).toEqual(new DhtError.DiscoveryFailed({ reason: "SendFailed" }))
        expect(yield* nothingArrived(net)).toBe(true)
      })
    ))

  it.effect("a destination found by discovery receives the message after PendingDiscovery", () =>
    Effect.gen(function*() {
      const latecomer = yield* Effect.flatMap(identityOf(7, N), startPeer)
      // tied after the build, as a composition root does: discovery adds the peer to the sender's table
      const table = yield* Deferred.make<PeerManager.PeerManagerService>()
      const discover = (publicKey: NodeId.PublicKey) =>
        Effect.gen(function*() {
          expect(publicKey).toEqual(latecomer.identity.publicKey)
          const peer = peerRecord(latecomer.identity, { verifiedAt: 1 })
          yield* Effect.orDie((yield* Deferred.await(table)).add(peer))
          return peer
        })
      const net = yield* network({ discover })
      yield* Deferred.succeed(table, yield* net.sender.run(PeerManager.PeerManager))
      const response = yield* net.sender.run(
        OutboundRequester.sendDirectEncrypted(latecomer.identity.publicKey, 4, text("found you"))
      )
      expect(response._tag).toBe("PendingDiscovery")
      const states = yield* OutboundRequester.resolve(response)
      expect(yield* states.waitSingle).toBe(true)
      expect(Chunk.size(yield* received(latecomer))).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(sharedNetwork)))

  it.effect("the Discovery service in the Layer graph is used, its timeout reported as DiscoveryFailed", () => {
    const discovery: Discovery.DiscoveryService = {
      discover: () => Effect.fail(new DhtError.DiscoveryTimeout()),
      pendingKey: () => Effect.succeed(Option.none()),
      handleResponse: () => Effect.succeed(false)
    }
    return withNetwork((net) =>
      Effect.gen(function*() {
        const stranger = (yield* identityOf(501, N)).publicKey
        const error = yield* Effect.flip(
          net.sender.run(OutboundRequester.sendDirectUnencrypted(stranger, 1, text("?"))).pipe(
            Effect.flatMap(OutboundRequester.resolve)
          )
        )
        expect(error).toEqual(new DhtError.DiscoveryFailed({ reason: "Timeout" }))
      }), { discovery })
  })

  it.effect("send states: Sent once the transport writes, Failed with the reason when the peer is unreachable", () =>
    withNetwork((net) =>
      Effect.gen(function*() {
        const body = yield* OutboundRequester.applicationBody(1, text("hi"))
        const peer = net.peers[0]!
        const sent = yield* Effect.flatMap(send(net, toNode(peer.identity), body), OutboundRequester.resolve)
        expect(yield* sent.waitAll).toEqual({
          succeeded: [sent.tags[0]],
          failed: [],
          sentTo: [peer.identity.nodeId],
          failures: []
        })
        expect(yield* sent.waitSingle).toBe(true)

        // known, but nothing listens at its address: the dial fails and so does the send
        const offline = yield* Effect.flatMap(send(net, toNode(net.absent), body), OutboundRequester.resolve)
        const result = yield* offline.waitAll
        expect(result.succeeded).toEqual([])
        expect(result.failures).toEqual([{ peer: net.absent.nodeId, reason: new DhtError.DialFailed({ attempts: 1 }) }])
        expect(yield* offline.waitSingle).toBe(false)

        // connected, then gone: the connection closes and a new dial finds nobody
        const gone = net.peers[1]!
        yield* Scope.close(gone.scope, Exit.void)
        yield* eventually(net.sender.run(
          Effect.map(Effect.flatMap(Transport.Transport, (t) => t.isConnected(gone.identity.nodeId)), (c) => !c)
        ))
        const lost = yield* Effect.flatMap(send(net, toNode(gone.identity), body), OutboundRequester.resolve)
        const lostResult = yield* lost.waitAll
        expect(lostResult.failures.map((f) => f.reason._tag)).toEqual(["DialFailed"])
      })
    ))

  it.effect("waitN and waitPercentage return what completed by their deadline or threshold", () =>
    withNetwork(
      (net) =>
        Effect.gen(function*() {
          const body = yield* OutboundRequester.applicationBody(1, text("slow"))
          // the absent peer is unknown at the hub: a dial there fails at once; the others connect after a round trip
          const later = yield* Effect.forEach([4, 5], (i) => Effect.flatMap(identityOf(i, N), startPeer))
          yield* net.sender.run(Effect.forEach(later, (node) =>
            Effect.flatMap(PeerManager.PeerManager, (t) => Effect.orDie(t.add(peerRecord(node.identity))))))
          const ids = [...later.map((node) => node.identity.nodeId), net.absent.nodeId]
          const params = OutboundRequester.makeParams({ strategy: BroadcastStrategy.SelectedPeers({ ids }) })
          const states = yield* Effect.flatMap(send(net, params, body), OutboundRequester.resolve)
          expect(states.size).toBe(3)

          const waitingN = yield* Effect.fork(states.waitN("500 millis", 1))
          const waitingHalf = yield* Effect.fork(states.waitPercentage(0.5))
          yield* TestClock.adjust("500 millis")
          expect(Option.isNone(yield* Fiber.poll(waitingHalf))).toBe(true)
          const early = yield* Fiber.join(waitingN)
          expect(early.succeeded).toEqual([])
          expect(early.failures.map((f) => f.peer)).toEqual([net.absent.nodeId])

          yield* TestClock.adjust("5 seconds")
          const half = yield* Fiber.join(waitingHalf)
          expect(half.sentTo.length).toBeGreaterThanOrEqual(2)
          expect((yield* states.waitAll).sentTo).toHaveLength(2)
        }),
      {},
      Layer.mergeAll(MemoryNetwork.layerHub({ latency: () => Effect.succeed(1_000) }), Crypto.layerNoble()),
      0
    ))

  it.effect("a full queue suspends send until space frees, and sheds forwards (scenario 46)", () =>
    Effect.gen(function*() {
      const latch = yield* Effect.makeLatch(false)
      const blocked = yield* Ref.make(0)
      yield* withNetwork((net) =>
        Effect.gen(function*() {
          const body = yield* OutboundRequester.applicationBody(1, text("queued"))
          const peer = net.peers[0]!
          const shed = yield* count(Metric.tagged(DhtMetrics.inboundShed, "where", "forward"))
          const senders = yield* Effect.forEach(
            Array.from({ length: 50 }),
            () => Effect.fork(Effect.flatMap(send(net, toNode(peer.identity), body), OutboundRequester.resolve)),
            { concurrency: "unbounded" }
          )
          // 16 requests in the stages, waiting on the transport; 20 on the queue; the rest suspended in `send`
          yield* eventually(Effect.map(Ref.get(blocked), (n) => n === 16))
          yield* settle
          expect(yield* Ref.get(blocked)).toBe(16)
          const r = yield* requester(net)
          expect(yield* r.offerForward(toNode(peer.identity), body)).toBe(false)
          expect((yield* count(Metric.tagged(DhtMetrics.inboundShed, "where", "forward"))) - shed).toBe(1)
          for (const fiber of senders) expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)

          yield* latch.open
          const states = yield* Effect.forEach(senders, Fiber.join)
          for (const s of states) expect(yield* s.waitSingle).toBe(true)
          expect(Chunk.size(yield* received(peer))).toBe(50)
          // with room again, a forward is taken
          expect(yield* r.offerForward(toNode(peer.identity), body)).toBe(true)
        }), { gate: { latch, blocked } })
    }))

  it.effect("closing the requester's scope answers every pending request with DhtShutdown", () =>
    Effect.gen(function*() {
      const latch = yield* Effect.makeLatch(false)
      const blocked = yield* Ref.make(0)
      yield* withNetwork((net) =>
        Effect.gen(function*() {
          const body = yield* OutboundRequester.applicationBody(1, text("never"))
          const peer = net.peers[0]!
          const r = yield* requester(net)
          const senders = yield* Effect.forEach(
            Array.from({ length: 45 }),
            () => Effect.fork(r.send(toNode(peer.identity), body)),
            { concurrency: "unbounded" }
          )
          yield* eventually(Effect.map(Ref.get(blocked), (n) => n === 16))
          yield* settle
          yield* Scope.close(net.sender.scope, Exit.void)
          for (const fiber of senders) {
            expect(yield* Effect.flip(Fiber.join(fiber))).toEqual(new DhtError.DhtShutdown())
          }
          expect(yield* Effect.flip(r.send(toNode(peer.identity), body))).toEqual(new DhtError.DhtShutdown())
          expect(yield* r.offerForward(toNode(peer.identity), body)).toBe(false)
        }), { gate: { latch, blocked } })
    }))

  it.effect("counts requests by strategy, messages by result and failures by reason", () =>
    withNetwork((net) =>
      Effect.gen(function*() {
        const floods = Metric.tagged(DhtMetrics.outboundRequests, "strategy", "Flood")
        const direct = Metric.tagged(DhtMetrics.outboundRequests, "strategy", "DirectNodeId")
        const sent = Metric.tagged(DhtMetrics.outboundMessages, "result", "sent")
        const failed = Metric.tagged(DhtMetrics.outboundMessages, "result", "failed")
        const before = yield* Effect.all([count(floods), count(direct), count(sent), count(failed)])
        const noMessages = yield* failures("NoMessagesQueued")
        const body = yield* OutboundRequester.applicationBody(1, text("count me"))

        const flooded = yield* Effect.flatMap(send(net, flood, body), OutboundRequester.resolve)
        yield* flooded.waitAll
        const lost = yield* Effect.flatMap(send(net, toNode(net.absent), body), OutboundRequester.resolve)
        yield* lost.waitAll
        yield* Effect.flip(Effect.flatMap(
          send(net, OutboundRequester.makeParams({ strategy: BroadcastStrategy.SelectedPeers({ ids: [] }) }), body),
          OutboundRequester.resolve
        ))
        // the per-message counts come from a watcher fiber: let it see the last completions
        yield* eventually(Effect.map(count(failed), (n) => n - before[3] === 1))
        const after = yield* Effect.all([count(floods), count(direct), count(sent), count(failed)])
        expect(after.map((n, i) => n - before[i]!)).toEqual([1, 1, 3, 1])
        expect((yield* failures("NoMessagesQueued")) - noMessages).toBe(1)
      })
    ))
})
