/**
 * Effect `Queue`s whose takers wait without a `Deferred`. An Effect 3 queue makes a `Deferred` for every `take`
 * that finds it empty, and making one costs about 6 µs and 2.4 KB of garbage inside a pipeline (docs/performance.md):
 * a frame handed from one fiber to another through an empty queue and back cost 23 µs, 6 µs without them. Every
 * frame a node receives is such a hand-over, from its transport to a waiting inbound worker.
 *
 * These are `Queue.Queue`s — `Queue.take`, `Queue.offer` and the rest of `effect/Queue` take them — with the
 * contract of `Queue.bounded`, `Queue.dropping` and `Queue.sliding`, each with a capacity, as every queue of the
 * node has (SPEC §13.1): a value goes straight to the longest-waiting taker; a full bounded queue suspends its
 * offerers in order (dropping: the offer returns false; sliding: the oldest value goes); after `shutdown`, every
 * waiting and later operation is interrupted. A waiting taker is a callback, removed again if its fiber is
 * interrupted (`consume`'s workers: once their pool has stopped).
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Effectable from "effect/Effectable"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import { identity } from "effect/Function"
import * as Option from "effect/Option"
import type * as Queue from "effect/Queue"
import { DequeueTypeId, EnqueueTypeId } from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as LightDeferred from "./LightDeferred.js"

type Strategy = "suspend" | "dropping" | "sliding"

type Resume<A> = (effect: Effect.Effect<A>) => void

// an offerer waiting for room; of the values of one `offerAll`, the last one holds the offerer's resumption
interface Putter<A> {
  readonly value: A
  readonly resume: Resume<boolean> | undefined
}

const enqueueVariance = { _In: identity }
const dequeueVariance = { _Out: identity }

// arrays shift in O(n); the consumed head is dropped in one slice once it is the larger part
const COMPACT_AT = 1_024

class LightQueue<in out A> extends Effectable.Class<A> implements Queue.Queue<A> {
  readonly [EnqueueTypeId] = enqueueVariance
  readonly [DequeueTypeId] = dequeueVariance

  private items: Array<A | undefined> = []
  private head = 0
  private takers: Array<Resume<A>> = []
  private putters: Array<Putter<A>> = []
  private shut = false
  // made by the first `awaitShutdown`: most queues are never awaited
  private shutdownHook: Deferred.Deferred<void> | undefined = undefined

  constructor(private readonly limit: number, private readonly strategy: Strategy) {
    super()
  }

  commit(): Effect.Effect<A> {
    return this.take
  }

  private get count(): number {
    return this.items.length - this.head
  }

  private shift(): A {
    // slots before `head` are cleared, the rest hold values: a caller checks `count` first
    const value = this.items[this.head] as A
    this.items[this.head] = undefined
    this.head++
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head >= COMPACT_AT && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return value
  }

  // room freed by a take goes to the longest-waiting offerer
  private admitPutters(): void {
    while (this.putters.length > 0 && this.count < this.limit) {
      const putter = this.putters.shift()!
      this.items.push(putter.value)
      putter.resume?.(Effect.succeed(true))
    }
  }

  private takeNow(max: number): Array<A> {
    const n = Math.min(max, this.count)
    const values: Array<A> = []
    for (let i = 0; i < n; i++) values.push(this.shift())
    this.admitPutters()
    return values
  }

  capacity(): number {
    return this.limit
  }

  isActive(): boolean {
    return !this.shut
  }

  unsafeSize(): Option.Option<number> {
    return this.shut ? Option.none() : Option.some(this.count - this.takers.length + this.putters.length)
  }

  // The rarely used effects are made when asked for, not kept by every queue: a node has a few hundred queues (two
  // per connection), and each kept effect with its closure is an object the collector walks for the node's life.
  get size(): Effect.Effect<number> {
    return Effect.suspend(() =>
      this.shut ? Effect.interrupt : Effect.succeed(this.count - this.takers.length + this.putters.length)
    )
  }

  get isEmpty(): Effect.Effect<boolean> {
    return Effect.map(this.size, (size) => size <= 0)
  }

  get isFull(): Effect.Effect<boolean> {
    return Effect.map(this.size, (size) => size >= this.limit)
  }

  get shutdown(): Effect.Effect<void> {
    return Effect.sync(() => this.close())
  }

  private close(): void {
    this.shut = true
    const takers = this.takers
    const putters = this.putters
    this.takers = []
    this.putters = []
    this.items = []
    this.head = 0
    for (const taker of takers) taker(Effect.interrupt)
    for (const putter of putters) putter.resume?.(Effect.interrupt)
    if (this.shutdownHook !== undefined) Deferred.unsafeDone(this.shutdownHook, Exit.void)
  }

  get isShutdown(): Effect.Effect<boolean> {
    return Effect.sync(() => this.shut)
  }

  get awaitShutdown(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.shut) return Effect.void
      this.shutdownHook ??= LightDeferred.unsafeMake<void>(FiberId.none)
      return Deferred.await(this.shutdownHook)
    })
  }

  // as Effect's queues, `unsafeOffer` never slides: a full queue of any kind refuses it
  unsafeOffer(value: A): boolean {
    if (this.shut) return false
    const taker = this.takers.shift()
    if (taker !== undefined) {
      taker(Effect.succeed(value))
      return true
    }
    if (this.count < this.limit) {
      this.items.push(value)
      return true
    }
    return false
  }

  // `unsafeOffer`, and on a full sliding queue the oldest value makes room
  private offerNow(value: A): boolean {
    return this.unsafeOffer(value) || this.slide(value)
  }

  /** On a full sliding queue: drops the oldest value for `value`; false (nothing done) on any other queue. */
  slide(value: A): boolean {
    if (this.strategy !== "sliding" || this.shut || this.count < this.limit) return false
    this.shift()
    this.items.push(value)
    return true
  }

  // A full queue of the suspending kind: the offerer's values wait in line for room, all at once, as Effect's
  // queues keep them (they count in `size`), and the offerer resumes once the last of them is in.
  private waitForRoom(values: ReadonlyArray<A>): Effect.Effect<boolean> {
    return Effect.async<boolean>((resume) => {
      if (this.shut) return resume(Effect.interrupt)
      let i = 0
      while (i < values.length && this.unsafeOffer(values[i]!)) i++
      if (i === values.length) return resume(Effect.succeed(true))
      const mine: Array<Putter<A>> = []
      const last = values.length - 1
      for (; i <= last; i++) mine.push({ value: values[i]!, resume: i === last ? resume : undefined })
      this.putters.push(...mine)
      return Effect.sync(() => {
        this.putters = this.putters.filter((p) => !mine.includes(p))
      })
    })
  }

  offer(value: A): Effect.Effect<boolean> {
    return Effect.suspend(() => {
      if (this.shut) return Effect.interrupt
      if (this.offerNow(value)) return Effect.succeed(true)
      return this.strategy === "suspend" ? this.waitForRoom([value]) : Effect.succeed(false)
    })
  }

  offerAll(iterable: Iterable<A>): Effect.Effect<boolean> {
    return Effect.suspend(() => {
      if (this.shut) return Effect.interrupt
      const values = Array.from(iterable)
      let all = true
      for (let i = 0; i < values.length; i++) {
        if (this.offerNow(values[i]!)) continue
        if (this.strategy !== "suspend") {
          all = false
          continue
        }
        return this.waitForRoom(values.slice(i))
      }
      return Effect.succeed(all)
    })
  }

  // `take` and its wait are one Effect each per queue, reused by every take, and made by the first: a queue costs
  // 642 bytes of heap with both made up front, and most of a memory network's four per connection are never taken
  // from (docs/performance.md, session 28)
  private takeEffect: Effect.Effect<A> | undefined = undefined
  private waitEffect: Effect.Effect<A> | undefined = undefined

  // `resume` given the next value now, or the queue's interruption; otherwise among the takers (true)
  private park(resume: Resume<A>): boolean {
    if (this.shut) {
      resume(Effect.interrupt)
      return false
    }
    if (this.count > 0) {
      const value = this.shift()
      this.admitPutters()
      resume(Effect.succeed(value))
      return false
    }
    this.takers.push(resume)
    return true
  }

  // the next value, now if there is one, else through `wait`
  private nextOr(wait: Effect.Effect<A>): Effect.Effect<A> {
    return Effect.suspend(() => {
      if (this.shut) return Effect.interrupt
      if (this.count === 0) return wait
      const value = this.shift()
      this.admitPutters()
      return Effect.succeed(value)
    })
  }

  private get waitForValue(): Effect.Effect<A> {
    return this.waitEffect ??= Effect.async<A>((resume) => {
      if (!this.park(resume)) return
      return Effect.sync(() => {
        const at = this.takers.indexOf(resume)
        if (at >= 0) this.takers.splice(at, 1)
      })
    })
  }

  get take(): Effect.Effect<A> {
    return this.takeEffect ??= this.nextOr(this.waitForValue)
  }

  // `consume`'s loop: a worker parks as `take` does, but without a canceler, which Effect guards with `onInterrupt`
  // (a mask, a match and a finalizer) at every wait; the pool takes its parked workers off the queue once all of
  // them have stopped. A value offered to a worker in between is lost, as one offered to a `take` whose fiber was
  // interrupted but had not yet run its canceler.
  consume<R>(f: (value: A) => Effect.Effect<unknown, never, R>, concurrency: number): Effect.Effect<never, never, R> {
    const parked: Array<Resume<A>> = []
    const worker = (i: number): Effect.Effect<never, never, R> => {
      const next = this.nextOr(Effect.async<A>((resume) => {
        if (this.park(resume)) parked[i] = resume
      }))
      const loop: Effect.Effect<never, never, R> = Effect.flatMap(next, (value) => Effect.flatMap(f(value), () => loop))
      return loop
    }
    const release = Effect.sync(() => {
      if (parked.length > 0) this.takers = this.takers.filter((taker) => !parked.includes(taker))
    })
    return Effect.ensuring(all(Array.from({ length: concurrency }, (_, i) => worker(i))), release)
  }

  get takeAll(): Effect.Effect<Chunk.Chunk<A>> {
    return Effect.suspend(() =>
      this.shut ? Effect.interrupt : Effect.succeed(Chunk.unsafeFromArray(this.takeNow(Number.POSITIVE_INFINITY)))
    )
  }

  takeUpTo(max: number): Effect.Effect<Chunk.Chunk<A>> {
    return Effect.suspend(() =>
      this.shut ? Effect.interrupt : Effect.succeed(Chunk.unsafeFromArray(this.takeNow(max)))
    )
  }

  takeBetween(min: number, max: number): Effect.Effect<Chunk.Chunk<A>> {
    const loop = (min: number, max: number, acc: Chunk.Chunk<A>): Effect.Effect<Chunk.Chunk<A>> => {
      if (max < min) return Effect.succeed(acc)
      return Effect.flatMap(this.takeUpTo(max), (taken) => {
        const remaining = min - taken.length
        if (remaining <= 0) return Effect.succeed(Chunk.appendAll(acc, taken))
        return Effect.flatMap(this.take, (one) => {
          const next = Chunk.append(Chunk.appendAll(acc, taken), one)
          // as Effect's queues: the last value wanted ends it, without taking what came meanwhile
          return remaining === 1 ? Effect.succeed(next) : loop(remaining - 1, max - taken.length - 1, next)
        })
      })
    }
    return Effect.suspend(() => loop(min, max, Chunk.empty()))
  }
}

/**
 * `concurrency` fibers (1 by default), each taking the next value of `queue` and running `f` on it, forever: a
 * worker pool, or a reader, that the queue's values go to. Stopped by interruption (the workers with it), or by the
 * queue's shutdown, which interrupts it. On a `LightQueue` a worker waiting for a value costs about ten steps of the
 * run loop fewer than `Queue.take` in a loop (the inbound workers and the readers of events that use it waited
 * 105,000 times in the 300-node simulation up to the traffic's end); on any other queue it is that loop.
 *
 * @since 0.1.0
 * @category combinators
 */
export const consume = <A, R>(
  queue: Queue.Dequeue<A>,
  f: (value: A) => Effect.Effect<unknown, never, R>,
  options?: { readonly concurrency?: number | undefined }
): Effect.Effect<never, never, R> => {
  const concurrency = Math.max(1, options?.concurrency ?? 1)
  if (queue instanceof LightQueue) return queue.consume(f, concurrency)
  const loop: Effect.Effect<never, never, R> = Effect.flatMap(Effect.flatMap(queue.take, f), () => loop)
  return all(Array.from({ length: concurrency }, () => loop))
}

// one worker runs in the caller's fiber; more, each in a fiber of its own
const all = <R>(workers: ReadonlyArray<Effect.Effect<never, never, R>>): Effect.Effect<never, never, R> =>
  workers.length === 1
    ? workers[0]!
    : Effect.zipRight(Effect.all(workers, { concurrency: "unbounded", discard: true }), Effect.never)

/**
 * As `Queue.bounded(capacity)`: an offer to a full queue waits for room.
 *
 * @since 0.1.0
 * @category constructors
 */
export const bounded = <A>(capacity: number): Effect.Effect<Queue.Queue<A>> => make(capacity, "suspend")

/**
 * As `Queue.dropping(capacity)`: an offer to a full queue returns false and the value is dropped.
 *
 * @since 0.1.0
 * @category constructors
 */
export const dropping = <A>(capacity: number): Effect.Effect<Queue.Queue<A>> => make(capacity, "dropping")

/**
 * As `Queue.sliding(capacity)`: an offer to a full queue drops the oldest value.
 *
 * @since 0.1.0
 * @category constructors
 */
export const sliding = <A>(capacity: number): Effect.Effect<Queue.Queue<A>> => make(capacity, "sliding")

/**
 * `bounded` or `dropping` made in the caller's step, for a structure built whole in one synchronous step (a
 * connection's queues, made with the connection so that nothing can come between the two).
 *
 * @since 0.1.0
 * @category constructors
 */
export const unsafeMake = <A>(capacity: number, kind: "bounded" | "dropping"): Queue.Queue<A> =>
  new LightQueue<A>(Math.max(1, capacity), kind === "bounded" ? "suspend" : "dropping")

const make = <A>(capacity: number, strategy: Strategy): Effect.Effect<Queue.Queue<A>> =>
  Effect.sync(() => new LightQueue<A>(Math.max(1, capacity), strategy))

/**
 * What a sliding `PubSub` gives its subscribers, on `LightQueue`s: each subscriber reads its own sliding queue of
 * `capacity`, holding every value published from the moment it subscribed, and loses its oldest value once it is
 * `capacity` behind. Publishing never waits.
 *
 * @since 0.1.0
 * @category models
 */
export interface SlidingFanout<A> {
  /**
   * Hands `value` to every current subscriber, at once; returns how many of them were `capacity` behind and lost
   * their oldest value for it. With none, or after `shutdown`, the value is dropped.
   */
  readonly unsafePublish: (value: A) => number
  /** A subscription in place when this returns, until the scope closes; interrupted after `shutdown`. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<A>, never, Scope.Scope>
  /** The values published while the stream runs; it ends at `shutdown`. */
  readonly stream: Stream.Stream<A>
  /**
   * Calls `f` with every value published from when this returns until the scope closes (or `shutdown`), within
   * `unsafePublish`, in the publisher's step: a subscriber with no queue and no fiber to wake, for a reaction that
   * is one synchronous step (handing a command to a queue, forgetting an entry). `f` must not throw or wait.
   */
  readonly listen: (f: (value: A) => void) => Effect.Effect<void, never, Scope.Scope>
  /** Shuts every subscriber's queue down (their streams end) and refuses new subscribers. */
  readonly shutdown: Effect.Effect<void>
  readonly isShutdown: () => boolean
}

/**
 * A new `SlidingFanout` whose subscribers' queues hold `capacity` values each.
 *
 * @since 0.1.0
 * @category constructors
 */
export const slidingFanout = <A>(capacity: number): Effect.Effect<SlidingFanout<A>> =>
  Effect.sync(() => {
    const size = Math.max(1, capacity)
    const subscribers = new Set<LightQueue<A>>()
    // a cell per call, so that one function listening twice is called twice and released once per scope
    const listeners = new Set<{ readonly f: (value: A) => void }>()
    let closed = false
    const subscribe: Effect.Effect<Queue.Dequeue<A>, never, Scope.Scope> = Effect.acquireRelease(
      Effect.suspend(() => {
        if (closed) return Effect.interrupt
        const queue = new LightQueue<A>(size, "sliding")
        subscribers.add(queue)
        return Effect.succeed(queue)
      }),
      (queue) => Effect.zipRight(Effect.sync(() => subscribers.delete(queue)), queue.shutdown)
    )
    return {
      unsafePublish: (value) => {
        let behind = 0
        for (const queue of subscribers) {
          if (!queue.unsafeOffer(value) && queue.slide(value)) behind++
        }
        for (const listener of listeners) listener.f(value)
        return behind
      },
      subscribe,
      listen: (f) =>
        Effect.asVoid(Effect.acquireRelease(
          Effect.sync(() => {
            const listener = { f }
            if (!closed) listeners.add(listener)
            return listener
          }),
          (listener) => Effect.sync(() => listeners.delete(listener))
        )),
      stream: Stream.unwrapScoped(Effect.map(subscribe, (queue) => Stream.fromQueue(queue))),
      shutdown: Effect.suspend(() => {
        closed = true
        const all = Array.from(subscribers)
        subscribers.clear()
        listeners.clear()
        return Effect.forEach(all, (queue) => queue.shutdown, { discard: true })
      }),
      isShutdown: () => closed
    }
  })
