import { describe, expect, it } from "@effect/vitest"
import * as LightQueue from "@comms-dht/core/LightQueue"
import { Cause, Chunk, Deferred, Effect, Exit, FastCheck as fc, Fiber, Option, Queue, Scope, Stream } from "effect"

// One step of a program run against a queue; values are small integers so that the traces are easy to read.
type Op =
  | { readonly _tag: "Offer"; readonly value: number }
  | { readonly _tag: "UnsafeOffer"; readonly value: number }
  | { readonly _tag: "OfferAll"; readonly values: ReadonlyArray<number> }
  | { readonly _tag: "ForkTake" }
  | { readonly _tag: "ForkTakeBetween"; readonly min: number; readonly max: number }
  | { readonly _tag: "ForkOffer"; readonly value: number }
  | { readonly _tag: "Interrupt"; readonly index: number }
  | { readonly _tag: "TakeUpTo"; readonly max: number }
  | { readonly _tag: "TakeAll" }
  | { readonly _tag: "Poll" }
  | { readonly _tag: "Size" }
  | { readonly _tag: "Shutdown" }

const value = fc.integer({ min: 0, max: 99 })
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: value.map((value) => ({ _tag: "Offer" as const, value })) },
  { weight: 2, arbitrary: value.map((value) => ({ _tag: "UnsafeOffer" as const, value })) },
  { weight: 1, arbitrary: fc.array(value, { maxLength: 5 }).map((values) => ({ _tag: "OfferAll" as const, values })) },
  { weight: 3, arbitrary: fc.constant({ _tag: "ForkTake" as const }) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 4 })).map(([min, max]) => ({
      _tag: "ForkTakeBetween" as const,
      min,
      max
    }))
  },
  { weight: 2, arbitrary: value.map((value) => ({ _tag: "ForkOffer" as const, value })) },
  { weight: 2, arbitrary: fc.nat(20).map((index) => ({ _tag: "Interrupt" as const, index })) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 4 }).map((max) => ({ _tag: "TakeUpTo" as const, max })) },
  { weight: 1, arbitrary: fc.constant({ _tag: "TakeAll" as const }) },
  { weight: 2, arbitrary: fc.constant({ _tag: "Poll" as const }) },
  { weight: 2, arbitrary: fc.constant({ _tag: "Size" as const }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "Shutdown" as const }) }
)

type Kind = "bounded" | "dropping" | "sliding"

const make = (kind: Kind, capacity: number, light: boolean): Effect.Effect<Queue.Queue<number>> => {
  switch (kind) {
    case "bounded":
      return light ? LightQueue.bounded(capacity) : Queue.bounded(capacity)
    case "dropping":
      return light ? LightQueue.dropping(capacity) : Queue.dropping(capacity)
    case "sliding":
      return light ? LightQueue.sliding(capacity) : Queue.sliding(capacity)
  }
}

// an exit as the test compares it: interruptions by whichever fiber, values as they are
const show = (exit: Exit.Exit<unknown>): string =>
  Exit.match(exit, {
    onFailure: (cause) => Cause.isInterruptedOnly(cause) ? "interrupted" : "failed",
    onSuccess: (a) =>
      JSON.stringify(Chunk.isChunk(a) ? Chunk.toReadonlyArray(a) : Option.isOption(a) ? Option.getOrNull(a) : a)
  })

// Every step's own outcome, then the state of every forked fiber once the others have had their turns.
const trace = (kind: Kind, capacity: number, ops: ReadonlyArray<Op>, light: boolean) =>
  Effect.gen(function*() {
    const queue = yield* make(kind, capacity, light)
    const forked: Array<Fiber.RuntimeFiber<unknown>> = []
    const lines: Array<string> = []
    const settle = Effect.repeatN(Effect.yieldNow(), 8)
    for (const step of ops) {
      const outcome = yield* Effect.exit(Effect.gen(function*() {
        switch (step._tag) {
          case "Offer":
            // a full bounded queue would suspend the test itself: its offers are forked
            if (kind === "bounded") return forked.push(yield* Effect.fork(queue.offer(step.value)))
            return yield* queue.offer(step.value)
          case "UnsafeOffer":
            return queue.unsafeOffer(step.value)
          case "OfferAll":
            if (kind === "bounded") return forked.push(yield* Effect.fork(queue.offerAll(step.values)))
            return yield* queue.offerAll(step.values)
          case "ForkTake":
            return forked.push(yield* Effect.fork(Queue.take(queue)))
          case "ForkTakeBetween":
            return forked.push(yield* Effect.fork(Queue.takeBetween(queue, step.min, step.max)))
          case "ForkOffer":
            return forked.push(yield* Effect.fork(Queue.offer(queue, step.value)))
          case "Interrupt":
            if (forked.length === 0) return "none"
            yield* Fiber.interrupt(forked[step.index % forked.length]!)
            return "done"
          case "TakeUpTo":
            return yield* Queue.takeUpTo(queue, step.max)
          case "TakeAll":
            return yield* Queue.takeAll(queue)
          case "Poll":
            return yield* Queue.poll(queue)
          case "Size":
            return [yield* Queue.size(queue), yield* Queue.isEmpty(queue), yield* Queue.isFull(queue)]
          case "Shutdown":
            return yield* Queue.shutdown(queue)
        }
      }))
      yield* settle
      const fibers = yield* Effect.forEach(forked, (f) => Fiber.poll(f))
      lines.push(
        `${step._tag} → ${show(outcome)} | ${
          fibers.map((o) => Option.match(o, { onNone: () => "…", onSome: show })).join(" ")
        } | active ${queue.isActive()} size ${JSON.stringify(Option.getOrNull(queue.unsafeSize()))}`
      )
    }
    yield* Effect.forEach(forked, Fiber.interrupt, { discard: true })
    return lines
  })

describe("LightQueue", () => {
  it.effect.prop(
    "behaves as Effect's Queue of the same kind, step for step, waiting takers and offerers included",
    [
      fc.constantFrom<Kind>("bounded", "dropping", "sliding"),
      fc.integer({ min: 1, max: 4 }),
      fc.array(op, { maxLength: 40 })
    ],
    ([kind, capacity, ops]) =>
      Effect.gen(function*() {
        const light = yield* trace(kind, capacity, ops, true)
        const effect = yield* trace(kind, capacity, ops, false)
        expect(light.join("\n")).toBe(effect.join("\n"))
      }),
    { fastCheck: { numRuns: 500 } }
  )

  it.effect("hands a value to the longest-waiting taker and a freed slot to the longest-waiting offerer", () =>
    Effect.gen(function*() {
      const queue = yield* LightQueue.bounded<string>(1)
      const first = yield* Effect.fork(Queue.take(queue))
      const second = yield* Effect.fork(Queue.take(queue))
      yield* Effect.yieldNow()
      yield* Queue.offerAll(queue, ["a", "b"])
      expect([yield* Fiber.join(first), yield* Fiber.join(second)]).toEqual(["a", "b"])
      yield* Queue.offer(queue, "c")
      const blocked = yield* Effect.fork(Queue.offer(queue, "d"))
      yield* Effect.yieldNow()
      expect(Option.isNone(yield* Fiber.poll(blocked))).toBe(true)
      expect(yield* Queue.take(queue)).toBe("c")
      expect(yield* Fiber.join(blocked)).toBe(true)
      expect(yield* Queue.take(queue)).toBe("d")
    }))

  it.effect("is an Effect that takes, and shutting it down interrupts its waiters and wakes awaitShutdown", () =>
    Effect.gen(function*() {
      const queue = yield* LightQueue.bounded<number>(4)
      yield* Queue.offer(queue, 5)
      expect(yield* queue).toBe(5)
      const waiting = yield* Effect.fork(Queue.take(queue))
      const awaiting = yield* Effect.fork(Queue.awaitShutdown(queue))
      yield* Effect.yieldNow()
      yield* Queue.shutdown(queue)
      expect(Exit.isInterrupted(yield* Fiber.await(waiting))).toBe(true)
      yield* Fiber.join(awaiting)
      // awaited only after the shutdown: already over
      yield* Queue.awaitShutdown(queue)
      expect(yield* Queue.isShutdown(queue)).toBe(true)
      expect(Exit.isInterrupted(yield* Effect.exit(Queue.offer(queue, 1)))).toBe(true)
      expect(queue.unsafeOffer(1)).toBe(false)
    }))

  it.effect("keeps order across many values, as a ring of its consumed head", () =>
    Effect.gen(function*() {
      const n = 5_000
      const queue = yield* LightQueue.bounded<number>(n + 100)
      for (let i = 0; i < n; i++) queue.unsafeOffer(i)
      const taken: Array<number> = []
      for (let i = 0; i < n / 2; i++) taken.push(yield* Queue.take(queue))
      for (let i = n; i < n + 100; i++) queue.unsafeOffer(i)
      taken.push(...Chunk.toReadonlyArray(yield* Queue.takeAll(queue)))
      expect(taken).toEqual(Array.from({ length: n + 100 }, (_, i) => i))
    }))
})

describe("LightQueue.consume", () => {
  // turns enough for forked workers to start and run to their next wait
  const settle = Effect.forEach(Array.from({ length: 10 }), () => Effect.yieldNow(), { discard: true })
  const queues = [
    ["a LightQueue", LightQueue.bounded<number>(8)],
    ["an Effect Queue", Queue.bounded<number>(8)]
  ] as const

  for (const [name, make] of queues) {
    it.effect(`runs f on every value of ${name}, in order with one worker, and stops when interrupted`, () =>
      Effect.gen(function*() {
        const queue = yield* make
        const seen: Array<number> = []
        const consumer = yield* Effect.fork(LightQueue.consume(queue, (n) => Effect.sync(() => seen.push(n))))
        yield* Queue.offerAll(queue, [1, 2, 3])
        yield* Effect.yieldNow()
        yield* Queue.offer(queue, 4)
        yield* Effect.yieldNow()
        expect(seen).toEqual([1, 2, 3, 4])
        yield* Fiber.interrupt(consumer)
        // after it, a value waits for the next taker instead of going to a stopped worker
        yield* Queue.offer(queue, 5)
        expect(yield* Queue.take(queue)).toBe(5)
        expect(seen).toEqual([1, 2, 3, 4])
      }))
  }

  it.effect("lets `concurrency` workers run at once, and gives no value to a stopped pool's parked workers", () =>
    Effect.gen(function*() {
      const queue = yield* LightQueue.bounded<number>(8)
      const gate = yield* Deferred.make<void>()
      let running = 0
      let most = 0
      const busy = (n: number) =>
        Effect.sync(() => {
          running++
          most = Math.max(most, running)
        }).pipe(
          Effect.zipRight(n < 3 ? Deferred.await(gate) : Effect.void),
          Effect.ensuring(Effect.sync(() => running--))
        )
      const pool = yield* Effect.fork(LightQueue.consume(queue, busy, { concurrency: 4 }))
      yield* Queue.offerAll(queue, [0, 1, 2])
      yield* settle
      expect(running).toBe(3)
      yield* Deferred.succeed(gate, undefined)
      yield* settle
      expect(running).toBe(0)
      expect(most).toBe(3)
      // every worker is parked now; once the pool stops, all of them are off the queue
      yield* Fiber.interrupt(pool)
      yield* Queue.offerAll(queue, [7, 8, 9, 10])
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(queue))).toEqual([7, 8, 9, 10])
    }))

  it.effect("ends interrupted when the queue shuts down", () =>
    Effect.gen(function*() {
      const queue = yield* LightQueue.bounded<number>(2)
      const pool = yield* Effect.fork(LightQueue.consume(queue, () => Effect.void, { concurrency: 2 }))
      yield* Effect.yieldNow()
      yield* Queue.shutdown(queue)
      expect(Exit.isInterrupted(yield* Fiber.await(pool))).toBe(true)
    }))
})

describe("LightQueue.slidingFanout", () => {
  it.effect("gives every subscriber every value from when it subscribed, sliding each one's window on its own", () =>
    Effect.gen(function*() {
      const fanout = yield* LightQueue.slidingFanout<number>(2)
      expect(fanout.unsafePublish(0)).toBe(0)
      const early = yield* fanout.subscribe
      fanout.unsafePublish(1)
      const late = yield* fanout.subscribe
      expect(fanout.unsafePublish(2)).toBe(0)
      // early holds 1, 2 and is full; late holds 2
      expect(fanout.unsafePublish(3)).toBe(1)
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(early))).toEqual([2, 3])
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(late))).toEqual([2, 3])
    }).pipe(Effect.scoped))

  it.effect("drops a released subscriber, ends the streams at shutdown and refuses subscribers after it", () =>
    Effect.gen(function*() {
      const fanout = yield* LightQueue.slidingFanout<string>(8)
      const scope = yield* Scope.make()
      const released = yield* Scope.extend(fanout.subscribe, scope)
      const streamed = yield* Effect.fork(Stream.runCollect(fanout.stream))
      yield* Effect.repeatN(Effect.yieldNow(), 4)
      fanout.unsafePublish("a")
      yield* Scope.close(scope, Exit.void)
      expect(yield* Queue.isShutdown(released)).toBe(true)
      fanout.unsafePublish("b")
      // what a subscriber has not taken when the fanout shuts down is lost, as with a PubSub: let it read
      yield* Effect.repeatN(Effect.yieldNow(), 4)
      yield* fanout.shutdown
      expect(fanout.isShutdown()).toBe(true)
      expect(Chunk.toReadonlyArray(yield* Fiber.join(streamed))).toEqual(["a", "b"])
      expect(Exit.isInterrupted(yield* Effect.exit(Effect.scoped(fanout.subscribe)))).toBe(true)
      expect(fanout.unsafePublish("c")).toBe(0)
    }))

  it.effect("calls a listener with every value from when it listens, within the publish, until its scope closes", () =>
    Effect.gen(function*() {
      const fanout = yield* LightQueue.slidingFanout<number>(1)
      const heard: Array<string> = []
      fanout.unsafePublish(0)
      const scope = yield* Scope.make()
      yield* Scope.extend(fanout.listen((n) => heard.push(`a${n}`)), scope)
      const f = (n: number) => heard.push(`b${n}`)
      // one function listening twice is called twice
      yield* Scope.extend(fanout.listen(f), scope)
      yield* fanout.listen(f)
      const subscriber = yield* fanout.subscribe
      // listeners are not subscribers: the one-value window of the subscriber slides, a listener misses nothing
      expect(fanout.unsafePublish(1)).toBe(0)
      expect(heard).toEqual(["a1", "b1", "b1"])
      expect(fanout.unsafePublish(2)).toBe(1)
      expect(heard).toEqual(["a1", "b1", "b1", "a2", "b2", "b2"])
      yield* Scope.close(scope, Exit.void)
      fanout.unsafePublish(3)
      expect(heard.slice(6)).toEqual(["b3"])
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(subscriber))).toEqual([3])
      yield* fanout.shutdown
      fanout.unsafePublish(4)
      yield* fanout.listen(f)
      fanout.unsafePublish(5)
      expect(heard.slice(6)).toEqual(["b3"])
    }).pipe(Effect.scoped))
})
