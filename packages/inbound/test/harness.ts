/**
 * Memory networks for the inbound tests: full nodes (transport, peer table, dedup cache, the real outbound pipeline
 * or a recording requester, and the inbound pipeline), raw peers that only hold a transport endpoint and send
 * crafted frames, and the helpers to craft envelopes, connect nodes and read what arrived.
 */
import * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtActor from "@comms-dht/core/DhtActor"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import type * as DhtError from "@comms-dht/core/DhtError"
import type * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as DhtMessages from "@comms-dht/core/DhtMessages"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Discovery from "@comms-dht/core/Discovery"
import * as Envelope from "@comms-dht/core/Envelope"
import type * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as PeerValidator from "@comms-dht/core/PeerValidator"
import * as SafStage from "@comms-dht/core/SafStage"
import * as Transport from "@comms-dht/core/Transport"
import * as OutboundPipeline from "@comms-dht/outbound/OutboundPipeline"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as InboundPipeline from "../src/InboundPipeline.js"
import * as Rejections from "../src/Rejections.js"

export const { COMMUNICATION_CLIENT, COMMUNICATION_NODE, DHT_STORE_FORWARD, MESSAGE_PROPAGATION } = Peer.PeerFeatures

export const config = DhtConfig.localTest

/** A deterministic identity: the seed is 32 bytes derived from `n`. */
export const identityOf = (n: number, features: number = COMMUNICATION_NODE) =>
  Effect.map(Crypto.Crypto, (crypto) => {
    const seed = new Uint8Array(32)
    new DataView(seed.buffer).setUint32(0, n + 1, true)
    seed[31] = 0x17
    const secretKey = NodeId.SecretKey.make(seed)
    return NodeIdentity.make({ secretKey, publicKey: crypto.publicKeyOf(secretKey), features })
  })

export type RawServices = Transport.Transport | PeerManager.PeerManager | NodeIdentity.NodeIdentity

export type NodeServices =
  | RawServices
  | DedupCache.DedupCache
  | OutboundRequester.OutboundRequester
  | InboundPipeline.Inbound
  | DhtActor.DhtActor
  | DhtEvents.DhtEvents

export interface Node<S> {
  readonly identity: NodeIdentity.Identity
  readonly context: Context.Context<S>
  readonly scope: Scope.CloseableScope
  readonly run: <A, E>(effect: Effect.Effect<A, E, S>) => Effect.Effect<A, E>
}

export interface FullNode extends Node<NodeServices> {
  /** messages delivered by the inbound pipeline, subscribed when the node started */
  readonly inbox: Queue.Dequeue<InboundMessages.DomainMessage>
  /** events published since the node started */
  readonly events: Queue.Dequeue<DhtEvent.DhtEvent>
}

export type Shared = MemoryNetwork.MemoryNetworkHub | Crypto.Crypto

/** What a recording requester saw: every forward offered, and every application send. */
export interface Offer {
  readonly params: OutboundRequester.SendMessageParams
  readonly body: OutboundRequester.OutboundBody
}

export interface NodeOptions {
  readonly config?: DhtConfig.Config
  /** record offers instead of running the outbound pipeline (nothing leaves the node) */
  readonly recording?: Ref.Ref<ReadonlyArray<Offer>>
  readonly dedup?: Layer.Layer<DedupCache.DedupCache>
  readonly saf?: SafStage.SafStageService
  readonly discovery?: Discovery.DiscoveryService
  readonly inbound?: InboundPipeline.Options
  /** the config the transport endpoint reads (default: `config`) */
  readonly transportConfig?: DhtConfig.Config
  /** records every rejection the pipeline handles */
  readonly rejections?: Ref.Ref<ReadonlyArray<Rejection>>
  /** put in front of the transport's `send` */
  readonly wrapTransport?: (transport: Transport.TransportService) => Effect.Effect<Transport.TransportService>
}

export interface Rejection {
  readonly error: Rejections.PipelineError
  readonly blame: Rejections.Blame
}

// Signing is the slow part of starting a node on the noble backend: a claim is signed once per identity and second.
const claims = new Map<string, Peer.PeerClaim>()
const claimOf = (identity: NodeIdentity.Identity) =>
  Effect.gen(function*() {
    const key = `${NodeId.toHex(identity.publicKey)}/${Math.floor((yield* Clock.currentTimeMillis) / 1000)}`
    const known = claims.get(key)
    if (known !== undefined) return known
    const claim = yield* PeerValidator.signClaim({
      secretKey: identity.secretKey,
      publicKey: identity.publicKey,
      addresses: [addressOf(identity)],
      features: identity.features
    })
    claims.set(key, claim)
    return claim
  })

const endpointLayer = (identity: NodeIdentity.Identity, transportConfig?: DhtConfig.Config) => {
  const memory = Layer.unwrapEffect(Effect.map(claimOf(identity), (claim) => MemoryNetwork.layer({ claim })))
  const transport = transportConfig === undefined
    ? memory
    : Layer.provide(memory, DhtConfig.layer(transportConfig))
  return transport.pipe(
    Layer.provideMerge(Layer.mergeAll(PeerManager.layerMemory, NodeIdentity.layer(identity))),
    Layer.orDie
  )
}

export const recordingRequester = (offers: Ref.Ref<ReadonlyArray<Offer>>) =>
  Layer.succeed(
    OutboundRequester.OutboundRequester,
    OutboundRequester.OutboundRequester.of({
      send: (params, body) =>
        Effect.as(
          Ref.update(offers, (all) => [...all, { params, body }]),
          OutboundRequester.SendMessageResponse.Queued({ states: OutboundRequester.noSendStates })
        ),
      offerForward: (params, body) => Effect.as(Ref.update(offers, (all) => [...all, { params, body }]), true)
    })
  )

const build = <S>(identity: NodeIdentity.Identity, layer: Layer.Layer<S, never, Shared>, cfg: DhtConfig.Config) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(Layer.provide(layer, DhtConfig.layer(cfg)), scope).pipe(
      Effect.provideService(DhtConfig.DhtConfig, cfg)
    )
    const run = <A, E>(effect: Effect.Effect<A, E, S>) =>
      effect.pipe(Effect.provide(context), Effect.provideService(DhtConfig.DhtConfig, cfg))
    return { identity, context, scope, run }
  })

/** A node with only a transport endpoint: what it receives waits in its inbox, nothing is processed. */
export const startRaw = (identity: NodeIdentity.Identity, cfg: DhtConfig.Config = config) =>
  build<RawServices>(identity, endpointLayer(identity), cfg)

/** A full node: the inbound pipeline running on its transport, forwards through the outbound pipeline. */
export const startNode = (identity: NodeIdentity.Identity, options: NodeOptions = {}) =>
  Effect.gen(function*() {
    const cfg = options.config ?? config
    const endpointOf = endpointLayer(identity, options.transportConfig)
    const wrap = options.wrapTransport
    const wrapped = wrap === undefined
      ? endpointOf
      : Layer.effect(Transport.Transport, Effect.flatMap(Transport.Transport, wrap)).pipe(
        Layer.provideMerge(endpointOf)
      )
    const endpoint = Layer.mergeAll(wrapped, options.dedup ?? DedupCache.layerMemory, DhtEvents.layer)
    const base = DhtActor.layer.pipe(
      Layer.provideMerge(endpoint),
      Layer.provide(DhtMetadata.layerMemory)
    )
    const requester = options.recording !== undefined
      ? recordingRequester(options.recording)
      : OutboundPipeline.layer().pipe(Layer.provide(base))
    const recorded = options.rejections
    const optional = Layer.mergeAll(
      options.saf === undefined ? Layer.empty : Layer.succeed(SafStage.SafStage, options.saf),
      options.discovery === undefined ? Layer.empty : Layer.succeed(Discovery.Discovery, options.discovery),
      recorded === undefined ? Layer.empty : Layer.succeed(
        Rejections.Observer,
        (error, blame) => Ref.update(recorded, (all) => [...all, { error, blame }])
      )
    )
    const layer = InboundPipeline.layer(options.inbound).pipe(
      Layer.provideMerge(requester),
      Layer.provideMerge(base),
      Layer.provide(optional)
    )
    const node = yield* build(identity, layer, cfg)
    const inbound = yield* node.run(InboundPipeline.Inbound)
    const inbox = yield* Scope.extend(inbound.subscribe, node.scope)
    const events = yield* Scope.extend(yield* node.run(Effect.map(DhtEvents.DhtEvents, (e) => e.subscribe)), node.scope)
    const full: FullNode = { ...node, inbox, events }
    return full
  })

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

/** `a` learns `b`'s address and dials it: both then know each other as connected, verified peers. */
export const connect = (a: Node<RawServices>, b: Node<RawServices>) =>
  a.run(Effect.gen(function*() {
    const table = yield* PeerManager.PeerManager
    yield* table.add(peerRecord(b.identity))
    yield* (yield* Transport.Transport).dial(b.identity.nodeId)
  })).pipe(Effect.orDie)

/** Writes raw bytes from `from` to `to` (already connected), as a transport frame. */
export const sendRaw = (from: Node<RawServices>, to: NodeIdentity.Identity, bytes: Uint8Array) =>
  from.run(Effect.gen(function*() {
    const reply = yield* Deferred.make<void, DhtError.SendFailReason>()
    yield* (yield* Transport.Transport).send({ peer: to.nodeId, tag: 0n, bytes, reply })
    yield* Effect.orDie(Deferred.await(reply))
  }))

/** The frames waiting in a node's transport inbox, taken (raw peers only: a full node's pipeline reads its own). */
export const framesOf = (node: Node<RawServices>) =>
  node.run(Effect.flatMap(Transport.Transport, (t) => Effect.map(Queue.takeAll(t.inbound), Chunk.toReadonlyArray)))

/** The envelopes waiting in a raw node's inbox, decoded. */
export const envelopesOf = (node: Node<RawServices>) =>
  Effect.flatMap(framesOf(node), (frames) => Effect.forEach(frames, (frame) => Envelope.decodeEnvelope(frame.bytes)))

export const text = (s: string) => new TextEncoder().encode(s)

/** `[MessageHeader{type, nonce}, body]`, encoded parts of an application message. */
export const applicationParts = (messageType: number, body: Uint8Array, nonce = 7n): ReadonlyArray<Uint8Array> => [
  Envelope.encodeMessageHeader(new Envelope.MessageHeader({ messageType, nonce })),
  body
]

export interface Craft {
  /** signs (cleartext) or is the origin (encrypted); none: unsigned cleartext */
  readonly signer?: NodeIdentity.Identity
  readonly encryptFor?: NodeId.PublicKey
  /** default: `PublicKey(encryptFor)` when encrypting, else `Unknown` */
  readonly destination?: Envelope.NodeDestination
  readonly messageType?: Envelope.DhtMessageType
  readonly flags?: number
  /** unix seconds; default now + 3 h */
  readonly expires?: bigint
  /** the `EnvelopeBody` parts; default an application message "hello" */
  readonly parts?: ReadonlyArray<Uint8Array>
  /** the envelope body bytes as is (overrides `parts`, no encryption) */
  readonly rawBody?: Uint8Array
  readonly hopCount?: number
  readonly version?: number
  readonly messageTag?: bigint
}

export interface Crafted {
  readonly header: Envelope.DhtMessageHeader
  readonly body: Uint8Array
  readonly bytes: Uint8Array
}

export const encode = (header: Envelope.DhtMessageHeader, body: Uint8Array): Crafted => ({
  header,
  body,
  bytes: Envelope.encodeEnvelope(new Envelope.DhtEnvelope({ header, body }, true))
})

/** An envelope built as a sender would (signed and/or encrypted through `MessageCrypto`), or deliberately not. */
export const craft = (options: Craft = {}) =>
  Effect.gen(function*() {
    const now = BigInt(Math.floor((yield* Clock.currentTimeMillis) / 1000))
    const destination = options.destination ??
      (options.encryptFor !== undefined
        ? Envelope.destinationPublicKey(options.encryptFor)
        : Envelope.destinationUnknown())
    const fields = {
      version: options.version ?? 1,
      destination,
      messageType: options.messageType ?? Envelope.DhtMessageType.None,
      flags: options.flags ?? Envelope.DhtMessageFlags.NONE,
      expires: options.expires ?? now + 3n * 3600n
    }
    const plaintext = options.rawBody ??
      Envelope.encodeEnvelopeBody(
        new Envelope.EnvelopeBody({ parts: [...(options.parts ?? applicationParts(1, text("hello")))] }, true)
      )
    let body = plaintext
    let messageSignature: Uint8Array = new Uint8Array(0)
    let ephemeralPublicKey = Option.none<Uint8Array>()
    let flags = fields.flags
    if (options.encryptFor !== undefined && options.signer !== undefined && options.rawBody === undefined) {
      const sealed = yield* Effect.orDie(MessageCrypto.encrypt(options.signer, options.encryptFor, fields, plaintext))
      body = sealed.body
      messageSignature = sealed.messageSignature
      ephemeralPublicKey = Option.some(sealed.ephemeralPublicKey)
      flags = sealed.flags
    } else if (options.signer !== undefined) {
      messageSignature = yield* MessageCrypto.sign(options.signer, { ...fields, ephemeralPublicKey }, body)
    }
    const header = new Envelope.DhtMessageHeader({
      ...fields,
      flags,
      messageSignature,
      ephemeralPublicKey,
      messageTag: options.messageTag ?? 42n,
      hopCount: options.hopCount ?? 0
    }, true)
    return encode(header, body)
  })

/** The same envelope with a changed header (not re-signed). */
export const withHeader = (crafted: Crafted, change: Partial<Envelope.DhtMessageHeader>): Crafted =>
  encode(new Envelope.DhtMessageHeader({ ...crafted.header, ...change }, true), crafted.body)

export const count = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => state.count)

export const rejected = (reason: string) => count(Metric.tagged(DhtMetrics.inboundRejected, "reason", reason))

/** yields until `condition` holds (bounded, so a bug fails the test instead of hanging it) */
export const eventually = <E, R>(condition: Effect.Effect<boolean, E, R>) =>
  Effect.zipRight(Effect.yieldNow(), condition).pipe(
    Effect.repeat({ until: (ok) => ok, times: 20_000 }),
    Effect.flatMap((ok) => ok ? Effect.void : Effect.dieMessage("condition never held"))
  )

/** lets every runnable fiber run for a while: for asserting that something did not happen */
export const settle = Effect.repeatN(Effect.yieldNow(), 300)

/** The next message a node delivers. */
export const nextDelivered = (node: FullNode) => Queue.take(node.inbox)

/** Everything a node has delivered so far. */
export const deliveredSoFar = (node: FullNode) =>
  Effect.map(Queue.takeAll(node.inbox), Chunk.toReadonlyArray)

/** The peer record a node holds for `identity`. */
export const recordOf = (node: Node<RawServices>, identity: NodeIdentity.Identity) =>
  node.run(Effect.flatMap(PeerManager.PeerManager, (peers) => Effect.orDie(peers.get(identity.nodeId))))

export const shared: Layer.Layer<Shared> = Layer.mergeAll(MemoryNetwork.layerHub(), Crypto.layerNoble())

// --- hand-written protobuf, for envelopes our own encoder refuses to produce ---

const varint = (value: number | bigint): Array<number> => {
  let n = BigInt(value)
  const out: Array<number> = []
  do {
    const byte = Number(n & 0x7fn)
    n >>= 7n
    out.push(n > 0n ? byte | 0x80 : byte)
  } while (n > 0n)
  return out
}

const tagged = (field: number, wire: number) => varint((field << 3) | wire)

/** protobuf field encoders: a varint, or length-delimited bytes */
export const pb = {
  varint: (field: number, value: number | bigint) => Uint8Array.from([...tagged(field, 0), ...varint(value)]),
  bytes: (field: number, value: Uint8Array) =>
    Uint8Array.from([...tagged(field, 2), ...varint(value.length), ...value]),
  concat: (...parts: ReadonlyArray<Uint8Array>) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
    let at = 0
    for (const p of parts) {
      out.set(p, at)
      at += p.length
    }
    return out
  }
}

/**
 * An envelope from hand-encoded `DhtHeader` fields (major 1, unknown 3, public_key 4, signature 6, E 7, type 8,
 * flags 10, tag 11, expires 12, hops 13) and a body.
 */
export const rawEnvelope = (header: ReadonlyArray<Uint8Array> | undefined, body: Uint8Array) =>
  pb.concat(...(header === undefined ? [] : [pb.bytes(1, pb.concat(...header))]), pb.bytes(2, body))

// --- DHT message bodies ---

export interface ClaimOptions {
  /** the key the message names (default: the signer's) */
  readonly publicKey?: NodeId.PublicKey
  /** flip a bit of the claim signature */
  readonly corruptClaim?: boolean
  readonly addresses?: ReadonlyArray<string>
  readonly nonce?: bigint
}

const claimFields = (identity: NodeIdentity.Identity, options: ClaimOptions) =>
  Effect.gen(function*() {
    const claim = yield* PeerValidator.signClaim({
      secretKey: identity.secretKey,
      publicKey: identity.publicKey,
      addresses: options.addresses ?? [addressOf(identity)],
      features: identity.features
    })
    const signature = claim.identitySignature.signature.slice()
    if (options.corruptClaim === true) signature[0] = signature[0]! ^ 1
    return {
      publicKey: options.publicKey ?? identity.publicKey,
      addresses: claim.addresses,
      peerFeatures: claim.features,
      nonce: options.nonce ?? 1n,
      identitySignature: new Peer.IdentitySignature({ ...claim.identitySignature, signature })
    }
  })

/** `[JoinMessage]` of `identity` (its claim over its memory address). */
export const joinParts = (identity: NodeIdentity.Identity, options: ClaimOptions = {}) =>
  Effect.map(claimFields(identity, options), (fields) => [DhtMessages.encodeJoin(new DhtMessages.JoinMessage(fields))])

/** `identity`'s own join, signed by it and addressed to its key, as SPEC §10.1 sends it */
export const craftJoin = (identity: NodeIdentity.Identity, options: ClaimOptions = {}) =>
  Effect.flatMap(joinParts(identity, options), (parts) =>
    craft({
      signer: identity,
      messageType: Envelope.DhtMessageType.Join,
      destination: Envelope.destinationPublicKey(identity.publicKey),
      parts
    }))

/** `[DiscoveryMessage]` of `identity`. */
export const discoveryParts = (identity: NodeIdentity.Identity, options: ClaimOptions = {}) =>
  Effect.map(
    claimFields(identity, options),
    (fields) => [DhtMessages.encodeDiscovery(new DhtMessages.DiscoveryMessage(fields))]
  )

/** `[DiscoveryResponseMessage]` of `identity`. */
export const discoveryResponseParts = (identity: NodeIdentity.Identity, options: ClaimOptions = {}) =>
  Effect.map(
    claimFields(identity, options),
    (fields) => [DhtMessages.encodeDiscoveryResponse(new DhtMessages.DiscoveryResponseMessage(fields))]
  )

/** A `Discovery` service with fixed in-flight requests (nonce → key) that records the responses handed to it. */
export const fakeDiscovery = (
  pending: ReadonlyMap<bigint, NodeId.PublicKey>,
  resolved: Ref.Ref<ReadonlyArray<{ readonly nonce: bigint; readonly peer: Peer.Peer }>>
): Discovery.DiscoveryService => ({
  discover: () => Effect.dieMessage("not used"),
  pendingKey: (nonce) => Effect.succeed(Option.fromNullable(pending.get(nonce))),
  handleResponse: (nonce, peer) => Effect.as(Ref.update(resolved, (all) => [...all, { nonce, peer }]), true)
})

/** Flips one bit of the signature inside an encoded cleartext `MessageSignature`. */
export const corruptSignature = (crafted: Crafted) =>
  Effect.map(Envelope.decodeMessageSignature(crafted.header.messageSignature), (sig) => {
    const signature = sig.signature.slice()
    signature[10] = signature[10]! ^ 1
    return withHeader(crafted, {
      messageSignature: Envelope.encodeMessageSignature(new Envelope.MessageSignature({ ...sig, signature }, true))
    })
  })
