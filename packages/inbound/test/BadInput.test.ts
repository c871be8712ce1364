/**
 * SPEC §14.1, one row per tag the inbound pipeline raises: the input, sent by a connected peer over a
 * `MemoryNetwork`; the typed error the pipeline raised (seen through `Rejections.Observer`); its metric increment;
 * the ban it leads to, its duration checked on the `TestClock` (or that nobody is banned); and a good message from
 * another peer right after, which is still delivered (scenarios 13–16, 18 in part).
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as Crypto from "@comms-dht/core/Crypto"
import * as DhtActor from "@comms-dht/core/DhtActor"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Envelope from "@comms-dht/core/Envelope"
import * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as NodeId from "@comms-dht/core/NodeId"
import type * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as SafStage from "@comms-dht/core/SafStage"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import {
  applicationParts,
  COMMUNICATION_NODE,
  config,
  connect,
  corruptSignature,
  count,
  craft,
  type Crafted,
  discoveryResponseParts,
  fakeDiscovery,
  type FullNode,
  identityOf,
  joinParts,
  MESSAGE_PROPAGATION,
  type Node,
  nextDelivered,
  type NodeOptions,
  type Offer,
  pb,
  type RawServices,
  rawEnvelope,
  type Rejection,
  sendRaw,
  startNode,
  startRaw,
  text,
  withHeader
} from "./harness.js"

const T0 = 1_700_000_000_000
const nowS = BigInt(T0 / 1000)
const HOUR_S = 3600n

// one backend, one memo for the whole file: every test pays for its own signatures only
const cryptoLayer = Layer.succeed(Crypto.Crypto, Effect.runSync(Crypto.makeNoble()))
const network = Layer.mergeAll(MemoryNetwork.layerHub(), cryptoLayer)

interface Scene {
  readonly victim: FullNode
  readonly attacker: Node<RawServices>
  readonly honest: Node<RawServices>
  readonly offers: Ref.Ref<ReadonlyArray<Offer>>
  readonly rejections: Ref.Ref<ReadonlyArray<Rejection>>
}

/** A victim (full node, forwards recorded, not sent) with an attacker and an honest peer connected to it. */
const scene = (options: NodeOptions & { readonly features?: number } = {}) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(T0)
    const offers = yield* Ref.make<ReadonlyArray<Offer>>([])
    const rejections = yield* Ref.make<ReadonlyArray<Rejection>>([])
    const victim = yield* startNode(yield* identityOf(100, options.features ?? COMMUNICATION_NODE), {
      recording: offers,
      rejections,
      ...options
    })
    const attacker = yield* startRaw(yield* identityOf(101))
    const honest = yield* startRaw(yield* identityOf(102))
    yield* connect(attacker, victim)
    yield* connect(honest, victim)
    const s: Scene = { victim, attacker, honest, offers, rejections }
    return s
  })

type Env = Crypto.Crypto | MemoryNetwork.MemoryNetworkHub | Scope.Scope

const run = <A, E>(test: (s: Scene) => Effect.Effect<A, E, Env>,
  options?: NodeOptions & { readonly features?: number }) =>
  Effect.scoped(Effect.flatMap(scene(options), test)).pipe(Effect.provide(network))

interface Resolved {
  readonly nonce: bigint
  readonly peer: Peer.Peer
}

let probes = 0

/** The actor answers in order: once this returns, every ban queued before it is recorded. */
const flushActor = (node: FullNode) =>
  node.run(Effect.flatMap(DhtActor.DhtActor, (actor) => actor.hitCount(new Uint8Array(32))))

/**
 * A fresh unsigned broadcast from the honest peer: it must be the next thing the victim delivers, which also
 * proves that every frame sent before it has been handled (the pipeline keeps arrival order).
 */
const probe = (s: Scene) =>
  Effect.gen(function*() {
    const body = text(`probe ${++probes}`)
    const message = yield* craft({ parts: applicationParts(9, body) })
    yield* sendRaw(s.honest, s.victim.identity, message.bytes)
    const got = yield* nextDelivered(s.victim)
    expect(got.body).toEqual(body)
    expect(got.sourcePeer).toEqual(s.honest.identity.nodeId)
    yield* flushActor(s.victim)
  })

const rejectedCounter = (reason: string) => Metric.tagged(DhtMetrics.inboundRejected, "reason", reason)

const recordIn = (node: FullNode, identity: NodeIdentity.Identity) =>
  node.run(Effect.flatMap(PeerManager.PeerManager, (peers) => Effect.option(peers.get(identity.nodeId))))

const durationOf = (severity: PeerManager.Severity) =>
  DhtConfig.millis(severity === "High" ? config.banDuration : config.banDurationShort)

interface Row {
  readonly tag: DhtError.StageError["_tag"]
  /** default: `comms_dht_inbound_rejected_total{reason=tag}` */
  readonly counter?: Metric.Metric.Counter<number>
  /** none: the attacker (and everyone else) stays unbanned */
  readonly ban?: { readonly who: NodeIdentity.Identity; readonly severity: PeerManager.Severity }
  /** the attacker was banned before the input was sent */
  readonly alreadyBanned?: boolean
}

/** Sends the input, probes, and checks the row: one typed error, one count, the ban and its duration. */
const verdict = (s: Scene, row: Row, send: Effect.Effect<void, never, Crypto.Crypto>) =>
  Effect.gen(function*() {
    const counter = row.counter ?? rejectedCounter(row.tag)
    const before = yield* count(counter)
    const seenBefore = (yield* Ref.get(s.rejections)).length
    yield* send
    yield* probe(s)
    expect((yield* count(counter)) - before).toBe(1)
    const seen = (yield* Ref.get(s.rejections)).slice(seenBefore)
    expect(seen.map((r) => r.error._tag)).toEqual([row.tag])
    const { blame, error } = seen[0]!
    if (row.ban === undefined) {
      for (const who of row.alreadyBanned === true ? [s.honest.identity] : [s.attacker.identity, s.honest.identity]) {
        const record = yield* recordIn(s.victim, who)
        expect(Option.exists(record, (peer) => peer.isBanned(T0))).toBe(false)
      }
      return { error, blame }
    }
    const { severity, who } = row.ban
    const duration = durationOf(severity)
    const record = yield* recordIn(s.victim, who)
    expect(Option.map(record, (peer) => [peer.bannedUntil, peer.bannedReason])).toEqual(
      Option.some([T0 + duration, row.tag])
    )
    const bannedAt = (ms: number) => Effect.map(recordIn(s.victim, who), Option.exists((peer) => peer.isBanned(ms)))
    yield* TestClock.adjust(duration - 1)
    expect(yield* bannedAt(T0 + duration - 1)).toBe(true)
    yield* TestClock.adjust(1)
    expect(yield* bannedAt(T0 + duration)).toBe(false)
    return { error, blame }
  })

const send = (s: Scene, from: Node<RawServices>, crafted: Crafted | Uint8Array) =>
  sendRaw(from, s.victim.identity, crafted instanceof Uint8Array ? crafted : crafted.bytes)

const noOffers = (s: Scene) => Effect.map(Ref.get(s.offers), (offers) => expect(offers).toEqual([]))

const unsignedBody = Effect.map(craft(), (c) => c.body)

describe("SPEC §14.1: bad input at the inbound pipeline", () => {
  describe("§7.1 deserialize", () => {
    it.effect("PeerNotFound: a source missing from the peer table, dropped, nobody banned", () =>
      run((s) =>
        Effect.gen(function*() {
          yield* s.victim.run(
            Effect.flatMap(PeerManager.PeerManager, (peers) => Effect.orDie(peers.remove(s.attacker.identity.nodeId)))
          )
          const message = yield* craft()
          const { error } = yield* verdict(s, { tag: "PeerNotFound" }, send(s, s.attacker, message))
          expect(error).toEqual(new DhtError.PeerNotFound({ nodeId: s.attacker.identity.nodeId }))
        })
      ))

    it.effect("PeerBanned: frames from a banned source are dropped and the ban is left as it was", () =>
      run((s) =>
        Effect.gen(function*() {
          yield* s.victim.run(Effect.flatMap(PeerManager.PeerManager, (peers) =>
            Effect.orDie(peers.ban(s.attacker.identity.nodeId, 60_000, "earlier"))))
          const message = yield* craft()
          const { error } = yield* verdict(s, { tag: "PeerBanned", alreadyBanned: true }, send(s, s.attacker, message))
          expect(error).toEqual(new DhtError.PeerBanned({ nodeId: s.attacker.identity.nodeId, reason: "earlier" }))
          const record = yield* recordIn(s.victim, s.attacker.identity)
          expect(Option.map(record, (p) => [p.bannedUntil, p.bannedReason])).toEqual(
            Option.some([T0 + 60_000, "earlier"])
          )
        })
      ))

    it.effect("DecodeError: bytes that are not a DhtEnvelope, and empty bytes; no ban (Tari)", () =>
      run((s) =>
        Effect.gen(function*() {
          const garbage = yield* verdict(
            s,
            { tag: "DecodeError" },
            send(s, s.attacker, Uint8Array.of(0xff, 0xff, 0xff))
          )
          expect(garbage.error._tag).toBe("DecodeError")
          const empty = yield* verdict(s, { tag: "DecodeError" }, send(s, s.attacker, new Uint8Array(0)))
          expect(empty.error).toEqual(new DhtError.DecodeError({ reason: "empty envelope" }))
        })
      ))

    it.effect("HeaderOmitted: an envelope without a header", () =>
      run((s) =>
        Effect.gen(function*() {
          const bytes = rawEnvelope(undefined, yield* unsignedBody)
          const { error } = yield* verdict(s, { tag: "HeaderOmitted" }, send(s, s.attacker, bytes))
          expect(error).toEqual(new DhtError.HeaderOmitted())
        })
      ))

    it.effect("InvalidDestination: unknown = false, no destination, a key failing the key check (scenario 14)", () =>
      run((s) =>
        Effect.gen(function*() {
          const body = yield* unsignedBody
          const common = [pb.varint(1, 1), pb.varint(12, nowS + HOUR_S)]
          const unknownFalse = yield* verdict(
            s,
            { tag: "InvalidDestination" },
            send(s, s.attacker, rawEnvelope([...common, pb.varint(3, 0)], body))
          )
          expect(unknownFalse.error).toEqual(new DhtError.InvalidDestination({ reason: "unknown must be true" }))
          const absent = yield* verdict(
            s,
            { tag: "InvalidDestination" },
            send(s, s.attacker, rawEnvelope(common, body))
          )
          expect(absent.error).toEqual(new DhtError.InvalidDestination({ reason: "destination absent" }))
          const smallOrder = yield* verdict(
            s,
            { tag: "InvalidDestination" },
            send(s, s.attacker, rawEnvelope([...common, pb.bytes(4, new Uint8Array(32))], body))
          )
          expect(smallOrder.error).toEqual(
            new DhtError.InvalidDestination({ reason: "public key fails the key check" })
          )
        })
      ))

    it.effect("InvalidEphemeralPublicKey: an ephemeral key on a cleartext message, no ban (scenario 14)", () =>
      run((s) =>
        Effect.gen(function*() {
          const ephemeral = pb.bytes(7, new Uint8Array(32).fill(9))
          const header = [pb.varint(1, 1), pb.varint(3, 1), ephemeral, pb.varint(12, nowS + HOUR_S)]
          const { error } = yield* verdict(
            s,
            { tag: "InvalidEphemeralPublicKey" },
            send(s, s.attacker, rawEnvelope(header, yield* unsignedBody))
          )
          expect(error).toEqual(
            new DhtError.InvalidEphemeralPublicKey({ reason: "ephemeral public key on a cleartext message" })
          )
        })
      ))

    it.effect("InvalidMessageType and InvalidMessageFlags", () =>
      run((s) =>
        Effect.gen(function*() {
          const body = yield* unsignedBody
          const base = [pb.varint(1, 1), pb.varint(3, 1), pb.varint(12, nowS + HOUR_S)]
          const type = yield* verdict(
            s,
            { tag: "InvalidMessageType" },
            send(s, s.attacker, rawEnvelope([...base, pb.varint(8, 99)], body))
          )
          expect(type.error).toEqual(new DhtError.InvalidMessageType({ value: 99 }))
          const flags = yield* verdict(
            s,
            { tag: "InvalidMessageFlags" },
            send(s, s.attacker, rawEnvelope([...base, pb.varint(10, 4)], body))
          )
          expect(flags.error).toEqual(new DhtError.InvalidMessageFlags({ flags: 4 }))
        })
      ))
  })

  describe("§7.2 validate", () => {
    const small = DhtConfig.unsafeMake({ maxMessageSize: 70_000, saf: { maxMessageSize: 1_000 } }, config)

    it.effect("MessageTooLarge: over maxMessageSize though the transport let it through; no ban", () =>
      run((s) =>
        Effect.gen(function*() {
          const message = yield* craft({ parts: applicationParts(1, new Uint8Array(70_000)) })
          const { error } = yield* verdict(s, { tag: "MessageTooLarge" }, send(s, s.attacker, message))
          expect(error).toEqual(new DhtError.MessageTooLarge({ size: message.bytes.length, limit: 70_000 }))
        }), { config: small, transportConfig: config }))

    it.effect("UnsupportedVersion: major 2, no ban (a newer peer)", () =>
      run((s) =>
        Effect.gen(function*() {
          const message = yield* craft({ version: 2 })
          const { error } = yield* verdict(s, { tag: "UnsupportedVersion" }, send(s, s.attacker, message))
          expect(error).toEqual(new DhtError.UnsupportedVersion({ version: 2 }))
        })
      ))

    it.effect("MissingExpiry, MessageExpired, ExpiryTooFar: dropped, not forwarded, no ban (scenario 15)", () =>
      run((s) =>
        Effect.gen(function*() {
          const signed = (expires: bigint) => craft({ signer: s.attacker.identity, expires })
          const missing = yield* verdict(s, { tag: "MissingExpiry" }, send(s, s.attacker, yield* signed(0n)))
          expect(missing.error).toEqual(new DhtError.MissingExpiry())
          const expired = yield* verdict(s, { tag: "MessageExpired" }, send(s, s.attacker, yield* signed(nowS - 1n)))
          expect(expired.error).toEqual(new DhtError.MessageExpired({ expires: nowS - 1n, now: nowS }))
          const limit = nowS + 3n * 24n * HOUR_S + 600n
          const far = yield* verdict(s, { tag: "ExpiryTooFar" }, send(s, s.attacker, yield* signed(limit + 1n)))
          expect(far.error).toEqual(new DhtError.ExpiryTooFar({ expires: limit + 1n, limit }))
          yield* noOffers(s)
          // exactly at the limit is accepted: delivered and forwarded
          yield* send(s, s.attacker, yield* signed(limit))
          expect((yield* nextDelivered(s.victim)).header.expires).toBe(limit)
          expect(yield* Effect.map(Ref.get(s.offers), (o) => o.length)).toBe(1)
        })
      ))

    it.effect("MessageExpired at a node whose clock passed the expiry of a message valid when sent (scenario 15)", () =>
      run((s) =>
        Effect.gen(function*() {
          const message = yield* craft({ signer: s.attacker.identity, expires: nowS + 60n })
          yield* TestClock.adjust(61_000)
          const { error } = yield* verdict(s, { tag: "MessageExpired" }, send(s, s.attacker, message))
          expect(error).toEqual(new DhtError.MessageExpired({ expires: nowS + 60n, now: nowS + 61n }))
          yield* noOffers(s)
        })
      ))

    it.effect("BadEncryptedMessageSemantics: ENCRYPTED, no ephemeral key: source banned 2 h (scenario 14)", () =>
      run((s) =>
        Effect.gen(function*() {
          const message = yield* craft({
            signer: s.attacker.identity,
            destination: Envelope.destinationPublicKey(s.victim.identity.publicKey),
            flags: Envelope.DhtMessageFlags.ENCRYPTED
          })
          const { error } = yield* verdict(
            s,
            { tag: "BadEncryptedMessageSemantics", ban: { who: s.attacker.identity, severity: "High" } },
            send(s, s.attacker, message)
          )
          expect(error).toEqual(new DhtError.BadEncryptedMessageSemantics({ reason: "no ephemeral public key" }))
        })
      ))

    it.effect("BadEncryptedMessageSemantics: an encrypted message without its signature bans the source 2 h", () =>
      run((s) =>
        Effect.gen(function*() {
          const sealed = yield* craft({ signer: s.attacker.identity, encryptFor: s.victim.identity.publicKey })
          const { error } = yield* verdict(
            s,
            { tag: "BadEncryptedMessageSemantics", ban: { who: s.attacker.identity, severity: "High" } },
            send(s, s.attacker, withHeader(sealed, { messageSignature: new Uint8Array(0) }))
          )
          expect(error).toEqual(new DhtError.BadEncryptedMessageSemantics({ reason: "no signature" }))
        })
      ))

    it.effect("SafNotSupported: a SAF request to a node without DHT_STORE_FORWARD, dropped quietly", () =>
      run((s) =>
        Effect.gen(function*() {
          const request = yield* craft({
            messageType: Envelope.DhtMessageType.SafRequestMessages,
            destination: Envelope.destinationPublicKey(s.victim.identity.publicKey),
            parts: [new Uint8Array(0)]
          })
          const { error } = yield* verdict(s, { tag: "SafNotSupported" }, send(s, s.attacker, request))
          expect(error).toEqual(new DhtError.SafNotSupported())
        }), { features: MESSAGE_PROPAGATION }))
  })

  describe("§7.3 dedup", () => {
    it.effect("Duplicate: a second copy is dropped and counted as a duplicate, not as an error", () =>
      run((s) =>
        Effect.gen(function*() {
          const message = yield* craft({ parts: applicationParts(1, text("twice")) })
          yield* send(s, s.attacker, message)
          expect((yield* nextDelivered(s.victim)).body).toEqual(text("twice"))
          const rejected = yield* count(rejectedCounter("Duplicate"))
          const { error } = yield* verdict(
            s,
            { tag: "Duplicate", counter: DhtMetrics.inboundDuplicates },
            send(s, s.attacker, message)
          )
          expect(error).toEqual(new DhtError.Duplicate({ hits: 2 }))
          expect(yield* count(rejectedCounter("Duplicate"))).toBe(rejected)
        })
      ))

    it.effect("DedupFull: with the cache full of live entries a new message is delivered but not forwarded", () =>
      run((s) =>
        Effect.gen(function*() {
          const first = yield* craft({ signer: s.attacker.identity, parts: applicationParts(1, text("one")) })
          yield* send(s, s.attacker, first)
          expect((yield* nextDelivered(s.victim)).body).toEqual(text("one"))
          expect((yield* Ref.get(s.offers)).length).toBe(1)
          const full = yield* count(rejectedCounter("DedupFull"))
          const second = yield* craft({ signer: s.attacker.identity, parts: applicationParts(1, text("two")) })
          yield* send(s, s.attacker, second)
          expect((yield* nextDelivered(s.victim)).body).toEqual(text("two"))
          expect((yield* count(rejectedCounter("DedupFull"))) - full).toBe(1)
          expect((yield* Ref.get(s.offers)).length).toBe(1)
          const seen = yield* Ref.get(s.rejections)
          expect(seen.map((r) => r.error)).toEqual([new DhtError.DedupFull()])
          // the first entry was live: it was not evicted, so its copy is still a duplicate
          const duplicates = yield* count(DhtMetrics.inboundDuplicates)
          yield* send(s, s.attacker, first)
          yield* probe(s)
          expect((yield* count(DhtMetrics.inboundDuplicates)) - duplicates).toBe(1)
        }), { config: DhtConfig.unsafeMake({ dedupCacheCapacity: 1 }, config) }))
  })

  describe("§7.4 decrypt and verify", () => {
    it.effect("InvalidSignature: a forged cleartext signature bans the source 2 h; not forwarded, not delivered", () =>
      run((s) =>
        Effect.gen(function*() {
          const forged = yield* corruptSignature(yield* craft({ signer: s.attacker.identity }))
          const { error } = yield* verdict(
            s,
            { tag: "InvalidSignature", ban: { who: s.attacker.identity, severity: "High" } },
            send(s, s.attacker, forged)
          )
          expect(error).toEqual(new DhtError.InvalidSignature({ reason: "signature does not verify" }))
          yield* noOffers(s)
        })
      ))

    it.effect("EnvelopeBodyDecodeFailed: a cleartext body that is not an EnvelopeBody, no ban (Tari)", () =>
      run((s) =>
        Effect.gen(function*() {
          const { error } = yield* verdict(
            s,
            { tag: "EnvelopeBodyDecodeFailed" },
            send(s, s.attacker, yield* craft({ rawBody: Uint8Array.of(0xff, 0xff) }))
          )
          expect(error._tag).toBe("EnvelopeBodyDecodeFailed")
        })
      ))

    it.effect("DecryptionFailed: a tampered sealed signature, no ban (the source may be an honest forwarder)", () =>
      run((s) =>
        Effect.gen(function*() {
          const sealed = yield* craft({ signer: s.honest.identity, encryptFor: s.victim.identity.publicKey })
          const signature = sealed.header.messageSignature.slice()
          signature[signature.length - 1] = signature[signature.length - 1]! ^ 1
          const { error } = yield* verdict(
            s,
            { tag: "DecryptionFailed" },
            send(s, s.attacker, withHeader(sealed, { messageSignature: signature }))
          )
          expect(error._tag).toBe("DecryptionFailed")
        })
      ))

    it.effect("InvalidEncryptedSignature: a tampered ciphertext body, no ban (forwarders cannot check it)", () =>
      run((s) =>
        Effect.gen(function*() {
          const sealed = yield* craft({ signer: s.honest.identity, encryptFor: s.victim.identity.publicKey })
          const body = sealed.body.slice()
          body[30] = body[30]! ^ 1
          const tampered = Envelope.encodeEnvelope(new Envelope.DhtEnvelope({ header: sealed.header, body }, true))
          const { error } = yield* verdict(s, { tag: "InvalidEncryptedSignature" }, send(s, s.attacker, tampered))
          expect(error).toEqual(new DhtError.InvalidEncryptedSignature({ reason: "signature does not verify" }))
        })
      ))
  })

  describe("§7.5 forward", () => {
    it.effect("DestinationIsSource: F2 addressed to its own source, banned 10 min, not forwarded (scenario 18)", () =>
      run((s) =>
        Effect.gen(function*() {
          const message = yield* craft({
            signer: s.attacker.identity,
            destination: Envelope.destinationPublicKey(s.attacker.identity.publicKey)
          })
          const { error } = yield* verdict(
            s,
            { tag: "DestinationIsSource", ban: { who: s.attacker.identity, severity: "Medium" } },
            send(s, s.attacker, message)
          )
          expect(error).toEqual(new DhtError.DestinationIsSource())
          yield* noOffers(s)
        })
      ))

    it.effect("RateLimited: an F3 message over its origin's budget is neither forwarded nor delivered; no ban", () =>
      run((s) =>
        Effect.gen(function*() {
          const gossip = (n: number) =>
            craft({ signer: s.attacker.identity, parts: applicationParts(1, text(`g${n}`)) })
          yield* send(s, s.attacker, yield* gossip(1))
          expect((yield* nextDelivered(s.victim)).body).toEqual(text("g1"))
          const { error } = yield* verdict(s, { tag: "RateLimited" }, send(s, s.attacker, yield* gossip(2)))
          expect(error).toEqual(new DhtError.RateLimited({ what: "gossip" }))
          expect((yield* Ref.get(s.offers)).length).toBe(1)
          // the bucket refills at the budget per minute
          yield* TestClock.adjust(60_000)
          yield* send(s, s.attacker, yield* gossip(3))
          expect((yield* nextDelivered(s.victim)).body).toEqual(text("g3"))
          expect((yield* Ref.get(s.offers)).length).toBe(2)
        }), { config: DhtConfig.unsafeMake({ gossipBudgetPerOrigin: 1 }, config) }))
  })

  describe("§7.8 delivery", () => {
    it.effect("InvalidApplicationBody: parts[0] is not a MessageHeader; dropped, no ban", () =>
      run((s) =>
        Effect.gen(function*() {
          const { error } = yield* verdict(
            s,
            { tag: "InvalidApplicationBody" },
            send(s, s.attacker, yield* craft({ parts: [Uint8Array.of(0xff, 0xff)] }))
          )
          expect(error._tag).toBe("InvalidApplicationBody")
          const zeroNonce = yield* verdict(
            s,
            { tag: "InvalidApplicationBody" },
            send(s, s.attacker, yield* craft({ parts: [pb.varint(1, 3)] }))
          )
          expect(zeroNonce.error).toEqual(new DhtError.InvalidApplicationBody({ reason: "message header nonce is 0" }))
        })
      ))
  })

  describe("§10 DHT handler", () => {
    const join = (signer: NodeIdentity.Identity, parts: ReadonlyArray<Uint8Array>, signed = true) =>
      craft({
        ...(signed ? { signer } : {}),
        messageType: Envelope.DhtMessageType.Join,
        destination: Envelope.destinationPublicKey(signer.publicKey),
        parts
      })

    it.effect("InvalidMessageBody: a signed join whose body does not decode bans its origin 2 h", () =>
      run((s) =>
        Effect.gen(function*() {
          const { blame, error } = yield* verdict(
            s,
            { tag: "InvalidMessageBody", ban: { who: s.attacker.identity, severity: "High" } },
            send(s, s.attacker, yield* join(s.attacker.identity, [Uint8Array.of(0xff, 0xff)]))
          )
          expect(error._tag).toBe("InvalidMessageBody")
          expect(blame.origin).toEqual(Option.some(s.attacker.identity.publicKey))
        })
      ))

    it.effect("OriginRequired: an unsigned join bans its source 10 min", () =>
      run((s) =>
        Effect.gen(function*() {
          const { error } = yield* verdict(
            s,
            { tag: "OriginRequired", ban: { who: s.attacker.identity, severity: "Low" } },
            send(s, s.attacker, yield* join(s.attacker.identity, yield* joinParts(s.attacker.identity), false))
          )
          expect(error).toEqual(new DhtError.OriginRequired())
        })
      ))

    it.effect("OriginMismatch: a join naming another key than its signer's bans the signer 2 h (scenario 27)", () =>
      run((s) =>
        Effect.gen(function*() {
          const parts = yield* joinParts(s.attacker.identity, { publicKey: s.honest.identity.publicKey })
          const { error } = yield* verdict(
            s,
            { tag: "OriginMismatch", ban: { who: s.attacker.identity, severity: "High" } },
            send(s, s.attacker, yield* join(s.attacker.identity, parts))
          )
          expect(error).toEqual(new DhtError.OriginMismatch())
          yield* noOffers(s)
        })
      ))

    it.effect("PeerValidationError: a join with an invalid claim signature bans its origin 10 min", () =>
      run((s) =>
        Effect.gen(function*() {
          const parts = yield* joinParts(s.attacker.identity, { corruptClaim: true })
          const { error } = yield* verdict(
            s,
            { tag: "PeerValidationError", ban: { who: s.attacker.identity, severity: "Medium" } },
            send(s, s.attacker, yield* join(s.attacker.identity, parts))
          )
          expect(error).toEqual(new DhtError.PeerValidationError({ reason: "claim 0: invalid signature" }))
        })
      ))

    it.effect("NewAndExistingMismatch: a join for a NodeId the table holds with another key; no ban", () =>
      run((s) =>
        Effect.gen(function*() {
          const joiner = yield* identityOf(103)
          yield* s.victim.run(Effect.flatMap(PeerManager.PeerManager, (peers) =>
            Effect.orDie(peers.add(
              new Peer.Peer({
                ...Peer.make({
                  publicKey: s.honest.identity.publicKey,
                  addresses: [],
                  features: 3,
                  source: "Config",
                  nowMs: 0
                }),
                nodeId: joiner.nodeId
              })
            ))))
          const { error } = yield* verdict(
            s,
            { tag: "NewAndExistingMismatch" },
            send(s, s.attacker, yield* join(joiner, yield* joinParts(joiner)))
          )
          expect(error).toEqual(new DhtError.NewAndExistingMismatch())
          const joinerRecord = yield* recordIn(s.victim, joiner)
          expect(Option.map(joinerRecord, (p) => p.isBanned(T0))).toEqual(Option.some(false))
        })
      ))

    const response = (
      signer: NodeIdentity.Identity,
      to: NodeIdentity.Identity,
      options: Parameters<typeof discoveryResponseParts>[1]
    ) =>
      Effect.flatMap(discoveryResponseParts(signer, options), (parts) =>
        craft({
          signer,
          messageType: Envelope.DhtMessageType.DiscoveryResponse,
          destination: Envelope.destinationPublicKey(to.publicKey),
          parts
        }))

    const withDiscovery = <A, E>(
      pending: (others: { readonly responder: NodeIdentity.Identity }) => ReadonlyMap<bigint, NodeId.PublicKey>,
      test: (
        s: Scene,
        responder: NodeIdentity.Identity,
        resolved: Ref.Ref<ReadonlyArray<Resolved>>
      ) => Effect.Effect<A, E, Env>
    ) =>
      Effect.gen(function*() {
        const responder = yield* identityOf(103)
        const resolved = yield* Ref.make<ReadonlyArray<Resolved>>([])
        return yield* run((s) => test(s, responder, resolved), {
          discovery: fakeDiscovery(pending({ responder }), resolved)
        })
      }).pipe(Effect.provide(cryptoLayer))

    it.effect("UnexpectedDiscoveryResponse: an unknown nonce, or a response addressed to another node; no ban", () =>
      withDiscovery(({ responder }) => new Map([[5n, responder.publicKey]]), (s, _responder, resolved) =>
        Effect.gen(function*() {
          const unknownNonce = yield* verdict(
            s,
            { tag: "UnexpectedDiscoveryResponse" },
            send(s, s.attacker, yield* response(s.attacker.identity, s.victim.identity, { nonce: 6n }))
          )
          expect(unknownNonce.error).toEqual(new DhtError.UnexpectedDiscoveryResponse({ reason: "unknown nonce" }))
          const elsewhere = yield* verdict(
            s,
            { tag: "UnexpectedDiscoveryResponse" },
            send(s, s.attacker, yield* response(s.attacker.identity, s.honest.identity, { nonce: 5n }))
          )
          expect(elsewhere.error).toEqual(
            new DhtError.UnexpectedDiscoveryResponse({ reason: "not addressed to this node" })
          )
          expect(yield* Ref.get(resolved)).toEqual([])
        })
      ))

    it.effect("OriginMismatch: a response naming another key than its signer's bans the signer 2 h", () =>
      withDiscovery(({ responder }) => new Map([[5n, responder.publicKey]]), (s, responder) =>
        Effect.gen(function*() {
          const message = yield* response(s.attacker.identity, s.victim.identity, {
            nonce: 5n,
            publicKey: responder.publicKey
          })
          const { error } = yield* verdict(
            s,
            { tag: "OriginMismatch", ban: { who: s.attacker.identity, severity: "High" } },
            send(s, s.attacker, message)
          )
          expect(error).toEqual(new DhtError.OriginMismatch())
        })
      ))

    it.effect("DiscoveryResponseRelayed: a relayed genuine response bans the relayer 10 min, never the responder", () =>
      withDiscovery(({ responder }) => new Map([[5n, responder.publicKey]]), (s, responder, resolved) =>
        Effect.gen(function*() {
          const genuine = yield* response(responder, s.victim.identity, { nonce: 5n })
          const { blame, error } = yield* verdict(
            s,
            { tag: "DiscoveryResponseRelayed", ban: { who: s.attacker.identity, severity: "Medium" } },
            send(s, s.attacker, genuine)
          )
          expect(error).toEqual(new DhtError.DiscoveryResponseRelayed())
          expect(blame.origin).toEqual(Option.some(responder.publicKey))
          expect(Option.exists(yield* recordIn(s.victim, responder), (p) => p.isBanned(T0))).toBe(false)
          expect(yield* Ref.get(resolved)).toEqual([])
        })
      ))

    it.effect("DiscoveryKeyMismatch: a response from another key than the one discovered bans its origin 10 min", () =>
      withDiscovery(({ responder }) => new Map([[5n, responder.publicKey]]), (s) =>
        Effect.gen(function*() {
          const { error } = yield* verdict(
            s,
            { tag: "DiscoveryKeyMismatch", ban: { who: s.attacker.identity, severity: "Medium" } },
            send(s, s.attacker, yield* response(s.attacker.identity, s.victim.identity, { nonce: 5n }))
          )
          expect(error).toEqual(new DhtError.DiscoveryKeyMismatch())
        })
      ))

    it.effect("PeerValidationError: a discovery response with an invalid claim bans its origin 2 h", () =>
      withDiscovery(({ responder }) => new Map([[5n, responder.publicKey]]), (s, responder) =>
        Effect.gen(function*() {
          // the responder itself delivers it: every earlier check passes
          const direct = yield* startRaw(responder)
          yield* connect(direct, s.victim)
          const message = yield* response(responder, s.victim.identity, { nonce: 5n, corruptClaim: true })
          const { error } = yield* verdict(
            s,
            { tag: "PeerValidationError", ban: { who: responder, severity: "High" } },
            sendRaw(direct, s.victim.identity, message.bytes)
          )
          expect(error._tag).toBe("PeerValidationError")
        })
      ))

    it.effect("a valid response adds the responder and resolves the request", () =>
      withDiscovery(({ responder }) => new Map([[5n, responder.publicKey]]), (s, responder, resolved) =>
        Effect.gen(function*() {
          const direct = yield* startRaw(responder)
          yield* connect(direct, s.victim)
          const genuine = yield* response(responder, s.victim.identity, { nonce: 5n })
          yield* sendRaw(direct, s.victim.identity, genuine.bytes)
          yield* probe(s)
          expect(yield* Ref.get(resolved)).toMatchObject([{ nonce: 5n }])
          expect(yield* Ref.get(s.rejections)).toEqual([])
        })
      ))
  })

  describe("store-and-forward and peer-sync seams", () => {
    it.effect("UnrequestedSafResponse: a SAF response with no SAF service, counted with SAF responses; no ban", () =>
      run((s) =>
        Effect.gen(function*() {
          const stored = yield* craft({
            messageType: Envelope.DhtMessageType.SafStoredMessages,
            destination: Envelope.destinationPublicKey(s.victim.identity.publicKey),
            parts: [new Uint8Array(0)]
          })
          const { error } = yield* verdict(
            s,
            {
              tag: "UnrequestedSafResponse",
              counter: Metric.tagged(DhtMetrics.safResponsesRejected, "reason", "UnrequestedSafResponse")
            },
            send(s, s.attacker, stored)
          )
          expect(error).toEqual(new DhtError.UnrequestedSafResponse())
        })
      ))

    const failingSaf = (error: DhtError.StageError): SafStage.SafStageService => ({
      decide: () => Effect.succeed({ isSafStored: false, isAlreadyForwarded: false }),
      handle: (message) =>
        message.header.messageType === Envelope.DhtMessageType.SafStoredMessages
          ? Effect.fail(error)
          : Effect.succeed(SafStage.SafOutcome.Continue({ message }))
    })

    const safResponse = (s: Scene) =>
      craft({
        messageType: Envelope.DhtMessageType.SafStoredMessages,
        destination: Envelope.destinationPublicKey(s.victim.identity.publicKey),
        parts: [new Uint8Array(0)]
      })

    it.effect("TooManySafMessages from the SAF stage bans the responder 2 h", () =>
      run((s) =>
        Effect.gen(function*() {
          yield* verdict(
            s,
            {
              tag: "TooManySafMessages",
              counter: Metric.tagged(DhtMetrics.safResponsesRejected, "reason", "TooManySafMessages"),
              ban: { who: s.attacker.identity, severity: "High" }
            },
            send(s, s.attacker, yield* safResponse(s))
          )
        }), { saf: failingSaf(new DhtError.TooManySafMessages({ received: 51, limit: 50 })) }))

    it.effect("InvalidSafMessage{DhtMessageViaSaf} from the SAF stage bans the responder 10 min", () =>
      run((s) =>
        Effect.gen(function*() {
          yield* verdict(
            s,
            {
              tag: "InvalidSafMessage",
              counter: Metric.tagged(DhtMetrics.safResponsesRejected, "reason", "InvalidSafMessage"),
              ban: { who: s.attacker.identity, severity: "Medium" }
            },
            send(s, s.attacker, yield* safResponse(s))
          )
        }), { saf: failingSaf(new DhtError.InvalidSafMessage({ reason: "DhtMessageViaSaf" })) }))

    it.effect("messages a SAF response delivers reach the application with isSafMessage, via saf", () =>
      Effect.gen(function*() {
        const inner = yield* craft({ parts: applicationParts(4, text("kept for you")) })
        const delivered: SafStage.SafStageService = {
          decide: () => Effect.succeed({ isSafStored: false, isAlreadyForwarded: false }),
          handle: (message) =>
            Effect.gen(function*() {
              if (message.header.messageType !== Envelope.DhtMessageType.SafStoredMessages) {
                return SafStage.SafOutcome.Continue({ message })
              }
              const body = yield* Effect.orDie(Envelope.decodeEnvelopeBody(inner.body))
              return SafStage.SafOutcome.Delivered({
                messages: [{
                  ...message,
                  header: inner.header,
                  body: inner.body,
                  isSafMessage: true,
                  decryption: InboundMessages.DecryptionResult.Succeeded({ body, authenticatedOrigin: Option.none() }),
                  isForThisNode: true
                }]
              })
            })
        }
        return yield* run((s) =>
          Effect.gen(function*() {
            const viaSaf = yield* count(Metric.tagged(DhtMetrics.delivered, "via", "saf"))
            yield* send(s, s.attacker, yield* safResponse(s))
            const got = yield* nextDelivered(s.victim)
            expect(got.body).toEqual(text("kept for you"))
            expect(got.isSafMessage).toBe(true)
            expect((yield* count(Metric.tagged(DhtMetrics.delivered, "via", "saf"))) - viaSaf).toBe(1)
          }), { saf: delivered })
      }).pipe(Effect.provide(cryptoLayer)))

    const deciding = (decision: SafStage.SafDecision): SafStage.SafStageService => ({
      decide: () => Effect.succeed(decision),
      handle: (message) => Effect.succeed(SafStage.SafOutcome.Continue({ message }))
    })

    it.effect("a message the SAF stage stores goes to its destination or the nodes closest to it (rule saf)", () =>
      run((s) =>
        Effect.gen(function*() {
          const sealed = yield* craft({ signer: s.attacker.identity, encryptFor: s.honest.identity.publicKey })
          const viaSaf = yield* count(Metric.tagged(DhtMetrics.forwarded, "rule", "saf"))
          yield* send(s, s.attacker, sealed)
          yield* probe(s)
          const [offer] = yield* Ref.get(s.offers)
          expect(offer?.params.strategy).toEqual(BroadcastStrategy.DirectOrClosestNodes({
            id: s.honest.identity.nodeId,
            excluded: [s.attacker.identity.nodeId],
            connectedOnly: false
          }))
          expect(offer?.body).toEqual(sealed.body)
          expect((yield* count(Metric.tagged(DhtMetrics.forwarded, "rule", "saf"))) - viaSaf).toBe(1)
        }), { saf: deciding({ isSafStored: true, isAlreadyForwarded: false }) }))

    it.effect("a message the SAF store already held was forwarded then: not again", () =>
      run((s) =>
        Effect.gen(function*() {
          const sealed = yield* craft({ signer: s.attacker.identity, encryptFor: s.honest.identity.publicKey })
          yield* send(s, s.attacker, sealed)
          yield* probe(s)
          yield* noOffers(s)
        }), { saf: deciding({ isSafStored: true, isAlreadyForwarded: true }) }))

    it.effect("a peer-sync handler's TooManyPeersReceived bans the source 2 h", () =>
      run((s) =>
        Effect.gen(function*() {
          const message = yield* craft({
            messageType: Envelope.DhtMessageType.PeerSyncResponse,
            destination: Envelope.destinationPublicKey(s.victim.identity.publicKey),
            parts: [new Uint8Array(0)]
          })
          yield* verdict(
            s,
            { tag: "TooManyPeersReceived", ban: { who: s.attacker.identity, severity: "High" } },
            send(s, s.attacker, message)
          )
        }), {
        inbound: { peerSync: () => Effect.fail(new DhtError.TooManyPeersReceived({ received: 501, limit: 500 })) }
      }))
  })

  describe("transport rows (MemoryNetwork) next to the pipeline", () => {
    const MiB8 = 8 * 1024 * 1024

    /** an unsigned broadcast whose encoded envelope is exactly `size` bytes */
    const ofSize = (size: number) =>
      Effect.gen(function*() {
        let payload = size - 64
        for (;;) {
          const message = yield* craft({ parts: applicationParts(1, new Uint8Array(payload)) })
          if (message.bytes.length === size) return { message, payload }
          payload += size - message.bytes.length
        }
      })

    it.effect("FrameTooLarge: 8 MiB + 1 bans the sender 10 min; exactly 8 MiB is delivered (scenario 16)", () =>
      run((s) =>
        Effect.gen(function*() {
          const exact = yield* ofSize(MiB8)
          expect(exact.message.bytes.length).toBe(MiB8)
          yield* send(s, s.attacker, exact.message)
          expect((yield* nextDelivered(s.victim)).body.length).toBe(exact.payload)
          const before = yield* count(rejectedCounter("FrameTooLarge"))
          yield* send(s, s.attacker, (yield* ofSize(MiB8 + 1)).message)
          yield* probe(s)
          expect((yield* count(rejectedCounter("FrameTooLarge"))) - before).toBe(1)
          const record = yield* recordIn(s.victim, s.attacker.identity)
          expect(Option.map(record, (p) => [p.bannedUntil, p.bannedReason])).toEqual(
            Option.some([T0 + durationOf("Low"), "FrameTooLarge"])
          )
        })
      ))
  })
})
