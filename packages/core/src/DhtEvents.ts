/**
 * Where DHT events go (SPEC §15): the `DhtEvents` tag wraps a sliding `PubSub` of `eventBufferSize` (100), so a slow
 * subscriber loses the oldest events instead of stalling the publisher (SPEC §13.1). The actor, the inbound handler
 * and the node's services publish here; `Dht.events` is this service's `events` stream.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { DhtConfig } from "./DhtConfig.js"
import type { DhtEvent } from "./DhtEvent.js"

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
}

/**
 * @since 0.1.0
 * @category tags
 */
export class DhtEvents extends Context.Tag("@comms-dht/core/DhtEvents")<DhtEvents, DhtEventsService>() {}

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
    const hub = yield* Effect.acquireRelease(
      PubSub.sliding<DhtEvent>(Math.max(1, options.capacity ?? config.eventBufferSize)),
      PubSub.shutdown
    )
    return DhtEvents.of({
      // a shut hub would interrupt the publisher: late events (a job finishing during shutdown) are dropped instead
      publish: (event) =>
        Effect.flatMap(
          PubSub.isShutdown(hub),
          (down) => down ? Effect.void : Effect.asVoid(PubSub.publish(hub, event))
        ),
      subscribe: PubSub.subscribe(hub),
      events: Stream.fromPubSub(hub)
    })
  })

/**
 * `make()` as a Layer: one hub per build, sized by the `DhtConfig` reference and shut with the Layer's scope.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<DhtEvents> = Layer.scoped(DhtEvents, make())
