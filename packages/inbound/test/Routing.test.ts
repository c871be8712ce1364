/**
 * Forwarding over `MemoryNetwork`s of full nodes (inbound and outbound pipelines): greedy propagation on a line,
 * tampered copies that must not pre-empt the genuine message, duplicates and echoes, forged signatures, the
 * diagnostic hop count, unsigned and rate-limited gossip, and join/discovery handling end to end
 * (SPEC §7.5, §8.1, §10; scenarios 8, 9, 11, 12, 13, 17, 18, 27, 41).
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as NodeId from "@comms-dht/core/NodeId"
import type * as Peer from "@comms-dht/core/Peer"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import type * as SafStage from "@comms-dht/core/SafStage"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import {
  applicationParts,
  config,
  connect,
  corruptSignature,
  count,
  craft,
  craftJoin,
  deliveredSoFar,
  discoveryParts,
  envelopesOf,
  eventually,
  fakeDiscovery,
  framesOf,
  type FullNode,
  identityOf,
  type Node,
  nextDelivered,
  type Offer,
  type RawServices,
  type Rejection,
  sendRaw,
  settle,
  startNode,
  startRaw,
  text,
  withHeader
} from "./harness.js"
import * as InboundPipeline from "../src/InboundPipeline.js"

const T0 = 1_700_000_000_000

type Env = Crypto.Crypto | MemoryNetwork.MemoryNetworkHub | Scope.Scope

const withNetwork = <A, E>(test: Effect.Effect<A, E, Env>, crypto: Layer.Layer<Crypto.Crypto> = sharedCrypto) =>
  Effect.scoped(Effect.zipRight(TestClock.setTime(T0), test)).pipe(
    Effect.provide(Layer.mergeAll(MemoryNetwork.layerHub(), crypto))
  )

const sharedCrypto = Layer.succeed(Crypto.Crypto, Effect.runSync(Crypto.makeNoble()))

const contains = (haystack: Uint8Array, needle: Uint8Array) => {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer
    return true
  }
  return false
}

const framesWaiting = (node: Node<RawServices>) =>
  node.run(Effect.flatMap(Transport.Transport, (t) => Queue.size(t.inbound)))

const decode = (m: { readonly body: Uint8Array }) => new TextDecoder().decode(m.body)

const forwarded = (rule: string) => count(Metric.tagged(DhtMetrics.forwarded, "rule", rule))

const offersOf = (offers: Ref.Ref<ReadonlyArray<Offer>>) => Ref.get(offers)

/** Identities sorted so that each is strictly closer to the last than the one before (a greedy route). */
const lineTowards = (n: number, from: number) =>
  Effect.gen(function*() {
    const target = yield* identityOf(from)
    const candidates = yield* Effect.forEach(Array.from({ length: 40 }, (_, i) => from + 1 + i), (i) => identityOf(i))
    const byDistance = [...candidates].sort((a, b) => NodeId.compareDistance(target.nodeId, b.nodeId, a.nodeId))
    const step = Math.floor(byDistance.length / (n - 1))
    const chosen = Array.from({ length: n - 1 }, (_, i) => byDistance[i * step]!)
    return [...chosen, target]
  })

describe("forwarding", () => {
  // delivered once at the destination; the node between sees neither body nor origin
  it.effect("scenario 8: an encrypted direct message across one forwarder", () =>
    Effect.gen(function*() {
      const frames = yield* Ref.make<ReadonlyArray<MemoryNetwork.FrameInfo>>([])
      const hub = MemoryNetwork.layerHub({ onFrame: (frame) => Ref.update(frames, (all) => [...all, frame]) })
      yield* Effect.scoped(Effect.gen(function*() {
        const [a, b, c] = yield* Effect.forEach([1, 2, 3], (n) => Effect.flatMap(identityOf(n), (id) => startNode(id)))
        yield* connect(a!, b!)
        yield* connect(b!, c!)
        const secret = text("the quick brown secret")
        yield* a!.run(OutboundRequester.propagate(
          Envelope.destinationPublicKey(c!.identity.publicKey),
          OutboundRequester.encryptFor(c!.identity.publicKey),
          [],
          3,
          secret
        ))
        const got = yield* nextDelivered(c!)
        expect(got.body).toEqual(secret)
        expect(got.origin).toEqual(Option.some(a!.identity.publicKey))
        expect(got.wasEncrypted).toBe(true)
        yield* settle
        expect(yield* deliveredSoFar(b!)).toEqual([])
        expect(yield* deliveredSoFar(c!)).toEqual([])
        const seenByB = (yield* Ref.get(frames)).filter((f) => NodeId.equals(f.to, b!.identity.nodeId))
        expect(seenByB.length).toBe(1)
        expect(contains(seenByB[0]!.bytes, secret)).toBe(false)
        expect(contains(seenByB[0]!.bytes, a!.identity.publicKey)).toBe(false)
      })).pipe(Effect.provide(Layer.mergeAll(hub, sharedCrypto)))
    }))

  // delivered once at the end; the nodes between forward (F1) and deliver nothing
  it.effect("scenario 9: greedy propagation on a line of 5", () =>
    withNetwork(Effect.gen(function*() {
      const ids = yield* lineTowards(5, 300)
      const nodes = yield* Effect.forEach(ids, (id) => startNode(id))
      for (let i = 0; i + 1 < nodes.length; i++) yield* connect(nodes[i]!, nodes[i + 1]!)
      const [first, , , , last] = nodes
      const f1 = yield* forwarded("F1")
      yield* first!.run(OutboundRequester.propagate(
        Envelope.destinationPublicKey(last!.identity.publicKey),
        OutboundRequester.encryptFor(last!.identity.publicKey),
        [],
        1,
        text("four hops")
      ))
      expect((yield* nextDelivered(last!)).body).toEqual(text("four hops"))
      yield* settle
      for (const node of nodes) expect(yield* deliveredSoFar(node)).toEqual([])
      expect((yield* forwarded("F1")) - f1).toBe(3)
    })))

  it.effect("scenario 9: a tampered copy (hop_count, header, body) arriving first does not stop the genuine one", () =>
    withNetwork(Effect.gen(function*() {
      const ids = yield* lineTowards(5, 400)
      const origin = yield* startRaw(ids[0]!)
      const rejections = yield* Ref.make<ReadonlyArray<Rejection>>([])
      const nodes = yield* Effect.forEach(ids.slice(1), (id, i) => startNode(id, i === 3 ? { rejections } : {}))
      yield* connect(origin, nodes[0]!)
      for (let i = 0; i + 1 < nodes.length; i++) yield* connect(nodes[i]!, nodes[i + 1]!)
      const last = nodes[3]!
      const first = nodes[0]!
      const genuine = (body: string) =>
        craft({ signer: origin.identity, encryptFor: last.identity.publicKey, parts: applicationParts(1, text(body)) })
      const rejectedAtEnd = (tag: string) =>
        Effect.map(Ref.get(rejections), (all) => all.filter((r) => r.error._tag === tag).length)

      // a different hop_count is the same message: it is delivered, and the genuine copy is a duplicate
      const one = yield* genuine("one")
      yield* sendRaw(origin, first.identity, withHeader(one, { hopCount: 7 }).bytes)
      expect((yield* nextDelivered(last)).body).toEqual(text("one"))
      yield* sendRaw(origin, first.identity, one.bytes)
      yield* settle
      expect(yield* deliveredSoFar(last)).toEqual([])

      // a changed signed header field or body byte is another message: forwarded, then refused by the recipient
      const two = yield* genuine("two")
      yield* sendRaw(origin, first.identity, withHeader(two, { expires: two.header.expires - 1n }).bytes)
      yield* eventually(Effect.map(rejectedAtEnd("InvalidEncryptedSignature"), (n) => n === 1))
      yield* sendRaw(origin, first.identity, two.bytes)
      expect((yield* nextDelivered(last)).body).toEqual(text("two"))

      const three = yield* genuine("three")
      const body = three.body.slice()
      body[100] = body[100]! ^ 0x40
      yield* sendRaw(
        origin,
        first.identity,
        Envelope.encodeEnvelope(new Envelope.DhtEnvelope({ header: three.header, body }, true))
      )
      yield* eventually(Effect.map(rejectedAtEnd("InvalidEncryptedSignature"), (n) => n === 2))
      yield* sendRaw(origin, first.identity, three.bytes)
      expect((yield* nextDelivered(last)).body).toEqual(text("three"))

      yield* settle
      expect(yield* deliveredSoFar(last)).toEqual([])
      // nobody is blamed for what only the recipient could check
      for (const node of nodes) {
        const banned = yield* node.run(Effect.flatMap(PeerManager.PeerManager, (peers) =>
          Effect.map(Effect.orDie(peers.all), (all) => all.filter((p) => p.isBanned(T0)))))
        expect(banned).toEqual([])
      }
    })))

  // delivered once with hit count 2; with 2 allowed occurrences, delivered twice but forwarded and stored once
  it.effect("scenario 11: one envelope from two sources", () =>
    withNetwork(Effect.gen(function*() {
      const handled = yield* Ref.make(0)
      const saf: SafStage.SafStageService = {
        decide: () => Effect.succeed({ isSafStored: false, isAlreadyForwarded: false }),
        handle: (message) => Effect.as(Ref.update(handled, (n) => n + 1), { _tag: "Continue", message } as const)
      }
      const run = (allowed: number, base: number) =>
        Effect.scoped(Effect.gen(function*() {
          const offers = yield* Ref.make<ReadonlyArray<Offer>>([])
          yield* Ref.set(handled, 0)
          const victim = yield* startNode(yield* identityOf(base), {
            recording: offers,
            saf,
            config: DhtConfig.unsafeMake({ dedupAllowedMessageOccurrences: allowed }, config)
          })
          const one = yield* startRaw(yield* identityOf(base + 1))
          const two = yield* startRaw(yield* identityOf(base + 2))
          yield* connect(one, victim)
          yield* connect(two, victim)
          const message = yield* craft({ signer: one.identity, parts: applicationParts(1, text("same")) })
          yield* sendRaw(one, victim.identity, message.bytes)
          yield* sendRaw(two, victim.identity, message.bytes)
          yield* sendRaw(two, victim.identity, (yield* craft({ parts: applicationParts(1, text("marker")) })).bytes)
          const delivered: Array<string> = []
          for (;;) {
            const got = new TextDecoder().decode((yield* nextDelivered(victim)).body)
            if (got === "marker") break
            delivered.push(got)
          }
          const hash = yield* InboundPipeline.dedupHash(message.header, message.body)
          const hits = yield* victim.run(Effect.flatMap(DedupCache.DedupCache, (cache) => cache.hitCount(hash)))
          return { delivered, hits, forwards: (yield* offersOf(offers)).length, stored: yield* Ref.get(handled) }
        }))
      expect(yield* run(1, 500)).toEqual({ delivered: ["same"], hits: 2, forwards: 1, stored: 2 })
      expect(yield* run(2, 510)).toEqual({ delivered: ["same", "same"], hits: 2, forwards: 1, stored: 2 })
    })))

  it.effect("scenario 12: a node's own broadcast coming back is dropped as a duplicate", () =>
    withNetwork(Effect.gen(function*() {
      const sender = yield* startNode(yield* identityOf(600))
      const peer = yield* startRaw(yield* identityOf(601))
      yield* connect(sender, peer)
      yield* sender.run(
        OutboundRequester.flood(Envelope.destinationUnknown(), [], 1, text("echo")).pipe(
          Effect.flatMap(OutboundRequester.resolve),
          Effect.flatMap((states) => states.waitAll)
        )
      )
      yield* eventually(Effect.map(framesWaiting(peer), (n) => n === 1))
      const [frame] = (yield* framesOf(peer)).map((f) => f.bytes)
      const duplicates = yield* count(DhtMetrics.inboundDuplicates)
      yield* sendRaw(peer, sender.identity, frame!)
      yield* eventually(Effect.map(count(DhtMetrics.inboundDuplicates), (n) => n === duplicates + 1))
      expect(yield* deliveredSoFar(sender)).toEqual([])
    })))

  // delivered by nobody, not forwarded, its sender banned 2 h (PeerBanned); a second copy is dropped as a duplicate
  // without a second verification
  it.effect("scenario 13: a forged cleartext signature", () =>
    withNetwork(
      Effect.gen(function*() {
        const victim = yield* startNode(yield* identityOf(700))
        const downstream = yield* startNode(yield* identityOf(701))
        const forger = yield* startRaw(yield* identityOf(702))
        const other = yield* startRaw(yield* identityOf(703))
        yield* connect(victim, downstream)
        yield* connect(forger, victim)
        yield* connect(other, victim)
        const verify = (result: string) => count(Metric.tagged(DhtMetrics.cryptoVerify, "result", result))
        const before = { valid: yield* verify("valid"), invalid: yield* verify("invalid"), memo: yield* verify("memo") }
        const forged = yield* corruptSignature(yield* craft({ signer: forger.identity }))
        yield* sendRaw(forger, victim.identity, forged.bytes)
        const banned = yield* Queue.take(victim.events)
        expect(DhtEvent.DhtEvent.$is("PeerBanned")(banned)).toBe(true)
        expect(banned).toMatchObject({ severity: "High", reason: "InvalidSignature", until: T0 + 2 * 3_600_000 })
        const duplicates = yield* count(DhtMetrics.inboundDuplicates)
        yield* sendRaw(other, victim.identity, forged.bytes)
        yield* eventually(Effect.map(count(DhtMetrics.inboundDuplicates), (n) => n === duplicates + 1))
        yield* settle
        expect(yield* deliveredSoFar(victim)).toEqual([])
        expect(yield* deliveredSoFar(downstream)).toEqual([])
        expect({
          valid: (yield* verify("valid")) - before.valid,
          invalid: (yield* verify("invalid")) - before.invalid,
          memo: (yield* verify("memo")) - before.memo
        }).toEqual({ valid: 0, invalid: 1, memo: 0 })
      }),
      // a memo of its own, so that the counts are this test's
      Crypto.layerNoble()
    ))

  // a copy with hop_count 4e9 ahead of the genuine ones is delivered and forwarded like any other; 2^32 − 1 saturates
  it.effect("scenario 17: hop_count is diagnostic", () =>
    withNetwork(Effect.gen(function*() {
      const origin = yield* startRaw(yield* identityOf(800))
      const [v, p, q] = yield* Effect.forEach([801, 802, 803], (n) =>
        Effect.flatMap(identityOf(n), (id) => startNode(id)))
      const observer = yield* startRaw(yield* identityOf(804))
      yield* connect(origin, v!)
      yield* connect(origin, p!)
      yield* connect(v!, p!)
      yield* connect(p!, q!)
      yield* connect(observer, v!)
      const flood = yield* craft({ signer: origin.identity, parts: applicationParts(1, text("hops")) })
      yield* sendRaw(origin, v!.identity, withHeader(flood, { hopCount: 4_000_000_000 }).bytes)
      yield* sendRaw(origin, v!.identity, flood.bytes)
      yield* sendRaw(origin, p!.identity, flood.bytes)
      for (const node of [v!, p!, q!]) expect((yield* nextDelivered(node)).body).toEqual(text("hops"))
      yield* settle
      for (const node of [v!, p!, q!]) expect(yield* deliveredSoFar(node)).toEqual([])
      const seen = yield* envelopesOf(observer)
      expect(seen.map((e) => e.header.hopCount)).toEqual([4_000_000_001])

      const saturated = yield* craft({ signer: origin.identity, parts: applicationParts(1, text("max")) })
      yield* sendRaw(origin, v!.identity, withHeader(saturated, { hopCount: 0xffff_ffff }).bytes)
      yield* eventually(Effect.map(framesWaiting(observer), (n) => n === 1))
      expect((yield* envelopesOf(observer)).map((e) => e.header.hopCount)).toEqual([0xffff_ffff])
    })))

  // not forwarded but still handed to the SAF stage; a join straight from its joiner bans nobody
  it.effect("scenario 18: a message addressed to its own source", () =>
    withNetwork(Effect.gen(function*() {
      const offers = yield* Ref.make<ReadonlyArray<Offer>>([])
      const seenBySaf = yield* Ref.make<ReadonlyArray<Envelope.DhtMessageType>>([])
      const saf: SafStage.SafStageService = {
        decide: () => Effect.succeed({ isSafStored: true, isAlreadyForwarded: false }),
        handle: (message) =>
          Effect.as(Ref.update(seenBySaf, (all) => [...all, message.header.messageType]), {
            _tag: "Continue",
            message
          } as const)
      }
      const victim = yield* startNode(yield* identityOf(900), { recording: offers, saf })
      const source = yield* startRaw(yield* identityOf(901))
      const sender = yield* identityOf(902)
      yield* connect(source, victim)
      // encrypted for the source itself: F1, not for the victim
      const looped = yield* craft({ signer: sender, encryptFor: source.identity.publicKey })
      yield* sendRaw(source, victim.identity, looped.bytes)
      yield* eventually(Effect.map(Ref.get(seenBySaf), (all) => all.length === 1))
      expect(yield* offersOf(offers)).toEqual([])
      const record = () =>
        victim.run(Effect.flatMap(PeerManager.PeerManager, (p) => Effect.orDie(p.get(source.identity.nodeId))))
      yield* eventually(Effect.map(record(), (peer) => peer.isBanned(T0)))
      expect((yield* record()).bannedUntil).toBe(T0 + 10 * 60_000)

      yield* TestClock.adjust(10 * 60_000)
      const join = yield* craftJoin(source.identity)
      const joins = yield* forwarded("join")
      yield* source.run(Effect.flatMap(PeerManager.PeerManager, (p) => Effect.orDie(p.unban(victim.identity.nodeId))))
      yield* connect(source, victim)
      yield* sendRaw(source, victim.identity, join.bytes)
      yield* eventually(Effect.map(forwarded("join"), (n) => n === joins + 1))
      expect((yield* record()).isBanned(T0 + 10 * 60_000)).toBe(false)
      const [reprop] = (yield* offersOf(offers))
      expect(reprop?.params.strategy).toEqual(
        BroadcastStrategy.Propagate({
          destination: Envelope.destinationPublicKey(source.identity.publicKey),
          excluded: [source.identity.nodeId, source.identity.nodeId],
          factor: config.joinPropagationFactor
        })
      )
      expect(Option.map(reprop!.params.customHeader, (h) => h.messageSignature)).toEqual(
        Option.some(join.header.messageSignature)
      )
    })))

  // SafStage.mayStore: what its plain rules rule out takes no decision and passes the stage; SAF messages still
  // reach it
  it.effect("a SAF stage whose mayStore rules a message out is neither asked nor handed it", () =>
    withNetwork(Effect.gen(function*() {
      const offers = yield* Ref.make<ReadonlyArray<Offer>>([])
      const decided = yield* Ref.make(0)
      const seenBySaf = yield* Ref.make<ReadonlyArray<Envelope.DhtMessageType>>([])
      const saf: SafStage.SafStageService = {
        mayStore: () => false,
        decide: () => Effect.as(Ref.update(decided, (n) => n + 1), { isSafStored: false, isAlreadyForwarded: false }),
        handle: (message) =>
          Effect.as(Ref.update(seenBySaf, (all) => [...all, message.header.messageType]), {
            _tag: "Continue",
            message
          } as const)
      }
      const victim = yield* startNode(yield* identityOf(910), { recording: offers, saf })
      const source = yield* startRaw(yield* identityOf(911))
      const other = yield* identityOf(912)
      yield* connect(source, victim)
      // encrypted for another key (F1): forwarded, which asks the stage's decision unless mayStore rules it out
      const sealed = yield* craft({ signer: source.identity, encryptFor: other.publicKey })
      yield* sendRaw(source, victim.identity, sealed.bytes)
      const request = yield* craft({
        messageType: Envelope.DhtMessageType.SafRequestMessages,
        destination: Envelope.destinationPublicKey(victim.identity.publicKey),
        parts: [new Uint8Array(0)]
      })
      yield* sendRaw(source, victim.identity, request.bytes)
      yield* eventually(Effect.map(Ref.get(seenBySaf), (all) => all.length > 0))
      expect(yield* Ref.get(seenBySaf)).toEqual([Envelope.DhtMessageType.SafRequestMessages])
      expect(yield* Ref.get(decided)).toBe(0)
      const [forward] = yield* offersOf(offers)
      expect(forward?.params.strategy._tag).toBe("Propagate")
    })))

  // unsigned cleartext for anyone is delivered by direct neighbours only; the 101st signed F3 message of one origin
  // within a minute is RateLimited
  it.effect("scenario 41: unsigned gossip and the gossip budget", () =>
    Effect.gen(function*() {
      const written = yield* Ref.make<ReadonlyArray<MemoryNetwork.FrameInfo>>([])
      const hub = MemoryNetwork.layerHub({ onFrame: (frame) => Ref.update(written, (all) => [...all, frame]) })
      yield* Effect.scoped(Effect.gen(function*() {
        yield* TestClock.setTime(T0)
        const origin = yield* startRaw(yield* identityOf(1000))
        const b = yield* startNode(yield* identityOf(1001))
        const c = yield* startNode(yield* identityOf(1002))
        yield* connect(origin, b)
        yield* connect(b, c)
        const fromBToC = Effect.map(Ref.get(written), (all) =>
          all.filter((f) => NodeId.equals(f.from, b.identity.nodeId) && NodeId.equals(f.to, c.identity.nodeId)).length)
        yield* sendRaw(origin, b.identity, (yield* craft({ parts: applicationParts(1, text("unsigned")) })).bytes)
        expect((yield* nextDelivered(b)).body).toEqual(text("unsigned"))
        yield* settle
        expect(yield* deliveredSoFar(c)).toEqual([])
        expect(yield* fromBToC).toBe(0)

        const rateLimited = Metric.tagged(DhtMetrics.inboundRejected, "reason", "RateLimited")
        const limited = yield* count(rateLimited)
        const messages = yield* Effect.forEach(Array.from({ length: 101 }, (_, i) => i), (i) =>
          craft({ signer: origin.identity, parts: applicationParts(1, text(`g${i}`)) }))
        for (const m of messages) yield* sendRaw(origin, b.identity, m.bytes)
        yield* eventually(Effect.map(count(rateLimited), (n) => n === limited + 1))
        const atB = yield* Effect.forEach(messages.slice(0, 100), () => nextDelivered(b))
        expect(atB.map(decode)).toEqual(messages.slice(0, 100).map((_, i) => `g${i}`))
        yield* settle
        // b's forwards go through its outbound queue of 20, which sheds what a burst brings beyond it (§13.1): c gets
        // what b wrote, never the 101st
        const relayed = yield* fromBToC
        expect(relayed).toBeGreaterThan(0)
        expect(relayed).toBeLessThanOrEqual(100)
        const atC = (yield* deliveredSoFar(c)).map(decode)
        expect(atC.length).toBe(relayed)
        expect(new Set(atC).size).toBe(relayed)
        expect(atC).not.toContain("g100")
        expect(yield* deliveredSoFar(b)).toEqual([])
      })).pipe(Effect.provide(Layer.mergeAll(hub, sharedCrypto)))
    }))
})

describe("join and discovery end to end (SPEC §10)", () => {
  it.effect("scenario 27: a relayed join adds the joiner unverified (PeerAdded), re-propagated once to its key", () =>
    withNetwork(Effect.gen(function*() {
      const joiner = yield* identityOf(1100)
      const relay = yield* startRaw(yield* identityOf(1101))
      const [v, w] = yield* Effect.forEach([1102, 1103], (n) => Effect.flatMap(identityOf(n), (id) => startNode(id)))
      // w must be closer to the joiner than v for v's greedy re-propagation to pick it
      const [near, far] = NodeId.isCloser(joiner.nodeId, v!.identity.nodeId, w!.identity.nodeId) ? [v!, w!] : [w!, v!]
      yield* connect(relay, far)
      yield* connect(far, near)
      const joins = yield* forwarded("join")
      const join = yield* craftJoin(joiner)
      yield* sendRaw(relay, far.identity, join.bytes)
      const known = (node: FullNode) =>
        node.run(Effect.flatMap(PeerManager.PeerManager, (p) => Effect.option(p.get(joiner.nodeId))))
      yield* eventually(Effect.map(known(near), Option.isSome))
      for (const node of [far, near]) {
        const peer = Option.getOrThrow(yield* known(node))
        expect(peer.isVerified).toBe(false)
        expect(peer.addresses.map((a) => [a.address, a.source])).toEqual([
          [`mem://${NodeId.toHex(joiner.nodeId)}`, "Join"]
        ])
        const added = yield* Queue.take(node.events)
        expect(added).toMatchObject({ _tag: "PeerAdded", publicKey: joiner.publicKey, source: "Join" })
      }
      yield* settle
      // each node re-propagated it once; the nearer one had nobody closer to send it to
      expect((yield* forwarded("join")) - joins).toBe(2)
    })))

  // docs/spec-departures.md §14: a join hop takes `joinPropagationFactor` closer peers, not `propagationFactor`
  const joinFanOut = (base: number, relayConfig: DhtConfig.Config) =>
    withNetwork(Effect.gen(function*() {
      const joiner = yield* identityOf(base)
      const relay = yield* startRaw(yield* identityOf(base + 1))
      const identities = yield* Effect.forEach([2, 3, 4, 5], (k) => identityOf(base + k))
      // the farthest from the joiner relays; the three closer ones are its only other connections
      const byDistance = identities.slice().sort((a, b) =>
        NodeId.isCloser(joiner.nodeId, a.nodeId, b.nodeId) ? -1 : 1
      )
      const far = yield* startNode(byDistance[3]!, { config: relayConfig })
      const closer = yield* Effect.forEach(byDistance.slice(0, 3), (id) => startNode(id))
      yield* connect(relay, far)
      yield* Effect.forEach(closer, (node) => connect(far, node))
      const join = yield* craftJoin(joiner)
      yield* sendRaw(relay, far.identity, join.bytes)
      const knows = (node: FullNode) => node.run(Effect.flatMap(PeerManager.PeerManager, (p) => p.exists(joiner.nodeId)))
      yield* eventually(knows(closer[0]!))
      yield* settle
      return yield* Effect.forEach(closer, knows)
    }))

  it.effect("a join is re-propagated to the closest of the closer peers only (joinPropagationFactor 1)", () =>
    Effect.map(joinFanOut(1120, config), (learnt) => expect(learnt).toEqual([true, false, false])))

  it.effect("with joinPropagationFactor 3 a join is re-propagated to all three closer peers", () =>
    Effect.map(
      joinFanOut(1130, DhtConfig.unsafeMake({ joinPropagationFactor: 3 }, config)),
      (learnt) => expect(learnt).toEqual([true, true, true])
    ))

  it.effect("a join with a claim the node holds leaves its record as it is and is still re-propagated", () =>
    withNetwork(Effect.gen(function*() {
      const joiner = yield* identityOf(1110)
      const relay = yield* startRaw(yield* identityOf(1111))
      const [v, w] = yield* Effect.forEach([1112, 1113], (n) => Effect.flatMap(identityOf(n), (id) => startNode(id)))
      const [near, far] = NodeId.isCloser(joiner.nodeId, v!.identity.nodeId, w!.identity.nodeId) ? [v!, w!] : [w!, v!]
      yield* connect(relay, far)
      yield* connect(far, near)
      const joinOf = (options: { readonly nonce: bigint; readonly addresses?: ReadonlyArray<string> }) =>
        craftJoin(joiner, options)
      const known = (node: FullNode) =>
        node.run(Effect.flatMap(PeerManager.PeerManager, (p) => Effect.option(p.get(joiner.nodeId))))
      yield* sendRaw(relay, far.identity, (yield* joinOf({ nonce: 1n })).bytes)
      yield* eventually(Effect.map(known(near), Option.isSome))
      yield* settle
      const before = [Option.getOrThrow(yield* known(far)), Option.getOrThrow(yield* known(near))]
      const joins = yield* forwarded("join")
      // another join (a new message) with the same claim: the records are not rewritten, the join still travels
      yield* sendRaw(relay, far.identity, (yield* joinOf({ nonce: 2n })).bytes)
      yield* settle
      expect((yield* forwarded("join")) - joins).toBe(2)
      expect(Option.getOrThrow(yield* known(far))).toBe(before[0])
      expect(Option.getOrThrow(yield* known(near))).toBe(before[1])
      // a newer claim is applied
      yield* TestClock.adjust(2_000)
      const moved = `mem://moved-${NodeId.toHex(joiner.nodeId)}`
      yield* sendRaw(relay, far.identity, (yield* joinOf({ nonce: 3n, addresses: [moved] })).bytes)
      yield* settle
      for (const node of [far, near]) {
        expect(Option.getOrThrow(yield* known(node)).addresses.map((a) => a.address)).toEqual([moved])
      }
    })))

  // the discovery crosses a forwarder encrypted; the target learns the requester and answers it directly, signed,
  // addressed to it
  it.effect("scenario 24, target side: a discovery request answered", () =>
    withNetwork(Effect.gen(function*() {
      const resolved = yield* Ref.make<ReadonlyArray<{ readonly nonce: bigint; readonly peer: Peer.Peer }>>([])
      const target = yield* startNode(yield* identityOf(1200))
      const requesterId = yield* identityOf(1201)
      const requester = yield* startNode(requesterId, {
        discovery: fakeDiscovery(new Map([[77n, target.identity.publicKey]]), resolved)
      })
      const between = yield* startNode(yield* identityOf(1202))
      yield* connect(requester, between)
      yield* connect(between, target)
      const parts = yield* discoveryParts(requesterId, { nonce: 77n })
      yield* requester.run(
        Effect.flatMap(OutboundRequester.OutboundRequester, (r) =>
          r.send(
            OutboundRequester.makeParams({
              strategy: BroadcastStrategy.Propagate({
                destination: Envelope.destinationPublicKey(target.identity.publicKey),
                excluded: []
              }),
              destination: Envelope.destinationPublicKey(target.identity.publicKey),
              encryption: OutboundRequester.encryptFor(target.identity.publicKey),
              messageType: Envelope.DhtMessageType.Discovery
            }),
            new Envelope.EnvelopeBody({ parts: [...parts] })
          ))
      )
      yield* eventually(Effect.map(Ref.get(resolved), (all) => all.length === 1))
      expect((yield* Ref.get(resolved))[0]).toMatchObject({
        nonce: 77n,
        peer: { publicKey: target.identity.publicKey }
      })
      const learnt = yield* target.run(Effect.flatMap(PeerManager.PeerManager, (p) => p.get(requesterId.nodeId)))
      expect(learnt.addresses.map((a) => a.address)).toContain(`mem://${NodeId.toHex(requesterId.nodeId)}`)
      for (const node of [target, requester, between]) expect(yield* deliveredSoFar(node)).toEqual([])
    })))

  it.effect("a discovery naming another key than its signer's is refused (OriginMismatch), not answered", () =>
    withNetwork(Effect.gen(function*() {
      const rejections = yield* Ref.make<ReadonlyArray<Rejection>>([])
      const offers = yield* Ref.make<ReadonlyArray<Offer>>([])
      const target = yield* startNode(yield* identityOf(1300), { rejections, recording: offers })
      const sender = yield* startRaw(yield* identityOf(1301))
      const victimOfReflection = yield* identityOf(1302)
      yield* connect(sender, target)
      const request = yield* craft({
        signer: sender.identity,
        encryptFor: target.identity.publicKey,
        messageType: Envelope.DhtMessageType.Discovery,
        parts: yield* discoveryParts(sender.identity, { publicKey: victimOfReflection.publicKey })
      })
      yield* sendRaw(sender, target.identity, request.bytes)
      yield* eventually(Effect.map(Ref.get(rejections), (all) => all.length === 1))
      expect((yield* Ref.get(rejections))[0]!.error).toEqual(new DhtError.OriginMismatch())
      expect(yield* offersOf(offers)).toEqual([])
    })))
})
