/**
 * `MemoryNetwork`: the in-process transport (SPEC §11.6, §19) that tests and the simulation use. A hub
 * (`layerHub`) holds the `mem://ID` addresses of many nodes in one process; each node's endpoint (`layer`) provides
 * its `Transport`.
 *
 * It behaves as the TCP transport does where a user could tell: connecting exchanges and validates the fields of
 * `NoiseHandshakePayload` (identity key check, the dialled key, the signed claim — failure is `HandshakeFailed`,
 * counted, connection refused) and records the peer as verified; frames carry encoded bytes (so codecs run), over
 * FIFO links, one connection per pair; frames over `maxMessageSize` and floods ban the sender and close the
 * connection; the queues of SPEC §13.1 are bounded with the same policies; screens (`Transport.Screen`) see each
 * frame as it arrives. Closing an endpoint's scope takes the node offline: its connections close and dials to it
 * fail.
 *
 * Timing: with no latency a frame is delivered as it is written. With a latency function each link delivers in order
 * at `max(previous delivery on the link, now + latency)`, by one fiber per link sleeping on Effect's `Clock`
 * (`TestClock` in tests), or through the `schedule` hook, with which the simulation's `VirtualClock` keeps every
 * pending delivery as a heap entry instead.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import type * as MetricLabel from "effect/MetricLabel"
import * as MutableRef from "effect/MutableRef"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import * as Crypto from "./Crypto.js"
import * as DhtConfig from "./DhtConfig.js"
import { ConfigError } from "./DhtError.js"
import * as Internal from "./internal/memoryNetwork.js"
import { mulberry32 } from "./internal/prng.js"
import * as LightLock from "./LightLock.js"
import * as LightQueue from "./LightQueue.js"
import type { NodeId } from "./NodeId.js"
import { toHex } from "./NodeId.js"
import * as NodeIdentity from "./NodeIdentity.js"
import type { PeerClaim } from "./Peer.js"
import * as PeerManager from "./PeerManager.js"
import * as PeerValidator from "./PeerValidator.js"
import type { ConnectionEvent, InboundMessage } from "./Transport.js"
import { makeScreens, Transport } from "./Transport.js"

/**
 * What the latency function is asked about: one frame (or handshake message) from one node to another.
 *
 * @since 0.1.0
 * @category models
 */
export interface LinkInfo {
  readonly from: NodeId
  readonly to: NodeId
  /** frame size in bytes (0 for a handshake message) */
  readonly size: number
  readonly handshake: boolean
}

/**
 * A delivery as the `schedule` hook receives it: a plain function the scheduler calls synchronously, in a step of its
 * own fiber, with that fiber's clock time and metric labels. It delivers the frame (or ends a handshake's delay)
 * there and then, and returns what is left to run in that fiber, if anything: a ban and the connection's closing
 * after a violation, the start of a connection's reader, a count of a frame shed. Most return nothing, so a
 * scheduler can run many in one step; in the simulation every frame of the network is one.
 *
 * @since 0.1.0
 * @category models
 */
export type Arrival = (
  nowMs: number,
  labels: ReadonlyArray<MetricLabel.MetricLabel>
) => Effect.Effect<void> | undefined

/**
 * One frame written to the network, as the `onFrame` observer sees it.
 *
 * @since 0.1.0
 * @category models
 */
export interface FrameInfo {
  readonly from: NodeId
  readonly to: NodeId
  /** the `OutboundMessage` tag: the envelope's `message_tag`, which forwarding keeps */
  readonly tag: bigint
  readonly bytes: Uint8Array
}

/**
 * Totals over every endpoint of a hub since it was built.
 *
 * @since 0.1.0
 * @category models
 */
export interface WireStats {
  readonly frames: number
  readonly bytes: number
}

/**
 * Hub options. All are optional: by default frames are delivered as they are written.
 *
 * @since 0.1.0
 * @category models
 */
export interface HubOptions {
  /**
   * The delay of each frame and handshake message, evaluated per frame in the fiber that writes it (so draws from
   * Effect's `Random` follow its seed). A handshake takes one round trip. A plain number of milliseconds is taken in
   * the step that writes the frame, where an Effect costs that fiber steps of its own (`seededUniformLatency`).
   */
  readonly latency?: (link: LinkInfo) => Effect.Effect<Duration.DurationInput> | number
  /**
   * Runs `deliver` at `at` (unix ms of the `Clock`). Given, it replaces the per-link delivery fibers: the
   * simulation's `VirtualClock` pushes a heap entry. Calls for one link come in FIFO order with non-decreasing `at`,
   * so running entries of equal time in call order keeps links FIFO. Handshake delays go through it too.
   */
  readonly schedule?: (at: number, deliver: Arrival) => void
  /**
   * The in-flight counter hook: `increment` when a frame is written (a delivery scheduled; also a handshake's round
   * trip), `decrement` when that frame has reached the receiver's inbox (`Transport.inbound`) or was dropped (closed
   * connection, frame limit, flood, full connection queue). Frames inside an inbox are the reader's to count.
   * Called synchronously (as `schedule` is), in the step that writes or delivers the frame: a hook per frame as an
   * Effect cost the network a step of a fiber per frame and hook.
   */
  readonly inFlight?: {
    readonly increment: () => void
    readonly decrement: () => void
  }
  /**
   * Sees every frame written, in write order, in the connection's writer fiber: with an observer every frame goes
   * through that fiber, so an observer that waits holds the connection's later frames, never their senders. Without
   * one, and with `schedule` given, a frame with nothing queued before it is written in its sender's fiber (the hop
   * to the writer's fiber cost more than the write).
   */
  readonly onFrame?: (frame: FrameInfo) => Effect.Effect<void>
  /** Sees every frame written, synchronously, wherever it is written (the simulation counts envelopes by tag). */
  readonly tapFrame?: (frame: FrameInfo) => void
}

/**
 * @since 0.1.0
 * @category models
 */
export interface MemoryNetworkHubService {
  /** Frames and bytes written by all endpoints. */
  readonly stats: Effect.Effect<WireStats>
  /** The addresses registered now. */
  readonly addresses: Effect.Effect<ReadonlyArray<string>>
  /** @internal the machinery endpoints share */
  readonly hub: Internal.Hub
}

/**
 * The hub many endpoints register with.
 *
 * @since 0.1.0
 * @category tags
 */
export class MemoryNetworkHub extends Context.Tag("@comms-dht/core/MemoryNetworkHub")<
  MemoryNetworkHub,
  MemoryNetworkHubService
>() {}

/**
 * A hub; its scope owns the per-link delivery fibers.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeHub = (options: HubOptions = {}): Effect.Effect<MemoryNetworkHubService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const fibers = yield* FiberSet.make()
    const spawn = yield* FiberSet.runtime(fibers)()
    const hub = yield* Internal.makeHub(options, (effect) => spawn(effect, { immediate: false }))
    return MemoryNetworkHub.of({
      stats: Effect.sync(() => ({ frames: hub.stats.frames, bytes: hub.stats.bytes })),
      addresses: Effect.sync(() => Array.from(hub.endpoints.keys()).sort()),
      hub
    })
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layerHub = (options: HubOptions = {}): Layer.Layer<MemoryNetworkHub> =>
  Layer.scoped(MemoryNetworkHub, makeHub(options))

/**
 * A latency function drawing whole milliseconds uniformly from `[minMs, maxMs]` with Effect's `Random` (the
 * simulation uses 5–50 ms, SPEC §19).
 *
 * @since 0.1.0
 * @category constructors
 */
export const uniformLatency = (minMs: number, maxMs: number): (link: LinkInfo) => Effect.Effect<number> => () =>
  Random.nextIntBetween(minMs, maxMs + 1)

/**
 * `uniformLatency` as a plain draw from its own generator, seeded with `seed`: whole milliseconds uniformly from
 * `[minMs, maxMs]`, the same sequence for the same seed and order of frames. The simulation's, whose every frame pays
 * for its draw.
 *
 * @since 0.1.0
 * @category constructors
 */
export const seededUniformLatency = (minMs: number, maxMs: number, seed: number): (link: LinkInfo) => number => {
  const next32 = mulberry32(seed)
  const span = Math.max(0, Math.floor(maxMs) - Math.floor(minMs)) + 1
  return () => Math.floor(minMs) + (next32() % span)
}

/**
 * Endpoint options: the address to listen on (default `mem://<NodeId hex>`) and the claim to present (default: one
 * signed now over that address and the identity's features). A test passes a forged claim to play a dishonest peer.
 *
 * @since 0.1.0
 * @category models
 */
export interface EndpointOptions {
  readonly address?: string
  readonly claim?: PeerClaim
}

/**
 * One node's endpoint. Closing the scope takes the node offline.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: EndpointOptions = {}
): Effect.Effect<
  Transport["Type"],
  ConfigError,
  MemoryNetworkHub | NodeIdentity.NodeIdentity | PeerManager.PeerManager | Crypto.Crypto | Scope.Scope
> =>
  Effect.gen(function*() {
    const { hub } = yield* MemoryNetworkHub
    const identity = yield* NodeIdentity.NodeIdentity
    const peers = yield* PeerManager.PeerManager
    const crypto = yield* Crypto.Crypto
    const config = yield* DhtConfig.DhtConfig
    const address = options.address ?? `mem://${toHex(identity.nodeId)}`
    const claim = options.claim ?? (yield* PeerValidator.signClaim({
      secretKey: identity.secretKey,
      publicKey: identity.publicKey,
      addresses: [address],
      features: identity.features
    }))
    // the seed of the tags its frames get as they arrive: drawn once, so a frame's arrival draws nothing from `Random`
    const tagSeed = yield* Random.nextInt
    const fibers = yield* FiberSet.make()
    const spawn = yield* FiberSet.runtime(fibers)()
    const endpoint: Internal.Endpoint = {
      nodeId: identity.nodeId,
      hex: toHex(identity.nodeId),
      publicKey: identity.publicKey,
      address,
      payload: Internal.encodePayload(identity.publicKey, claim, config.protocolVersion),
      config,
      crypto,
      peers,
      spawn: (effect) => spawn(effect, { immediate: false }),
      slots: new Map<string, Internal.Slot>(),
      lock: yield* LightLock.make,
      inbox: yield* LightQueue.bounded<InboundMessage>(config.inboundQueueCapacity),
      screens: makeScreens(),
      events: yield* LightQueue.slidingFanout<ConnectionEvent>(Internal.EVENT_BUFFER),
      closing: MutableRef.make(false),
      open: new Internal.OpenConnections(),
      nextTag: Internal.tagSource(tagSeed)
    }
    if (hub.endpoints.has(address)) {
      return yield* new ConfigError({ reason: `${address} is already in use on this memory network` })
    }
    hub.endpoints.set(address, endpoint)
    // added after the FiberSet's own finalizer, so it runs first: connections close before their fibers are cut
    yield* Effect.addFinalizer(() => Internal.shutdown(hub, endpoint))
    return Transport.of({
      send: (message) => Internal.send(hub, endpoint, message),
      sendAll: (messages) => Internal.sendAll(hub, endpoint, messages),
      inbound: endpoint.inbox,
      dial: (peer) => Internal.dial(hub, endpoint, peer),
      disconnect: (peer) => Internal.disconnect(hub, endpoint, peer),
      isConnected: (peer) => Internal.isConnected(endpoint, peer),
      connectedPeers: Internal.connectedPeers(endpoint),
      events: endpoint.events.stream,
      subscribe: endpoint.events.subscribe,
      listen: endpoint.events.listen,
      listenAddresses: [address],
      screen: endpoint.screens.install
    })
  })

/**
 * The `Transport` of one node on the hub.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: EndpointOptions = {}
): Layer.Layer<
  Transport,
  ConfigError,
  MemoryNetworkHub | NodeIdentity.NodeIdentity | PeerManager.PeerManager | Crypto.Crypto
> => Layer.scoped(Transport, make(options))
