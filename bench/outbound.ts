/**
 * Outbound pipeline benchmarks: one encrypted direct request (a 1 KiB application body) through the live requester
 * — handed to a waiting worker, then broadcast, encrypt and serialize — until the transport has taken the frame and
 * reported it written (`outbound.encrypted-direct`), against the crypto that request cannot avoid — ECDH + KDF,
 * sealing the padded body, signing, sealing the signature — done alone in the same run (`outbound.crypto-only`). The
 * ratio is the share of a request's cost that is crypto. `outbound.floor` (same bound) is a requester on a queue
 * with nothing else: the request queued, taken by one fiber, the same crypto, the envelope encoded, the reply
 * completed and awaited (a `LightQueue` and a `LightDeferred`, the cheapest of each). The live requester hands
 * requests over in fewer steps than `Queue.take` and `Deferred.await` take, so the floor is a reference for its
 * ratio rather than a ceiling. Both use the node backend
 * (`@comms-dht/node/Crypto`); the `noble` pair repeats them on the portable backend. Requests go one after the
 * other, 32 to a call, and rates are per request.
 *
 * The transport is the benchmark's own: it collects each frame and completes its send state at once, so the figure
 * is the pipeline's and not an in-process network's. `outbound.memory-network` sends the same request over a
 * two-node `MemoryNetwork` (connection queue, writer fiber, the receiver's inbox), for comparison; it has no bound.
 */
import * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as Envelope from "@comms-dht/core/Envelope"
import * as LightDeferred from "@comms-dht/core/LightDeferred"
import * as LightQueue from "@comms-dht/core/LightQueue"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import * as NodeCrypto from "@comms-dht/node/Crypto"
import * as OutboundPipeline from "@comms-dht/outbound/OutboundPipeline"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Task } from "./main.js"
import { identity, peerOf, sealedEnvelope } from "./support.js"

const BODY_BYTES = 1024

/**
 * A transport connected to `peers`: `send` takes the frame (the latest is kept, to be checked) and reports it
 * written.
 */
const benchTransport = (peers: ReadonlyArray<NodeId.NodeId>) => {
  const sent: { last: Transport.OutboundMessage | undefined } = { last: undefined }
  const transport = Transport.Transport.of({
    send: (message) =>
      Effect.suspend(() => {
        sent.last = message
        return Deferred.succeed(message.reply, undefined)
      }),
    inbound: Effect.runSync(Queue.bounded<Transport.InboundMessage>(1)),
    dial: () => Effect.void,
    disconnect: () => Effect.void,
    isConnected: (peer) => Effect.succeed(peers.some((p) => NodeId.equals(p, peer))),
    connectedPeers: Effect.succeed(peers),
    events: Stream.never,
    subscribe: Queue.unbounded<Transport.ConnectionEvent>(),
    listenAddresses: ["mem://bench"]
  })
  return { transport, sent }
}

/** The sender's requester on the bench transport, its peer table holding the receiver. */
const onBenchTransport = (
  crypto: Crypto.CryptoService,
  sender: NodeIdentity.Identity,
  receiver: NodeIdentity.Identity
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const { sent, transport } = benchTransport([receiver.nodeId])
    const context = yield* Layer.buildWithScope(
      OutboundPipeline.layer().pipe(
        Layer.provideMerge(Layer.mergeAll(
          Layer.succeed(Transport.Transport, transport),
          Layer.succeed(Crypto.Crypto, crypto),
          NodeIdentity.layer(sender),
          DedupCache.layerMemory,
          Layer.effect(
            PeerManager.PeerManager,
            Effect.tap(PeerManager.makeMemory, (table) => Effect.orDie(table.add(peerOf(receiver))))
          )
        ))
      ),
      scope
    )
    // every frame must be the whole encrypted envelope for the receiver
    const check = Effect.suspend(() => {
      const frame = sent.last
      return frame !== undefined && NodeId.equals(frame.peer, receiver.nodeId) && frame.bytes.length > 6_000
        ? Effect.void
        : Effect.dieMessage("a benchmark request did not reach the transport")
    })
    return { context, check }
  })

const endpoint = (id: NodeIdentity.Identity) =>
  MemoryNetwork.layer().pipe(
    Layer.provideMerge(Layer.mergeAll(PeerManager.layerMemory, NodeIdentity.layer(id))),
    Layer.orDie
  )

/** The sender's requester on a two-node `MemoryNetwork`, connected to the receiver, which drains its inbox. */
const onMemoryNetwork = (
  crypto: Crypto.CryptoService,
  sender: NodeIdentity.Identity,
  receiver: NodeIdentity.Identity
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const cryptoLayer = Layer.succeed(Crypto.Crypto, crypto)
    const hub = yield* Layer.buildWithScope(MemoryNetwork.layerHub(), scope)
    const shared = Layer.merge(Layer.succeedContext(hub), cryptoLayer)
    const receiving = yield* Layer.buildWithScope(Layer.provide(endpoint(receiver), shared), scope)
    yield* Effect.flatMap(Transport.Transport, (t) => Effect.forever(Queue.take(t.inbound))).pipe(
      Effect.provide(receiving),
      Effect.forkIn(scope)
    )
    const context = yield* Layer.buildWithScope(
      OutboundPipeline.layer().pipe(
        Layer.provideMerge(Layer.mergeAll(endpoint(sender), DedupCache.layerMemory)),
        Layer.provideMerge(shared)
      ),
      scope
    )
    yield* Effect.gen(function*() {
      yield* Effect.orDie((yield* PeerManager.PeerManager).add(peerOf(receiver)))
      yield* Effect.orDie((yield* Transport.Transport).dial(receiver.nodeId))
    }).pipe(Effect.provide(context))
    return { context, check: Effect.void }
  })

/** Requests per call of a task (see `Task.batch`). */
const BATCH = 32

/** `BATCH` requests one after the other, each run until its one send state reports the frame written. */
const request = (
  receiver: NodeIdentity.Identity,
  context: Context.Context<OutboundRequester.OutboundRequester>,
  check: Effect.Effect<void>
) => {
  const one = OutboundRequester.sendDirectEncrypted(receiver.publicKey, 1, new Uint8Array(BODY_BYTES).fill(7)).pipe(
    Effect.flatMap(OutboundRequester.resolve),
    Effect.flatMap((states) => states.waitSingle),
    Effect.flatMap((written) => written ? check : Effect.dieMessage("a benchmark request was not written"))
  )
  return Effect.provide(Effect.repeatN(one, BATCH - 1), context)
}

/** The crypto-only and pipeline pair on `make`'s backend; `full` adds the floor and the memory network. */
const pair = async (
  prefix: string,
  make: () => Effect.Effect<Crypto.CryptoService>,
  full: boolean
): Promise<Array<Task>> => {
  const crypto = await Effect.runPromise(make())
  const sender = await Effect.runPromise(identity(crypto))
  const receiver = await Effect.runPromise(identity(crypto))
  const bench = await Effect.runPromise(onBenchTransport(crypto, sender, receiver))
  const direct = request(receiver, bench.context, bench.check)
  // the same request's crypto, alone: the plaintext the pipeline encrypts, the fields it signs
  const plaintext = Envelope.encodeEnvelopeBody(
    await Effect.runPromise(OutboundRequester.applicationBody(1, new Uint8Array(BODY_BYTES).fill(7)))
  )
  const fields: MessageCrypto.EncryptFields = {
    version: 1,
    destination: Envelope.destinationPublicKey(receiver.publicKey),
    messageType: Envelope.DhtMessageType.None,
    flags: Envelope.DhtMessageFlags.NONE,
    expires: 1_735_700_400n
  }
  const cryptoOnly = Effect.provideService(
    Effect.repeatN(MessageCrypto.encrypt(sender, receiver.publicKey, fields, plaintext), BATCH - 1),
    Crypto.Crypto,
    crypto
  )
  // The floor: what any requester on a queue pays besides the crypto. The caller offers a request with its reply to
  // a queue; one fiber takes it, does the crypto above, encodes the envelope and completes the reply, which the
  // caller awaits: the requester's queue and reply, with nothing between them but the crypto and the encoding.
  const floorQueue = await Effect.runPromise(LightQueue.bounded<Deferred.Deferred<number>>(BATCH))
  const floorWorker = Effect.forever(
    Effect.flatMap(Queue.take(floorQueue), (reply) =>
      Effect.flatMap(
        MessageCrypto.encrypt(sender, receiver.publicKey, fields, plaintext),
        (sealed) => Deferred.succeed(reply, sealedEnvelope(fields, sealed, 1n).bytes.length)
      ))
  )
  await Effect.runPromise(Effect.forkDaemon(Effect.provideService(floorWorker, Crypto.Crypto, crypto)))
  const floorOne = Effect.flatMap(LightDeferred.make<number>(), (reply) =>
    Effect.zipRight(
      Queue.offer(floorQueue, reply),
      Effect.flatMap(
        Deferred.await(reply),
        (length) => length > 6_000 ? Effect.void : Effect.dieMessage("a floor request was not encoded")
      )
    ))
  const floor = Effect.repeatN(floorOne, BATCH - 1)
  let sink = 0
  const tasks: Array<Task> = [
    { name: `${prefix}crypto-only`, fn: () => void (sink ^= Effect.runSync(cryptoOnly).body.length), batch: BATCH },
    {
      name: `${prefix}encrypted-direct`,
      fn: () => Effect.runPromise(direct),
      bound: `${prefix}crypto-only`,
      batch: BATCH
    }
  ]
  if (!full) return tasks
  const memory = await Effect.runPromise(onMemoryNetwork(crypto, sender, receiver))
  const overMemory = request(receiver, memory.context, memory.check)
  return [
    ...tasks,
    { name: `${prefix}floor`, fn: () => Effect.runPromise(floor), bound: `${prefix}crypto-only`, batch: BATCH },
    { name: `${prefix}memory-network`, fn: () => Effect.runPromise(overMemory), batch: BATCH }
  ]
}

/** `outbound.*` (node backend) and `outbound.noble.*`. */
export const outboundBenches = async (): Promise<ReadonlyArray<Task>> => [
  ...(await pair("outbound.", () => NodeCrypto.makeNode(), true)),
  ...(await pair("outbound.noble.", () => Crypto.makeNoble(), false))
]
