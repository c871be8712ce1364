import { describe, expect, it } from "@effect/vitest"
import * as LightDeferred from "@comms-dht/core/LightDeferred"
import { Cause, Deferred, Effect, Equal, Exit, Fiber, FiberId, Hash, Option, TestClock } from "effect"

describe("LightDeferred", () => {
  it("is the light form on the pinned Effect version, off Object.prototype and on a prototype shared by all", () => {
    expect(LightDeferred.isLight).toBe(true)
    const a = LightDeferred.unsafeMake<number>(FiberId.none)
    const b = LightDeferred.unsafeMake<number>(FiberId.none)
    expect(Object.getPrototypeOf(a)).not.toBe(Object.prototype)
    expect(Object.getPrototypeOf(a)).toBe(Object.getPrototypeOf(b))
    expect(Reflect.ownKeys(a)).toEqual(["state", "blockingOn"])
  })

  it.effect("resumes a waiting fiber with the value it is completed with, once", () =>
    Effect.gen(function*() {
      const deferred = yield* LightDeferred.make<number, string>()
      const waiter = yield* Effect.fork(Deferred.await(deferred))
      yield* Effect.yieldNow()
      expect(yield* Deferred.poll(deferred)).toEqual(Option.none())
      expect(yield* Deferred.succeed(deferred, 7)).toBe(true)
      expect(yield* Deferred.succeed(deferred, 8)).toBe(false)
      expect(yield* Fiber.join(waiter)).toBe(7)
      expect(yield* Deferred.isDone(deferred)).toBe(true)
      // a Deferred is an Effect: yielding it awaits it
      expect(yield* deferred).toBe(7)
    }))

  it.effect("fails, dies and interrupts its waiters as Effect's own Deferred does", () =>
    Effect.gen(function*() {
      const outcomes = []
      for (const make of [LightDeferred.unsafeMake<number, string>, Deferred.unsafeMake<number, string>]) {
        const failed = make(FiberId.none)
        const died = make(FiberId.none)
        const interrupted = make(FiberId.none)
        const waiters = yield* Effect.forEach([failed, died, interrupted], (d) => Effect.fork(Deferred.await(d)))
        yield* Effect.yieldNow()
        yield* Deferred.fail(failed, "no")
        yield* Deferred.die(died, "boom")
        yield* Deferred.interruptWith(interrupted, FiberId.make(1, 0))
        const exits = yield* Effect.forEach(waiters, Fiber.await)
        outcomes.push(exits.map((exit) =>
          Exit.match(exit, {
            onSuccess: () => "success",
            onFailure: (cause) =>
              Cause.isInterruptedOnly(cause) ? "interrupted" : Cause.isDie(cause) ? "died" : Cause.pretty(cause)
          })
        ))
      }
      expect(outcomes[0]).toEqual(["Error: no", "died", "interrupted"])
      expect(outcomes[0]).toEqual(outcomes[1])
    }))

  it.effect("drops an interrupted waiter, so completing resumes only the others", () =>
    Effect.gen(function*() {
      const deferred = LightDeferred.unsafeMake<string>(FiberId.none)
      const gone = yield* Effect.fork(Deferred.await(deferred))
      const kept = yield* Effect.fork(Deferred.await(deferred))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(gone)
      yield* Deferred.succeed(deferred, "late")
      expect(yield* Fiber.join(kept)).toBe("late")
      expect(Exit.isInterrupted(yield* Fiber.await(gone))).toBe(true)
    }))

  it.effect("runs a completing effect once and gives its exit to every waiter", () =>
    Effect.gen(function*() {
      const deferred = LightDeferred.unsafeMake<number, string>(FiberId.none)
      let runs = 0
      yield* Deferred.complete(deferred, Effect.sync(() => ++runs))
      expect(yield* Deferred.await(deferred)).toBe(1)
      expect(yield* Deferred.await(deferred)).toBe(1)
      expect(runs).toBe(1)
    }))

  it("is equal only to itself, with a stable hash", () => {
    const a = LightDeferred.unsafeMake<number>(FiberId.none)
    const b = LightDeferred.unsafeMake<number>(FiberId.none)
    expect(Equal.equals(a, a)).toBe(true)
    expect(Equal.equals(a, b)).toBe(false)
    expect(Hash.hash(a)).toBe(Hash.hash(a))
  })

  it.effect("unsafePoll reads what Deferred.poll reads, of its own Deferreds and of Effect's", () =>
    Effect.gen(function*() {
      const made = [
        LightDeferred.unsafeMake<number, string>(FiberId.none),
        yield* Deferred.make<number, string>()
      ]
      for (const deferred of made) {
        expect(LightDeferred.unsafePoll(deferred)).toBeUndefined()
        expect(yield* Deferred.poll(deferred)).toEqual(Option.none())
      }
      const [light, effects] = made as [Deferred.Deferred<number, string>, Deferred.Deferred<number, string>]
      yield* Deferred.succeed(light, 1)
      yield* Deferred.fail(effects, "no")
      for (const deferred of made) {
        const polled = Option.getOrThrow(yield* Deferred.poll(deferred))
        expect(LightDeferred.unsafePoll(deferred)).toBe(polled)
      }
      expect(LightDeferred.unsafePoll(light)).toEqual(Exit.succeed(1))
      expect(LightDeferred.unsafePoll(effects)).toEqual(Exit.fail("no"))
      // completed with an effect (not an outcome): that effect, not yet run
      const later = LightDeferred.unsafeMake<number>(FiberId.none)
      const effect = Effect.sync(() => 2)
      yield* Deferred.completeWith(later, effect)
      expect(LightDeferred.unsafePoll(later)).toBe(effect)
    }))

  describe("awaitOnce", () => {
    it.effect("gives a waiter what Deferred.await gives it: a value, a failure, a defect, an interruption", () =>
      Effect.gen(function*() {
        const outcomes = []
        for (const make of [LightDeferred.unsafeMake<number, string>, Deferred.unsafeMake<number, string>]) {
          for (const wait of [LightDeferred.awaitOnce, Deferred.await]) {
            const [ok, failed, died, interrupted, early] = Array.from({ length: 5 }, () => make(FiberId.none))
            yield* Deferred.succeed(early!, 0)
            const waiters = yield* Effect.forEach(
              [ok!, failed!, died!, interrupted!, early!],
              (d) => Effect.fork(Effect.exit(wait(d)))
            )
            yield* Effect.yieldNow()
            yield* Deferred.succeed(ok!, 7)
            yield* Deferred.fail(failed!, "no")
            yield* Deferred.die(died!, "boom")
            yield* Deferred.interruptWith(interrupted!, FiberId.make(1, 0))
            const exits = yield* Effect.forEach(waiters, Fiber.join)
            outcomes.push(exits.map((exit) =>
              Exit.match(exit, {
                onSuccess: (n) => `success ${n}`,
                onFailure: (cause) =>
                  Cause.isInterruptedOnly(cause) ? "interrupted" : Cause.isDie(cause) ? "died" : Cause.pretty(cause)
              })
            ))
          }
        }
        expect(outcomes[0]).toEqual(["success 7", "Error: no", "died", "interrupted", "success 0"])
        for (const outcome of outcomes) expect(outcome).toEqual(outcomes[0])
      }))

    it.effect("an interrupted waiter ends interrupted, and completing resumes the others once each", () =>
      Effect.gen(function*() {
        const deferred = LightDeferred.unsafeMake<string>(FiberId.none)
        let resumed = 0
        const waiting = LightDeferred.awaitOnce(deferred).pipe(Effect.tap(() => Effect.sync(() => resumed++)))
        const gone = yield* Effect.fork(waiting)
        const kept = yield* Effect.fork(waiting)
        yield* Effect.yieldNow()
        yield* Fiber.interrupt(gone)
        expect(Exit.isInterrupted(yield* Fiber.await(gone))).toBe(true)
        yield* Deferred.succeed(deferred, "late")
        expect(yield* Fiber.join(kept)).toBe("late")
        yield* Effect.yieldNow()
        expect(resumed).toBe(1)
        // and a wait after completion returns at once
        expect(yield* LightDeferred.awaitOnce(deferred)).toBe("late")
      }))

    it.effect("is interrupted while it waits, as a timeout does it", () =>
      Effect.gen(function*() {
        const deferred = LightDeferred.unsafeMake<number>(FiberId.none)
        const fiber = yield* Effect.fork(Effect.timeout(LightDeferred.awaitOnce(deferred), "1 second"))
        yield* TestClock.adjust("2 seconds")
        const exit = yield* Fiber.await(fiber)
        expect(Exit.isFailure(exit) && Option.getOrThrow(Cause.failureOption(exit.cause))._tag)
          .toBe("TimeoutException")
      }))
  })
})
