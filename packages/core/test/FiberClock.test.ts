import { describe, expect, it } from "@effect/vitest"
import * as FiberClock from "@comms-dht/core/FiberClock"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"

describe("FiberClock.withNow", () => {
  it.effect("reads the time Clock.currentTimeMillis reads, as the test clock moves", () =>
    Effect.gen(function*() {
      for (const step of [0, 1, 999, 86_400_000]) {
        yield* TestClock.adjust(step)
        const read = yield* FiberClock.withNow((now) => Effect.succeed(now))
        expect(read).toBe(yield* Clock.currentTimeMillis)
      }
      expect(yield* FiberClock.withNow((now) => Effect.succeed(now))).toBe(86_401_000)
    }))

  it.effect("reads the clock the fiber runs with, when it is replaced", () =>
    Effect.gen(function*() {
      const fixed: Clock.Clock = {
        [Clock.ClockTypeId]: Clock.ClockTypeId,
        unsafeCurrentTimeMillis: () => 42,
        currentTimeMillis: Effect.succeed(42),
        unsafeCurrentTimeNanos: () => 42_000_000n,
        currentTimeNanos: Effect.succeed(42_000_000n),
        sleep: () => Effect.void
      }
      const read = yield* FiberClock.withNow((now) => Effect.succeed(now)).pipe(Effect.withClock(fixed))
      expect(read).toBe(42)
      // and `f`'s failure is the result's
      const failed = yield* Effect.flip(FiberClock.withNow((now) => Effect.fail(`at ${now}`)))
      expect(failed).toBe("at 0")
    }))
})
