/**
 * The lock the stores and the memory transport hold while an index and what it mirrors change: one body at a time,
 * released however the body ends, and an interruption — of a body or of a waiter — never strands the others.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as LightLock from "../src/LightLock.js"

describe("LightLock", () => {
  it.effect("one body at a time, in the order they asked, each released however it ended", () =>
    Effect.gen(function*() {
      const lock = yield* LightLock.make
      const log: Array<string> = []
      const body = (name: string, end: Effect.Effect<void, string>) =>
        lock.withLock(
          Effect.sync(() => log.push(`${name} in`)).pipe(
            Effect.zipRight(Effect.sleep("1 second")),
            Effect.zipRight(Effect.sync(() => log.push(`${name} out`))),
            Effect.zipRight(end)
          )
        )
      const a = yield* Effect.fork(body("a", Effect.fail("refused")))
      const b = yield* Effect.fork(body("b", Effect.die("boom")))
      const c = yield* Effect.fork(body("c", Effect.void))
      yield* TestClock.adjust("3 seconds")
      expect(yield* Fiber.await(a)).toEqual(Exit.fail("refused"))
      expect(Exit.isFailure(yield* Fiber.await(b))).toBe(true)
      expect(yield* Fiber.await(c)).toEqual(Exit.void)
      expect(log).toEqual(["a in", "a out", "b in", "b out", "c in", "c out"])
    }))

  it.effect("withLockUninterruptible runs its body to the end; an interrupted waiter leaves others their turn", () =>
    Effect.gen(function*() {
      const lock = yield* LightLock.make
      const done: Array<string> = []
      const body = (name: string) =>
        lock.withLockUninterruptible(Effect.zipRight(Effect.sleep("1 second"), Effect.sync(() => done.push(name))))
      const holder = yield* Effect.fork(body("holder"))
      yield* Effect.yieldNow()
      const quitter = yield* Effect.fork(body("quitter"))
      const waiter = yield* Effect.fork(body("waiter"))
      yield* Effect.yieldNow()
      // both interruptions wait for what they interrupt: the holder's body runs to its end
      const stopHolder = yield* Effect.fork(Fiber.interrupt(holder))
      yield* Fiber.interrupt(quitter)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(stopHolder)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(waiter)
      expect(done).toEqual(["holder", "waiter"])
    }))

  it.effect("unsafeIsHeld: true from a body's start until its end, whatever the end", () =>
    Effect.gen(function*() {
      const lock = yield* LightLock.make
      expect(lock.unsafeIsHeld()).toBe(false)
      const inside = yield* lock.withLock(Effect.sync(() => lock.unsafeIsHeld()))
      expect(inside).toBe(true)
      expect(lock.unsafeIsHeld()).toBe(false)
      const held = yield* Effect.fork(lock.withLock(Effect.sleep("1 second")))
      yield* Effect.yieldNow()
      expect(lock.unsafeIsHeld()).toBe(true)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(held)
      expect(lock.unsafeIsHeld()).toBe(false)
      yield* Effect.exit(lock.withLock(Effect.fail("refused")))
      expect(lock.unsafeIsHeld()).toBe(false)
    }))

  it.effect("an interruptible body interrupted releases the lock", () =>
    Effect.gen(function*() {
      const lock = yield* LightLock.make
      const holder = yield* Effect.fork(lock.withLock(Effect.never))
      yield* Effect.yieldNow()
      const next = yield* Effect.fork(lock.withLock(Effect.succeed("next")))
      yield* Effect.yieldNow()
      expect(Option.isNone(yield* Fiber.poll(next))).toBe(true)
      yield* Fiber.interrupt(holder)
      expect(yield* Fiber.join(next)).toBe("next")
    }))
})
