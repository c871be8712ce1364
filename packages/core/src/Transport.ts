/**
 * The `Transport` tag: what the pipelines need from a network (SPEC §5, §6.5, §11.6). A transport authenticates
 * every connection (the peer *is* the key it claims), frames encoded envelopes, enforces the frame limit and flood
 * rule, and reports per-message send results. `MemoryNetwork` (here) and `TcpTransport` (`@comms-dht/node`)
 * implement it.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { DialError, SendFailReason } from "./DhtError.js"
import * as LightQueue from "./LightQueue.js"
import type { NodeId, PublicKey } from "./NodeId.js"
import type { Peer } from "./Peer.js"

/**
 * One encoded envelope for one peer; `reply` completes on write (sent) or with the reason it failed.
 *
 * @since 0.1.0
 * @category models
 */
export interface OutboundMessage {
  readonly peer: NodeId
  readonly tag: bigint
  /** never changed once handed over: a transport may deliver this very array to its receivers */
  readonly bytes: Uint8Array
  readonly reply: Deferred.Deferred<void, SendFailReason>
}

/**
 * One frame received from an authenticated peer.
 *
 * @since 0.1.0
 * @category models
 */
export interface InboundMessage {
  readonly sourcePeer: NodeId
  /** local, random: for tracing only */
  readonly tag: bigint
  /** never changed: the same array may reach several receivers, which may remember what they read of it */
  readonly bytes: Uint8Array
  /** unix ms */
  readonly receivedAt: number
}

/**
 * @since 0.1.0
 * @category models
 */
export type ConnectionEvent =
  | { readonly _tag: "PeerConnected"; readonly peer: Peer; readonly outbound: boolean }
  | { readonly _tag: "PeerDisconnected"; readonly nodeId: NodeId }
  | { readonly _tag: "DialFailed"; readonly nodeId: NodeId }

/**
 * A synchronous look at a frame as it arrives, before it takes a place in `inbound`: `false` drops it there.
 * `sender` is the key the connection authenticated. The inbound pipeline installs one that drops the copies of
 * messages it has already handled (SPEC §7.3), so that in a flood a copy costs no place in the bounded inbox and
 * no turn of a worker. A screen must not block; it runs in whatever fiber delivers the frame (one that throws lets
 * the frame go on).
 *
 * @since 0.1.0
 * @category models
 */
export type Screen = (message: InboundMessage, sender: PublicKey) => boolean

/**
 * @since 0.1.0
 * @category models
 */
export interface TransportService {
  /** Queues one message; dials when not connected. Never fails: the outcome goes to `message.reply`. */
  readonly send: (message: OutboundMessage) => Effect.Effect<void>
  /**
   * `send` of each message in turn, as one effect: what a broadcast hands over. Optional: a transport that can
   * write several frames in fewer steps than a `send` each offers it.
   */
  readonly sendAll?: (messages: ReadonlyArray<OutboundMessage>) => Effect.Effect<void>
  /** Frames from every connection, in arrival order per connection (bounded; readers suspend when full). */
  readonly inbound: Queue.Dequeue<InboundMessage>
  /** Connects (or reuses the connection) to a known peer. */
  readonly dial: (peer: NodeId) => Effect.Effect<void, DialError>
  /** Closes the connection to a peer, if any. */
  readonly disconnect: (peer: NodeId) => Effect.Effect<void>
  readonly isConnected: (peer: NodeId) => Effect.Effect<boolean>
  readonly connectedPeers: Effect.Effect<ReadonlyArray<NodeId>>
  /** Connection changes, from the moment of subscription. */
  readonly events: Stream.Stream<ConnectionEvent>
  /**
   * `events` as a queue that receives every connection change from now until the scope closes (sliding like the
   * stream: a reader that falls behind loses the oldest). A loop taking from it costs less per event than a stream's
   * pull, and every service of a node follows every connection.
   */
  readonly subscribe: Effect.Effect<Queue.Dequeue<ConnectionEvent>, never, Scope.Scope>
  /**
   * Calls `f` with every connection change from now until the scope closes, in the step that makes the change: a
   * follower with no fiber to wake (`onEvent`). `f` must not throw or wait. Optional: `onEvent` falls back to
   * `subscribe` and a fiber.
   */
  readonly listen?: (f: (event: ConnectionEvent) => void) => Effect.Effect<void, never, Scope.Scope>
  /** The addresses this node listens on (`mem://…`, `tcp://…`). */
  readonly listenAddresses: ReadonlyArray<string>
  /**
   * Runs `screen` on every frame that arrives from now until the scope closes (`Screen`); several screens all must
   * pass. Optional: a transport without it queues every frame, and the pipeline checks each in a worker.
   */
  readonly screen?: (screen: Screen) => Effect.Effect<void, never, Scope.Scope>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Transport extends Context.Tag("@comms-dht/core/Transport")<Transport, TransportService>() {}

/**
 * Runs `f` on every connection change from now until the scope closes, one at a time, in a fiber of the scope:
 * subscribed before it returns, so no change made after the call is missed.
 *
 * @since 0.1.0
 * @category utils
 */
export const forEachEvent = (
  transport: TransportService,
  f: (event: ConnectionEvent) => Effect.Effect<void>
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.flatMap(
    transport.subscribe,
    (events) => Effect.asVoid(Effect.forkScoped(LightQueue.consume(events, f)))
  )

/**
 * Calls `f` on every connection change from now until the scope closes, in order: in the step that makes the change
 * when the transport can (`listen`), else in a fiber of the scope. For a reaction that is one synchronous step — a
 * node has half a dozen followers of every connection, and a fiber woken for each change cost more than most of
 * their reactions. `f` must not throw or wait.
 *
 * @since 0.1.0
 * @category utils
 */
export const onEvent = (
  transport: TransportService,
  f: (event: ConnectionEvent) => void
): Effect.Effect<void, never, Scope.Scope> =>
  transport.listen !== undefined
    ? transport.listen(f)
    : forEachEvent(transport, (event) => Effect.sync(() => f(event)))

/**
 * What `TransportService.screen` keeps: the screens installed, and whether a frame passes them all. Transports keep
 * one and call `passes` as each frame arrives.
 *
 * @since 0.1.0
 * @category utils
 */
export interface Screens {
  readonly install: (screen: Screen) => Effect.Effect<void, never, Scope.Scope>
  readonly passes: (message: InboundMessage, sender: PublicKey) => boolean
}

/**
 * An empty `Screens`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeScreens = (): Screens => {
  // replaced rather than mutated, so that a frame being screened while one is installed sees a consistent list
  let installed: ReadonlyArray<Screen> = []
  return {
    install: (screen) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          installed = [...installed, screen]
        }),
        () =>
          Effect.sync(() => {
            installed = installed.filter((s) => s !== screen)
          })
      ),
    // a screen that throws lets the frame go on: the pipeline's worker then meets whatever it choked on, and
    // reports it, rather than the transport's fiber dying with it
    passes: (message, sender) => {
      for (const screen of installed) {
        try {
          if (!screen(message, sender)) return false
        } catch {
          continue
        }
      }
      return true
    }
  }
}
