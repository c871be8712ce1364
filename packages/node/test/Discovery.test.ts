/**
 * Discovery at the requester (SPEC §10.2, §10.3 step 9, §15, §16; scenarios 24 and 25): the request it sends, the
 * in-flight table the inbound handler consults, shared requests, the timeout on the Effect clock, send failures,
 * callers that go away, shutdown — and, end to end on a 10-node line of full nodes (both pipelines, the actor and
 * this service on every node), a discovery answered by the far end.
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as CoreCrypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtActor from "@comms-dht/core/DhtActor"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as DhtMessages from "@comms-dht/core/DhtMessages"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as CoreDiscovery from "@comms-dht/core/Discovery"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as PeerValidator from "@comms-dht/core/PeerValidator"
import * as Transport from "@comms-dht/core/Transport"
import type * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as InboundPipeline from "@comms-dht/inbound/InboundPipeline"
import * as OutboundPipeline from "@comms-dht/outbound/OutboundPipeline"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as Crypto from "../src/Crypto.js"
import * as Discovery from "../src/Discovery.js"

// --- fixtures ---

const shared = Layer.mergeAll(MemoryNetwork.layerHub(), Crypto.layerNode())

const localTest = DhtConfig.localTest

/** A deterministic communication node: the seed is 32 bytes derived from `n`. */
const identityOf = (n: number) =>
  Effect.map(CoreCrypto.Crypto, (crypto) => {
    const seed = new Uint8Array(32)
    new DataView(seed.buffer).setUint32(0, n + 1, true)
    seed[31] = 0x24
    const secretKey = NodeId.SecretKey.make(seed)
    return NodeIdentity.make({
      secretKey,
      publicKey: crypto.publicKeyOf(secretKey),
      features: Peer.PeerFeatures.COMMUNICATION_NODE
    })
  })

const addressOf = (identity: NodeIdentity.Identity) => `mem://${NodeId.toHex(identity.nodeId)}`

const recordOf = (identity: NodeIdentity.Identity) =>
  Peer.make({
    publicKey: identity.publicKey,
    addresses: [addressOf(identity)],
    features: identity.features,
    source: "Discovery",
    nowMs: 0
  })

const count = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => state.count)
const requests = (result: string) => count(Metric.tagged(DhtMetrics.discoveryRequests, "result", result))
const forwardedF1 = count(Metric.tagged(DhtMetrics.forwarded, "rule", "F1"))
const inflight = Effect.map(Metric.value(DhtMetrics.discoveryInflight), (state) => state.value)

/** yields until `condition` holds (bounded, so a bug fails the test instead of hanging it) */
const eventually = <E, R>(condition: Effect.Effect<boolean, E, R>) =>
  Effect.zipRight(Effect.yieldNow(), condition).pipe(
    Effect.repeat({ until: (ok) => ok, times: 20_000 }),
    Effect.flatMap((ok) => ok ? Effect.void : Effect.dieMessage("condition never held"))
  )

/** lets every runnable fiber run for a while: for asserting that something did not happen */
const settle = Effect.repeatN(Effect.yieldNow(), 300)

// --- one requester, its sends recorded ---

interface Sent {
  readonly params: OutboundRequester.SendMessageParams
  readonly body: OutboundRequester.OutboundBody
}

/** A requester that records every send and answers `Queued` with no peer, or fails with `failure`. */
const recordingRequester = (sent: Ref.Ref<ReadonlyArray<Sent>>, failure?: DhtError.SendFailure) =>
  Layer.succeed(
    OutboundRequester.OutboundRequester,
    OutboundRequester.OutboundRequester.of({
      send: (params, body) =>
        Ref.update(sent, (all) => [...all, { params, body }]).pipe(
          Effect.zipRight(
            failure === undefined
              ? Effect.succeed(OutboundRequester.SendMessageResponse.Queued({ states: OutboundRequester.noSendStates }))
              : Effect.fail(failure)
          )
        ),
      offerForward: () => Effect.succeed(false)
    })
  )

type Base = Transport.Transport | PeerManager.PeerManager | NodeIdentity.NodeIdentity | DhtEvents.DhtEvents

const baseLayer = (identity: NodeIdentity.Identity) =>
  Layer.merge(
    MemoryNetwork.layer().pipe(
      Layer.provideMerge(Layer.mergeAll(PeerManager.layerMemory, NodeIdentity.layer(identity))),
      Layer.orDie
    ),
    DhtEvents.layer
  )

interface Requester {
  readonly identity: NodeIdentity.Identity
  readonly base: Context.Context<Base>
  readonly discovery: CoreDiscovery.DiscoveryService
  /** closes the discovery service only (the event hub and the peer table stay) */
  readonly scope: Scope.CloseableScope
  readonly events: Queue.Dequeue<DhtEvent.DhtEvent>
}

/**
 * A node running only the discovery service, over the given requester (default: one that records into `sent`);
 * its events are subscribed from the start.
 */
const startRequester = (options: {
  readonly sent: Ref.Ref<ReadonlyArray<Sent>>
  readonly failure?: DhtError.SendFailure
  /** the real outbound pipeline instead of a recording requester */
  readonly pipeline?: boolean
  readonly config?: DhtConfig.Config
}) =>
  Effect.gen(function*() {
    const config = options.config ?? localTest
    const identity = yield* identityOf(0)
    const outer = yield* Effect.scope
    const base = yield* Layer.buildWithScope(baseLayer(identity), outer).pipe(
      Effect.provideService(DhtConfig.DhtConfig, config)
    )
    const events = yield* Context.get(base, DhtEvents.DhtEvents).subscribe
    const requester = options.pipeline === true
      ? OutboundPipeline.layer().pipe(Layer.provide(DedupCache.layerMemory))
      : recordingRequester(options.sent, options.failure)
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const built = yield* Layer.buildWithScope(
      Discovery.layer.pipe(Layer.provide(requester), Layer.provide(Layer.succeedContext(base))),
      scope
    ).pipe(Effect.provideService(DhtConfig.DhtConfig, config))
    const node: Requester = {
      identity,
      base,
      discovery: Context.get(built, CoreDiscovery.Discovery),
      scope,
      events
    }
    return node
  })

const eventsOf = (node: Requester) => Effect.map(Queue.takeAll(node.events), Chunk.toReadonlyArray)

const decodeRequest = (sent: Sent) =>
  Effect.gen(function*() {
    expect(sent.body).toBeInstanceOf(Envelope.EnvelopeBody)
    const body = sent.body instanceof Envelope.EnvelopeBody ? sent.body : yield* Effect.dieMessage("not a body")
    return yield* DhtMessages.decodeDiscovery(body.parts[0]!)
  })

const nonceOf = (sent: ReadonlyArray<Sent>, i = 0) => Effect.map(decodeRequest(sent[i]!), (m) => m.nonce)

// --- tests ---

describe("Discovery (requester side)", () => {
  it.scoped("discovering this node's own key fails CannotDiscoverThisNode and sends nothing", () =>
    Effect.gen(function*() {
      const sent = yield* Ref.make<ReadonlyArray<Sent>>([])
      const node = yield* startRequester({ sent })
      const error = yield* Effect.flip(node.discovery.discover(node.identity.publicKey))
      expect(error).toEqual(new DhtError.CannotDiscoverThisNode())
      yield* settle
      expect(yield* Ref.get(sent)).toEqual([])
    }).pipe(Effect.provide(shared)))

  it.scoped("the request: encrypted for the key, propagated towards it, carrying this node's signed claim and a nonce the in-flight table knows", () =>
    Effect.gen(function*() {
      const sent = yield* Ref.make<ReadonlyArray<Sent>>([])
      const node = yield* startRequester({ sent })
      const target = yield* identityOf(1)
      yield* Effect.fork(node.discovery.discover(target.publicKey))
      yield* eventually(Effect.map(Ref.get(sent), (all) => all.length === 1))
      const [request] = yield* Ref.get(sent)
      const destination = Envelope.destinationPublicKey(target.publicKey)
      expect(request!.params).toEqual(OutboundRequester.makeParams({
        strategy: BroadcastStrategy.Propagate({ destination, excluded: [] }),
        destination,
        encryption: OutboundRequester.encryptFor(target.publicKey),
        messageType: Envelope.DhtMessageType.Discovery,
        tag: request!.params.tag
      }))
      const message = yield* decodeRequest(request!)
      expect(message.publicKey).toEqual(node.identity.publicKey)
      expect(message.addresses).toEqual([addressOf(node.identity)])
      expect(message.peerFeatures).toBe(Peer.PeerFeatures.COMMUNICATION_NODE)
      expect(yield* PeerValidator.verifyClaim(node.identity.publicKey, message.claim)).toBe(true)
      expect(yield* node.discovery.pendingKey(message.nonce)).toEqual(Option.some(target.publicKey))
      expect(yield* node.discovery.pendingKey(message.nonce + 1n)).toEqual(Option.none())
      expect(yield* inflight).toBe(1)
    }).pipe(Effect.provide(shared)))

  it.scoped("scenario 24 (requester side): concurrent discoveries of one key share one request; the response resolves both, records the peer and publishes DiscoveryCompleted", () =>
    Effect.gen(function*() {
      const sent = yield* Ref.make<ReadonlyArray<Sent>>([])
      const node = yield* startRequester({ sent })
      const target = yield* identityOf(2)
      const okBefore = yield* requests("ok")
      const first = yield* Effect.fork(node.discovery.discover(target.publicKey))
      yield* eventually(Effect.map(Ref.get(sent), (all) => all.length === 1))
      yield* TestClock.adjust("3 seconds")
      const second = yield* Effect.fork(node.discovery.discover(target.publicKey))
      yield* settle
      expect((yield* Ref.get(sent)).length).toBe(1)

      yield* TestClock.adjust("2 seconds")
      const nonce = yield* nonceOf(yield* Ref.get(sent))
      const peer = recordOf(target)
      expect(yield* node.discovery.handleResponse(nonce, peer)).toBe(true)
      expect(yield* Fiber.join(first)).toEqual(peer)
      expect(yield* Fiber.join(second)).toEqual(peer)
      expect((yield* eventsOf(node)).filter(DhtEvent.DhtEvent.$is("DiscoveryCompleted"))).toEqual([
        DhtEvent.DiscoveryCompleted({ publicKey: target.publicKey, elapsedMs: 5000 })
      ])
      expect(yield* requests("ok")).toBe(okBefore + 1)
      const table = Context.get(node.base, PeerManager.PeerManager)
      expect((yield* Effect.orDie(table.get(target.nodeId))).publicKey).toEqual(target.publicKey)

      // the request is over: its nonce is forgotten, a late copy of the response finds nothing
      expect(yield* node.discovery.pendingKey(nonce)).toEqual(Option.none())
      expect(yield* node.discovery.handleResponse(nonce, peer)).toBe(false)
      expect(yield* inflight).toBe(0)
      // a later discovery of the same key is a new request
      yield* Effect.fork(node.discovery.discover(target.publicKey))
      yield* eventually(Effect.map(Ref.get(sent), (all) => all.length === 2))
      expect(yield* nonceOf(yield* Ref.get(sent), 1)).not.toBe(nonce)
    }).pipe(Effect.provide(shared)))

  it.scoped("a response naming another key resolves nothing", () =>
    Effect.gen(function*() {
      const sent = yield* Ref.make<ReadonlyArray<Sent>>([])
      const node = yield* startRequester({ sent })
      const target = yield* identityOf(3)
      const other = yield* identityOf(4)
      const waiting = yield* Effect.fork(node.discovery.discover(target.publicKey))
      yield* eventually(Effect.map(Ref.get(sent), (all) => all.length === 1))
      const nonce = yield* nonceOf(yield* Ref.get(sent))
      expect(yield* node.discovery.handleResponse(nonce, recordOf(other))).toBe(false)
      yield* settle
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
      expect(yield* node.discovery.pendingKey(nonce)).toEqual(Option.some(target.publicKey))
    }).pipe(Effect.provide(shared)))

  it.scoped("scenario 25: with no route, discover fails DiscoveryTimeout at exactly 2 min and DiscoveryFailed is published", () =>
    Effect.gen(function*() {
      const sent = yield* Ref.make<ReadonlyArray<Sent>>([])
      // the real outbound pipeline, on a node that knows no peer
      const node = yield* startRequester({ sent, pipeline: true })
      const target = yield* identityOf(5)
      const timeoutsBefore = yield* requests("timeout")
      const waiting = yield* Effect.fork(node.discovery.discover(target.publicKey))
      yield* settle
      yield* TestClock.adjust("119999 millis")
      yield* settle
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
      yield* TestClock.adjust("1 millis")
      expect(yield* Effect.flip(Fiber.join(waiting))).toEqual(new DhtError.DiscoveryTimeout())
      expect((yield* eventsOf(node)).filter(DhtEvent.DhtEvent.$is("DiscoveryFailed"))).toEqual([
        DhtEvent.DiscoveryFailed({ publicKey: target.publicKey, reason: "Timeout" })
      ])
      expect(yield* requests("timeout")).toBe(timeoutsBefore + 1)
      expect(yield* inflight).toBe(0)
    }).pipe(Effect.provide(shared)))

  it.scoped("a request that cannot be sent fails DiscoveryFailed{SendFailed} for every caller", () =>
    Effect.gen(function*() {
      const sent = yield* Ref.make<ReadonlyArray<Sent>>([])
      const node = yield* startRequester({ sent, failure: new DhtError.DhtShutdown() })
      const target = yield* identityOf(6)
      const failedBefore = yield* requests("failed")
      const error = yield* Effect.flip(node.discovery.discover(target.publicKey))
      expect(error).toEqual(new DhtError.DiscoveryFailed({ reason: "SendFailed" }))
      expect((yield* eventsOf(node)).filter(DhtEvent.DhtEvent.$is("DiscoveryFailed"))).toEqual([
        DhtEvent.DiscoveryFailed({ publicKey: target.publicKey, reason: "SendFailed" })
      ])
      expect(yield* requests("failed")).toBe(failedBefore + 1)
    }).pipe(Effect.provide(shared)))

  it.scoped("a request whose callers have all gone is dropped: its nonce is forgotten and a late response resolves nothing", () =>
    Effect.gen(function*() {
      const sent = yield* Ref.make<ReadonlyArray<Sent>>([])
      const node = yield* startRequester({ sent })
      const target = yield* identityOf(7)
      const a = yield* Effect.fork(node.discovery.discover(target.publicKey))
      const b = yield* Effect.fork(node.discovery.discover(target.publicKey))
      yield* eventually(Effect.map(Ref.get(sent), (all) => all.length === 1))
      const nonce = yield* nonceOf(yield* Ref.get(sent))
      yield* Fiber.interrupt(a)
      expect(yield* node.discovery.pendingKey(nonce)).toEqual(Option.some(target.publicKey))
      yield* Fiber.interrupt(b)
      expect(yield* node.discovery.pendingKey(nonce)).toEqual(Option.none())
      expect(yield* node.discovery.handleResponse(nonce, recordOf(target))).toBe(false)
      expect(yield* inflight).toBe(0)
      // no timeout fires for it later
      yield* TestClock.adjust("3 minutes")
      expect((yield* eventsOf(node)).filter(DhtEvent.DhtEvent.$is("DiscoveryFailed"))).toEqual([])
    }).pipe(Effect.provide(shared)))

  it.scoped("closing the scope fails waiting callers and later calls with DiscoveryFailed{Shutdown}", () =>
    Effect.gen(function*() {
      const sent = yield* Ref.make<ReadonlyArray<Sent>>([])
      const node = yield* startRequester({ sent })
      const target = yield* identityOf(8)
      const waiting = yield* Effect.fork(node.discovery.discover(target.publicKey))
      yield* eventually(Effect.map(Ref.get(sent), (all) => all.length === 1))
      yield* Scope.close(node.scope, Exit.void)
      const shutdown = new DhtError.DiscoveryFailed({ reason: "Shutdown" })
      expect(yield* Effect.flip(Fiber.join(waiting))).toEqual(shutdown)
      expect(yield* Effect.flip(node.discovery.discover(target.publicKey))).toEqual(shutdown)
      expect((yield* eventsOf(node)).filter(DhtEvent.DhtEvent.$is("DiscoveryFailed"))).toContainEqual(
        DhtEvent.DiscoveryFailed({ publicKey: target.publicKey, reason: "Shutdown" })
      )
      expect(yield* inflight).toBe(0)
    }).pipe(Effect.provide(shared)))

  it.scoped("callers beyond discoveryQueueCapacity wait for room; requests are sent one at a time; a request outlives the caller that made it while others wait for it", () =>
    Effect.gen(function*() {
      const gate = yield* Effect.makeLatch(false)
      const sent = yield* Ref.make<ReadonlyArray<Sent>>([])
      const config = DhtConfig.unsafeMake({ discoveryQueueCapacity: 1 }, localTest)
      const identity = yield* identityOf(0)
      const base = yield* Layer.buildWithScope(baseLayer(identity), yield* Effect.scope).pipe(
        Effect.provideService(DhtConfig.DhtConfig, config)
      )
      const slow = Layer.succeed(
        OutboundRequester.OutboundRequester,
        OutboundRequester.OutboundRequester.of({
          send: (params, body) =>
            Ref.update(sent, (all) => [...all, { params, body }]).pipe(
              Effect.zipRight(gate.await),
              Effect.as(OutboundRequester.SendMessageResponse.Queued({ states: OutboundRequester.noSendStates }))
            ),
          offerForward: () => Effect.succeed(false)
        })
      )
      const discovery = Context.get(
        yield* Layer.build(Discovery.layer.pipe(Layer.provide(slow), Layer.provide(Layer.succeedContext(base)))).pipe(
          Effect.provideService(DhtConfig.DhtConfig, config)
        ),
        CoreDiscovery.Discovery
      )
      const targets = yield* Effect.forEach([11, 12, 13], identityOf)
      const callers = yield* Effect.forEach(targets, (t) => Effect.fork(discovery.discover(t.publicKey)))
      yield* settle
      // the first is being sent, the second waits in the queue, the third for room in it
      expect((yield* Ref.get(sent)).length).toBe(1)
      expect(yield* inflight).toBe(3)
      // another caller joins the third request; the one that made it gives up: the request still goes out
      const joined = yield* Effect.fork(discovery.discover(targets[2]!.publicKey))
      yield* settle
      yield* Fiber.interrupt(callers[2]!)
      expect(yield* inflight).toBe(3)
      yield* gate.open
      yield* eventually(Effect.map(Ref.get(sent), (all) => all.length === 3))
      // in the order they were asked for
      expect((yield* Ref.get(sent)).map((s) => s.params.encryption)).toEqual(
        targets.map((t) => OutboundRequester.encryptFor(t.publicKey))
      )
      const nonce = yield* nonceOf(yield* Ref.get(sent), 2)
      expect(yield* discovery.handleResponse(nonce, recordOf(targets[2]!))).toBe(true)
      expect((yield* Fiber.join(joined)).publicKey).toEqual(targets[2]!.publicKey)
      yield* Fiber.interrupt(callers[0]!)
      yield* Fiber.interrupt(callers[1]!)
    }).pipe(Effect.provide(shared)))
})

// --- scenario 24 end to end ---

type FullServices =
  | Transport.Transport
  | PeerManager.PeerManager
  | NodeIdentity.NodeIdentity
  | OutboundRequester.OutboundRequester
  | InboundPipeline.Inbound
  | CoreDiscovery.Discovery

/**
 * A full node: both pipelines, the actor and discovery. The outbound pipeline discovers unknown destinations through
 * the discovery service, which sends through the pipeline: a Deferred ties the knot.
 */
const fullNodeLayer = (identity: NodeIdentity.Identity) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const tie = yield* Deferred.make<CoreDiscovery.DiscoveryService>()
    const base = Layer.mergeAll(baseLayer(identity), DedupCache.layerMemory)
    const actor = DhtActor.layer.pipe(Layer.provide(DhtMetadata.layerMemory), Layer.provideMerge(base))
    const outbound = OutboundPipeline.layer({
      discover: (publicKey) => Effect.flatMap(Deferred.await(tie), (discovery) => discovery.discover(publicKey))
    }).pipe(Layer.provideMerge(actor))
    const discovery = Discovery.layer.pipe(
      Layer.tap((context) => Deferred.succeed(tie, Context.get(context, CoreDiscovery.Discovery))),
      Layer.provideMerge(outbound)
    )
    return InboundPipeline.layer().pipe(Layer.provideMerge(discovery))
  }))

interface FullNode {
  readonly identity: NodeIdentity.Identity
  readonly context: Context.Context<FullServices>
  readonly inbox: Queue.Dequeue<InboundMessages.DomainMessage>
}

const startFull = (identity: NodeIdentity.Identity) =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const context = yield* Layer.buildWithScope(fullNodeLayer(identity), scope).pipe(
      Effect.provideService(DhtConfig.DhtConfig, localTest)
    )
    const inbox = yield* Context.get(context, InboundPipeline.Inbound).subscribe
    const node: FullNode = { identity, context, inbox }
    return node
  })

/** `a` learns `b`'s address and dials it. */
const link = (a: FullNode, b: FullNode) =>
  Effect.gen(function*() {
    yield* Effect.orDie(Context.get(a.context, PeerManager.PeerManager).add(recordOf(b.identity)))
    yield* Effect.orDie(Context.get(a.context, Transport.Transport).dial(b.identity.nodeId))
  })

/** Nine identities whose distances to `target` strictly decrease, so that each hop of a line gets closer to it. */
const lineTowards = (target: NodeIdentity.Identity, pool: ReadonlyArray<NodeIdentity.Identity>) => {
  const farthestFirst = [...pool].sort((a, b) => NodeId.byDistanceTo(target.nodeId)(b.nodeId, a.nodeId))
  const step = Math.floor(farthestFirst.length / 9)
  return Array.from({ length: 9 }, (_, i) => farthestFirst[i * step]!)
}

describe("Discovery end to end", () => {
  it.scoped("scenario 24: in a 10-node line, node 0 discovers node 9 (unknown to it), learns its address and can then send it a direct message; a second concurrent discover resolves too", () =>
    Effect.gen(function*() {
      const target = yield* identityOf(100)
      const pool = yield* Effect.forEach(Array.from({ length: 45 }, (_, i) => 101 + i), identityOf)
      const identities = [...lineTowards(target, pool), target]
      const nodes = yield* Effect.forEach(identities, startFull)
      for (let i = 0; i + 1 < nodes.length; i++) yield* link(nodes[i]!, nodes[i + 1]!)
      const [first] = nodes
      const last = nodes[9]!
      const table = Context.get(first!.context, PeerManager.PeerManager)
      expect(yield* Effect.orDie(table.exists(target.nodeId))).toBe(false)

      const discovery = Context.get(first!.context, CoreDiscovery.Discovery)
      const okBefore = yield* requests("ok")
      const forwardedBefore = yield* forwardedF1
      const one = yield* Effect.fork(discovery.discover(target.publicKey))
      const two = yield* Effect.fork(discovery.discover(target.publicKey))
      yield* eventually(Effect.map(Fiber.poll(one), Option.isSome))
      const found = yield* Fiber.join(one)
      expect(found.publicKey).toEqual(target.publicKey)
      expect((yield* Fiber.join(two)).publicKey).toEqual(target.publicKey)
      expect(yield* requests("ok")).toBe(okBefore + 1)
      const learnt = yield* Effect.orDie(table.get(target.nodeId))
      expect(learnt.addresses.map((a) => a.address)).toContain(addressOf(target))
      // the request crossed the 8 nodes between, each forwarding it once towards the target (F1)
      expect((yield* forwardedF1) - forwardedBefore).toBe(8)

      // a direct, encrypted message now reaches it
      const hi = new TextEncoder().encode("hi")
      const states = yield* OutboundRequester.sendDirectEncrypted(target.publicKey, 7, hi).pipe(
        Effect.flatMap(OutboundRequester.resolve),
        Effect.provide(first!.context)
      )
      expect(states.peers.map(NodeId.toHex)).toEqual([NodeId.toHex(target.nodeId)])
      const delivered = yield* Queue.take(last.inbox)
      expect(new TextDecoder().decode(delivered.body)).toBe("hi")
      expect(delivered.origin).toEqual(Option.some(first!.identity.publicKey))
      // the nodes between forwarded the request and delivered nothing
      for (const node of nodes.slice(1, 9)) expect(yield* Queue.size(node.inbox)).toBe(0)
    }).pipe(Effect.provide(shared)))
})
