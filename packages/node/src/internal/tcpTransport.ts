/** @internal */
import type { DialError } from "@comms-dht/core/DhtError"
import { ConnectionClosed, DialFailed, PeerBanned, QueueFull, TransportShutdown } from "@comms-dht/core/DhtError"
import * as DhtLog from "@comms-dht/core/DhtLog"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as FloodWindow from "@comms-dht/core/FloodWindow"
import * as LightQueue from "@comms-dht/core/LightQueue"
import type * as Noise from "@comms-dht/core/Noise"
import type { NodeId, PublicKey } from "@comms-dht/core/NodeId"
import { equals, toHex } from "@comms-dht/core/NodeId"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as PeerValidator from "@comms-dht/core/PeerValidator"
import type { ConnectionEvent, InboundMessage, OutboundMessage, Screens } from "@comms-dht/core/Transport"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as HashMap from "effect/HashMap"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type { ByteReader } from "./tcpFraming.js"
import * as Framing from "./tcpFraming.js"
import type { Handshaked, LocalIdentity, RemoteIdentity } from "./tcpHandshake.js"
import * as Handshake from "./tcpHandshake.js"
import type { Registry, SocketFailure, TcpSocket } from "./tcpSocket.js"
import * as Socket from "./tcpSocket.js"

// --- model ---

/** @internal the limits of SPEC §11.6 and §17.6, resolved */
export interface Settings {
  readonly maxFrameSize: number
  readonly handshakeTimeout: Duration.Duration
  readonly idleTimeout: Duration.Duration
  readonly maxInboundHandshakes: number
  readonly dialTimeout: Duration.Duration
  readonly outboundQueue: number
  readonly inboundQueue: number
  /** retries of one address after a connection failure (not after a refused handshake) */
  readonly dialRetries: number
}

/** @internal forks into the transport's scope, on the scheduler */
export type Spawn = <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>

/** @internal */
export interface Endpoint {
  readonly local: LocalIdentity
  readonly settings: Settings
  readonly registry: Registry
  readonly spawn: Spawn
  /** one per remote peer sent to or connected with, by NodeId hex */
  readonly slots: Ref.Ref<HashMap.HashMap<string, Slot>>
  /** guards `slots`, each slot's connection list, and offers to a slot's queue */
  readonly lock: Effect.Semaphore
  readonly inbox: Queue.Queue<InboundMessage>
  /** run on each frame as it is read, before it is queued (`Transport.Screen`) */
  readonly screens: Screens
  readonly events: LightQueue.SlidingFanout<ConnectionEvent>
  readonly closing: Ref.Ref<boolean>
  readonly handshakes: Effect.Semaphore
  readonly nextId: Ref.Ref<number>
}

/** @internal everything about one remote peer: its outbound queue, its connections, the dial in progress */
export interface Slot {
  readonly remote: NodeId
  readonly remoteHex: string
  readonly queue: Queue.Queue<OutboundMessage>
  /** established connections, the retired (half-closed) ones until their end of stream */
  readonly conns: Ref.Ref<ReadonlyArray<Conn>>
  /** the connection the writer uses */
  readonly active: Ref.Ref<Option.Option<Conn>>
  readonly dialling: Ref.Ref<Option.Option<Deferred.Deferred<Conn, DialError>>>
  readonly removed: Ref.Ref<boolean>
}

/** `Retired`: we no longer write (FIN sent) but read on to the end; `Closed`: the socket is gone */
type ConnState = "Open" | "Retired" | "Closed"

/** @internal one authenticated connection */
export interface Conn {
  readonly id: number
  readonly remote: RemoteIdentity
  readonly socket: TcpSocket
  readonly reader: ByteReader<SocketFailure>
  readonly transport: Noise.TransportState
  /** encryption and writes in one order: the nonce counts records */
  readonly writeLock: Effect.Semaphore
  /** NodeId hex of the side that dialled it */
  readonly dialler: string
  readonly outbound: boolean
  readonly state: Ref.Ref<ConnState>
  readonly lastActivity: Ref.Ref<number>
}

/** @internal */
export const EVENT_BUFFER = 256
/** an idle slot (no connection, nothing queued) is dropped after this long, with its writer fiber */
const SLOT_IDLE = Duration.minutes(1)
/** messages taken from the queue per write */
const BATCH = 64
/** bytes sealed per socket write */
const WRITE_CHUNK = 1 << 20

const framesOut = DhtMetrics.tagged(DhtMetrics.transportFrames, "direction", "out")
const bytesOut = DhtMetrics.tagged(DhtMetrics.transportBytes, "direction", "out")
const framesIn = DhtMetrics.tagged(DhtMetrics.transportFrames, "direction", "in")
const bytesIn = DhtMetrics.tagged(DhtMetrics.transportBytes, "direction", "in")
const shedConnection = DhtMetrics.tagged(DhtMetrics.inboundShed, "where", "connection")

/** @internal fiber roots log what escapes instead of dying silently */
export const supervised = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<void> =>
  Effect.catchAllCause(
    Effect.asVoid(effect),
    (cause) => Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("tcp transport fiber failed", cause)
  )

const isOpen = (conn: Conn): Effect.Effect<boolean> => Effect.map(Ref.get(conn.state), (s) => s === "Open")

const openActive = (slot: Slot): Effect.Effect<Option.Option<Conn>> =>
  Effect.flatMap(Ref.get(slot.active), (active) =>
    Option.isNone(active)
      ? Effect.succeed(active)
      : Effect.map(isOpen(active.value), (open) => open ? active : Option.none<Conn>()))

// --- addresses ---

/** @internal `HOST:PORT`, `tcp://HOST:PORT`, `[IPv6]:PORT` */
export const parseHostPort = (address: string): Option.Option<{ readonly host: string; readonly port: number }> => {
  const text = address.startsWith("tcp://") ? address.slice(6) : address
  const colon = text.lastIndexOf(":")
  if (colon <= 0) return Option.none()
  let host = text.slice(0, colon)
  const portText = text.slice(colon + 1)
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1)
  if (!/^[0-9]{1,5}$/.test(portText)) return Option.none()
  const port = Number(portText)
  if (port > 65_535 || host.length === 0) return Option.none()
  return Option.some({ host, port })
}

/** @internal `tcp://HOST:PORT`, IPv6 bracketed */
export const formatAddress = (host: string, port: number): string =>
  host.includes(":") ? `tcp://[${host}]:${port}` : `tcp://${host}:${port}`

// --- slots ---

/** The slot for `remote`, made with its writer if there is none; run under `endpoint.lock`. */
const slotFor = (endpoint: Endpoint, remote: NodeId): Effect.Effect<Slot> => {
  const remoteHex = toHex(remote)
  return Effect.flatMap(Ref.get(endpoint.slots), (slots) =>
    Option.match(HashMap.get(slots, remoteHex), {
      onSome: Effect.succeed,
      onNone: () =>
        Effect.gen(function*() {
          const slot: Slot = {
            remote,
            remoteHex,
            queue: yield* LightQueue.dropping<OutboundMessage>(endpoint.settings.outboundQueue),
            conns: yield* Ref.make<ReadonlyArray<Conn>>([]),
            active: yield* Ref.make(Option.none<Conn>()),
            dialling: yield* Ref.make(Option.none<Deferred.Deferred<Conn, DialError>>()),
            removed: yield* Ref.make(false)
          }
          yield* Ref.update(endpoint.slots, HashMap.set(remoteHex, slot))
          yield* Effect.sync(() => endpoint.spawn(supervised(runWriter(endpoint, slot))))
          return slot
        })
    }))
}

const failQueued = (slot: Slot, error: DialError | ConnectionClosed) =>
  Effect.flatMap(
    Queue.takeAll(slot.queue),
    (messages) => Effect.forEach(messages, (m) => Deferred.fail(m.reply, error), { discard: true })
  )

const closedReason = (endpoint: Endpoint): Effect.Effect<ConnectionClosed | TransportShutdown> =>
  Effect.map(Ref.get(endpoint.closing), (closing) => closing ? new TransportShutdown() : new ConnectionClosed())

/** Drops a slot with no connection, no dial and nothing queued; the writer ends. Under the lock. */
const dropIfIdle = (endpoint: Endpoint, slot: Slot): Effect.Effect<boolean> =>
  endpoint.lock.withPermits(1)(Effect.gen(function*() {
    const conns = yield* Ref.get(slot.conns)
    const dialling = yield* Ref.get(slot.dialling)
    const queued = yield* Queue.size(slot.queue)
    if (conns.length > 0 || Option.isSome(dialling) || queued > 0) return false
    yield* Ref.set(slot.removed, true)
    yield* Ref.update(endpoint.slots, (slots) =>
      Option.exists(HashMap.get(slots, slot.remoteHex), (s) => s === slot)
        ? HashMap.remove(slots, slot.remoteHex)
        : slots)
    return true
  }))

// --- sending ---

type SendOutcome = "Queued" | "Shutdown" | "Full"

/** @internal */
export const send = (endpoint: Endpoint, message: OutboundMessage): Effect.Effect<void> => {
  if (equals(message.peer, endpoint.local.nodeId)) {
    return Deferred.fail(message.reply, new DialFailed({ attempts: 0 }))
  }
  const enqueue = Effect.flatMap(Ref.get(endpoint.closing), (closing) =>
    closing
      ? Effect.succeed<SendOutcome>("Shutdown")
      : Effect.flatMap(slotFor(endpoint, message.peer), (slot) =>
        Effect.map(Queue.offer(slot.queue, message), (queued): SendOutcome => queued ? "Queued" : "Full")))
  return Effect.flatMap(endpoint.lock.withPermits(1)(enqueue), (outcome) =>
    outcome === "Queued"
      ? Effect.void
      : Deferred.fail(message.reply, outcome === "Shutdown" ? new TransportShutdown() : new QueueFull()))
}

/**
 * One fiber per slot: takes messages in order and writes them to the slot's active connection, dialling when there
 * is none. A batch whose connection was retired meanwhile goes to the next one, ahead of anything queued after it,
 * so switching connections (SPEC §11.6) keeps the order and loses nothing.
 */
const runWriter = (endpoint: Endpoint, slot: Slot): Effect.Effect<void> =>
  Effect.gen(function*() {
    while (true) {
      const first = yield* Queue.take(slot.queue).pipe(Effect.timeout(SLOT_IDLE), Effect.option)
      if (Option.isNone(first)) {
        if (yield* dropIfIdle(endpoint, slot)) return
        continue
      }
      const rest = yield* Queue.takeUpTo(slot.queue, BATCH - 1)
      const batch = [first.value, ...rest]
      yield* deliver(endpoint, slot, batch).pipe(
        Effect.onInterrupt(() =>
          Effect.flatMap(closedReason(endpoint), (reason) =>
            Effect.forEach(batch, (m) => Deferred.fail(m.reply, reason), { discard: true })))
      )
    }
  })

const deliver = (endpoint: Endpoint, slot: Slot, batch: ReadonlyArray<OutboundMessage>): Effect.Effect<void> =>
  Effect.gen(function*() {
    // each retry follows a connection switch; a bound keeps a flapping peer from spinning the writer
    for (let attempt = 0; attempt < 4; attempt++) {
      const connected = yield* Effect.either(ensureConnection(endpoint, slot))
      if (Either.isLeft(connected)) {
        const error = connected.left
        yield* Effect.forEach(batch, (m) => Deferred.fail(m.reply, error), { discard: true })
        return yield* failQueued(slot, error)
      }
      const outcome = yield* writeOn(endpoint, connected.right, batch)
      if (outcome === "Written") {
        return yield* Effect.forEach(batch, (m) => Deferred.succeed(m.reply, undefined), { discard: true })
      }
      if (outcome === "Failed") break
    }
    const reason = yield* closedReason(endpoint)
    yield* Effect.forEach(batch, (m) => Deferred.fail(m.reply, reason), { discard: true })
  })

type WriteOutcome = "Written" | "Retired" | "Failed"

const writeOn = (endpoint: Endpoint, conn: Conn, batch: ReadonlyArray<OutboundMessage>): Effect.Effect<WriteOutcome> =>
  conn.writeLock.withPermits(1)(Effect.gen(function*() {
    if (!(yield* isOpen(conn))) return "Retired" as const
    let start = 0
    while (start < batch.length) {
      let end = start
      let size = 0
      while (end < batch.length && (end === start || size + batch[end]!.bytes.length <= WRITE_CHUNK)) {
        size += batch[end]!.bytes.length
        end++
      }
      const frames = batch.slice(start, end).map((m) => m.bytes)
      const sealed = Framing.sealFrames(conn.transport.send, frames)
      if (Either.isLeft(sealed)) {
        yield* close(conn)
        return "Failed" as const
      }
      const written = yield* Effect.either(conn.socket.write(sealed.right))
      if (Either.isLeft(written)) {
        yield* close(conn)
        return "Failed" as const
      }
      yield* Metric.incrementBy(framesOut, frames.length)
      yield* Metric.incrementBy(bytesOut, size)
      yield* Effect.flatMap(Clock.currentTimeMillis, (now) => Ref.set(conn.lastActivity, now))
      start = end
    }
    return "Written" as const
  }))

// --- connections ---

/** Stops writing: after the write in progress, FIN; reading goes on to the end of stream. */
const retire = (conn: Conn): Effect.Effect<void> =>
  conn.writeLock.withPermits(1)(
    Effect.flatMap(
      Ref.modify(conn.state, (s): readonly [boolean, ConnState] => s === "Open" ? [true, "Retired"] : [false, s]),
      (was) => was ? conn.socket.end : Effect.void
    )
  )

/** Closes the socket now; the connection's reader then ends and cleans up. */
const close = (conn: Conn): Effect.Effect<void> =>
  Effect.zipRight(Ref.set(conn.state, "Closed"), conn.socket.destroy)

/** SPEC §11.6: of connections dialled by different sides keep the smaller NodeId's; of the same side's, the newer. */
const keep = (current: Conn, incoming: Conn): Conn =>
  current.dialler !== incoming.dialler ? (current.dialler < incoming.dialler ? current : incoming) : incoming

const ensureConnection = (endpoint: Endpoint, slot: Slot): Effect.Effect<Conn, DialError> =>
  Effect.gen(function*() {
    type Start =
      | { readonly _tag: "Use"; readonly conn: Conn }
      | { readonly _tag: "Await"; readonly done: Deferred.Deferred<Conn, DialError> }
      | { readonly _tag: "Dial"; readonly done: Deferred.Deferred<Conn, DialError> }
      | { readonly _tag: "Shutdown" }
    const start: Start = yield* endpoint.lock.withPermits(1)(Effect.gen(function*() {
      const active = yield* openActive(slot)
      if (Option.isSome(active)) return { _tag: "Use", conn: active.value } as const
      const dialling = yield* Ref.get(slot.dialling)
      if (Option.isSome(dialling)) return { _tag: "Await", done: dialling.value } as const
      if (yield* Ref.get(endpoint.closing)) return { _tag: "Shutdown" } as const
      const done = yield* Deferred.make<Conn, DialError>()
      yield* Ref.set(slot.dialling, Option.some(done))
      return { _tag: "Dial", done } as const
    }))
    switch (start._tag) {
      case "Use":
        return start.conn
      case "Await":
        return yield* Deferred.await(start.done)
      case "Shutdown":
        return yield* new TransportShutdown()
      case "Dial": {
        const done = start.done
        return yield* dialPeer(endpoint, slot.remote).pipe(
          Effect.onExit((exit) =>
            endpoint.lock.withPermits(1)(
              Ref.update(slot.dialling, (d) => Option.exists(d, (x) => x === done) ? Option.none() : d)
            ).pipe(
              Effect.zipRight(
                Exit.isInterrupted(exit) ? Deferred.fail(done, new TransportShutdown()) : Deferred.done(done, exit)
              )
            )
          )
        )
      }
    }
  })

/** @internal connects to a known peer, or reuses its connection */
export const dial = (endpoint: Endpoint, peer: NodeId): Effect.Effect<void, DialError> =>
  Effect.gen(function*() {
    if (equals(peer, endpoint.local.nodeId)) return yield* new DialFailed({ attempts: 0 })
    const slot = yield* endpoint.lock.withPermits(1)(
      Effect.flatMap(
        Ref.get(endpoint.closing),
        (closing) => closing ? Effect.fail(new TransportShutdown()) : slotFor(endpoint, peer)
      )
    )
    yield* ensureConnection(endpoint, slot)
  })

type AttemptFailure = SocketFailure | { readonly _tag: "HandshakeFailed"; readonly reason: string }

/** Every TCP address of the peer, most recently seen first; each retried (jittered backoff) on connection errors. */
const dialPeer = (endpoint: Endpoint, remote: NodeId): Effect.Effect<Conn, DialError> =>
  Effect.gen(function*() {
    const local = endpoint.local
    const found = yield* Effect.either(local.peers.get(remote))
    if (Either.isLeft(found)) return yield* new DialFailed({ attempts: 0 })
    const peer = found.right
    const start = yield* Clock.currentTimeMillis
    if (peer.isBanned(start)) return yield* new PeerBanned({ nodeId: remote, reason: peer.bannedReason })
    const ordered = [...peer.addresses].sort((a, b) => (b.lastSeen ?? -1) - (a.lastSeen ?? -1))
    const retry = Schedule.exponential("100 millis").pipe(
      Schedule.jittered,
      Schedule.intersect(Schedule.recurs(endpoint.settings.dialRetries))
    )
    let attempts = 0
    for (const { address } of ordered) {
      const target = Option.flatMap(PeerValidator.parseAddress(address), (parsed) =>
        parsed.scheme === "tcp" ? Option.some({ host: parsed.host, port: parsed.port }) : Option.none())
      if (Option.isNone(target)) continue
      attempts++
      const now = yield* Clock.currentTimeMillis
      yield* PeerValidator.recordDial(local.peers, remote, { _tag: "Attempt", address, now })
      const { host, port } = target.value
      const result = yield* attemptAddress(endpoint, peer.publicKey, host, port, address).pipe(
        Effect.retry({ schedule: retry, while: (e) => e._tag === "SocketFailure" }),
        Effect.either
      )
      if (Either.isRight(result)) return result.right
      yield* PeerValidator.recordDial(local.peers, remote, { _tag: "Failed", address })
      yield* DhtLog.debug("tcp dial attempt failed", { peer: toHex(remote), address, reason: result.left.reason })
    }
    const now = yield* Clock.currentTimeMillis
    yield* PeerValidator.recordDial(local.peers, remote, { _tag: "Offline", now })
    endpoint.events.unsafePublish({ _tag: "DialFailed", nodeId: remote })
    return yield* new DialFailed({ attempts })
  })

/** One address: connect (dial timeout), handshake as initiator expecting `expected` (handshake timeout), register. */
const attemptAddress = (
  endpoint: Endpoint,
  expected: PublicKey,
  host: string,
  port: number,
  address: string
): Effect.Effect<Conn, AttemptFailure> =>
  Effect.gen(function*() {
    const settings = endpoint.settings
    const socket = yield* Socket.connect(endpoint.registry, host, port).pipe(
      Effect.timeoutFail({
        duration: settings.dialTimeout,
        onTimeout: (): SocketFailure => ({ _tag: "SocketFailure", reason: "dial timeout" })
      })
    )
    const reader = Framing.byteReader(socket.read)
    const handshaked = yield* timedHandshake(endpoint, socket, reader, "initiator", expected).pipe(
      Effect.tapError(() => socket.destroy),
      Effect.onInterrupt(() => socket.destroy)
    )
    return yield* register(endpoint, handshaked, socket, reader, true, address).pipe(
      Effect.mapError((e): AttemptFailure => ({ _tag: "SocketFailure", reason: e._tag }))
    )
  })

const timedHandshake = (
  endpoint: Endpoint,
  socket: TcpSocket,
  reader: ByteReader<SocketFailure>,
  role: Noise.Role,
  expected: PublicKey | undefined
) =>
  Handshake.handshake(endpoint.local, socket, reader, role, expected).pipe(
    Effect.timeout(endpoint.settings.handshakeTimeout),
    Effect.catchTag("TimeoutException", () => Handshake.handshakeFailed("Timeout", "handshake took too long"))
  )

/** @internal an accepted socket: bounded concurrent handshakes, then the ban check and registration */
export const accept = (endpoint: Endpoint, socket: TcpSocket): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (yield* Ref.get(endpoint.closing)) return yield* socket.destroy
    const reader = Framing.byteReader(socket.read)
    const result = yield* timedHandshake(endpoint, socket, reader, "responder", undefined).pipe(
      Effect.either,
      endpoint.handshakes.withPermitsIfAvailable(1)
    )
    if (Option.isNone(result)) {
      yield* Metric.increment(DhtMetrics.tagged(DhtMetrics.handshakeFailures, "reason", "TooManyHandshakes"))
      return yield* socket.destroy
    }
    if (Either.isLeft(result.value)) return yield* socket.destroy
    const handshaked = result.value.right
    if (yield* PeerManager.isBannedNow(endpoint.local.peers, handshaked.remote.nodeId)) {
      yield* DhtLog.debug("tcp connection from a banned peer refused", { peer: handshaked.remote.hex })
      return yield* socket.destroy
    }
    yield* Effect.ignore(register(endpoint, handshaked, socket, reader, false, undefined))
  }).pipe(Effect.onInterrupt(() => socket.destroy))

/**
 * Records the peer, adds the connection to its slot under the duplicate rule, starts its reader and announces the
 * peer when it is its first connection. Returns the connection the slot now writes to.
 */
const register = (
  endpoint: Endpoint,
  handshaked: Handshaked,
  socket: TcpSocket,
  reader: ByteReader<SocketFailure>,
  outbound: boolean,
  dialledAddress: string | undefined
): Effect.Effect<Conn, TransportShutdown> =>
  Effect.gen(function*() {
    const remote = handshaked.remote
    const peer = yield* Handshake.recordConnected(endpoint.local, remote, dialledAddress)
    const now = yield* Clock.currentTimeMillis
    const conn: Conn = {
      id: yield* Ref.getAndUpdate(endpoint.nextId, (n) => n + 1),
      remote,
      socket,
      reader,
      transport: handshaked.transport,
      writeLock: yield* Effect.makeSemaphore(1),
      dialler: outbound ? endpoint.local.hex : remote.hex,
      outbound,
      state: yield* Ref.make<ConnState>("Open"),
      lastActivity: yield* Ref.make(now)
    }
    const decision = yield* endpoint.lock.withPermits(1)(Effect.gen(function*() {
      if (yield* Ref.get(endpoint.closing)) return Option.none()
      const slot = yield* slotFor(endpoint, remote.nodeId)
      const conns = yield* Ref.get(slot.conns)
      const active = yield* openActive(slot)
      const kept = Option.isNone(active) ? conn : keep(active.value, conn)
      const loser = Option.isNone(active) ? undefined : kept === conn ? active.value : conn
      yield* Ref.set(slot.active, Option.some(kept))
      yield* Ref.set(slot.conns, [...conns, conn])
      return Option.some({ slot, kept, loser, first: conns.length === 0 })
    }))
    if (Option.isNone(decision)) {
      yield* socket.destroy
      return yield* new TransportShutdown()
    }
    const { first, kept, loser, slot } = decision.value
    yield* Effect.sync(() => endpoint.spawn(supervised(runConnection(endpoint, slot, conn))))
    if (loser !== undefined) {
      yield* DhtLog.debug("duplicate tcp connection retired", { peer: remote.hex, kept: kept.id, retired: loser.id })
      yield* retire(loser)
    }
    if (first) {
      yield* Metric.incrementBy(DhtMetrics.connectedPeers, 1)
      endpoint.events.unsafePublish({ _tag: "PeerConnected", peer, outbound })
    }
    return kept
  })

/**
 * A connection's life after the handshake: the reader, a forwarder moving its frames to the inbox (suspending while
 * it is full) and the idle watchdog. At the reader's end the connection leaves its slot, and the frames it already
 * received are still delivered.
 */
const runConnection = (endpoint: Endpoint, slot: Slot, conn: Conn): Effect.Effect<void> =>
  Effect.scoped(Effect.gen(function*() {
    const inbound = yield* LightQueue.dropping<InboundMessage>(endpoint.settings.inboundQueue)
    const readerDone = yield* Deferred.make<void>()
    const forwarder = yield* Effect.forkScoped(forward(endpoint, inbound, readerDone))
    yield* Effect.forkScoped(watchIdle(endpoint, conn))
    const end = yield* readFrames(endpoint, conn, inbound)
    if (end === "Eof") yield* retire(conn)
    else yield* close(conn)
    yield* Deferred.succeed(readerDone, undefined)
    yield* leave(endpoint, slot, conn)
    yield* forwarder.await
  }).pipe(Effect.annotateLogs({ peer: conn.remote.hex, connection: conn.id })))

const forward = (
  endpoint: Endpoint,
  inbound: Queue.Queue<InboundMessage>,
  readerDone: Deferred.Deferred<void>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    while (true) {
      const next = yield* Queue.poll(inbound)
      if (Option.isSome(next)) {
        yield* Queue.offer(endpoint.inbox, next.value)
        continue
      }
      if (yield* Deferred.isDone(readerDone)) return
      const taken = yield* Effect.raceFirst(
        Effect.map(Queue.take(inbound), Option.some),
        Effect.as(Deferred.await(readerDone), Option.none<InboundMessage>())
      )
      if (Option.isSome(taken)) yield* Queue.offer(endpoint.inbox, taken.value)
    }
  })

const watchIdle = (endpoint: Endpoint, conn: Conn): Effect.Effect<void> =>
  Effect.gen(function*() {
    const idleMs = Duration.toMillis(endpoint.settings.idleTimeout)
    while (true) {
      const now = yield* Clock.currentTimeMillis
      const quiet = now - (yield* Ref.get(conn.lastActivity))
      if (quiet >= idleMs) {
        yield* Effect.logDebug("idle tcp connection closed")
        return yield* close(conn)
      }
      yield* Effect.sleep(Duration.millis(idleMs - quiet))
    }
  })

type ReadEnd = "Eof" | "Error"

/** Records → frames: the frame limit, the flood rule (SPEC §11.5, §11.6), then the connection's queue. */
const readFrames = (
  endpoint: Endpoint,
  conn: Conn,
  inbound: Queue.Queue<InboundMessage>
): Effect.Effect<ReadEnd> =>
  Effect.gen(function*() {
    const config = endpoint.local.config
    const parser = Framing.frameParser(endpoint.settings.maxFrameSize)
    const flood = FloodWindow.make()
    const bucketMs = FloodWindow.bucketMillis(Duration.toMillis(config.floodBanTimespan))
    while (true) {
      const read = yield* Effect.either(conn.reader.readRecord)
      if (Either.isLeft(read)) {
        const error = read.left
        yield* DhtLog.debug("tcp connection read failed", {
          reason: error._tag === "Eof" ? "end of stream inside a record" : error.reason
        })
        return "Error"
      }
      if (Option.isNone(read.right)) return "Eof"
      const plaintext = Framing.openRecord(conn.transport.receive, read.right.value)
      if (Either.isLeft(plaintext)) {
        yield* Metric.increment(DhtMetrics.tagged(DhtMetrics.inboundRejected, "reason", plaintext.left._tag))
        yield* DhtLog.debug("tcp record rejected", { reason: plaintext.left.reason })
        return "Error"
      }
      const frames = parser.push(plaintext.right)
      if (Either.isLeft(frames)) {
        const limit = endpoint.settings.maxFrameSize
        yield* violation(endpoint, conn, "FrameTooLarge", { size: frames.left.size, limit })
        return "Error"
      }
      if (frames.right.length === 0) continue
      const now = yield* Clock.currentTimeMillis
      yield* Ref.set(conn.lastActivity, now)
      for (const bytes of frames.right) {
        yield* Metric.increment(framesIn)
        yield* Metric.incrementBy(bytesIn, bytes.length)
        const totals = FloodWindow.record(flood, now, bytes.length, bucketMs)
        if (totals.frames > config.floodBanMaxMsgCount || totals.bytes > config.floodBanMaxBytes) {
          yield* violation(endpoint, conn, "Flooding", totals)
          return "Error"
        }
        const tag = yield* Random.nextInt
        const message: InboundMessage = { sourcePeer: conn.remote.nodeId, tag: BigInt(tag), bytes, receivedAt: now }
        if (!endpoint.screens.passes(message, conn.remote.publicKey)) continue
        const queued = yield* Queue.offer(inbound, message)
        if (!queued) yield* Metric.increment(shedConnection)
      }
    }
  })

/** Bans the sender short and closes the connection (SPEC §14.1: FrameTooLarge, Flooding). */
const violation = (
  endpoint: Endpoint,
  conn: Conn,
  reason: "FrameTooLarge" | "Flooding",
  detail: Record<string, number>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const local = endpoint.local
    yield* Effect.logWarning("peer banned by the tcp transport").pipe(Effect.annotateLogs({ reason, ...detail }))
    yield* Metric.increment(DhtMetrics.tagged(DhtMetrics.inboundRejected, "reason", reason))
    yield* DhtMetrics.countBan("Low", reason)
    yield* close(conn)
    yield* local.peers.ban(conn.remote.nodeId, Duration.toMillis(local.config.banDurationShort), reason).pipe(
      Effect.catchAll((e) => Effect.logWarning("ban failed", e))
    )
  })

/** The connection leaves its slot; the slot writes to another open one if any; the last one out disconnects. */
const leave = (endpoint: Endpoint, slot: Slot, conn: Conn): Effect.Effect<void> =>
  Effect.gen(function*() {
    const last = yield* endpoint.lock.withPermits(1)(Effect.gen(function*() {
      const conns = (yield* Ref.get(slot.conns)).filter((c) => c !== conn)
      yield* Ref.set(slot.conns, conns)
      const active = yield* Ref.get(slot.active)
      if (Option.exists(active, (c) => c === conn)) {
        let next = Option.none<Conn>()
        for (const c of conns) if (Option.isNone(next) && (yield* isOpen(c))) next = Option.some(c)
        yield* Ref.set(slot.active, next)
      }
      return conns.length === 0 && !(yield* Ref.get(endpoint.closing))
    }))
    if (last) {
      yield* Metric.incrementBy(DhtMetrics.connectedPeers, -1)
      endpoint.events.unsafePublish({ _tag: "PeerDisconnected", nodeId: slot.remote })
    }
  })

// --- queries ---

const activeSlots = (endpoint: Endpoint): Effect.Effect<ReadonlyArray<Slot>> =>
  Effect.flatMap(Ref.get(endpoint.slots), (slots) =>
    Effect.filter(Array.from(HashMap.values(slots)), (slot) => Effect.map(openActive(slot), Option.isSome)))

/** @internal */
export const connectedPeers = (endpoint: Endpoint): Effect.Effect<ReadonlyArray<NodeId>> =>
  Effect.map(activeSlots(endpoint), (slots) => slots.map((s) => s.remote))

/** @internal */
export const isConnected = (endpoint: Endpoint, peer: NodeId): Effect.Effect<boolean> =>
  Effect.flatMap(Ref.get(endpoint.slots), (slots) =>
    Option.match(HashMap.get(slots, toHex(peer)), {
      onNone: () => Effect.succeed(false),
      onSome: (slot) => Effect.map(openActive(slot), Option.isSome)
    }))

/** @internal open connections, retired ones included (each duplicate counts until its end of stream) */
export const connectionCount = (endpoint: Endpoint): Effect.Effect<number> =>
  Effect.flatMap(Ref.get(endpoint.slots), (slots) =>
    Effect.reduce(
      Array.from(HashMap.values(slots)),
      0,
      (n, slot) => Effect.map(Ref.get(slot.conns), (c) => n + c.length)
    ))

/** @internal closes every connection to `peer` */
export const disconnect = (endpoint: Endpoint, peer: NodeId): Effect.Effect<void> =>
  Effect.flatMap(Ref.get(endpoint.slots), (slots) =>
    Option.match(HashMap.get(slots, toHex(peer)), {
      onNone: () => Effect.void,
      onSome: (slot) => Effect.flatMap(Ref.get(slot.conns), Effect.forEach(close, { discard: true }))
    }))

/**
 * @internal
 * The scope closing: no new sends, dials or connections; every socket destroyed; queued messages and dials in
 * progress failed with `TransportShutdown`. The fibers are interrupted by the scope afterwards.
 */
export const shutdown = (endpoint: Endpoint): Effect.Effect<void> =>
  Effect.gen(function*() {
    yield* Ref.set(endpoint.closing, true)
    const slots = Array.from(HashMap.values(yield* Ref.get(endpoint.slots)))
    let connected = 0
    for (const slot of slots) {
      const conns = yield* Ref.get(slot.conns)
      if (conns.length > 0) connected++
      for (const conn of conns) yield* Ref.set(conn.state, "Closed")
      yield* Effect.flatMap(Ref.get(slot.dialling), (d) =>
        Option.isSome(d) ? Deferred.fail(d.value, new TransportShutdown()) : Effect.void)
      yield* failQueued(slot, new TransportShutdown())
    }
    yield* Socket.destroyAll(endpoint.registry)
    if (connected > 0) yield* Metric.incrementBy(DhtMetrics.connectedPeers, -connected)
    yield* endpoint.events.shutdown
    yield* Queue.shutdown(endpoint.inbox)
  })
