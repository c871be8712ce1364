import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Envelope from "@comms-dht/core/Envelope"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Receipts from "@comms-dht/core/Receipts"
import * as Rejections from "@comms-dht/inbound/Rejections"
import * as Transport from "@comms-dht/core/Transport"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as NodeCrypto from "../src/Crypto.js"
import * as Dht from "../src/Dht.js"
import * as Reliable from "../src/Reliable.js"
import {
  addressOf,
  config,
  connect,
  drain,
  eventually,
  identity,
  makeNode,
  MESSAGE_TYPE,
  offlineTriangle,
  settle,
  type Shared,
  START,
  storedCount,
  type TestNode,
  text,
  textOf
} from "./fullNodes.js"

interface Rejected {
  readonly tag: string
  readonly reason: string
  readonly source: string
}

// the hub and crypto every node shares, and the typed rejections of every node's pipeline
const makeShared = Effect.gen(function*() {
  const rejected = yield* Ref.make<ReadonlyArray<Rejected>>([])
  const observer = Layer.succeed(
    Rejections.Observer,
    (error, blame) =>
      Ref.update(rejected, (all) => [...all, {
        tag: error._tag,
        reason: "reason" in error ? String(error.reason) : "",
        source: NodeId.toHex(blame.source)
      }])
  )
  const shared = yield* Layer.build(Layer.mergeAll(MemoryNetwork.layerHub(), NodeCrypto.layerNode(), observer))
  return { shared, rejected }
})

// a node on core's memory storage, on the network from the start: many of them make a large network cheaply
const makeMemoryNode = (n: number, shared: Context.Context<Shared>, delivered: Ref.Ref<number>) =>
  Effect.gen(function*() {
    const id = yield* identity(n)
    const storage = yield* Layer.build(Layer.mergeAll(
      PeerManager.layerMemory,
      MessageStore.layerMemory,
      DedupCache.layerMemory,
      DhtMetadata.layerMemory,
      NodeIdentity.layer(id)
    ).pipe(Layer.provide(DhtConfig.layer(config))))
    const context = yield* Layer.build(
      Dht.layer(config).pipe(Layer.provideMerge(MemoryNetwork.layer({ address: addressOf(id) })))
    ).pipe(Effect.provide(Context.merge(storage, shared)))
    const dht = Context.get(context, Dht.Dht)
    yield* Effect.forkScoped(Stream.runForEach(dht.inbound, () => Ref.update(delivered, (k) => k + 1)))
    const node: TestNode = {
      id,
      start: Effect.void,
      stop: Effect.void,
      dht: Effect.succeed(dht),
      inbox: Effect.dieMessage("no inbox"),
      run: (effect) => Effect.provide(effect, storage),
      transport: Effect.succeed(Context.get(context, Transport.Transport))
    }
    return node
  })

const receiptEvents = (event: string) =>
  Effect.map(Metric.value(Metric.tagged(DhtMetrics.receipts, "event", event)), (s) => s.count)
const rejectedInbound = (reason: string) =>
  Effect.map(Metric.value(Metric.tagged(DhtMetrics.inboundRejected, "reason", reason)), (s) => s.count)

const sendReliable = (
  from: TestNode,
  to: TestNode,
  body: string,
  options: { readonly policy?: Schedule.Schedule<unknown>; readonly request?: Partial<Reliable.ReliableRequest> } = {}
) =>
  Effect.flatMap(from.dht, (dht) =>
    dht.sendReliable(
      { destination: to.id.publicKey, messageType: MESSAGE_TYPE, body: text(body), ...options.request },
      options.policy
    )).pipe(Effect.orDie)

const statusOf = (delivery: Reliable.Delivery) => Effect.map(delivery.status, (s) => s._tag)

// a Receipt message from `from` to `to`, encrypted for `to` like a genuine one
const sendReceipt = (from: TestNode, to: TestNode, receipt: Receipts.Receipt) =>
  Effect.gen(function*() {
    const dht = yield* from.dht
    const destination = Envelope.destinationPublicKey(to.id.publicKey)
    const states = yield* dht.send(
      OutboundRequester.makeParams({
        strategy: BroadcastStrategy.DirectPublicKey({ publicKey: to.id.publicKey }),
        destination,
        encryption: OutboundRequester.encryptFor(to.id.publicKey),
        messageType: Envelope.DhtMessageType.Receipt
      }),
      Receipts.toBody(receipt)
    )
    yield* states.waitAll
  }).pipe(Effect.orDie)

describe("reliable delivery with receipts (docs/spec-departures.md §2)", () => {
  it.scoped("a direct send to an online node is Delivered, once, with one receipt", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(START)
      const { shared } = yield* makeShared
      const [a, b] = yield* Effect.all([makeNode(1, shared), makeNode(2, shared)])
      yield* Effect.forEach([a, b], (n) => n.start, { discard: true })
      yield* connect(a, b)
      const sentBefore = yield* receiptEvents("sent")
      const acceptedBefore = yield* receiptEvents("accepted")

      const delivery = yield* sendReliable(a, b, "hello")
      const changes = yield* delivery.changes.pipe(
        Stream.map((s) => s._tag),
        Stream.take(2),
        Stream.runCollect,
        Effect.fork
      )
      const final = yield* delivery.await("1 minute")
      expect(final._tag).toBe("Delivered")
      expect(Chunk.toReadonlyArray(yield* changes.await.pipe(Effect.flatten))).toEqual(["Sent", "Delivered"])
      const message = yield* Effect.flatMap(b.inbox, Queue.take)
      expect(textOf(message.body)).toBe("hello")
      expect(Envelope.isReceiptRequested(message.header.flags)).toBe(true)
      // the retries of the policy, had they run, would have been the same message: nothing more arrives
      yield* TestClock.adjust("2 minutes")
      yield* settle
      expect(yield* drain(b)).toEqual([])
      expect((yield* receiptEvents("sent")) - sentBefore).toBe(1)
      expect((yield* receiptEvents("accepted")) - acceptedBefore).toBe(1)
      expect(yield* statusOf(delivery)).toBe("Delivered")
    }))

  it.scoped("an offline destination: Stored at its closest node, Delivered once it is back, the SAF copy removed", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(START)
      const { shared } = yield* makeShared
      const [a, s, b] = yield* offlineTriangle(shared)
      const cleanedBefore = yield* receiptEvents("safCleaned")

      const policy = Schedule.spaced("5 seconds").pipe(Schedule.intersect(Schedule.recurs(2)))
      const delivery = yield* sendReliable(a, b, "while you were away", { policy })
      yield* settle
      // the direct attempt failed to dial: no one holds it yet
      expect(yield* statusOf(delivery)).toBe("Sent")
      expect(yield* storedCount(s)).toBe(0)
      // the retry goes to b's closest nodes, which store it
      yield* TestClock.adjust("5 seconds")
      yield* eventually(Effect.map(storedCount(s), (k) => k === 1))
      yield* eventually(Effect.map(statusOf(delivery), (tag) => tag === "Stored"))

      yield* b.start
      yield* connect(b, s)
      yield* Effect.flatMap(b.dht, (dht) => dht.requestStoredMessages)
      const message = yield* Effect.flatMap(b.inbox, Queue.take)
      expect(textOf(message.body)).toBe("while you were away")
      expect(message.isSafMessage).toBe(true)
      const final = yield* delivery.await("1 minute")
      expect(final._tag).toBe("Delivered")
      // b's receipt, in clear to its closest nodes, had s drop its copy
      yield* eventually(Effect.map(storedCount(s), (k) => k === 0))
      expect((yield* receiptEvents("safCleaned")) - cleanedBefore).toBe(1)
      yield* TestClock.adjust("1 minute")
      yield* settle
      expect(yield* drain(b)).toEqual([])
    }))

  it.scoped("a destination that never returns: Expired at the message's expiry, not before", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(START)
      const { shared } = yield* makeShared
      const [a, , b] = yield* offlineTriangle(shared)

      const delivery = yield* sendReliable(a, b, "never read", { request: { expiresIn: "10 minutes" } })
      yield* TestClock.adjust("9 minutes")
      yield* settle
      // the default policy's retries reached b's closest node
      expect(yield* statusOf(delivery)).toBe("Stored")
      const waiting = yield* Effect.fork(delivery.await("1 hour"))
      yield* TestClock.adjust("61 seconds")
      expect((yield* waiting.await.pipe(Effect.flatten))._tag).toBe("Expired")
      expect(yield* statusOf(delivery)).toBe("Expired")
      // a caller that stops waiting first gets the typed timeout
      const other = yield* sendReliable(a, b, "also never read")
      const timedOut = yield* Effect.fork(Effect.flip(other.await("30 seconds")))
      yield* TestClock.adjust("30 seconds")
      expect((yield* timedOut.await.pipe(Effect.flatten))._tag).toBe("DeliveryTimeout")
    }))

  it.scoped("forged receipts (wrong signer, wrong hash, replayed for another message): rejected, typed, counted", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(START)
      const { rejected, shared } = yield* makeShared
      const [a, b, m] = yield* Effect.all([makeNode(1, shared), makeNode(2, shared), makeNode(5, shared)])
      yield* Effect.forEach([a, b, m], (n) => n.start, { discard: true })
      yield* connect(a, m)
      yield* connect(a, b)
      yield* b.stop
      yield* settle

      // direct only, no retries: nothing reaches b, so the only receipts a sees are the forged ones
      const delivery = yield* sendReliable(a, b, "for b", {
        policy: Schedule.stop,
        request: { strategies: ["direct"] }
      })
      yield* settle
      yield* b.start
      yield* connect(b, a)
      const before = yield* rejectedInbound("InvalidReceipt")
      const sign = (who: TestNode, hash: Uint8Array) =>
        Receipts.sign(who.id, hash).pipe(Effect.provide(shared))

      // wrong signer: m signs the right hash with its own key
      yield* sendReceipt(m, a, yield* sign(m, delivery.messageHash))
      // wrong hash: b's signature over another hash, claimed for this message
      const other = new Uint8Array(32).fill(7)
      const forOther = yield* sign(b, other)
      const misattributed = new Receipts.Receipt({ messageHash: delivery.messageHash, signature: forOther.signature })
      yield* sendReceipt(b, a, misattributed)
      // replayed for another message: b's genuine receipt of a message a is not waiting on
      yield* sendReceipt(b, a, forOther)
      yield* eventually(Effect.map(rejectedInbound("InvalidReceipt"), (k) => k - before === 3))

      const reasons = (yield* Ref.get(rejected)).filter((r) => r.tag === "InvalidReceipt").map((r) => r.reason)
      expect(reasons).toEqual(["WrongSigner", "BadSignature", "UnknownMessage"])
      expect(yield* statusOf(delivery)).toBe("Sent")
      // nobody is banned for it
      const peers = yield* a.run(PeerManager.PeerManager)
      expect((yield* a.run(peers.get(m.id.nodeId))).isBanned(START)).toBe(false)
    }))

  it.scoped("receipts do not amplify: a 200-node flood asking for receipts gets none, and each reliable send one", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(START)
      const { shared } = yield* makeShared
      const delivered = yield* Ref.make(0)
      const size = 200
      const nodes = yield* Effect.forEach(
        Array.from({ length: size }, (_, i) => i + 10),
        (n) => makeMemoryNode(n, shared, delivered)
      )
      const at = (i: number) => nodes[i % size]!
      // a ring where each node also knows the node two along: connected, degree 4
      yield* Effect.forEach(nodes, (node, i) => Effect.zipRight(connect(node, at(i + 1)), connect(node, at(i + 2))), {
        discard: true
      })
      yield* settle
      const sentBefore = yield* receiptEvents("sent")
      const acceptedBefore = yield* receiptEvents("accepted")

      // a signed cleartext flood with RECEIPT_REQUESTED set: every node delivers it, none answers it
      const origin = yield* at(0).dht
      const body = yield* OutboundRequester.applicationBody(MESSAGE_TYPE, text("to everyone"))
      yield* origin.send(
        OutboundRequester.makeParams({
          strategy: BroadcastStrategy.Flood({ excluded: [] }),
          forceOrigin: true,
          extraFlags: Envelope.DhtMessageFlags.RECEIPT_REQUESTED
        }),
        body
      ).pipe(Effect.orDie)
      // while it spreads, five nodes send reliably to a neighbour
      const deliveries = yield* Effect.forEach([20, 60, 100, 140, 180], (i) => sendReliable(at(i), at(i + 1), `r${i}`))
      const finals = yield* Effect.forEach(deliveries, (d) => d.await("1 minute"))
      expect(finals.map((s) => s._tag)).toEqual(Array(5).fill("Delivered"))
      yield* eventually(Effect.map(Ref.get(delivered), (k) => k === size - 1 + 5))
      yield* TestClock.adjust("2 minutes")
      yield* settle
      expect(yield* Ref.get(delivered)).toBe(size - 1 + 5)
      expect((yield* receiptEvents("sent")) - sentBefore).toBe(5)
      expect((yield* receiptEvents("accepted")) - acceptedBefore).toBe(5)
    }), { timeout: 300_000 })
})
