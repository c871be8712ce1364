import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as DhtConfig from "../src/DhtConfig.js"
import * as DhtEvent from "../src/DhtEvent.js"
import * as DhtEvents from "../src/DhtEvents.js"

const changed = (n: number) => DhtEvent.NetworkDiscoveryStateChanged({ from: `s${n}`, to: `s${n + 1}` })

describe("DhtEvents", () => {
  it.scoped("every subscriber receives what is published after it subscribed, in order", () =>
    Effect.gen(function*() {
      const events = yield* DhtEvents.make()
      yield* events.publish(changed(0)) // nobody listens yet: dropped, and publishing did not wait
      const first = yield* events.subscribe
      const second = yield* events.subscribe
      yield* events.publish(changed(1))
      yield* events.publish(DhtEvent.JoinSent())
      for (const sub of [first, second]) {
        expect(Chunk.toReadonlyArray(yield* Queue.takeAll(sub))).toEqual([changed(1), DhtEvent.JoinSent()])
      }
    }))

  it.scoped("a slow subscriber loses the oldest events beyond eventBufferSize; the publisher never waits", () =>
    Effect.gen(function*() {
      const events = yield* DhtEvents.make().pipe(
        Effect.provideService(DhtConfig.DhtConfig, DhtConfig.unsafeMake({ eventBufferSize: 3 }))
      )
      const slow = yield* events.subscribe
      yield* Effect.forEach([1, 2, 3, 4, 5], (n) => events.publish(changed(n)), { discard: true })
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(slow))).toEqual([changed(3), changed(4), changed(5)])
    }))

  it.scoped("the events stream ends at shutdown, and a late publish is dropped without interrupting", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(DhtEvents.layer, scope)
      const events = Context.get(context, DhtEvents.DhtEvents)
      const sub = yield* events.subscribe
      const collected = yield* Effect.fork(Stream.runCollect(events.events))
      yield* Effect.repeatN(Effect.yieldNow(), 20)
      yield* events.publish(changed(1))
      expect(yield* Queue.take(sub)).toEqual(changed(1))
      yield* Scope.close(scope, Exit.void)
      expect(Chunk.toReadonlyArray(yield* Fiber.join(collected))).toEqual([changed(1)])
      expect(yield* Effect.exit(events.publish(changed(2)))).toEqual(Exit.void)
    }))
})
