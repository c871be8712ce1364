/**
 * The fiber's clock read in the step that uses it.
 *
 * `Effect.flatMap(Clock.currentTimeMillis, f)` costs three steps of Effect's run loop before `f` runs (the clock
 * service looked up, its time read, the continuation); the hot paths of a node read the time for every peer
 * looked at and every connection made, hundreds of thousands of times in a large simulation.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"

/**
 * `f` of the current time in milliseconds, by the fiber's `Clock` (the one `Clock.currentTimeMillis` reads:
 * `TestClock` in tests, a simulation's virtual clock), in one step.
 *
 * @since 0.1.0
 * @category utils
 */
export const withNow = <A, E, R>(f: (nowMs: number) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime<A, E, R>((fiber) => f(nowOf(fiber)))

/**
 * The current time in milliseconds by `fiber`'s `Clock`, for code already in a step of it
 * (`Effect.withFiberRuntime`).
 *
 * @since 0.1.0
 * @category utils
 */
export const nowOf = <A, E>(fiber: Fiber.RuntimeFiber<A, E>): number =>
  Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis()
