import * as Crypto from "@comms-dht/core/Crypto"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import type { SendFailReason } from "@comms-dht/core/DhtError"
import * as Drbg from "@comms-dht/core/Drbg"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import { Transport, type TransportService } from "@comms-dht/core/Transport"
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import { makeNodeSeeded } from "../src/testing.js"
import * as VirtualClock from "../src/VirtualClock.js"

const T0 = VirtualClock.START_MS

/** Records `label` with the virtual time it was reached at. */
const mark = (trace: Ref.Ref<Array<string>>, label: string) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => Ref.update(trace, (xs) => [...xs, `${label}@${now - T0}`]))

describe("VirtualClock", () => {
  it.effect("starts at 2025-01-01T00:00:00Z and wakes sleepers in time order, equal times in sleep order", () =>
    Effect.gen(function*() {
      const vc = yield* VirtualClock.make()
      const trace = yield* Ref.make<Array<string>>([])
      yield* vc.use(Effect.gen(function*() {
        expect(yield* Clock.currentTimeMillis).toBe(1_735_689_600_000)
        const sleeper = (label: string, ms: number) => Effect.zipRight(Effect.sleep(ms), mark(trace, label))
        yield* Effect.fork(sleeper("a", 30_000))
        yield* Effect.fork(sleeper("b", 10_000))
        yield* Effect.fork(sleeper("c", 20_000))
        yield* Effect.fork(sleeper("d", 10_000))
        yield* vc.advance("1 minute")
        expect(yield* Clock.currentTimeMillis).toBe(T0 + 60_000)
      }))
      expect(yield* Ref.get(trace)).toEqual(["b@10000", "d@10000", "c@20000", "a@30000"])
      const stats = yield* vc.stats
      expect(stats.steps).toBe(3)
      expect(stats.timersWoken).toBe(4)
      expect(stats.pendingTimers).toBe(0)
    }))

  it.effect("a long run leaves the event loop a turn: a macrotask queued at its start runs before the run ends", () =>
    Effect.gen(function*() {
      const vc = yield* VirtualClock.make()
      // a signal handler is such a macrotask: without a turn, Ctrl-C on `comms-dht sim` waited for the run's end
      let turned = false
      setImmediate(() => {
        turned = true
      })
      // 20,000 steps of the driver, far more than the 50 ms of real time between turns
      const sleeps = Effect.forEach(Array.from({ length: 20_000 }), () => Effect.sleep("1 second"), { discard: true })
      const seen = yield* vc.use(vc.drive(Effect.zipRight(sleeps, Effect.sync(() => turned))))
      expect(seen).toBe(true)
      expect((yield* vc.stats).steps).toBe(20_000)
    }))

  it.effect("a sleeper that wakes and sleeps again is woken at the sum of its sleeps", () =>
    Effect.gen(function*() {
      const vc = yield* VirtualClock.make()
      const trace = yield* Ref.make<Array<string>>([])
      yield* vc.use(Effect.gen(function*() {
        const sleeps = Effect.forEach([5, 7, 11], (ms, i) => Effect.zipRight(Effect.sleep(ms), mark(trace, `s${i}`)))
        yield* Effect.fork(sleeps)
        yield* vc.advance("100 millis")
      }))
      expect(yield* Ref.get(trace)).toEqual(["s0@5", "s1@12", "s2@23"])
    }))

  it.effect("Effect.repeat with Schedule.spaced fires at the right virtual times", () =>
    Effect.gen(function*() {
      const vc = yield* VirtualClock.make()
      const trace = yield* Ref.make<Array<string>>([])
      yield* vc.use(Effect.gen(function*() {
        yield* Effect.fork(Effect.repeat(mark(trace, "tick"), Schedule.spaced("5 minutes")))
        yield* vc.advance("15 minutes")
        yield* vc.advance("4 minutes")
      }))
      expect(yield* Ref.get(trace)).toEqual(["tick@0", "tick@300000", "tick@600000", "tick@900000"])
    }))

  it.effect("a timeout fires at its virtual time and its cancelled timer never wakes anyone", () =>
    Effect.gen(function*() {
      const vc = yield* VirtualClock.make()
      const result = yield* vc.use(Effect.gen(function*() {
        const fast = yield* Effect.fork(Effect.timeout(Effect.sleep("1 second"), "1 minute"))
        const slow = yield* Effect.fork(Effect.timeoutOption(Effect.never, "2 minutes"))
        yield* vc.advance("5 minutes")
        return { fast: yield* Fiber.join(fast), slow: yield* Fiber.join(slow), now: yield* Clock.currentTimeMillis }
      }))
      expect(result.slow._tag).toBe("None")
      expect(result.now).toBe(T0 + 300_000)
      const stats = yield* vc.stats
      // the 1 s sleep, then the 2 min timeout: the 1 min timeout of the finished effect was cancelled
      expect(stats.timersWoken).toBe(2)
      expect(stats.pendingTimers).toBe(0)
    }))

  it.effect("runToQuiescence stops once no delivery is pending, leaving periodic timers in the heap", () =>
    Effect.gen(function*() {
      const vc = yield* VirtualClock.make()
      const trace = yield* Ref.make<Array<string>>([])
      const quiet = yield* vc.use(Effect.gen(function*() {
        yield* Effect.fork(Effect.repeat(Effect.sleep("1 minute"), Schedule.forever))
        yield* vc.inFlight.increment
        yield* vc.schedule(T0 + 90_000, Effect.zipRight(mark(trace, "late"), vc.inFlight.decrement))
        yield* vc.inFlight.increment
        yield* vc.schedule(T0 + 30_000, Effect.zipRight(mark(trace, "early"), vc.inFlight.decrement))
        return yield* vc.runToQuiescence()
      }))
      expect(quiet).toBe(true)
      expect(yield* Ref.get(trace)).toEqual(["early@30000", "late@90000"])
      const stats = yield* vc.stats
      expect(stats.now).toBe(T0 + 90_000)
      expect(stats.pendingDeliveries).toBe(0)
      expect(stats.pendingTimers).toBe(1)
      expect(stats.inFlight).toBe(0)
    }))

  it.effect("arrivals due together: in order, each one's effect before the next, a defect contained", () =>
    Effect.gen(function*() {
      const vc = yield* VirtualClock.make()
      const trace: Array<string> = []
      const schedule = vc.hubHooks.schedule
      if (schedule === undefined) return yield* Effect.dieMessage("the clock gives a schedule hook")
      yield* vc.use(Effect.gen(function*() {
        schedule(T0 + 20, (now) => {
          trace.push(`a@${now - T0}`)
          return Effect.sync(() => trace.push("a's effect"))
        })
        schedule(T0 + 20, () => {
          trace.push("b")
          // an effect that dies: logged as the clock's, the batch goes on
          return Effect.dieMessage("an arrival's effect that dies")
        })
        schedule(T0 + 20, () => {
          trace.push("c")
          // a bug in an arrival: caught, logged, the batch goes on
          throw new Error("an arrival that throws")
        })
        schedule(T0 + 20, (now) => {
          trace.push(`d@${now - T0}`)
          return undefined
        })
        yield* vc.runToQuiescence()
      }))
      expect(trace).toEqual(["a@20", "a's effect", "b", "c", "d@20"])
      const stats = yield* vc.stats
      expect([stats.deliveriesRun, stats.pendingDeliveries, stats.steps]).toEqual([4, 0, 1])
    }))

  it.effect("work handed from fiber to fiber finishes before time moves, however many hops it takes", () =>
    Effect.gen(function*() {
      const vc = yield* VirtualClock.make()
      const result = yield* vc.use(Effect.gen(function*() {
        const hops = yield* Effect.forEach(Array.from({ length: 301 }), () => Queue.bounded<number>(1))
        for (let i = 0; i < 300; i++) {
          yield* Effect.fork(Effect.forever(
            Queue.take(hops[i]!).pipe(
              Effect.tap(() => Effect.repeatN(Effect.yieldNow(), 3)),
              Effect.flatMap((n) => Queue.offer(hops[i + 1]!, n + 1))
            )
          ))
        }
        const timer = yield* Effect.fork(Effect.zipRight(Effect.sleep("1 milli"), Queue.poll(hops[300]!)))
        yield* Queue.offer(hops[0]!, 0)
        yield* vc.advance("1 second")
        return yield* Fiber.join(timer)
      }))
      // the value went through all 300 fibers before the clock reached the timer
      expect(result._tag === "Some" ? result.value : -1).toBe(300)
    }))

  it.effect("with nothing runnable, a stuck counter is a stall: time advances and the stall is counted", () =>
    Effect.gen(function*() {
      const vc = yield* VirtualClock.make()
      const quiet = yield* vc.use(Effect.gen(function*() {
        yield* vc.inFlight.increment
        yield* Effect.fork(Effect.repeat(Effect.void, Schedule.spaced("1 minute")))
        return yield* vc.runToQuiescence({ cap: "10 minutes" })
      }))
      // never quiescent: the counter stays at 1, so the run ends at the cap
      expect(quiet).toBe(false)
      const stats = yield* vc.stats
      expect(stats.now).toBe(T0 + 600_000)
      expect(stats.stalls).toBe(10)
    }))

  it.effect("drive returns the result of work that waits on time, and fails with Timeout past the cap", () =>
    Effect.gen(function*() {
      const vc = yield* VirtualClock.make()
      const { late, value } = yield* vc.use(Effect.gen(function*() {
        const value = yield* vc.drive(Effect.as(Effect.sleep("3 hours"), "done"))
        const late = yield* Effect.flip(vc.drive(Effect.sleep("2 hours"), { cap: "1 hour" }))
        return { value, late }
      }))
      expect(value).toBe("done")
      expect(late._tag).toBe("Timeout")
      expect((yield* vc.stats).pendingTimers).toBe(0)
    }))

  it.effect("two runs of one seeded workload give the same trace; another seed gives another", () =>
    Effect.gen(function*() {
      const workload = (seed: number) =>
        Effect.gen(function*() {
          const vc = yield* VirtualClock.make()
          const trace = yield* Ref.make<Array<string>>([])
          const mailbox = yield* Queue.bounded<string>(4)
          yield* vc.use(Effect.gen(function*() {
            yield* Effect.fork(Effect.forever(Effect.flatMap(Queue.take(mailbox), (m) => mark(trace, m))))
            for (let i = 0; i < 20; i++) {
              yield* Effect.fork(Effect.forEach(Array.from({ length: 10 }), (_, k) =>
                Random.nextIntBetween(0, 50).pipe(
                  Effect.flatMap((ms) => Effect.sleep(ms)),
                  Effect.zipRight(Queue.offer(mailbox, `${i}.${k}`))
                )))
            }
            yield* vc.advance("1 second")
          }).pipe(Effect.withRandom(Random.make(seed))))
          return yield* Ref.get(trace)
        })
      const first = yield* workload(42)
      expect(first).toHaveLength(200)
      expect(yield* workload(42)).toEqual(first)
      expect(yield* workload(43)).not.toEqual(first)
    }))
})

// --- MemoryNetwork on the virtual clock (SPEC §20.48, first part) ---

interface Endpoint {
  readonly identity: NodeIdentity.Identity
  readonly transport: TransportService
  readonly peers: PeerManager.PeerManagerService
}

const startEndpoint = (hub: Context.Context<MemoryNetwork.MemoryNetworkHub>, crypto: Crypto.CryptoService, i: number) =>
  Effect.gen(function*() {
    const secretKey = Drbg.simIdentitySeed(1, i)
    const identity = NodeIdentity.make({
      secretKey,
      publicKey: crypto.publicKeyOf(secretKey),
      features: Peer.PeerFeatures.COMMUNICATION_NODE
    })
    const context = yield* Layer.build(
      MemoryNetwork.layer({ address: `mem://${i}` }).pipe(
        Layer.provideMerge(PeerManager.layerMemory),
        Layer.provide(NodeIdentity.layer(identity)),
        Layer.provide(Layer.succeedContext(hub)),
        Layer.provide(Layer.succeed(Crypto.Crypto, crypto))
      )
    ).pipe(Effect.provideService(DhtConfig.DhtConfig, DhtConfig.localTest))
    const endpoint: Endpoint = {
      identity,
      transport: Context.get(context, Transport),
      peers: Context.get(context, PeerManager.PeerManager)
    }
    return endpoint
  })

const sendFrame = (from: Endpoint, to: Endpoint, bytes: Uint8Array) =>
  Effect.gen(function*() {
    const reply = yield* Deferred.make<void, SendFailReason>()
    yield* from.transport.send({ peer: to.identity.nodeId, tag: 1n, bytes, reply })
  })

describe("VirtualClock with MemoryNetwork", () => {
  it.scoped("a frame in flight keeps the driver from advancing: the receiver's whole reaction happens at arrival", () =>
    Effect.gen(function*() {
      const vc = yield* VirtualClock.make()
      const hubStats = yield* vc.use(Effect.gen(function*() {
        const crypto = yield* makeNodeSeeded(1)
        const hub = yield* Layer.build(MemoryNetwork.layerHub({ ...vc.hubHooks, latency: () => Effect.succeed(20) }))
        const a = yield* startEndpoint(hub, crypto, 0)
        const b = yield* startEndpoint(hub, crypto, 1)
        yield* a.peers.add(Peer.make({
          publicKey: b.identity.publicKey,
          addresses: ["mem://1"],
          features: Peer.PeerFeatures.COMMUNICATION_NODE,
          source: "Config",
          nowMs: T0
        }))
        // a handshake is a round trip: 40 ms
        yield* vc.drive(a.transport.dial(b.identity.nodeId))
        const t1 = yield* Clock.currentTimeMillis
        expect(t1).toBe(T0 + 40)

        // B hands each frame through 100 fibers before it answers: work, not time
        const hops = yield* Effect.forEach(Array.from({ length: 101 }), () => Queue.bounded<Uint8Array>(1))
        yield* Effect.fork(Effect.forever(
          Effect.flatMap(Queue.take(b.transport.inbound), (m) => Queue.offer(hops[0]!, m.bytes))
        ))
        for (let i = 0; i < 100; i++) {
          yield* Effect.fork(Effect.forever(
            Effect.flatMap(Queue.take(hops[i]!), (bytes) => Queue.offer(hops[i + 1]!, bytes))
          ))
        }
        const answeredAt = yield* Deferred.make<number>()
        yield* Effect.fork(Effect.forever(
          Queue.take(hops[100]!).pipe(
            Effect.zipRight(Clock.currentTimeMillis),
            Effect.flatMap((now) => Deferred.succeed(answeredAt, now)),
            Effect.zipRight(sendFrame(b, a, Uint8Array.of(2)))
          )
        ))
        const receivedAt = yield* Deferred.make<number>()
        yield* Effect.fork(
          Effect.flatMap(Queue.take(a.transport.inbound), (m) => Deferred.succeed(receivedAt, m.receivedAt))
        )
        // a timer 1 ms after the frame lands looks at what has been written by then
        const frames = Effect.map(Context.get(hub, MemoryNetwork.MemoryNetworkHub).stats, (s) => s.frames)
        const observer = yield* Effect.fork(Effect.zipRight(Effect.sleep("21 millis"), frames))
        yield* sendFrame(a, b, Uint8Array.of(1))
        const quiet = yield* vc.runToQuiescence()
        expect(quiet).toBe(true)
        expect(yield* Deferred.await(answeredAt)).toBe(t1 + 20)
        expect(yield* Deferred.await(receivedAt)).toBe(t1 + 40)
        return yield* Fiber.join(observer)
      }))
      // at t1 + 21 ms the answer (frame 2) had been written: the driver waited for B's 100 hops at t1 + 20
      expect(hubStats).toBe(2)
      const stats = yield* vc.stats
      expect(stats.inFlight).toBe(0)
      expect(stats.stalls).toBe(0)
    }))
})
