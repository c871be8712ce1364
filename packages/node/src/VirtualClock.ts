/**
 * `VirtualClock`: the simulation's time (SPEC §19). A `Clock` whose `sleep` pushes a wake-up `(wakeTime, seq)` onto a
 * queue in that order (SPEC's binary heap, kept as a bucket per time; `internal/timeQueue.ts`) and suspends, and a
 * driver that advances time only when nothing else can happen: it waits until the simulated network is quiescent, then
 * pops every wake-up of the earliest time, sets the clock to it and resumes them in `seq` order. Hours of timers cost
 * only the CPU time of the work they trigger.
 *
 * Quiescence is the SPEC's in-flight counter at 0, staying 0 across two `Effect.yieldNow()`. The counter has two
 * parts. The explicit one (`inFlight`) is the `MemoryNetwork` hub's hook (+1 when a frame is written or a handshake
 * starts, −1 when it reaches the receiver's inbox or is dropped) less the deliveries waiting in the heap, which
 * need time, not work, to complete. The implicit one counts the runnable fibers: every fiber started under
 * `scheduler` queues a task when it is forked or resumed (a queue offer waking a taker, a `Deferred` completed, a
 * sleep ended) and the count drops when the task runs. So "every queue offer and every forked job" of the SPEC is
 * counted without instrumenting each queue, and a message is processed by all the fibers it passes through before
 * time moves on.
 *
 * When no fiber can run but the explicit counter is still above 0 (frames parked behind a full inbox whose reader
 * waits on a timer), only time can unblock it: the driver advances and counts a stall in `stats`.
 *
 * Only the simulation and tests use it (`@comms-dht/node/testing`); unit tests keep `TestClock`.
 *
 * @since 0.1.0
 */
import type * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import { Timeout } from "@comms-dht/core/DhtError"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import type * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Scheduler from "effect/Scheduler"
import * as TimeQueue from "./internal/timeQueue.js"

/**
 * 2025-01-01T00:00:00Z in unix milliseconds: where virtual time starts, far from every 0 sentinel.
 *
 * @since 0.1.0
 * @category constructors
 */
export const START_MS = 1_735_689_600_000

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** unix ms the clock starts at (default `START_MS`) */
  readonly startMs?: number
}

/**
 * What the driver has done so far, and what is waiting.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  readonly now: number
  /** batches of equal wake time popped */
  readonly steps: number
  readonly timersWoken: number
  readonly deliveriesRun: number
  /** times the driver advanced while the explicit counter was above the deliveries in the heap */
  readonly stalls: number
  readonly pendingTimers: number
  readonly pendingDeliveries: number
  /** the explicit counter (deliveries in the heap included) */
  readonly inFlight: number
  /** fiber tasks queued and not yet run */
  readonly runnable: number
  /** fiber tasks run under `scheduler` so far */
  readonly tasksRun: number
  /**
   * Effect operations the fibers under `scheduler` have run so far (each step of a fiber's run loop asks the
   * scheduler whether to yield): the work done, in a unit that does not vary with the machine's speed
   */
  readonly operations: number
}

/**
 * Bounds a run of the driver in virtual time, from the moment it starts.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  readonly cap?: Duration.DurationInput
  /** runs at every quiescent point the run reaches, before it decides whether to go on (a progress report) */
  readonly onSettle?: Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface VirtualClock {
  /** provide with `Effect.withClock`, `Layer.setClock` or `use` */
  readonly clock: Clock.Clock
  /** counts runnable fibers; provide with `Effect.withScheduler`, `Layer.setScheduler` or `use` */
  readonly scheduler: Scheduler.Scheduler
  /** the explicit in-flight counter */
  readonly inFlight: {
    readonly increment: Effect.Effect<void>
    readonly decrement: Effect.Effect<void>
  }
  /** runs `deliver` (inline, in the driver's fiber) when the clock reaches `at` */
  readonly schedule: (at: number, deliver: Effect.Effect<void>) => Effect.Effect<void>
  /** `schedule` and `inFlight`, as a `MemoryNetwork` hub takes them */
  readonly hubHooks: Pick<MemoryNetwork.HubOptions, "schedule" | "inFlight">
  /** runs `effect`, and every fiber it forks, on this clock and scheduler */
  readonly use: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** the clock and scheduler as a Layer, for the fibers a Layer graph starts */
  readonly layer: Layer.Layer<never>
  readonly now: Effect.Effect<number>
  readonly stats: Effect.Effect<Stats>
  /** waits until quiescent; time does not move */
  readonly settle: Effect.Effect<void>
  /** settles, then wakes the earliest batch; false when nothing is waiting (or only beyond `limit`, unix ms) */
  readonly step: (limit?: number) => Effect.Effect<boolean>
  /**
   * Runs until quiescent with no delivery pending (periodic timers stay in the heap). False when it stopped at the
   * cap, or when nothing is left to wake while frames are still counted in flight.
   */
  readonly runToQuiescence: (options?: RunOptions) => Effect.Effect<boolean>
  /** Runs until `done` holds at a quiescent point (true), or until the cap or an empty heap (false). */
  readonly runUntil: <E, R>(done: Effect.Effect<boolean, E, R>, options?: RunOptions) => Effect.Effect<boolean, E, R>
  /** Runs every wake-up due within `duration`, then sets the clock to now + `duration`. */
  readonly advance: (duration: Duration.DurationInput) => Effect.Effect<void>
  /**
   * Forks `effect` and drives time until it completes; past the cap it is interrupted and the result is `Timeout`.
   * For work that itself waits on time (a discovery, a scope whose finalizers sleep).
   */
  readonly drive: <A, E, R>(effect: Effect.Effect<A, E, R>, options?: RunOptions) => Effect.Effect<A, E | Timeout, R>
}

interface TimerEntry {
  readonly _tag: "Timer"
  readonly at: number
  readonly seq: number
  readonly wake: () => void
  /** set by the sleeper's interruption; the entry is skipped when it surfaces */
  cancelled: boolean
}

interface DeliveryEntry {
  readonly _tag: "Delivery"
  readonly at: number
  readonly seq: number
  readonly deliver: Effect.Effect<void>
}

/** a `MemoryNetwork` frame (or handshake delay): run synchronously, in the driver's step */
interface ArrivalEntry {
  readonly _tag: "Arrival"
  readonly at: number
  readonly seq: number
  readonly arrival: MemoryNetwork.Arrival
}

type Entry = TimerEntry | DeliveryEntry | ArrivalEntry

// compaction threshold: cancelled sleeps (timeouts that did not fire) otherwise stay until their time comes
const COMPACT_AT = 4096

const capLimit = (now: number, options: RunOptions | undefined): number =>
  options?.cap === undefined ? Infinity : now + Duration.toMillis(Duration.decode(options.cap))

/**
 * A new virtual clock at `startMs`, with an empty heap.
 *
 * The state is plain mutable closure variables, not `Ref`s: the scheduler hook and `sleep`'s registration are
 * synchronous callbacks outside any fiber, and JavaScript runs each to completion, so nothing interleaves.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<VirtualClock> =>
  Effect.sync(() => {
    // (at, seq) is a total order (seq is unique and drawn in push order), so two runs pop in the same order
    const heap = TimeQueue.make<Entry>()
    let now = options.startMs ?? START_MS
    let seq = 0
    let pendingTimers = 0
    let pendingDeliveries = 0
    let cancelled = 0
    let inFlight = 0
    let runnable = 0
    let tasksRun = 0
    let operations = 0
    let steps = 0
    let timersWoken = 0
    let deliveriesRun = 0
    let stalls = 0
    let idleWaiter: (() => void) | undefined = undefined

    const notifyIdle = (): void => {
      const waiter = idleWaiter
      if (waiter !== undefined && runnable === 0) {
        idleWaiter = undefined
        waiter()
      }
    }

    // One run queue for every fiber of the run, drained in order by one loop. Effect's default scheduler (3.20 on)
    // keeps a runner per fiber and pays a WeakMap lookup, a promise and a microtask for every wake-up of every fiber.
    // Fibers of the simulation keep the default priority, so the queue is first in, first out.
    let tasks: Array<() => void> = []
    let draining = false
    const drain = (): void => {
      for (;;) {
        const batch = tasks
        tasks = []
        for (let i = 0; i < batch.length; i++) {
          runnable--
          tasksRun++
          batch[i]()
        }
        // the driver waiting for idleness is resumed in this loop: its task lands in `tasks`
        notifyIdle()
        if (tasks.length === 0) break
      }
      draining = false
    }

    const scheduler: Scheduler.Scheduler = {
      // Never preempted by operation count: a fiber runs until it suspends, so a run's interleavings follow its
      // suspensions alone. With the default preemption (every 2,048 operations) any change in the number of operations
      // a fiber runs, such as a progress observer's, moved where it yielded and changed the run's virtual times for
      // the same seed. Every loop of ours suspends (a queue take, a sleep, `Effect.forever`'s own yield).
      shouldYield: () => {
        operations++
        return false
      },
      scheduleTask: (task) => {
        runnable++
        tasks.push(task)
        if (!draining) {
          draining = true
          queueMicrotask(drain)
        }
      }
    }

    const compact = (): void => {
      if (cancelled < COMPACT_AT || cancelled * 2 < heap.size()) return
      heap.retain((entry) => entry._tag !== "Timer" || !entry.cancelled)
      cancelled = 0
    }

    const sleep = (duration: Duration.Duration): Effect.Effect<void> =>
      Effect.async<void>((resume) => {
        const ms = Duration.toMillis(duration)
        // an infinite sleep never wakes; keeping it out of the heap keeps the heap finite
        if (!Number.isFinite(ms)) return
        const entry: TimerEntry = {
          _tag: "Timer",
          at: now + Math.max(0, ms),
          seq: seq++,
          wake: () => resume(Effect.void),
          cancelled: false
        }
        heap.push(entry)
        pendingTimers++
        return Effect.sync(() => {
          if (entry.cancelled) return
          entry.cancelled = true
          pendingTimers--
          cancelled++
          compact()
        })
      })

    const nanos = (): bigint => {
      const whole = Math.floor(now)
      return BigInt(whole) * 1_000_000n + BigInt(Math.round((now - whole) * 1_000_000))
    }

    const clock: Clock.Clock = {
      [Clock.ClockTypeId]: Clock.ClockTypeId,
      unsafeCurrentTimeMillis: () => now,
      currentTimeMillis: Effect.sync(() => now),
      unsafeCurrentTimeNanos: nanos,
      currentTimeNanos: Effect.sync(nanos),
      sleep
    }

    // the hub's hooks are plain functions, called in the step that writes or delivers a frame
    const hubHooks = {
      schedule: (at: number, arrival: MemoryNetwork.Arrival): void => {
        heap.push({ _tag: "Arrival", at: Math.max(at, now), seq: seq++, arrival })
        pendingDeliveries++
      },
      inFlight: {
        increment: (): void => {
          inFlight++
        },
        decrement: (): void => {
          inFlight--
        }
      }
    }
    const schedule = (at: number, deliver: Effect.Effect<void>): Effect.Effect<void> =>
      Effect.sync(() => {
        heap.push({ _tag: "Delivery", at: Math.max(at, now), seq: seq++, deliver })
        pendingDeliveries++
      })
    const inFlightHooks = {
      increment: Effect.sync(hubHooks.inFlight.increment),
      decrement: Effect.sync(hubHooks.inFlight.decrement)
    }

    // Suspends until no task of `scheduler` is queued. The waiter fires from the hook after the last task ran.
    const awaitIdle: Effect.Effect<void> = Effect.suspend(() =>
      runnable === 0 ? Effect.void : Effect.async<void>((resume) => {
        idleWaiter = () => resume(Effect.void)
        return Effect.sync(() => {
          idleWaiter = undefined
        })
      })
    )

    // The fibers of a run go from one to the next through the microtask queue and never leave it, so nothing that
    // arrives as a macrotask (a signal: Ctrl-C on `comms-dht sim`) would run before the run ends. At a quiescent point
    // at most every 50 ms of real time, the driver waits for one macrotask turn. No fiber of the run is runnable
    // then, so virtual time and the order of wake-ups are as they would be without it.
    let lastTurn = performance.now()
    const macrotaskTurn: Effect.Effect<void> = Effect.async<void>((resume) => {
      const handle = setImmediate(() => resume(Effect.void))
      return Effect.sync(() => clearImmediate(handle))
    })
    const breathe: Effect.Effect<boolean> = Effect.suspend(() => {
      const now = performance.now()
      if (now - lastTurn < 50) return Effect.succeed(false)
      lastTurn = now
      return Effect.as(macrotaskTurn, true)
    })

    const settle: Effect.Effect<void> = Effect.gen(function*() {
      for (;;) {
        let quiet = 0
        while (quiet < 2) {
          yield* awaitIdle
          yield* Effect.yieldNow()
          quiet = runnable === 0 ? quiet + 1 : 0
        }
        // whatever the macrotask woke is settled too
        if (!(yield* breathe) || runnable === 0) return
      }
    })

    const dropCancelledTop = (): Entry | undefined => {
      let top = heap.peek()
      while (top !== undefined && top._tag === "Timer" && top.cancelled) {
        heap.pop()
        cancelled--
        top = heap.peek()
      }
      return top
    }

    const guarded = (effect: Effect.Effect<void>): Effect.Effect<void> =>
      Effect.catchAllCause(effect, (cause) =>
        Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("virtual clock delivery failed", cause))

    // One entry, in the driver's step: what is left to run in its fiber, if anything. A timer wakes its sleeper and
    // an arrival runs there and then; a delivery given as an Effect is all left to run.
    const runNow = (entry: Entry, labels: ReadonlyArray<MetricLabel.MetricLabel>): Effect.Effect<void> | undefined => {
      if (entry._tag === "Timer") {
        // an interruption between the pop and now already removed it from the counts
        if (entry.cancelled) return undefined
        entry.cancelled = true
        pendingTimers--
        timersWoken++
        entry.wake()
        return undefined
      }
      pendingDeliveries--
      deliveriesRun++
      if (entry._tag === "Delivery") return entry.deliver
      try {
        return entry.arrival(now, labels)
      } catch (defect) {
        return Effect.failCause(Cause.die(defect))
      }
    }

    // A batch of entries due at one time, in order, as few steps of the driver as their effects allow: every frame of
    // the network is an entry, and a step of Effect's run loop for each (the delivery's wrapper, its error handler,
    // the arrival) cost more than most arrivals do. An entry's effect runs, guarded, before the next entry.
    const runBatch = (batch: ReadonlyArray<Entry>, from: number): Effect.Effect<void> =>
      Effect.withFiberRuntime((fiber) => {
        const labels = fiber.getFiberRef(FiberRef.currentMetricLabels)
        for (let i = from; i < batch.length; i++) {
          const left = runNow(batch[i]!, labels)
          if (left !== undefined) {
            return i + 1 === batch.length
              ? guarded(left)
              : Effect.zipRight(guarded(left), runBatch(batch, i + 1))
          }
        }
        return Effect.void
      })

    const wakeNext = (limit: number): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        const top = dropCancelledTop()
        if (top === undefined || top.at > limit) return Effect.succeed(false)
        const at = top.at
        if (inFlight > pendingDeliveries) stalls++
        if (at > now) now = at
        steps++
        const batch: Array<Entry> = []
        let next = dropCancelledTop()
        while (next !== undefined && next.at === at) {
          heap.pop()
          batch.push(next)
          next = dropCancelledTop()
        }
        return Effect.as(runBatch(batch, 0), true)
      })

    const step = (limit: number = Infinity): Effect.Effect<boolean> => Effect.zipRight(settle, wakeNext(limit))

    const runUntil = <E, R>(
      done: Effect.Effect<boolean, E, R>,
      runOptions?: RunOptions
    ): Effect.Effect<boolean, E, R> =>
      Effect.suspend(() => {
        const limit = capLimit(now, runOptions)
        const next: Effect.Effect<boolean, E, R> = Effect.flatMap(
          wakeNext(limit),
          (woke) => woke ? loop : Effect.succeed(false)
        )
        const loop: Effect.Effect<boolean, E, R> = Effect.flatMap(
          Effect.zipRight(settle, done),
          (finished) => finished ? Effect.succeed(true) : next
        )
        return loop
      })

    const quiescent = Effect.sync(() => pendingDeliveries === 0 && inFlight === 0)

    const runToQuiescence = (runOptions?: RunOptions): Effect.Effect<boolean> =>
      runUntil(
        runOptions?.onSettle === undefined ? quiescent : Effect.zipRight(runOptions.onSettle, quiescent),
        runOptions
      )

    const advance = (duration: Duration.DurationInput): Effect.Effect<void> =>
      Effect.suspend(() => {
        const target = now + Math.max(0, Duration.toMillis(Duration.decode(duration)))
        const loop: Effect.Effect<void> = Effect.flatMap(step(target), (woke) => woke ? loop : Effect.void)
        return loop.pipe(
          Effect.zipRight(Effect.sync(() => {
            if (target > now) now = target
          })),
          Effect.zipRight(settle)
        )
      })

    const drive = <A, E, R>(
      effect: Effect.Effect<A, E, R>,
      runOptions?: RunOptions
    ): Effect.Effect<A, E | Timeout, R> =>
      Effect.gen(function*() {
        const fiber = yield* Effect.fork(effect)
        const finished = Effect.map(Fiber.poll(fiber), Option.isSome)
        const done = yield* runUntil(finished, runOptions)
        if (!done) {
          yield* Fiber.interrupt(fiber)
          return yield* new Timeout()
        }
        return yield* Fiber.join(fiber)
      })

    const use = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      effect.pipe(Effect.withClock(clock), Effect.withScheduler(scheduler))

    return {
      clock,
      scheduler,
      inFlight: inFlightHooks,
      schedule,
      hubHooks,
      use,
      layer: Layer.merge(Layer.setClock(clock), Layer.setScheduler(scheduler)),
      now: Effect.sync(() => now),
      stats: Effect.sync((): Stats => ({
        now,
        steps,
        timersWoken,
        deliveriesRun,
        stalls,
        pendingTimers,
        pendingDeliveries,
        inFlight,
        runnable,
        tasksRun,
        operations
      })),
      settle,
      step,
      runToQuiescence,
      runUntil,
      advance,
      drive
    }
  })
