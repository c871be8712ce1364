/**
 * Inbound pipeline benchmarks. `inbound.encrypted-direct`: one encrypted direct message (a 1 KiB application body)
 * through every stage of a running `InboundPipeline.layer` — from the transport's inbox to the application's
 * subscription — decrypted and verified, each message fresh; bound: `inbound.crypto-only`, the crypto that message
 * cannot avoid (the challenge and the dedup hash, ECDH + KDF, opening the sealed signature, verifying it through a
 * fresh verification memo, opening the body) done alone in the same run.
 * `inbound.floor` (bound: the same crypto) is the least any pipeline between two queues can cost: the frame decoded
 * and the same crypto, on one fiber between an inbox and an outbox (`LightQueue`s, as the node's inbox and its
 * subscribers' queues are), and nothing else; `encrypted-direct` cannot get above its ratio. `inbound.forward`: a message for another key, forwarded by the node (F1) until the outbound
 * pipeline hands it to the transport. Both on the node backend (`@comms-dht/node/Crypto`); the `noble` set repeats
 * the first pair on the portable backend. The pairs handle 32 messages a call, one after the other; rates are per
 * message.
 *
 * Fresh messages: a pool is generated before measuring, and when a run goes through it the node's dedup cache and
 * verification memo are replaced by empty ones, so no message is ever stopped as a duplicate or verified from memory.
 */
import * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtActor from "@comms-dht/core/DhtActor"
import * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as Envelope from "@comms-dht/core/Envelope"
import * as LightQueue from "@comms-dht/core/LightQueue"
import type * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import * as InboundPipeline from "@comms-dht/inbound/InboundPipeline"
import * as NodeCrypto from "@comms-dht/node/Crypto"
import * as OutboundPipeline from "@comms-dht/outbound/OutboundPipeline"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Task } from "./main.js"
import { identity, peerOf, sealedEnvelope } from "./support.js"

const BODY_BYTES = 1024

/**
 * Messages per call of a task (see `Task.batch`). Pools are whole numbers of batches: a batch is drawn before it is
 * sent, so a wrap-around (a fresh dedup cache) in the middle of one would send its first messages twice in a cycle.
 */
const BATCH = 32

interface Sealed {
  readonly header: Envelope.DhtMessageHeader
  readonly body: Uint8Array
  readonly bytes: Uint8Array
}

type MakeCrypto = (options?: Crypto.LayerOptions) => Effect.Effect<Crypto.CryptoService>

/**
 * A transport for one node that the benchmark drives: frames are offered to its inbox directly, sends are collected,
 * and `connected` peers are the ones the node may select.
 */
const benchTransport = (connected: ReadonlyArray<NodeId.NodeId>) =>
  Effect.gen(function*() {
    const inbound = yield* LightQueue.bounded<Transport.InboundMessage>(1_000)
    const sent = yield* Queue.unbounded<Transport.OutboundMessage>()
    const transport = Transport.Transport.of({
      send: (message) => Effect.zipRight(Queue.offer(sent, message), Deferred.succeed(message.reply, undefined)),
      inbound,
      dial: () => Effect.void,
      disconnect: () => Effect.void,
      isConnected: (peer) => Effect.succeed(connected.some((c) => NodeId.equals(c, peer))),
      connectedPeers: Effect.succeed(connected),
      events: Stream.never,
      subscribe: Queue.unbounded<Transport.ConnectionEvent>(),
      listenAddresses: ["mem://bench"]
    })
    return { transport, inbound, sent }
  })

/** Swappable state: what a wrap-around of the message pool replaces by fresh, empty instances. */
interface Resettable {
  cache: DedupCache.DedupCacheService
  crypto: Crypto.CryptoService
}

const resettableLayers = (state: Resettable) =>
  Layer.mergeAll(
    Layer.succeed(DedupCache.DedupCache, DedupCache.DedupCache.of({
      insert: (hash, sender, keepUntil) => Effect.suspend(() => state.cache.insert(hash, sender, keepUntil)),
      hitCount: (hash) => Effect.suspend(() => state.cache.hitCount(hash)),
      get: (hash) => Effect.suspend(() => state.cache.get(hash)),
      unsafeRecordHit: (hash, sender, nowMs, keepUntil) => state.cache.unsafeRecordHit(hash, sender, nowMs, keepUntil),
      trim: Effect.suspend(() => state.cache.trim),
      size: Effect.suspend(() => state.cache.size)
    })),
    Layer.succeed(Crypto.Crypto, {
      ...state.crypto,
      verify: (publicKey, signature, message) =>
        Effect.suspend(() => state.crypto.verify(publicKey, signature, message))
    })
  )

/** One node running both pipelines on a bench transport; `peers` are known to it. */
const node = (
  self: NodeIdentity.Identity,
  peers: ReadonlyArray<NodeIdentity.Identity>,
  connected: ReadonlyArray<NodeId.NodeId>,
  state: Resettable,
  scope: Scope.Scope,
  options: InboundPipeline.Options = {}
) =>
  Effect.gen(function*() {
    const { inbound, sent, transport } = yield* benchTransport(connected)
    const base = Layer.mergeAll(
      Layer.succeed(Transport.Transport, transport),
      Layer.effect(
        PeerManager.PeerManager,
        Effect.tap(PeerManager.makeMemory, (table) =>
          Effect.forEach(peers, (peer) => Effect.orDie(table.add(peerOf(peer))), { discard: true }))
      ),
      NodeIdentity.layer(self),
      DhtEvents.layer,
      resettableLayers(state)
    )
    const withActor = DhtActor.layer.pipe(Layer.provideMerge(base), Layer.provide(DhtMetadata.layerMemory))
    const context = yield* Layer.buildWithScope(
      InboundPipeline.layer(options).pipe(
        Layer.provideMerge(OutboundPipeline.layer().pipe(Layer.provideMerge(withActor)))
      ),
      scope
    )
    const delivered = yield* Effect.flatMap(InboundPipeline.Inbound, (i) => Scope.extend(i.subscribe, scope)).pipe(
      Effect.provide(context)
    )
    return { inbound, sent, delivered }
  })

const frame = (source: NodeId.NodeId, bytes: Uint8Array, tag: number): Transport.InboundMessage => ({
  sourcePeer: source,
  tag: BigInt(tag),
  bytes,
  receivedAt: 0
})

/** A pool of frames taken in turn; each wrap-around calls `reset` first. */
const cycle = <A>(pool: ReadonlyArray<A>, reset: () => Promise<void>) => {
  let next = 0
  return async (): Promise<A> => {
    if (next === pool.length) {
      next = 0
      await reset()
    }
    return pool[next++]!
  }
}

/**
 * `<prefix>floor`: what any pipeline on queues pays besides the crypto. One fiber takes each frame from a queue,
 * decodes the envelope, does `crypto-only`'s crypto and offers the plaintext to a second queue, which the caller
 * takes from: the transport's inbox and the application's subscription, with nothing between them but the crypto.
 */
const floorTask = async (
  prefix: string,
  make: MakeCrypto,
  receiver: NodeIdentity.Identity,
  pool: ReadonlyArray<Sealed>,
  scope: Scope.Scope,
  batchOf: (next: () => Promise<Sealed>) => Promise<ReadonlyArray<Sealed>>
): Promise<Task> => {
  const state = { crypto: await Effect.runPromise(make()) }
  const next = cycle(pool, async () => {
    state.crypto = await Effect.runPromise(make())
  })
  const inbox = await Effect.runPromise(LightQueue.bounded<Uint8Array>(BATCH))
  // a failure goes back to the caller as it is, so that a floor which did not decrypt fails the task
  const outbox = await Effect.runPromise(LightQueue.bounded<Exit.Exit<unknown, unknown>>(BATCH))
  const worker = Effect.forever(
    Effect.flatMap(Queue.take(inbox), (bytes) =>
      Effect.flatMap(
        Effect.exit(Effect.flatMap(Envelope.decodeEnvelope(bytes), ({ body, header }) =>
          MessageCrypto.challenge(header, body).pipe(
            Effect.tap((challenge) => MessageCrypto.dedupHashOf(challenge, header.messageSignature)),
            Effect.flatMap((challenge) => MessageCrypto.decryptBytes(receiver, header, body, challenge)),
            Effect.provideService(Crypto.Crypto, state.crypto)
          ))),
        (exit) => Queue.offer(outbox, exit)
      ))
  )
  await Effect.runPromise(Effect.forkIn(worker, scope))
  const run = (messages: ReadonlyArray<Sealed>) =>
    Effect.runPromise(
      Effect.forEach(
        messages,
        (message) => Effect.zipRight(Queue.offer(inbox, message.bytes), Effect.flatten(Queue.take(outbox))),
        { discard: true }
      )
    )
  return {
    name: `${prefix}floor`,
    fn: async () => run(await batchOf(next)),
    bound: `${prefix}crypto-only`,
    batch: BATCH
  }
}

const encryptedPair = async (
  prefix: string,
  make: MakeCrypto,
  poolSize: number,
  withFloor: boolean,
  options: InboundPipeline.Options = {}
): Promise<Array<Task>> => {
  const crypto = await Effect.runPromise(make())
  const sender = await Effect.runPromise(identity(crypto))
  const receiver = await Effect.runPromise(identity(crypto))
  const fresh = async (): Promise<Resettable> => ({
    cache: await Effect.runPromise(DedupCache.makeMemory),
    crypto: await Effect.runPromise(make())
  })
  const state = await fresh()
  const scope = await Effect.runPromise(Scope.make())
  const { delivered, inbound } = await Effect.runPromise(
    node(receiver, [sender], [sender.nodeId], state, scope, options)
  )

  // fresh envelopes, encrypted as the outbound pipeline would (one ephemeral key and two nonces each)
  const nowS = BigInt(Math.floor(Date.now() / 1000))
  const fields: MessageCrypto.EncryptFields = {
    version: 1,
    destination: Envelope.destinationPublicKey(receiver.publicKey),
    messageType: Envelope.DhtMessageType.None,
    flags: Envelope.DhtMessageFlags.NONE,
    expires: nowS + 3n * 3600n
  }
  const provided = <A, E>(effect: Effect.Effect<A, E, Crypto.Crypto>) =>
    Effect.runPromise(Effect.provideService(effect, Crypto.Crypto, crypto))
  const pool: Array<Sealed> = []
  for (let i = 0; i < poolSize; i++) {
    const body = await Effect.runPromise(
      OutboundRequester.applicationBody(1, new Uint8Array(BODY_BYTES).fill(i & 0xff))
    )
    const sealed = await provided(
      MessageCrypto.encrypt(sender, receiver.publicKey, fields, Envelope.encodeEnvelopeBody(body))
    )
    pool.push(sealedEnvelope(fields, sealed, BigInt(i)))
  }
  const reset = async () => {
    const next = await fresh()
    state.cache = next.cache
    state.crypto = next.crypto
  }
  const nextMessage = cycle(pool, reset)

  // the same messages' crypto alone, as the node does it: the challenge (one hash of the body) and the dedup hash
  // from it (SPEC §8.1), then ECDH + KDF, opening the signature, verifying it over that challenge through the
  // verification memo (SPEC §4: every verification goes through it; fresh, like the node's, so every lookup
  // misses), opening the body
  const alone = { crypto: await Effect.runPromise(make()) }
  const nextAlone = cycle(pool, async () => {
    alone.crypto = await Effect.runPromise(make())
  })
  const cryptoOnly = (messages: ReadonlyArray<Sealed>) =>
    Effect.runPromise(
      Effect.forEach(messages, (message) =>
        MessageCrypto.challenge(message.header, message.body).pipe(
          Effect.tap((challenge) => MessageCrypto.dedupHashOf(challenge, message.header.messageSignature)),
          Effect.flatMap((challenge) => MessageCrypto.decryptBytes(receiver, message.header, message.body, challenge))
        ), { discard: true }).pipe(Effect.provideService(Crypto.Crypto, alone.crypto))
    )

  let tag = 0
  // each message is offered and awaited on its own, as before; only the runtime is started once per batch
  const step = (messages: ReadonlyArray<Sealed>) =>
    Effect.runPromise(
      Effect.forEach(messages, (message) =>
        Queue.offer(inbound, frame(sender.nodeId, message.bytes, tag++)).pipe(
          Effect.zipRight(Queue.take(delivered)),
          Effect.flatMap((m: InboundMessages.DomainMessage) =>
            m.body.length === BODY_BYTES ? Effect.void : Effect.dieMessage("a benchmark message was not delivered")
          )
        ), { discard: true })
    )
  const batchOf = async (next: () => Promise<Sealed>) => {
    const batch: Array<Sealed> = []
    for (let i = 0; i < BATCH; i++) batch.push(await next())
    return batch
  }
  const floor = withFloor ? [await floorTask(prefix, make, receiver, pool, scope, batchOf)] : []
  return [
    { name: `${prefix}crypto-only`, fn: async () => cryptoOnly(await batchOf(nextAlone)), batch: BATCH },
    ...floor,
    {
      name: `${prefix}encrypted-direct`,
      fn: async () => step(await batchOf(nextMessage)),
      bound: `${prefix}crypto-only`,
      batch: BATCH
    }
  ]
}

const forwardTask = async (poolSize: number): Promise<Task> => {
  const crypto = await Effect.runPromise(NodeCrypto.makeNode())
  const [source, self, next] = await Effect.runPromise(
    Effect.all([identity(crypto), identity(crypto), identity(crypto)])
  )
  const state: Resettable = { cache: await Effect.runPromise(DedupCache.makeMemory), crypto }
  const scope = await Effect.runPromise(Scope.make())
  const { inbound, sent } = await Effect.runPromise(
    node(self!, [source!, next!], [source!.nodeId, next!.nodeId], state, scope)
  )
  // encrypted for the next hop: this node cannot open them, so their content need not be real ciphertext
  const nowS = BigInt(Math.floor(Date.now() / 1000))
  const random = (n: number) => Effect.runSync(crypto.randomBytes(n))
  const pool: Array<Uint8Array> = []
  for (let i = 0; i < poolSize; i++) {
    const header = new Envelope.DhtMessageHeader({
      version: 1,
      destination: Envelope.destinationPublicKey(next!.publicKey),
      messageSignature: random(64 + 16 + 24 + 4),
      ephemeralPublicKey: Option.some(random(32)),
      messageType: Envelope.DhtMessageType.None,
      flags: Envelope.DhtMessageFlags.ENCRYPTED,
      messageTag: BigInt(i),
      expires: nowS + 3n * 3600n,
      hopCount: 0
    }, true)
    pool.push(Envelope.encodeEnvelope(new Envelope.DhtEnvelope({ header, body: random(6040) }, true)))
  }
  const nextFrame = cycle(pool, async () => {
    state.cache = await Effect.runPromise(DedupCache.makeMemory)
  })
  let tag = 0
  return {
    name: "inbound.forward",
    fn: async () => {
      const bytes = await nextFrame()
      await Effect.runPromise(
        Queue.offer(inbound, frame(source!.nodeId, bytes, tag++)).pipe(
          Effect.zipRight(Queue.take(sent)),
          Effect.flatMap((m) =>
            NodeId.equals(m.peer, next!.nodeId) ? Effect.void : Effect.dieMessage("forwarded to the wrong peer")
          )
        )
      )
    }
  }
}

/** `inbound.*` (node backend) and `inbound.noble.*`. */
export const inboundBenches = async (): Promise<ReadonlyArray<Task>> => [
  ...(await encryptedPair("inbound.", NodeCrypto.makeNode, 125 * BATCH, true)),

  await forwardTask(20_000),
  ...(await encryptedPair("inbound.noble.", Crypto.makeNoble, 6 * BATCH, false))
]
