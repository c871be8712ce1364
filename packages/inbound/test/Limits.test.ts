/**
 * Bounds under pressure (SPEC §7.3, §8.2, §13.1): a full dedup cache, a failing one, a full outbound queue, a slow
 * subscriber, and the cost of a flood arriving over several links (scenarios 43, 46, 47).
 */
import * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Transport from "@comms-dht/core/Transport"
import { describe, expect, it } from "@effect/vitest"
import * as InboundPipeline from "@comms-dht/inbound/InboundPipeline"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import {
  applicationParts,
  config,
  connect,
  count,
  craft,
  deliveredSoFar,
  eventually,
  identityOf,
  nextDelivered,
  type Offer,
  type Rejection,
  sendRaw,
  settle,
  startNode,
  startRaw,
  text,
  withHeader
} from "./harness.js"

const T0 = 1_700_000_000_000
const nowS = BigInt(T0 / 1000)

type Env = Crypto.Crypto | MemoryNetwork.MemoryNetworkHub | Scope.Scope

const sharedCrypto = Layer.succeed(Crypto.Crypto, Effect.runSync(Crypto.makeNoble()))

const withNetwork = <A, E>(test: Effect.Effect<A, E, Env>, crypto: Layer.Layer<Crypto.Crypto> = sharedCrypto) =>
  Effect.scoped(Effect.zipRight(TestClock.setTime(T0), test)).pipe(
    Effect.provide(Layer.mergeAll(MemoryNetwork.layerHub(), crypto))
  )

const rejected = (reason: string) => count(Metric.tagged(DhtMetrics.inboundRejected, "reason", reason))
const shed = (where: string) => count(Metric.tagged(DhtMetrics.inboundShed, "where", where))

const body = (m: { readonly body: Uint8Array }) => new TextDecoder().decode(m.body)

// a transport wrapper counting the screens installed on it
const countingScreens = () => {
  let installed = 0
  const wrap = (transport: Transport.TransportService) =>
    Effect.succeed({
      ...transport,
      screen: (screen: Transport.Screen) => {
        installed++
        return transport.screen === undefined ? Effect.void : transport.screen(screen)
      }
    })
  return { wrap, installed: () => installed }
}

describe("limits", () => {
  // a fourth live message is delivered but not forwarded, no live entry is evicted, and once the entries are dead
  // the next message is forwarded again
  it.effect("scenario 43: a dedup cache of capacity 3", () =>
    withNetwork(Effect.gen(function*() {
      const offers = yield* Ref.make<ReadonlyArray<Offer>>([])
      const victim = yield* startNode(yield* identityOf(3000), {
        recording: offers,
        config: DhtConfig.unsafeMake({ dedupCacheCapacity: 3 }, config)
      })
      const source = yield* startRaw(yield* identityOf(3001))
      yield* connect(source, victim)
      const gossip = (n: number) =>
        craft({ signer: source.identity, expires: nowS + 60n, parts: applicationParts(1, text(`m${n}`)) })
      const messages = yield* Effect.forEach([1, 2, 3, 4], gossip)
      const full = yield* rejected("DedupFull")
      for (const m of messages) yield* sendRaw(source, victim.identity, m.bytes)
      for (const n of [1, 2, 3, 4]) expect(body(yield* nextDelivered(victim))).toBe(`m${n}`)
      expect((yield* Ref.get(offers)).length).toBe(3)
      expect((yield* rejected("DedupFull")) - full).toBe(1)
      // the three live entries are all still there: their copies are duplicates
      const duplicates = yield* count(DhtMetrics.inboundDuplicates)
      for (const m of messages.slice(0, 3)) yield* sendRaw(source, victim.identity, m.bytes)
      yield* eventually(Effect.map(count(DhtMetrics.inboundDuplicates), (n) => n === duplicates + 3))
      // keepUntil = expires + 10 min: past it, a new message takes a dead entry's place and is forwarded again
      yield* TestClock.adjust(60_000 + 10 * 60_000 + 1_000)
      const fifth = yield* craft({ signer: source.identity, parts: applicationParts(1, text("m5")) })
      yield* sendRaw(source, victim.identity, fifth.bytes)
      expect(body(yield* nextDelivered(victim))).toBe("m5")
      expect((yield* Ref.get(offers)).length).toBe(4)
      expect(yield* victim.run(Effect.flatMap(DedupCache.DedupCache, (c) => c.size))).toBe(3)
    })))

  it.effect("scenario 43: a dedup store whose writes fail delivers but never forwards", () =>
    withNetwork(Effect.gen(function*() {
      const offers = yield* Ref.make<ReadonlyArray<Offer>>([])
      const failing = Layer.succeed(DedupCache.DedupCache, DedupCache.DedupCache.of({
        insert: () =>
          Effect.succeed(DedupCache.DedupInsertResult.Failed({
            error: new DhtError.StoreError({ reason: "Io", message: "disk on fire" })
          })),
        hitCount: () => Effect.succeed(0),
        get: () => Effect.succeedNone,
        // nothing is ever held, so every copy goes to `insert` and fails there
        unsafeRecordHit: () => undefined,
        trim: Effect.succeed(0),
        size: Effect.succeed(0)
      }))
      const victim = yield* startNode(yield* identityOf(3100), { recording: offers, dedup: failing })
      const source = yield* startRaw(yield* identityOf(3101))
      yield* connect(source, victim)
      const storeErrors = yield* rejected("StoreError")
      const message = yield* craft({ signer: source.identity, parts: applicationParts(1, text("no cache")) })
      yield* sendRaw(source, victim.identity, message.bytes)
      expect(body(yield* nextDelivered(victim))).toBe("no cache")
      expect(yield* Ref.get(offers)).toEqual([])
      expect((yield* rejected("StoreError")) - storeErrors).toBe(1)
    })))

  // forwards are shed (where=forward) while inbound processing goes on; an application send waits for room
  it.effect("scenario 46: a full outbound queue", () =>
    withNetwork(Effect.gen(function*() {
      const gate = yield* Effect.makeLatch(false)
      const victim = yield* startNode(yield* identityOf(3200), {
        config: DhtConfig.unsafeMake({ outboundBufferSize: 1 }, config),
        wrapTransport: (transport) =>
          Effect.succeed(Transport.Transport.of({
            ...transport,
            send: (message) => Effect.zipRight(gate.await, transport.send(message))
          }))
      })
      const source = yield* startRaw(yield* identityOf(3201))
      const downstream = yield* startRaw(yield* identityOf(3202))
      yield* connect(source, victim)
      yield* connect(victim, downstream)
      const before = yield* shed("forward")
      const total = 24
      const messages = yield* Effect.forEach(Array.from({ length: total }, (_, i) => i), (i) =>
        craft({ signer: source.identity, parts: applicationParts(1, text(`f${i}`)) }))
      for (const m of messages) yield* sendRaw(source, victim.identity, m.bytes)
      const delivered = yield* Effect.forEach(messages, () => nextDelivered(victim))
      expect(delivered.map(body)).toEqual(messages.map((_, i) => `f${i}`))
      const shedNow = (yield* shed("forward")) - before
      expect(shedNow).toBeGreaterThan(0)
      expect(shedNow).toBeLessThan(total)

      const app = yield* victim.run(
        OutboundRequester.broadcast(Envelope.destinationUnknown(), OutboundRequester.clearText, [], 1, text("app"))
      ).pipe(Effect.fork)
      yield* settle
      expect(Option.isNone(yield* Fiber.poll(app))).toBe(true)
      yield* gate.open
      const response = yield* Fiber.join(app)
      expect(response._tag).toBe("Queued")
      expect((yield* shed("forward")) - before).toBe(shedNow)
    })))

  it.effect("a subscriber that does not read loses the oldest messages, counted where=subscriber", () =>
    withNetwork(Effect.gen(function*() {
      const capacity = 10
      const victim = yield* startNode(yield* identityOf(3300), { inbound: { subscriberCapacity: capacity } })
      const source = yield* startRaw(yield* identityOf(3301))
      yield* connect(source, victim)
      const before = yield* shed("subscriber")
      const total = capacity + 2
      for (let i = 0; i < total; i++) {
        yield* sendRaw(source, victim.identity, (yield* craft({ parts: applicationParts(1, text(`s${i}`)) })).bytes)
      }
      yield* eventually(Effect.map(shed("subscriber"), (n) => n - before === 2))
      const kept = yield* deliveredSoFar(victim)
      expect(kept.map(body)).toEqual(Array.from({ length: capacity }, (_, i) => `s${i + 2}`))
    })))

  it.effect("every subscriber gets every message; a released subscription gets none; closing ends the stream", () =>
    withNetwork(Effect.gen(function*() {
      const victim = yield* startNode(yield* identityOf(3310))
      const source = yield* startRaw(yield* identityOf(3311))
      yield* connect(source, victim)
      const subscriptions = yield* Scope.make()
      const [first, second] = yield* victim.run(
        Effect.flatMap(InboundPipeline.Inbound, (inbound) => Effect.all([inbound.subscribe, inbound.subscribe])).pipe(
          Scope.extend(subscriptions)
        )
      )
      const streamed = yield* victim.run(
        Effect.flatMap(InboundPipeline.Inbound, (inbound) => Stream.runCollect(inbound.messages))
      ).pipe(Effect.fork)
      const send = (s: string) =>
        Effect.flatMap(craft({ parts: applicationParts(1, text(s)) }), (m) => sendRaw(source, victim.identity, m.bytes))
      yield* settle
      yield* send("both")
      expect(body(yield* Queue.take(first!))).toBe("both")
      expect(body(yield* Queue.take(second!))).toBe("both")
      yield* Scope.close(subscriptions, Exit.void)
      expect(yield* Queue.isShutdown(first!)).toBe(true)
      yield* send("after")
      expect(body(yield* nextDelivered(victim))).toBe("both")
      expect(body(yield* nextDelivered(victim))).toBe("after")
      yield* Scope.close(victim.scope, Exit.void)
      expect(Chunk.toReadonlyArray(yield* Fiber.join(streamed)).map(body)).toEqual(["both", "after"])
    })))

  it.effect("scenario 47: a signed flood arriving over 4 links costs the node one Ed25519 verification", () =>
    withNetwork(
      Effect.gen(function*() {
        const victim = yield* startNode(yield* identityOf(3400))
        const links = yield* Effect.forEach([3401, 3402, 3403, 3404], (n) => Effect.flatMap(identityOf(n), startRaw))
        for (const link of links) yield* connect(link, victim)
        const origin = yield* identityOf(3405)
        const verify = (result: string) => count(Metric.tagged(DhtMetrics.cryptoVerify, "result", result))
        const before = { valid: yield* verify("valid"), memo: yield* verify("memo"), invalid: yield* verify("invalid") }
        const duplicates = yield* count(DhtMetrics.inboundDuplicates)
        const flood = yield* craft({ signer: origin, parts: applicationParts(1, text("four ways")) })
        for (const link of links) yield* sendRaw(link, victim.identity, flood.bytes)
        expect(body(yield* nextDelivered(victim))).toBe("four ways")
        yield* eventually(Effect.map(count(DhtMetrics.inboundDuplicates), (n) => n === duplicates + 3))
        expect({
          valid: (yield* verify("valid")) - before.valid,
          memo: (yield* verify("memo")) - before.memo,
          invalid: (yield* verify("invalid")) - before.invalid
        }).toEqual({ valid: 1, memo: 0, invalid: 0 })
        expect(yield* deliveredSoFar(victim)).toEqual([])
      }),
      Crypto.layerNoble({ verifyMemoCapacity: 4 })
    ))

  it.effect("copies of a handled message are dropped by the transport's screen, never queued; bad frames go on", () =>
    withNetwork(Effect.gen(function*() {
      // what the screen the pipeline installs decides, frame by frame
      const decisions: Array<boolean> = []
      const watchScreen = (transport: Transport.TransportService) => {
        const install = transport.screen
        return Effect.succeed(
          install === undefined ? transport : {
            ...transport,
            screen: (screen: Transport.Screen) =>
              install((m, sender) => {
                const passes = screen(m, sender)
                decisions.push(passes)
                return passes
              })
          }
        )
      }
      const victim = yield* startNode(yield* identityOf(3500), { wrapTransport: watchScreen })
      const attacker = yield* startRaw(yield* identityOf(3501))
      yield* connect(attacker, victim)
      const origin = yield* identityOf(3502)
      const duplicates = yield* count(DhtMetrics.inboundDuplicates)
      const malformed = yield* rejected("DecodeError")

      const message = yield* craft({ signer: origin, parts: applicationParts(1, text("once")) })
      yield* sendRaw(attacker, victim.identity, message.bytes)
      expect(body(yield* nextDelivered(victim))).toBe("once")
      // copies, one with another hop count (the same message: the dedup hash leaves it out)
      for (let i = 0; i < 20; i++) yield* sendRaw(attacker, victim.identity, message.bytes)
      yield* sendRaw(attacker, victim.identity, withHeader(message, { hopCount: 3 }).bytes)
      expect(decisions).toEqual([true, ...new Array<boolean>(21).fill(false)])
      expect((yield* count(DhtMetrics.inboundDuplicates)) - duplicates).toBe(21)

      // what the screen cannot judge goes on to a worker, which reports it as before
      yield* sendRaw(attacker, victim.identity, Uint8Array.from([0xff, 0xff, 0xff]))
      yield* eventually(Effect.map(rejected("DecodeError"), (n) => n === malformed + 1))
      const next = yield* craft({ signer: origin, parts: applicationParts(1, text("next")) })
      yield* sendRaw(attacker, victim.identity, next.bytes)
      expect(body(yield* nextDelivered(victim))).toBe("next")
      expect(decisions.slice(22)).toEqual([true, true])
      yield* settle
      expect(yield* deliveredSoFar(victim)).toEqual([])
    })))

  it.effect("the bytes of one frame reaching several nodes are decoded and hashed once; each node judges its copy", () => {
    // a broadcast's copies are one array handed to every peer: the screen's two hashes (the challenge and the dedup
    // hash) run for the first receiver only
    const base = Effect.runSync(Crypto.makeNoble())
    let hashes = 0
    const counting = Layer.succeed(Crypto.Crypto, {
      ...base,
      dsh: (label, outLen, fields) => {
        hashes++
        return base.dsh(label, outLen, fields)
      }
    })
    return withNetwork(
      Effect.gen(function*() {
        const victims = yield* Effect.forEach([3530, 3531, 3532], (i) => Effect.flatMap(identityOf(i), startNode))
        const sender = yield* startRaw(yield* identityOf(3533))
        for (const victim of victims) yield* connect(sender, victim)
        const origin = yield* identityOf(3534)
        const received = Effect.forEach(victims, (victim) => Effect.map(nextDelivered(victim), body))
        const hashesOf = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
          Effect.suspend(() => {
            const before = hashes
            return Effect.map(effect, () => hashes - before)
          })

        const one = yield* craft({ signer: origin, parts: applicationParts(1, text("one array")) })
        const shared = yield* hashesOf(Effect.gen(function*() {
          for (const victim of victims) yield* sendRaw(sender, victim.identity, one.bytes)
          expect(yield* received).toEqual(["one array", "one array", "one array"])
        }))
        const copied = yield* craft({ signer: origin, parts: applicationParts(1, text("three arrays")) })
        const apart = yield* hashesOf(Effect.gen(function*() {
          for (const victim of victims) yield* sendRaw(sender, victim.identity, copied.bytes.slice())
          expect(yield* received).toEqual(["three arrays", "three arrays", "three arrays"])
        }))
        expect(apart - shared).toBe(2 * 2)

        // what was read of the array is shared, the judgement is not: each node counts its own copy a duplicate
        const duplicates = yield* count(DhtMetrics.inboundDuplicates)
        for (const victim of victims) yield* sendRaw(sender, victim.identity, one.bytes)
        yield* eventually(Effect.map(count(DhtMetrics.inboundDuplicates), (n) => n === duplicates + 3))
        yield* settle
        for (const victim of victims) expect(yield* deliveredSoFar(victim)).toEqual([])
      }),
      counting
    )
  })

  it.effect("a node with a rejection observer installs no screen: its workers see every copy", () =>
    withNetwork(Effect.gen(function*() {
      const screens = countingScreens()
      const rejections = yield* Ref.make<ReadonlyArray<Rejection>>([])
      const victim = yield* startNode(yield* identityOf(3510), { wrapTransport: screens.wrap, rejections })
      const attacker = yield* startRaw(yield* identityOf(3511))
      yield* connect(attacker, victim)
      const message = yield* craft({ signer: yield* identityOf(3512), parts: applicationParts(1, text("seen")) })
      yield* sendRaw(attacker, victim.identity, message.bytes)
      yield* sendRaw(attacker, victim.identity, message.bytes)
      expect(body(yield* nextDelivered(victim))).toBe("seen")
      yield* eventually(Effect.map(Ref.get(rejections), (all) => all.some((r) => r.error._tag === "Duplicate")))
      expect(screens.installed()).toBe(0)
    })))

  it.effect("a node that lets two copies of a message on installs no screen: the second is delivered", () =>
    withNetwork(Effect.gen(function*() {
      const screens = countingScreens()
      const twice = DhtConfig.unsafeMake({ dedupAllowedMessageOccurrences: 2 }, config)
      const victim = yield* startNode(yield* identityOf(3520), { wrapTransport: screens.wrap, config: twice })
      const attacker = yield* startRaw(yield* identityOf(3521))
      yield* connect(attacker, victim)
      const message = yield* craft({ signer: yield* identityOf(3522), parts: applicationParts(1, text("twice")) })
      for (let i = 0; i < 3; i++) yield* sendRaw(attacker, victim.identity, message.bytes)
      expect(body(yield* nextDelivered(victim))).toBe("twice")
      expect(body(yield* nextDelivered(victim))).toBe("twice")
      yield* settle
      expect(yield* deliveredSoFar(victim)).toEqual([])
      expect(screens.installed()).toBe(0)
    })))
})
