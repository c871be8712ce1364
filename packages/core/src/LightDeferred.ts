/**
 * `Deferred`s made in one allocation. Effect 3's `Deferred.unsafeMake` builds each Deferred as an object literal
 * that spreads Effect's commit prototype into it (fourteen keys, most of them symbols), which V8 does not clone from
 * a boilerplate: about 1.6 µs per Deferred in a tight loop and 4–5 µs inside a pipeline, in the profiles of
 * docs/performance.md, where a request or a message needs two or three of them. `unsafeMake` here returns the same
 * Deferred — the same members, taken from one made by Effect — on a shared prototype, in about 0.03 µs.
 *
 * The one thing it assumes of Effect's internals is the shape of a fresh Deferred: its own members, and a pending
 * state of `_tag` and `joiners`. Both are checked once, against a Deferred that Effect makes, when this module loads;
 * if an Effect version makes them differently, `unsafeMake` is `Deferred.unsafeMake` (`isLight` tells which).
 *
 * @since 0.1.0
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as MutableRef from "effect/MutableRef"

interface PendingState {
  readonly _tag: "Pending"
  readonly joiners: Array<unknown>
}

// the members a Deferred made by Effect 3.22 holds itself; the rest come from its prototype chain
const INSTANCE_KEYS = ["state", "blockingOn"] as const

const template = Deferred.unsafeMake<unknown, unknown>(FiberId.none)

const isPendingState = (value: unknown): value is PendingState =>
  typeof value === "object" && value !== null && Reflect.ownKeys(value).length === 2 &&
  Reflect.get(value, "_tag") === "Pending" && Array.isArray(Reflect.get(value, "joiners")) &&
  Reflect.get(value, "joiners").length === 0

const shapeKnown = (): boolean => {
  const state: unknown = Reflect.get(template, "state")
  return typeof state === "object" && state !== null && Symbol.for("effect/MutableRef") in state &&
    isPendingState(Reflect.get(state, "current")) && Reflect.get(template, "blockingOn") === FiberId.none &&
    typeof Reflect.get(template, "commit") === "function"
}

// A class so that every instance has the same hidden class; the template's other members go on its prototype.
class Light {
  constructor(readonly state: MutableRef.MutableRef<PendingState>, readonly blockingOn: FiberId.FiberId) {}
}

const light = shapeKnown()
if (light) {
  for (const key of Reflect.ownKeys(template)) {
    if (INSTANCE_KEYS.some((k) => k === key)) continue
    const descriptor = Object.getOwnPropertyDescriptor(template, key)
    if (descriptor !== undefined) Object.defineProperty(Light.prototype, key, descriptor)
  }
}

/**
 * Whether `unsafeMake` makes Deferreds on the shared prototype (true on the Effect version this project pins).
 *
 * @since 0.1.0
 * @category constants
 */
export const isLight: boolean = light

/**
 * A new pending Deferred, as `Deferred.unsafeMake(fiberId)`: every function of `effect/Deferred` takes it.
 *
 * @since 0.1.0
 * @category unsafe
 */
export const unsafeMake: <A, E = never>(fiberId: FiberId.FiberId) => Deferred.Deferred<A, E> = light
  ? <A, E>(fiberId: FiberId.FiberId) =>
    // the members of a Deferred, checked against one made by Effect when this module loaded
    new Light(MutableRef.make({ _tag: "Pending", joiners: [] }), fiberId) as unknown as Deferred.Deferred<A, E>
  : Deferred.unsafeMake

/**
 * A new pending Deferred blocking on the current fiber, as `Deferred.make()`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A, E = never>(): Effect.Effect<Deferred.Deferred<A, E>> =>
  Effect.withFiberRuntime((fiber) => Effect.succeed(unsafeMake<A, E>(fiber.id())))

interface DoneState {
  readonly _tag: "Done"
  readonly effect: unknown
}

const isDoneState = (value: unknown): value is DoneState =>
  typeof value === "object" && value !== null && Reflect.get(value, "_tag") === "Done" && "effect" in value

// the state of a Deferred as Effect keeps it, if it is one whose shape this module knows
const stateOf = <A, E>(self: Deferred.Deferred<A, E>): PendingState | DoneState | undefined => {
  if (!light) return undefined
  const ref: unknown = Reflect.get(self, "state")
  if (typeof ref !== "object" || ref === null || !(Symbol.for("effect/MutableRef") in ref)) return undefined
  const state: unknown = Reflect.get(ref, "current")
  if (isDoneState(state)) return state
  return typeof state === "object" && state !== null && Reflect.get(state, "_tag") === "Pending" &&
      Array.isArray(Reflect.get(state, "joiners"))
    ? state as PendingState
    : undefined
}

/**
 * What `Deferred.poll` would find, read now rather than in a step of its own: the effect a done Deferred was
 * completed with, `undefined` while it is pending. Where this module does not know Effect's Deferreds (`isLight`
 * false) every Deferred reads as pending, so a caller must treat `undefined` as "not known yet", never as "failed".
 *
 * @since 0.1.0
 * @category unsafe
 */
export const unsafePoll = <A, E>(self: Deferred.Deferred<A, E>): Effect.Effect<A, E> | undefined => {
  const state = stateOf(self)
  // a Deferred is completed only with an effect of its own types
  return state?._tag === "Done" ? state.effect as Effect.Effect<A, E> : undefined
}

/**
 * `Deferred.await` for a Deferred completed once and then dropped, such as a request's reply: the same result and
 * the same interruption, in about ten steps of the run loop fewer. `Deferred.await` guards every wait with
 * `onInterrupt` (a mask, a match and a finalizer) to take an interrupted waiter off the Deferred's list; here the
 * waiter stays on it, and when the Deferred is completed its resumption finds the fiber no longer waiting and does
 * nothing. So a Deferred that lives long while many waiters on it are interrupted (a shutdown signal raced against
 * timeouts) keeps them until it completes: use `Deferred.await` for those. In the 300-node simulation (seed 7) Effect's
 * own awaits of this kind were 43,000 of the join's waits.
 *
 * @since 0.1.0
 * @category combinators
 */
export const awaitOnce = <A, E>(self: Deferred.Deferred<A, E>): Effect.Effect<A, E> =>
  Effect.async<A, E>((resume) => {
    const state = stateOf(self)
    if (state === undefined) return resume(Deferred.await(self))
    // a Deferred is completed only with an effect of its own types
    if (state._tag === "Done") return resume(state.effect as Effect.Effect<A, E>)
    state.joiners.push(resume)
  })
