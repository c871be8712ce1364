/** @internal */
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Equal from "effect/Equal"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import type * as MetricLabel from "effect/MetricLabel"
import * as MutableRef from "effect/MutableRef"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Crypto from "../Crypto.js"
import * as DhtConfig from "../DhtConfig.js"
import type { DialError } from "../DhtError.js"
import {
  ConnectionClosed,
  DialFailed,
  Flooding,
  FrameTooLarge,
  HandshakeFailed,
  PeerBanned,
  QueueFull,
  TransportShutdown
} from "../DhtError.js"
import * as DhtLog from "../DhtLog.js"
import * as DhtMetrics from "../DhtMetrics.js"
import * as Ed25519 from "../Ed25519.js"
import * as FiberClock from "../FiberClock.js"
import * as FloodWindow from "../FloodWindow.js"
import * as HandshakePayload from "../HandshakePayload.js"
import * as LightDeferred from "../LightDeferred.js"
import * as LightLock from "../LightLock.js"
import * as LightQueue from "../LightQueue.js"
import type { FrameInfo, HubOptions } from "../MemoryNetwork.js"
import type { NodeId, PublicKey } from "../NodeId.js"
import { equals, toHex } from "../NodeId.js"
import type { PeerClaim } from "../Peer.js"
import { Peer } from "../Peer.js"
import { isBannedNow, type PeerManagerService } from "../PeerManager.js"
import * as PeerValidator from "../PeerValidator.js"
import type { ConnectionEvent, InboundMessage, OutboundMessage, Screens } from "../Transport.js"
import { mulberry32 } from "./prng.js"

// --- limits (SPEC §13.1, §17.6) ---

/** @internal */
export const OUTBOUND_QUEUE_CAPACITY = 100
/** @internal */
export const INBOUND_CONNECTION_CAPACITY = 1_000
/** @internal frames scheduled on one link and not yet delivered, when the default delivery fiber runs it */
export const LINK_WINDOW = 10_000
/** @internal */
export const EVENT_BUFFER = 256

// --- model ---

/**
 * @internal
 * Forks into a scope with the context captured when the spawner was made (the endpoint's or the hub's, not the
 * caller's: a dialler's fiber sets up the responder's side too). The fiber starts on the scheduler, not inside the
 * caller's step, so nothing runs re-entrantly under a lock the caller holds.
 */
export type Spawn = <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>

/** @internal what one side learnt of the other in the handshake */
export type RemoteIdentity = PeerValidator.HandshakeRemote

/** @internal one node's presence on the hub */
export interface Endpoint {
  readonly nodeId: NodeId
  readonly hex: string
  readonly publicKey: PublicKey
  readonly address: string
  /** the encoded `NoiseHandshakePayload` this node presents */
  readonly payload: Uint8Array
  readonly config: DhtConfig.Config
  readonly crypto: Crypto.CryptoService
  readonly peers: PeerManagerService
  readonly spawn: Spawn
  /**
   * One per remote peer being dialled or connected, by NodeId hex (a plain map: every frame sent looks its slot up).
   * A slot is made in one synchronous step (`slotNow`), so two fibers never both make one.
   */
  readonly slots: Map<string, Slot>
  /**
   * Serialises what removes a slot and drains its queue (abandoning it, a teardown, the endpoint's close) with the
   * offers of `send`'s slow path, so that no message lands in a slot being removed.
   */
  readonly lock: LightLock.LightLock
  readonly inbox: Queue.Queue<InboundMessage>
  /** run on each frame as it arrives, before it is queued (`Transport.Screen`) */
  readonly screens: Screens
  readonly events: LightQueue.SlidingFanout<ConnectionEvent>
  readonly closing: MutableRef.MutableRef<boolean>
  /**
   * The open connections by remote NodeId hex, kept beside `slots` so that `connectedPeers` and `isConnected` read
   * a map instead of polling every slot (the outbound pipeline asks once per request). Written where a connection
   * opens (`connect`) and where it stops being open (`violation`, `teardown`).
   */
  readonly open: OpenConnections
  /** the tag of the next frame to arrive (SPEC §5's `InboundMessage.tag`: local, random) */
  readonly nextTag: () => bigint
}

/**
 * @internal
 * Tags for a node's arriving frames, 53 random bits each (as `Random.nextInt` gives), from a seed drawn once from the
 * node's `Random` (so a seeded simulation stays reproducible): mulberry32, twice a tag. Plain and synchronous, so
 * that a frame's arrival is a plain function (`MemoryNetwork.Arrival`).
 */
export const tagSource = (seed: number): (() => bigint) => {
  const next32 = mulberry32(seed)
  return () => BigInt(next32() * 0x200000 + (next32() >>> 11))
}

/**
 * @internal
 * The open connections by remote NodeId hex, and the list of their remotes that `connectedPeers` hands out: built
 * once per change rather than once per call (the outbound pipeline asks on every request), in NodeId hex order, so
 * that the selections that sort connected peers by NodeId find them sorted.
 */
export class OpenConnections {
  private readonly byHex = new Map<string, OpenConnection>()
  private remotes: ReadonlyArray<NodeId> | undefined = undefined
  get(hex: string): OpenConnection | undefined {
    return this.byHex.get(hex)
  }
  has(hex: string): boolean {
    return this.byHex.has(hex)
  }
  set(hex: string, open: OpenConnection): void {
    this.byHex.set(hex, open)
    this.remotes = undefined
  }
  delete(hex: string): void {
    if (this.byHex.delete(hex)) this.remotes = undefined
  }
  peers(): ReadonlyArray<NodeId> {
    if (this.remotes === undefined) {
      this.remotes = Array.from(this.byHex)
        .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
        .map(([, open]) => open.remote)
    }
    return this.remotes
  }
}

/** @internal */
export interface OpenConnection {
  readonly connection: Connection
  readonly remote: NodeId
}

const forgetOpen = (connection: Connection): void => {
  for (const side of connection.sides) {
    const open = side.local.open
    if (open.get(side.remote.hex)?.connection === connection) open.delete(side.remote.hex)
  }
}

/** @internal a fiber of a connection, once started: a plain field, set in the step that forks it */
export interface FiberCell {
  current: Fiber.RuntimeFiber<void> | undefined
}

/** @internal the outbound side of a (future) connection to one peer: its queue and writer */
export interface Slot {
  readonly remote: NodeId
  readonly remoteHex: string
  readonly queue: Queue.Queue<OutboundMessage>
  readonly connected: Deferred.Deferred<Connection, DialError>
  readonly writer: FiberCell
  /** set once its dial failed or its connection closed: a new message then gets a new slot (and a new dial) */
  readonly dead: MutableRef.MutableRef<boolean>
  /**
   * The connection once the writer has it, for `send` to write on directly; and the messages handed to the writer
   * and not yet written (offered, taken, in its hands). A send writes in its own fiber only while that count is 0,
   * so it never overtakes one queued before it; the count only ever errs high, which just keeps sends queued.
   */
  readonly direct: { side: Side | undefined; connection: Connection | undefined; queued: number }
}

/** @internal a frame as carried by a link */
export interface Frame {
  readonly tag: bigint
  readonly bytes: Uint8Array
}

/**
 * How frames reach the inbox. `Held` until the connection is activated (so nothing is read before the peer is in the
 * table); `Direct`: straight into the inbox while it has room, with no fiber in between; `Draining`: the inbox was
 * full, frames wait in the connection's queue and a reader moves them, suspending, until the queue is empty again.
 */
type Delivery = "Held" | "Direct" | "Draining"

interface LinkItem {
  readonly at: number
  readonly frame: Frame
}

/**
 * @internal
 * Mutable, and only touched in one synchronous step at a time (the transmit that reads and advances it, a delivery
 * that counts itself done): a `Ref` would add operations to every frame for nothing a fiber could interleave with.
 */
export interface LinkSchedule {
  last: number
  pending: number
}

/** @internal one direction of a connection */
export interface Link {
  /**
   * `last`: the delivery time of the last frame scheduled (FIFO: the next one is never earlier); `pending`: frames
   * scheduled and not yet delivered
   */
  readonly schedule: LinkSchedule
  /** only with the default delivery fiber */
  readonly queue: Queue.Queue<LinkItem> | undefined
  readonly fiber: FiberCell
}

/** @internal one endpoint's end of a connection */
export interface Side {
  readonly local: Endpoint
  readonly remote: RemoteIdentity
  readonly slot: Slot
  /** frames received on this connection, waiting for the inbox */
  readonly inbound: Queue.Queue<InboundMessage>
  /**
   * Read and written only inside `Effect.sync`, together with the unsafe offers it decides between: the choice and
   * the offer must be one step, or a frame could overtake those queued before it.
   */
  readonly delivery: MutableRef.MutableRef<Delivery>
  readonly flood: FloodWindow.FloodWindow
  /** width of one flood bucket, from this side's config */
  readonly bucketMs: number
  /** frames this side writes */
  readonly link: Link
  readonly reader: FiberCell
  readonly outbound: boolean
}

type ConnectionState = "Open" | "Closing" | "Closed"

/** @internal */
export interface Connection {
  readonly id: number
  readonly key: string
  /** [dialler, responder] */
  readonly sides: readonly [Side, Side]
  /** read and changed in one synchronous step at a time, as `Side.delivery` */
  readonly state: MutableRef.MutableRef<ConnectionState>
}

// A pair's state, changed in place in single steps: plain maps rather than `Ref`s of `HashMap`s, which cost a
// connection a dozen steps of Effect's run loop and a persistent map's copying for what one step does
interface Pair {
  connection: Connection | undefined
  /** dials in progress, by the dialling endpoint's NodeId hex */
  readonly dialling: Map<string, Deferred.Deferred<Connection, DialError>>
}

/** @internal */
export interface Hub {
  readonly options: HubOptions
  /** by address */
  readonly endpoints: Map<string, Endpoint>
  /** by `pairKey`; a pair with neither a connection nor a dial is removed */
  readonly pairs: Map<string, Pair>
  /**
   * A frame with nothing queued before it may be written in its sender's fiber: only where deliveries are scheduled
   * (the simulation's clock), so it never reaches the receiver inside the write and a sender cannot outrun the
   * receiver's pipeline (delivered at once, a tight loop of sends filled the receiver's queues before its workers ever
   * ran, and frames were shed that a network's own pace lets through), and without an `onFrame` observer, which runs
   * in the writer's fiber.
   */
  readonly writesInSender: boolean
  /** frames and bytes written, counted in the step that writes them */
  readonly stats: { frames: number; bytes: number }
  readonly ids: { next: number }
  readonly spawn: Spawn
}

/** @internal */
export const makeHub = (options: HubOptions, spawn: Spawn): Effect.Effect<Hub> =>
  Effect.sync(() => ({
    options,
    endpoints: new Map<string, Endpoint>(),
    pairs: new Map<string, Pair>(),
    writesInSender: options.schedule !== undefined && options.onFrame === undefined,
    stats: { frames: 0, bytes: 0 },
    ids: { next: 0 },
    spawn
  }))

// --- helpers ---

const pairKey = (a: string, b: string): string => a < b ? `${a}/${b}` : `${b}/${a}`

const pairOf = (hub: Hub, key: string): Pair => {
  const known = hub.pairs.get(key)
  if (known !== undefined) return known
  const pair: Pair = { connection: undefined, dialling: new Map() }
  hub.pairs.set(key, pair)
  return pair
}

// the pair is forgotten once it has neither a connection nor a dial
const prunePair = (hub: Hub, key: string, pair: Pair): void => {
  if (pair.connection === undefined && pair.dialling.size === 0 && hub.pairs.get(key) === pair) hub.pairs.delete(key)
}

const other = (connection: Connection, side: Side): Side =>
  connection.sides[0] === side ? connection.sides[1] : connection.sides[0]

const sideOf = (connection: Connection, endpoint: Endpoint): Side =>
  connection.sides[0].local === endpoint ? connection.sides[0] : connection.sides[1]

const upNow = (hub: Hub): void => hub.options.inFlight?.increment()
const downNow = (hub: Hub): void => hub.options.inFlight?.decrement()
const inFlightUp = (hub: Hub): Effect.Effect<void> =>
  hub.options.inFlight === undefined ? Effect.void : Effect.sync(() => upNow(hub))
const inFlightDown = (hub: Hub): Effect.Effect<void> =>
  hub.options.inFlight === undefined ? Effect.void : Effect.sync(() => downNow(hub))
const inFlightDownBy = (hub: Hub, n: number): Effect.Effect<void> =>
  n <= 0 || hub.options.inFlight === undefined ? Effect.void : Effect.sync(() => {
    for (let i = 0; i < n; i++) downNow(hub)
  })

const takeAllIfOpen = <A>(queue: Queue.Dequeue<A>): Effect.Effect<ReadonlyArray<A>> =>
  Effect.suspend(() => queue.isActive() ? Effect.map(Queue.takeAll(queue), Chunk.toReadonlyArray) : Effect.succeed([]))

const interruptUnlessSelf = (cell: FiberCell): Effect.Effect<void> =>
  Effect.suspend(() => {
    const fiber = cell.current
    return fiber === undefined
      ? Effect.void
      : Effect.fiberIdWith((self) =>
        Equal.equals(self, fiber.id()) ? Effect.void : Effect.asVoid(Fiber.interrupt(fiber))
      )
  })

/** @internal fiber roots log what escapes instead of dying silently */
export const supervised = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<void> =>
  Effect.catchAllCause(
    Effect.asVoid(effect),
    (cause) => Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("memory network fiber failed", cause)
  )

const millisOf = (d: Duration.DurationInput): number =>
  Math.max(0, typeof d === "number" ? d : Duration.toMillis(Duration.decode(d)))

// A link's delay in milliseconds: a plain number when there is no latency function or it draws plainly (the
// simulation's), else the function's Effect
const drawLatency = (
  hub: Hub,
  from: NodeId,
  to: NodeId,
  size: number,
  handshake: boolean
): number | Effect.Effect<number> => {
  const latency = hub.options.latency
  if (latency === undefined) return 0
  const drawn = latency({ from, to, size, handshake })
  return typeof drawn === "number" ? millisOf(drawn) : Effect.map(drawn, millisOf)
}

const latencyMillis = (
  hub: Hub,
  from: Endpoint,
  to: { readonly nodeId: NodeId },
  size: number,
  handshake: boolean
): Effect.Effect<number> => {
  const ms = drawLatency(hub, from.nodeId, to.nodeId, size, handshake)
  return typeof ms === "number" ? Effect.succeed(ms) : ms
}

/**
 * Waits `ms` of network time, counted in flight until it has passed: through the simulation's scheduler when there
 * is one, so it stays a heap entry that ends the wait (and the count) when it is reached, even for a fiber
 * interrupted meanwhile.
 */
const networkDelay = (hub: Hub, ms: number): Effect.Effect<void> => {
  if (ms <= 0) return Effect.void
  const schedule = hub.options.schedule
  if (schedule === undefined) {
    return Effect.zipRight(inFlightUp(hub), Effect.ensuring(Effect.sleep(Duration.millis(ms)), inFlightDown(hub)))
  }
  return Effect.withFiberRuntime<void>((fiber) => {
    const now = FiberClock.nowOf(fiber)
    upNow(hub)
    return Effect.async<void>((resume) => {
      schedule(now + ms, () => {
        downNow(hub)
        resume(Effect.void)
        return undefined
      })
    })
  })
}

const countHandshakeFailure = (reason: string) =>
  Metric.increment(DhtMetrics.tagged(DhtMetrics.handshakeFailures, "reason", reason))

const handshakeFailed = (reason: string, detail: string) =>
  countHandshakeFailure(reason).pipe(
    Effect.zipRight(DhtLog.debug("memory handshake failed", { reason, detail })),
    Effect.zipRight(Effect.fail(new HandshakeFailed({ reason: `${reason}: ${detail}` })))
  )

// --- handshake (SPEC §4.8 fields, §11.6) ---

const NO_STATIC_SIGNATURE = new Uint8Array(64)

/**
 * @internal
 * The payload a node presents: the fields of `NoiseHandshakePayload` with its claim; there is no Noise static key to
 * bind, so the static signature is left zero and never read. Built unvalidated so that a test can present a
 * malformed claim, which the other side's decoder then rejects as TCP's would.
 */
export const encodePayload = (publicKey: PublicKey, claim: PeerClaim, protocolVersion: number): Uint8Array =>
  HandshakePayload.encode(
    new HandshakePayload.NoiseHandshakePayload({
      identityPublicKey: publicKey,
      staticSignature: NO_STATIC_SIGNATURE,
      peerFeatures: claim.features,
      addresses: claim.addresses,
      identitySignature: claim.identitySignature,
      protocolVersion
    }, true)
  )

/** Decodes and checks what the other side presented, as TCP does after Noise (SPEC §4.8): key, version, claim. */
const validatePayload = (
  local: Endpoint,
  bytes: Uint8Array,
  expected: PublicKey | undefined
): Effect.Effect<RemoteIdentity, HandshakeFailed> =>
  PeerValidator.validateHandshake(bytes, {
    config: local.config,
    crypto: local.crypto,
    peers: local.peers,
    self: local.nodeId,
    expected,
    checkKey: (key) => Effect.sync(() => Ed25519.checkPublicKeyMemo(key)),
    fail: handshakeFailed
  })

interface Handshaked {
  readonly responder: Endpoint
  readonly address: string
  /** the responder, as the dialler validated it */
  readonly atDialler: RemoteIdentity
  /** the dialler, as the responder validated it */
  readonly atResponder: RemoteIdentity
}

type AttemptFailure = { readonly _tag: "Unreachable" } | { readonly _tag: "Refused" } | HandshakeFailed

const unreachable: AttemptFailure = { _tag: "Unreachable" }

const lookup = (hub: Hub, address: string): Endpoint | undefined => hub.endpoints.get(address)

/** One connection attempt to one address: a round trip of handshake messages, each side validating the other. */
const attempt = (
  hub: Hub,
  local: Endpoint,
  expected: PublicKey,
  address: string
): Effect.Effect<Handshaked, AttemptFailure> =>
  Effect.gen(function*() {
    const responder = lookup(hub, address)
    if (responder === undefined || responder === local) return yield* Effect.fail(unreachable)
    const there = yield* latencyMillis(hub, local, responder, 0, true)
    const back = yield* latencyMillis(hub, responder, local, 0, true)
    yield* networkDelay(hub, there + back)
    if (lookup(hub, address) !== responder || MutableRef.get(responder.closing)) return yield* Effect.fail(unreachable)
    const atDialler = yield* validatePayload(local, responder.payload, expected)
    if (yield* isBannedNow(responder.peers, local.nodeId)) {
      yield* DhtLog.debug("memory connection from a banned peer refused", { peer: local.hex, node: responder.hex })
      return yield* Effect.fail<AttemptFailure>({ _tag: "Refused" })
    }
    const atResponder = yield* validatePayload(responder, local.payload, undefined)
    return { responder, address, atDialler, atResponder }
  })

/** Every address of the peer, most recently seen first, one attempt each (SPEC §6.5). */
const dialAddresses = (hub: Hub, local: Endpoint, remote: NodeId): Effect.Effect<Handshaked, DialError> =>
  Effect.gen(function*() {
    const found = yield* Effect.either(local.peers.get(remote))
    if (Either.isLeft(found)) return yield* new DialFailed({ attempts: 0 })
    const peer = found.right
    const start = yield* Clock.currentTimeMillis
    if (peer.isBanned(start)) return yield* new PeerBanned({ nodeId: remote, reason: peer.bannedReason })
    // stable sort: never-seen addresses keep their stored order, after the seen ones
    const ordered = [...peer.addresses].sort((a, b) => (b.lastSeen ?? -1) - (a.lastSeen ?? -1))
    let attempts = 0
    for (const { address } of ordered) {
      attempts++
      const now = yield* Clock.currentTimeMillis
      yield* PeerValidator.recordDial(local.peers, remote, { _tag: "Attempt", address, now })
      const result = yield* Effect.either(attempt(hub, local, peer.publicKey, address))
      if (Either.isRight(result)) return result.right
      yield* PeerValidator.recordDial(local.peers, remote, { _tag: "Failed", address })
      yield* DhtLog.debug("memory dial attempt failed", { peer: toHex(remote), address, reason: result.left._tag })
    }
    // every address failed: the peer is offline (maxFailuresMarkOffline = 1)
    const now = yield* Clock.currentTimeMillis
    yield* PeerValidator.recordDial(local.peers, remote, { _tag: "Offline", now })
    local.events.unsafePublish({ _tag: "DialFailed", nodeId: remote })
    return yield* new DialFailed({ attempts })
  })

// --- connections: one per pair (SPEC §11.6) ---

/**
 * Fails what a slot holds. The error is made only when something waits for it: a tagged error captures a stack,
 * and most slots are empty when their connection closes (1.5 s of the 1000-node run's teardowns built one anyway).
 */
const failSlotMessages = (slot: Slot, error: () => DialError | ConnectionClosed | TransportShutdown) =>
  Effect.flatMap(
    Queue.takeAll(slot.queue),
    (messages) => {
      if (Chunk.isEmpty(messages)) return Effect.void
      const reason = error()
      return Effect.forEach(messages, (m) => Deferred.fail(m.reply, reason), { discard: true })
    }
  )

const closedReason = (endpoint: Endpoint): ConnectionClosed | TransportShutdown =>
  MutableRef.get(endpoint.closing) ? new TransportShutdown() : new ConnectionClosed()

/** A message whose write was interrupted: its reply says why the connection went away. */
const failClosed = (endpoint: Endpoint, message: OutboundMessage): Effect.Effect<void> =>
  Effect.suspend(() => Deferred.fail(message.reply, closedReason(endpoint)))

/**
 * The slot of `endpoint` for `remote`, made (with its writer when it dials, or wherever senders do not write) if
 * there is none or it is dead: one synchronous step, so two callers never both make one, lock or no lock.
 */
const slotNow = (
  hub: Hub,
  endpoint: Endpoint,
  remote: NodeId,
  dial: boolean,
  fiberId: FiberId.FiberId
): { readonly slot: Slot; readonly created: boolean } => {
  const remoteHex = toHex(remote)
  const existing = endpoint.slots.get(remoteHex)
  if (existing !== undefined && !MutableRef.get(existing.dead)) return { slot: existing, created: false }
  const slot: Slot = {
    remote,
    remoteHex,
    queue: LightQueue.unsafeMake<OutboundMessage>(OUTBOUND_QUEUE_CAPACITY, "dropping"),
    connected: LightDeferred.unsafeMake<Connection, DialError>(fiberId),
    writer: { current: undefined },
    dead: MutableRef.make(false),
    direct: { side: undefined, connection: undefined, queued: 0 }
  }
  endpoint.slots.set(remoteHex, slot)
  if (dial || !hub.writesInSender) {
    slot.writer.current = endpoint.spawn(supervised(runWriter(hub, endpoint, slot, dial)))
  }
  return { slot, created: true }
}

// a slot that is still `endpoint`'s for its remote is removed; one that has been replaced meanwhile stays
const removeSlot = (endpoint: Endpoint, slot: Slot): void => {
  if (endpoint.slots.get(slot.remoteHex) === slot) endpoint.slots.delete(slot.remoteHex)
}

const slotFor = (hub: Hub, endpoint: Endpoint, remote: NodeId, dial: boolean) =>
  Effect.withFiberRuntime<{ readonly slot: Slot; readonly created: boolean }>((fiber) =>
    Effect.succeed(slotNow(hub, endpoint, remote, dial, fiber.id()))
  )

/**
 * Counts a message just offered to the slot's queue, and starts a writer if none is running. Where senders write
 * themselves (`writesInSender`) a writer runs only while a dial is under way or messages are queued, and ends once
 * the queue is empty: a node has a slot per connection, and a fiber parked on each empty queue was a fiber per
 * connection held for the connection's life. Elsewhere every slot has its writer from the start.
 */
const queuedOne = (hub: Hub, endpoint: Endpoint, slot: Slot): void => {
  slot.direct.queued++
  if (slot.writer.current === undefined) {
    slot.writer.current = endpoint.spawn(supervised(runWriter(hub, endpoint, slot, false)))
  }
}

/** Removes a slot whose dial failed and fails what it holds; under the lock, so no send slips in after. */
const abandonSlot = (endpoint: Endpoint, slot: Slot, error: DialError) =>
  endpoint.lock.withLock(
    Effect.zipRight(
      Effect.sync(() => {
        MutableRef.set(slot.dead, true)
        removeSlot(endpoint, slot)
      }),
      failSlotMessages(slot, () => error)
    )
  )

const runWriter = (hub: Hub, endpoint: Endpoint, slot: Slot, dial: boolean): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (dial) {
      const exit = yield* Effect.exit(connect(hub, endpoint, slot.remote))
      // an inbound connection may have completed it first; the first completion stands. Marked dead before the
      // failure is visible, so that a send following a failed dial() dials again instead of joining this slot.
      if (Exit.isFailure(exit) && !(yield* Deferred.isDone(slot.connected))) MutableRef.set(slot.dead, true)
      yield* Deferred.done(slot.connected, exit)
    }
    const result = yield* Effect.either(LightDeferred.awaitOnce(slot.connected))
    if (Either.isLeft(result)) return yield* abandonSlot(endpoint, slot, result.left)
    const connection = result.right
    const side = sideOf(connection, endpoint)
    slot.direct.side = side
    slot.direct.connection = connection
    const writeNext = Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(Queue.take(slot.queue)), (message) =>
        restore(write(hub, connection, side, message)).pipe(
          Effect.onInterrupt(() => failClosed(endpoint, message)),
          Effect.ensuring(Effect.sync(() => {
            slot.direct.queued--
          }))
        ))
    )
    if (!hub.writesInSender) return yield* Effect.forever(writeNext)
    // `queued` counts the messages offered and not yet written: at 0 the queue is empty, and every later send writes
    // itself (or starts a writer), decided in the same synchronous step as this end
    const drain: Effect.Effect<void> = Effect.suspend(() => {
      if (slot.direct.queued > 0) return Effect.zipRight(writeNext, drain)
      slot.writer.current = undefined
      return Effect.void
    })
    return yield* drain
  })

const removeDialling = (hub: Hub, key: string, by: string, done: Deferred.Deferred<Connection, DialError>): void => {
  const pair = hub.pairs.get(key)
  if (pair === undefined || pair.dialling.get(by) !== done) return
  pair.dialling.delete(by)
  prunePair(hub, key, pair)
}

/**
 * The connection between `local` and `remote`: the existing one, or a new dial. When both sides dial at once, both
 * handshakes run and the dial of the smaller NodeId is kept (SPEC §11.6); the other side adopts it, so its queued
 * messages go out in order on the kept connection and nothing was ever written to the discarded one.
 */
const connect = (hub: Hub, local: Endpoint, remote: NodeId): Effect.Effect<Connection, DialError> =>
  Effect.gen(function*() {
    const key = pairKey(local.hex, toHex(remote))
    const mine = yield* Deferred.make<Connection, DialError>()
    type Start =
      | { readonly _tag: "Reuse"; readonly connection: Connection }
      | { readonly _tag: "Join"; readonly done: Deferred.Deferred<Connection, DialError> }
      | { readonly _tag: "Dial" }
    const start = yield* Effect.sync((): Start => {
      const pair = pairOf(hub, key)
      if (pair.connection !== undefined) return { _tag: "Reuse", connection: pair.connection }
      const ours = pair.dialling.get(local.hex)
      if (ours !== undefined) return { _tag: "Join", done: ours }
      pair.dialling.set(local.hex, mine)
      return { _tag: "Dial" }
    })
    if (start._tag === "Reuse") return start.connection
    if (start._tag === "Join") return yield* LightDeferred.awaitOnce(start.done)
    return yield* Effect.flatMap(dialAddresses(hub, local, remote), (handshaked) => commit(hub, local, handshaked, key))
      .pipe(
        Effect.onExit((exit) =>
          Effect.suspend(() => {
            removeDialling(hub, key, local.hex, mine)
            return Exit.isInterrupted(exit) ? Deferred.fail(mine, new TransportShutdown()) : Deferred.done(mine, exit)
          })
        )
      )
  })

/**
 * The pair's connection once both handshakes are done: the one already made (adopted), theirs when both sides dialled
 * and theirs is the smaller NodeId's (awaited; ours stands if it fails), or ours, built and recorded in the same
 * synchronous step as the choice, so no other dial of the pair can come between the two.
 */
const commit = (hub: Hub, local: Endpoint, handshaked: Handshaked, key: string): Effect.Effect<Connection, DialError> =>
  Effect.withFiberRuntime<Connection, DialError>((fiber) => {
    const pair = hub.pairs.get(key)
    if (pair?.connection !== undefined) return Effect.succeed(pair.connection)
    const theirs = pair?.dialling.get(handshaked.responder.hex)
    if (theirs !== undefined && local.hex > handshaked.responder.hex) {
      return Effect.flatMap(
        Effect.exit(LightDeferred.awaitOnce(theirs)),
        (exit) => Exit.isSuccess(exit) ? Effect.succeed(exit.value) : commit(hub, local, handshaked, key)
      )
    }
    const built = establish(hub, local, handshaked, key, fiber.id())
    if (built._tag === "Gone") {
      const failed = new DialFailed({ attempts: 1 })
      return built.dropped === undefined ? Effect.fail(failed) : Effect.zipRight(built.dropped, Effect.fail(failed))
    }
    return Effect.zipRight(
      Metric.incrementBy(DhtMetrics.connectedPeers, 2),
      Effect.as(activate(hub, built.connection, handshaked.address), built.connection)
    )
  })

const makeLink = (hub: Hub): Link => ({
  schedule: { last: 0, pending: 0 },
  queue: hub.options.latency !== undefined && hub.options.schedule === undefined
    ? LightQueue.unsafeMake<LinkItem>(LINK_WINDOW, "bounded")
    : undefined,
  fiber: { current: undefined }
})

const makeSide = (hub: Hub, local: Endpoint, remote: RemoteIdentity, slot: Slot, outbound: boolean): Side => ({
  local,
  remote,
  slot,
  inbound: LightQueue.unsafeMake<InboundMessage>(INBOUND_CONNECTION_CAPACITY, "dropping"),
  delivery: MutableRef.make<Delivery>("Held"),
  flood: FloodWindow.make(),
  bucketMs: FloodWindow.bucketMillis(Duration.toMillis(local.config.floodBanTimespan)),
  link: makeLink(hub),
  reader: { current: undefined },
  outbound
})

type Built =
  | { readonly _tag: "Established"; readonly connection: Connection }
  /** an end is shutting down; `dropped` stops the writer of a slot made for nothing, if it had one */
  | { readonly _tag: "Gone"; readonly dropped: Effect.Effect<void> | undefined }

/**
 * Builds the connection and records it as the pair's, in one synchronous step: both ends' slots, both sides, the
 * pair, the open maps and the slots' `connected`. `Gone` when an end is shutting down.
 */
const establish = (
  hub: Hub,
  dialler: Endpoint,
  handshaked: Handshaked,
  key: string,
  fiberId: FiberId.FiberId
): Built => {
  const responder = handshaked.responder
  if (MutableRef.get(responder.closing)) return { _tag: "Gone", dropped: undefined }
  const responderSlot = slotNow(hub, responder, dialler.nodeId, false, fiberId)
  if (MutableRef.get(dialler.closing)) {
    if (!responderSlot.created) return { _tag: "Gone", dropped: undefined }
    const slot = responderSlot.slot
    removeSlot(responder, slot)
    return { _tag: "Gone", dropped: interruptUnlessSelf(slot.writer) }
  }
  const diallerSlot = slotNow(hub, dialler, responder.nodeId, false, fiberId)
  const connection: Connection = {
    id: hub.ids.next++,
    key,
    sides: [
      makeSide(hub, dialler, handshaked.atDialler, diallerSlot.slot, true),
      makeSide(hub, responder, handshaked.atResponder, responderSlot.slot, false)
    ],
    state: MutableRef.make<ConnectionState>("Open")
  }
  pairOf(hub, key).connection = connection
  for (const side of connection.sides) {
    side.local.open.set(side.remote.hex, { connection, remote: side.remote.nodeId })
    // the slot's first connection stands; a slot with no writer (`queuedOne`) learns it here
    if (LightDeferred.unsafePoll(side.slot.connected) === undefined) {
      Deferred.unsafeDone(side.slot.connected, Effect.succeed(connection))
      side.slot.direct.side = side
      side.slot.direct.connection = connection
    }
  }
  return { _tag: "Established", connection }
}

/** After the pair has its connection: peer records, readers, delivery fibers, `PeerConnected` on both sides. */
const activate = (hub: Hub, connection: Connection, dialledAddress: string): Effect.Effect<void> =>
  Effect.forEach(connection.sides, (side) =>
    Effect.gen(function*() {
      const peer = yield* recordConnected(side, side.outbound ? dialledAddress : undefined)
      const held = yield* Effect.sync(() => {
        const waiting = Option.getOrElse(side.inbound.unsafeSize(), () => 0) > 0
        MutableRef.set(side.delivery, waiting ? "Draining" : "Direct")
        return waiting
      })
      if (held) yield* startReader(hub, side)
      if (side.link.queue !== undefined) {
        const queue = side.link.queue
        side.link.fiber.current = hub.spawn(supervised(runLink(hub, connection, side, queue)))
      }
      // a teardown that ran before the fibers were recorded could not stop them
      if (MutableRef.get(connection.state) === "Closed") {
        yield* interruptUnlessSelf(side.reader)
        yield* interruptUnlessSelf(side.link.fiber)
        return
      }
      side.local.events.unsafePublish({ _tag: "PeerConnected", peer, outbound: side.outbound })
    }), { discard: true })

/** verifiedAt, lastSeen, addresses and claim of the remote in the local table (SPEC §2.5, §4.8). */
const recordConnected = (side: Side, dialledAddress: string | undefined): Effect.Effect<Peer> =>
  PeerValidator.recordConnected(side.local.peers, side.remote, {
    maxAddressesPerPeer: side.local.config.peerValidator.maxAddressesPerPeer,
    dialledAddress
  })

// --- frames ---

const framesOut = DhtMetrics.tagged(DhtMetrics.transportFrames, "direction", "out")
const bytesOut = DhtMetrics.tagged(DhtMetrics.transportBytes, "direction", "out")
const framesIn = DhtMetrics.tagged(DhtMetrics.transportFrames, "direction", "in")
const bytesIn = DhtMetrics.tagged(DhtMetrics.transportBytes, "direction", "in")
const shedConnection = DhtMetrics.tagged(DhtMetrics.inboundShed, "where", "connection")

/**
 * Hands one message to the link: delivered now (latency 0, nothing ahead) or scheduled FIFO; reply on write. Runs
 * when the frame is written (a sender's or writer's step), and is one step of that fiber besides the latency draw:
 * every frame of the network passes here and through `arrive`, where an Effect per check cost more than the frame.
 */
const write = (hub: Hub, connection: Connection, side: Side, message: OutboundMessage): Effect.Effect<void> => {
  if (MutableRef.get(connection.state) !== "Open") return failClosed(side.local, message)
  const onFrame = hub.options.onFrame
  const sent = Effect.withFiberRuntime<void>((fiber) => writeNow(hub, connection, side, message, fiber) ?? Effect.void)
  return onFrame === undefined ? sent : Effect.zipRight(onFrame(frameInfo(side, message)), sent)
}

const frameInfo = (side: Side, message: OutboundMessage): FrameInfo => ({
  from: side.local.nodeId,
  to: side.remote.nodeId,
  tag: message.tag,
  bytes: message.bytes
})

// The write of a frame on an open connection, in a step of `fiber`: the latency draw, the frame counted and on its
// way, the reply answered. Returns what is left to run: nothing, when the latency is a plain draw (the simulation's)
// and the frame is scheduled; the delivery, when it arrives at once; the rest of the write, when the latency is an
// Effect.
const writeNow = (
  hub: Hub,
  connection: Connection,
  side: Side,
  message: OutboundMessage,
  fiber: Fiber.RuntimeFiber<void>
): Effect.Effect<void> | undefined => {
  const size = message.bytes.length
  const frame: Frame = { tag: message.tag, bytes: message.bytes }
  const tapFrame = hub.options.tapFrame
  if (tapFrame !== undefined) tapFrame(frameInfo(side, message))
  const written = (runtime: Fiber.RuntimeFiber<void>, ms: number): Effect.Effect<void> | undefined => {
    const labels = runtime.getFiberRef(FiberRef.currentMetricLabels)
    framesOut.unsafeUpdate(1, labels)
    bytesOut.unsafeUpdate(size, labels)
    hub.stats.frames++
    hub.stats.bytes += size
    const nowMs = FiberClock.nowOf(runtime)
    const then = transmit(hub, connection, side, frame, ms, nowMs)
    if (then === undefined) {
      Deferred.unsafeDone(message.reply, Exit.void)
      return undefined
    }
    return Effect.zipRight(then, Deferred.succeed(message.reply, undefined))
  }
  const ms = drawLatency(hub, side.local.nodeId, side.remote.nodeId, size, false)
  return typeof ms === "number"
    ? written(fiber, ms)
    : Effect.flatMap(ms, (drawn) => Effect.withFiberRuntime<void>((later) => written(later, drawn) ?? Effect.void))
}

// the frame counted in flight and on its way: delivered at once (its effect returned), scheduled (undefined), or
// queued for the link's fiber (the offer returned)
const transmit = (
  hub: Hub,
  connection: Connection,
  side: Side,
  frame: Frame,
  latency: number,
  nowMs: number
): Effect.Effect<void> | undefined => {
  upNow(hub)
  const receiver = other(connection, side)
  // read and advanced in this one step, so two frames on a link are delivered in the order they were written
  const link = side.link.schedule
  if (latency === 0 && link.pending === 0) return arrive(hub, connection, receiver, frame)
  const at = Math.max(link.last, nowMs + latency)
  link.last = at
  link.pending++
  const schedule = hub.options.schedule
  if (schedule !== undefined) {
    schedule(at, (now, labels) => {
      link.pending--
      return arriveNow(hub, connection, receiver, frame, now, labels)
    })
    return undefined
  }
  const queue = side.link.queue
  return queue === undefined
    ? undefined
    : Queue.offer(queue, { at, frame }).pipe(Effect.onInterrupt(() => inFlightDown(hub)))
}

const delivered = (link: Link) =>
  Effect.sync(() => {
    link.schedule.pending--
  })

const runLink = (hub: Hub, connection: Connection, side: Side, queue: Queue.Queue<LinkItem>): Effect.Effect<void> => {
  const receiver = other(connection, side)
  const sleepUntil = (at: number) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => at > now ? Effect.sleep(Duration.millis(at - now)) : Effect.void)
  return Effect.forever(Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(restore(Queue.take(queue)), (item) =>
      restore(sleepUntil(item.at)).pipe(
        Effect.onInterrupt(() => inFlightDown(hub)),
        Effect.zipRight(delivered(side.link)),
        Effect.zipRight(arrive(hub, connection, receiver, item.frame))
      ))
  ))
}

/**
 * A frame reaching `side`: the frame limit and the flood rule (SPEC §11.5, §11.6), then the connection's queue. A
 * plain function of the time and the metric labels (`MemoryNetwork.Arrival`): what is left to run, if anything.
 */
const arriveNow = (
  hub: Hub,
  connection: Connection,
  side: Side,
  frame: Frame,
  now: number,
  labels: ReadonlyArray<MetricLabel.MetricLabel>
): Effect.Effect<void> | undefined => {
  if (MutableRef.get(connection.state) !== "Open") {
    downNow(hub)
    return undefined
  }
  const config = side.local.config
  const size = frame.bytes.length
  framesIn.unsafeUpdate(1, labels)
  bytesIn.unsafeUpdate(size, labels)
  if (size > config.maxMessageSize) {
    downNow(hub)
    return violation(hub, connection, side, new FrameTooLarge({ size, limit: config.maxMessageSize }))
  }
  const totals = FloodWindow.record(side.flood, now, size, side.bucketMs)
  if (totals.frames > config.floodBanMaxMsgCount || totals.bytes > config.floodBanMaxBytes) {
    downNow(hub)
    return violation(hub, connection, side, new Flooding({ frames: totals.frames, bytes: totals.bytes }))
  }
  const message: InboundMessage = {
    sourcePeer: side.remote.nodeId,
    tag: side.local.nextTag(),
    bytes: frame.bytes,
    receivedAt: now
  }
  if (side.local.screens.passes(message, side.remote.publicKey)) return receive(hub, side, message)
  downNow(hub)
  return undefined
}

/** `arriveNow` in a step of the delivering fiber, on its clock and metric labels. */
const arrive = (hub: Hub, connection: Connection, side: Side, frame: Frame): Effect.Effect<void> =>
  Effect.withFiberRuntime((fiber) =>
    arriveNow(
      hub,
      connection,
      side,
      frame,
      FiberClock.nowOf(fiber),
      fiber.getFiberRef(FiberRef.currentMetricLabels)
    ) ?? Effect.void
  )

/** Bans the sender short and closes the connection (SPEC §14.1: FrameTooLarge, Flooding). */
const violation = (
  hub: Hub,
  connection: Connection,
  side: Side,
  error: FrameTooLarge | Flooding
): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (MutableRef.get(connection.state) !== "Open") return
    MutableRef.set(connection.state, "Closing")
    forgetOpen(connection)
    const local = side.local
    const remote = side.remote
    yield* Effect.logWarning("peer banned by the memory transport").pipe(
      Effect.annotateLogs({ reason: error._tag, peer: remote.hex, node: local.hex })
    )
    yield* Metric.increment(DhtMetrics.tagged(DhtMetrics.inboundRejected, "reason", error._tag))
    yield* DhtMetrics.countBan("Low", error._tag)
    const ban = local.peers.ban(remote.nodeId, Duration.toMillis(local.config.banDurationShort), error._tag).pipe(
      Effect.catchAll((e) => Effect.logWarning("ban failed", e))
    )
    // forked: the current fiber may be the sender's writer, which the teardown interrupts
    yield* Effect.sync(() => local.spawn(supervised(Effect.zipRight(ban, teardown(hub, connection)))))
  })

type Route = "Delivered" | "Queued" | "Shed" | "StartReader"

const route = (side: Side, message: InboundMessage): Route => {
  if (MutableRef.get(side.delivery) === "Direct") {
    if (side.local.inbox.unsafeOffer(message)) return "Delivered"
    MutableRef.set(side.delivery, "Draining")
    if (side.inbound.unsafeOffer(message)) return "StartReader"
    MutableRef.set(side.delivery, "Direct")
    return "Shed"
  }
  return side.inbound.unsafeOffer(message) ? "Queued" : "Shed"
}

/**
 * Hands a received frame on: to the inbox, or behind those waiting for it (SPEC §13.1: dropping at 1,000). What is
 * left to run, if anything.
 */
const receive = (hub: Hub, side: Side, message: InboundMessage): Effect.Effect<void> | undefined => {
  switch (route(side, message)) {
    case "Delivered":
      downNow(hub)
      return undefined
    case "Queued":
      return undefined
    case "Shed":
      downNow(hub)
      return Metric.increment(shedConnection)
    case "StartReader":
      return startReader(hub, side)
  }
}

const startReader = (hub: Hub, side: Side): Effect.Effect<void> =>
  Effect.sync(() => {
    side.reader.current = side.local.spawn(supervised(runReader(hub, side)))
  })

/**
 * Moves the connection's waiting frames to the inbox, suspending while it is full (SPEC §13.1), and ends once none
 * are left: from then on frames go to the inbox directly again.
 */
const runReader = (hub: Hub, side: Side): Effect.Effect<void> =>
  Effect.suspend(() => {
    const waiting = Option.getOrElse(side.inbound.unsafeSize(), () => 0)
    if (waiting <= 0) {
      MutableRef.set(side.delivery, "Direct")
      return Effect.void
    }
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Queue.take(side.inbound), (message) =>
        restore(Queue.offer(side.local.inbox, message)).pipe(Effect.ensuring(inFlightDown(hub))))
    ).pipe(Effect.zipRight(runReader(hub, side)))
  })

/**
 * @internal
 * Closes a connection, once: its slots are detached (the next send dials afresh), its fibers stop, queued messages
 * fail (`ConnectionClosed`, or `TransportShutdown` on the side shutting down), frames not yet in an inbox are
 * dropped, and both sides see `PeerDisconnected`.
 */
export const teardown = (hub: Hub, connection: Connection): Effect.Effect<void> =>
  Effect.gen(function*() {
    const previous = MutableRef.getAndSet(connection.state, "Closed")
    if (previous === "Closed") return
    forgetOpen(connection)
    for (const side of connection.sides) MutableRef.set(side.slot.dead, true)
    const pair = hub.pairs.get(connection.key)
    if (pair !== undefined && pair.connection === connection) {
      pair.connection = undefined
      prunePair(hub, connection.key, pair)
    }
    yield* Metric.incrementBy(DhtMetrics.connectedPeers, -2)
    for (const side of connection.sides) {
      const local = side.local
      yield* local.lock.withLock(
        Effect.sync(() => removeSlot(local, side.slot))
      )
      yield* interruptUnlessSelf(side.slot.writer)
      yield* interruptUnlessSelf(side.reader)
      yield* interruptUnlessSelf(side.link.fiber)
      yield* failSlotMessages(side.slot, () => closedReason(local))
      // Either end may have finished going offline while this teardown waited for its lock (two nodes closing at
      // once): a queue or PubSub that is shut down interrupts whoever touches it, here the closing of the other node.
      yield* Effect.flatMap(takeAllIfOpen(side.inbound), (unread) => inFlightDownBy(hub, unread.length))
      if (side.link.queue !== undefined) {
        yield* Effect.flatMap(takeAllIfOpen(side.link.queue), (inFlight) => inFlightDownBy(hub, inFlight.length))
      }
      local.events.unsafePublish({ _tag: "PeerDisconnected", nodeId: side.remote.nodeId })
    }
  })

// --- endpoint operations ---

/** @internal */
export const send = (hub: Hub, endpoint: Endpoint, message: OutboundMessage): Effect.Effect<void> => {
  if (equals(message.peer, endpoint.nodeId)) return Deferred.fail(message.reply, new DialFailed({ attempts: 0 }))
  const enqueue = Effect.flatMap(Effect.sync(() => MutableRef.get(endpoint.closing)), (closing) =>
    closing
      ? Effect.succeed<SendOutcome>("Shutdown")
      : Effect.flatMap(slotFor(hub, endpoint, message.peer, true), ({ slot }) =>
        Effect.map(Queue.offer(slot.queue, message), (queued): SendOutcome => {
          if (!queued) return "Full"
          queuedOne(hub, endpoint, slot)
          return "Queued"
        })))
  const answer = (outcome: SendOutcome): Effect.Effect<void> =>
    outcome === "Queued"
      ? Effect.void
      : Deferred.fail(message.reply, outcome === "Shutdown" ? new TransportShutdown() : new QueueFull())
  // The common case, a live slot, without the lock: the lookup and the offer run in one synchronous step, so no
  // removal can come between them, and every removal marks the slot dead before it drains the queue, so an offer to
  // a slot that was not yet dead is drained (and answered) by it. A semaphore per send cost more than the rest of
  // the send together. With nothing waiting for the writer and deliveries scheduled, the frame is written here, in
  // the sender's fiber: the hop to the writer's fiber cost more than the write. Whatever was queued before goes first
  // either way.
  return Effect.suspend(() => {
    const slot = liveSlot(endpoint, message.peer)
    if (slot !== undefined) {
      const route = directRoute(hub, slot)
      if (route !== undefined) {
        // With deliveries scheduled a write never waits, so it runs whole rather than answering the reply if
        // interrupted midway: 3 operations a frame, where `onInterrupt` cost 10.
        return Effect.uninterruptible(write(hub, route.connection, route.side, message))
      }
      const queued = slot.queue.unsafeOffer(message)
      if (queued) queuedOne(hub, endpoint, slot)
      return answer(queued ? "Queued" : "Full")
    }
    return Effect.flatMap(endpoint.lock.withLock(enqueue), answer)
  })
}

// `send`'s lookup without the lock: the slot for `peer` unless it is dead or the endpoint is closing
const liveSlot = (endpoint: Endpoint, peer: NodeId): Slot | undefined => {
  if (MutableRef.get(endpoint.closing)) return undefined
  const found = endpoint.slots.get(toHex(peer))
  return found !== undefined && !MutableRef.get(found.dead) ? found : undefined
}

// the connection and side a sender writes to itself: deliveries scheduled, nothing queued before, connected
const directRoute = (hub: Hub, slot: Slot) => {
  const { connection, side } = slot.direct
  return hub.writesInSender && slot.direct.queued === 0 && connection !== undefined && side !== undefined
    ? { connection, side }
    : undefined
}

type SendOutcome = "Queued" | "Shutdown" | "Full"

/**
 * `send` of each message in turn. Those a sender writes itself are written in this one step (a broadcast's copies
 * were each a chain of steps of their own); from the first that is not, the rest go through `send`, in order.
 *
 * @internal
 */
export const sendAll = (hub: Hub, endpoint: Endpoint, messages: ReadonlyArray<OutboundMessage>): Effect.Effect<void> =>
  Effect.withFiberRuntime<void>((fiber) => {
    const rest: Array<Effect.Effect<void>> = []
    for (const message of messages) {
      const slot = rest.length === 0 ? liveSlot(endpoint, message.peer) : undefined
      const route = slot === undefined ? undefined : directRoute(hub, slot)
      // a closed connection's copy goes through `send`, which answers it
      if (route === undefined || MutableRef.get(route.connection.state) !== "Open") {
        rest.push(send(hub, endpoint, message))
        continue
      }
      // as `send` writes it: whole, uninterruptibly
      const then = writeNow(hub, route.connection, route.side, message, fiber)
      if (then !== undefined) rest.push(Effect.uninterruptible(then))
    }
    return rest.length === 0
      ? Effect.void
      : rest.length === 1
      ? rest[0]!
      : Effect.forEach(rest, (effect) => effect, { discard: true })
  })

/** @internal */
export const dial = (hub: Hub, endpoint: Endpoint, peer: NodeId): Effect.Effect<void, DialError> =>
  Effect.withFiberRuntime<void, DialError>((fiber) => {
    if (equals(peer, endpoint.nodeId)) return Effect.fail(new DialFailed({ attempts: 0 }))
    if (MutableRef.get(endpoint.closing)) return Effect.fail(new TransportShutdown())
    return Effect.asVoid(LightDeferred.awaitOnce(slotNow(hub, endpoint, peer, true, fiber.id()).slot.connected))
  })

/** The slot's connection, whatever its state; none while dialling or after a failed dial. */
const connectionOf = (slot: Slot): Effect.Effect<Option.Option<Connection>> =>
  Effect.flatMap(
    Deferred.poll(slot.connected),
    (polled) => Option.isNone(polled) ? Effect.succeed(Option.none()) : Effect.option(polled.value)
  )

const liveConnection = (slot: Slot): Effect.Effect<Option.Option<Connection>> =>
  Effect.flatMap(connectionOf(slot), (connection) =>
    Option.isNone(connection)
      ? Effect.succeed(connection)
      : Effect.sync(() => MutableRef.get(connection.value.state) === "Open" ? connection : Option.none<Connection>()))

/** @internal */
export const disconnect = (hub: Hub, endpoint: Endpoint, peer: NodeId): Effect.Effect<void> =>
  Effect.suspend(() => {
    const slot = endpoint.slots.get(toHex(peer))
    return slot === undefined
      ? Effect.void
      : Effect.flatMap(liveConnection(slot), (connection) =>
        Option.isSome(connection) ? teardown(hub, connection.value) : Effect.void)
  })

/** @internal */
export const connectedPeers = (endpoint: Endpoint): Effect.Effect<ReadonlyArray<NodeId>> =>
  Effect.sync(() => endpoint.open.peers())

/** @internal */
export const isConnected = (endpoint: Endpoint, peer: NodeId): Effect.Effect<boolean> =>
  Effect.sync(() => endpoint.open.has(toHex(peer)))

/**
 * @internal
 * The node going offline (its scope closing): no new sends or connections, its address unregistered (dials to it
 * fail), every connection closed (peers see `PeerDisconnected`), dials in progress and queued messages failed with
 * `TransportShutdown`.
 */
export const shutdown = (hub: Hub, endpoint: Endpoint): Effect.Effect<void> =>
  Effect.gen(function*() {
    MutableRef.set(endpoint.closing, true)
    if (hub.endpoints.get(endpoint.address) === endpoint) hub.endpoints.delete(endpoint.address)
    const slots = Array.from(endpoint.slots.values())
    for (const slot of slots) {
      // a connection closing after a violation too: its teardown runs in a fiber this scope is about to stop
      const connection = yield* connectionOf(slot)
      if (Option.isSome(connection)) {
        yield* teardown(hub, connection.value)
      } else {
        MutableRef.set(slot.dead, true)
        yield* interruptUnlessSelf(slot.writer)
        yield* Deferred.fail(slot.connected, new TransportShutdown())
        yield* endpoint.lock.withLock(
          Effect.sync(() => endpoint.slots.delete(slot.remoteHex)).pipe(
            Effect.zipRight(failSlotMessages(slot, () => new TransportShutdown()))
          )
        )
      }
    }
    yield* endpoint.events.shutdown
    yield* Queue.shutdown(endpoint.inbox)
  })
