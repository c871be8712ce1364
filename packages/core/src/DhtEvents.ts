/**
 * Where DHT events go (SPEC §15): the `DhtEvents` tag gives every subscriber a sliding queue of `eventBufferSize`
 * (100), as a sliding `PubSub` would, so a slow subscriber loses the oldest events instead of stalling the publisher
 * (SPEC §13.1). The actor, the inbound handler and the node's services publish here; `Dht.events` is this service's
 * `events` stream.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import { DhtConfig } from "./DhtConfig.js"
import type { DhtEvent } from "./DhtEvent.js"
import * as LightQueue from "./LightQueue.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface DhtEventsService {
  /** Hands `event` to every current subscriber; with none, or after shutdown, it is dropped. Never waits. */
  readonly publish: (event: DhtEvent) => Effect.Effect<void>
  /**
   * A subscription that receives every event published from now on until the scope closes. Unlike `events`, it is
   * in place when this effect returns, so nothing published afterwards can be missed.
   */
  readonly subscribe: Effect.Effect<Queue.Dequeue<DhtEvent>, never, Scope.Scope>
  /** The events published while the stream runs; it ends when the service shuts down. */
  readonly events: Stream.Stream<DhtEvent>
  /**
   * Calls `f` with every event published from now until the scope closes, within `publish`: a follower with no fiber
   * to wake, for a reaction that is one synchronous step. `f` must not throw or wait. Optional (`onEvent` falls back
   * to `subscribe` and a fiber).
   */
  readonly listen?: (f: (event: DhtEvent) => void) => Effect.Effect<void, never, Scope.Scope>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class DhtEvents extends Context.Tag("@comms-dht/core/DhtEvents")<DhtEvents, DhtEventsService>() {}

/**
 * Calls `f` on every event published from now until the scope closes, in order: within `publish` when the service
 * can (`listen`), else in a fiber of the scope. `f` must not throw or wait.
 *
 * @since 0.1.0
 * @category utils
 */
export const onEvent = (
  events: DhtEventsService,
  f: (event: DhtEvent) => void
): Effect.Effect<void, never, Scope.Scope> =>
  events.listen !== undefined
    ? events.listen(f)
    : Effect.flatMap(events.subscribe, (queue) =>
      Effect.asVoid(Effect.forkScoped(LightQueue.consume(queue, (event) => Effect.sync(() => f(event))))))

/**
 * A sliding hub of `capacity` events per subscriber (default: `eventBufferSize` of the `DhtConfig` reference), shut
 * when the scope closes, which ends every `events` stream.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: { readonly capacity?: number } = {}): Effect.Effect<
  DhtEventsService,
  never,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const config = yield* DhtConfig
    // per-subscriber sliding queues rather than a sliding PubSub: the same view, without a Deferred per wait
    // (docs/spec-departures.md §7)
    const fanout = yield* Effect.acquireRelease(
      LightQueue.slidingFanout<DhtEvent>(options.capacity ?? config.eventBufferSize),
      (fanout) => fanout.shutdown
    )
    return DhtEvents.of({
      publish: (event) =>
        Effect.sync(() => {
          fanout.unsafePublish(event)
        }),
      subscribe: fanout.subscribe,
      events: fanout.stream,
      listen: fanout.listen
    })
  })

/**
 * `make()` as a Layer: one hub per build, sized by the `DhtConfig` reference and shut with the Layer's scope.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<DhtEvents> = Layer.scoped(DhtEvents, make())
