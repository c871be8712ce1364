/**
 * A mutual exclusion for one fiber at a time, cheaper than Effect's semaphore. `Semaphore.withPermits(1)` costs
 * about 32 steps of Effect's run loop when no one else holds it (a dedup insert or a peer-table touch, the lock's
 * whole purpose, cost as much again); `withLock` costs about 6. The body keeps the caller's interruptibility, and
 * waiting for the lock is interruptible. The lock is released however the body ends.
 *
 * Contention is expected to be rare (a body waits only for another fiber's suspension, such as a transaction), so a
 * release wakes every waiter and each tries again. A lock handed to one waiter would be lost if that waiter were
 * interrupted before it ran; here an interrupted waiter only leaves the others to try.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"

/**
 * @since 0.1.0
 * @category models
 */
export interface LightLock {
  /** `effect` while holding the lock, after whoever holds it now */
  readonly withLock: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * `withLock` with `effect` uninterruptible: what a store runs between a write and the index that mirrors it, which
   * nothing may separate
   */
  readonly withLockUninterruptible: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * Whether a fiber holds the lock now. A change made in one synchronous step while it is free cannot come between
   * a holder's steps, so it needs no lock: what a store does with a change that touches only memory.
   */
  readonly unsafeIsHeld: () => boolean
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const unsafeMake = (): LightLock => {
  let held = false
  let waiting: Array<() => void> = []

  const release = (): void => {
    held = false
    const woken = waiting
    waiting = []
    for (const wake of woken) wake()
  }

  const released: Effect.Effect<void> = Effect.async<void>((resume) => {
    const wake = () => resume(Effect.void)
    waiting.push(wake)
    return Effect.sync(() => {
      waiting = waiting.filter((w) => w !== wake)
    })
  })

  const locked = <A, E, R>(effect: Effect.Effect<A, E, R>, interruptible: boolean): Effect.Effect<A, E, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        if (held) return Effect.zipRight(restore(released), locked(effect, interruptible))
        held = true
        // the exit holds any failure, defect or interruption of the body: released on every way out
        return Effect.flatMap(Effect.exit(interruptible ? restore(effect) : effect), (exit) => {
          release()
          return exit
        })
      })
    )

  return {
    withLock: (effect) => locked(effect, true),
    withLockUninterruptible: (effect) => locked(effect, false),
    unsafeIsHeld: () => held
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<LightLock> = Effect.sync(unsafeMake)
