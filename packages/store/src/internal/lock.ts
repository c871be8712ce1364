/**
 * @internal
 * The lock each store service holds while its in-memory index and its table change together. Effect's semaphore
 * (`withPermits(1)`) costs about 35 steps of Effect's run loop when no one else holds it, as much as the rest of a
 * dedup insert; this one costs about 8. Its body runs uninterruptibly, as the services need: nothing may stop an
 * operation between its write and its index. Waiting for the lock stays interruptible.
 *
 * Contention is rare (a body waits only for another fiber's transaction), so a release wakes every waiter and each
 * tries again; a waiter woken and then interrupted cannot leave the others asleep, as one handed the lock could.
 */
import * as Effect from "effect/Effect"

/** @internal */
export interface Lock {
  readonly exclusive: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/** @internal */
export const make = (): Lock => {
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

  const exclusive = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        if (held) return Effect.zipRight(restore(released), exclusive(effect))
        held = true
        // the body is uninterruptible and its exit holds any failure or defect: released on every way out
        return Effect.flatMap(Effect.exit(effect), (exit) => {
          release()
          return exit
        })
      })
    )

  return { exclusive }
}
