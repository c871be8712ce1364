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
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { DialError, SendFailReason } from "./DhtError.js"
import type { NodeId } from "./NodeId.js"
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
 * @since 0.1.0
 * @category models
 */
export interface TransportService {
  /** Queues one message; dials when not connected. Never fails: the outcome goes to `message.reply`. */
  readonly send: (message: OutboundMessage) => Effect.Effect<void>
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
  /** The addresses this node listens on (`mem://…`, `tcp://…`). */
  readonly listenAddresses: ReadonlyArray<string>
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
    (events) => Effect.asVoid(Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(events), f))))
  )
