/**
 * The DHT actor (SPEC §13): one fiber that owns the DHT's housekeeping and answers the commands of §13's table from a
 * bounded queue of `actorQueueCapacity` (100). Quick commands (dedup cache, metadata, peer selection, bans, trims)
 * run inline, in arrival order, so a ban is in force for every command queued after it. Long ones (dial or
 * discover, join) are forked into a `FiberSet` owned by the actor, so the loop never waits on the network.
 *
 * The loop's own state is the table of in-flight dial-or-discover jobs: concurrent requests for one key share one
 * job and its outcome instead of dialling and discovering the same peer many times over.
 *
 * Shutdown is the scope closing: the loop stops, forked jobs are interrupted (their callers fail `DhtShutdown`),
 * every queued command's caller fails `DhtShutdown`, `OfflineTimestamp` is written and the queue is shut. A call
 * made after that fails `DhtShutdown`: no request is left waiting.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import { constTrue } from "effect/Function"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as BroadcastStrategy from "./BroadcastStrategy.js"
import { DedupCache, type DedupInsertResult } from "./DedupCache.js"
import { DhtConfig, millis } from "./DhtConfig.js"
import {
  CannotDiscoverThisNode,
  type DialError,
  DialFailed,
  type DiscoveryError,
  DhtShutdown,
  type PeerSelectionFailed,
  type SendFailure,
  type StoreError
} from "./DhtError.js"
import { JoinSent, PeerBanned } from "./DhtEvent.js"
import { DhtEvents } from "./DhtEvents.js"
import * as DhtLog from "./DhtLog.js"
import {
  decodeMillis,
  DhtMetadata,
  type DhtMetadataService,
  encodeMillis,
  type MetadataKey
} from "./DhtMetadata.js"
import * as DhtMetrics from "./DhtMetrics.js"
import { Discovery } from "./Discovery.js"
import { hexKey } from "./internal/hexKey.js"
import * as LightDeferred from "./LightDeferred.js"
import * as LightQueue from "./LightQueue.js"
import { equals, fromPublicKey, type NodeId, type PublicKey, toHex } from "./NodeId.js"
import { NodeIdentity } from "./NodeIdentity.js"
import { PeerManager, type Severity } from "./PeerManager.js"
import { Transport } from "./Transport.js"

/**
 * Why `dialDiscoverPeer` failed: the dial (`DialFailed`, `PeerBanned`, `TransportShutdown`) or the discovery that
 * preceded it (`CannotDiscoverThisNode`, `DiscoveryTimeout`, `DiscoveryFailed`).
 *
 * @since 0.1.0
 * @category errors
 */
export type DialDiscoverError = DialError | DiscoveryError

/**
 * What the node plugs in to send a join (SPEC §10.1): build the `JoinMessage` and queue it with
 * `ClosestNodes{ownNodeId}`. `sendJoin` completes once the join is queued; the actor then publishes `JoinSent` and
 * counts `joinsSent`, so the sender does neither. Without this service a `SendJoin` is logged and ignored.
 *
 * @since 0.1.0
 * @category tags
 */
export class JoinSender extends Context.Tag("@comms-dht/core/JoinSender")<JoinSender, {
  readonly sendJoin: Effect.Effect<void, SendFailure>
}>() {}

/**
 * The actor's client API. Every method fails `DhtShutdown` once the actor has shut down, including a call that was
 * queued or in progress when it did. A full queue suspends the caller (SPEC §13.1).
 *
 * @since 0.1.0
 * @category models
 */
export interface DhtActorService {
  /** `MsgHashCacheInsert` (SPEC §8.2): records one copy of a message; `keepUntil` is unix ms. */
  readonly insertDedup: (
    hash: Uint8Array,
    from: PublicKey,
    keepUntil?: number
  ) => Effect.Effect<DedupInsertResult, DhtShutdown>
  /** `GetMsgHashHitCount`: the copies recorded for `hash`, 0 when absent. */
  readonly hitCount: (hash: Uint8Array) => Effect.Effect<number, DhtShutdown>
  /**
   * `SelectPeers` (SPEC §6.2) over a snapshot of the peer table and the live connections. A peer table that cannot
   * be read answers `[]` (logged); only "every selected peer has excluded addresses" fails. `isOrigin` (default
   * true) is false for a forward, which changes `Propagate`'s fallback.
   */
  readonly selectPeers: (
    strategy: BroadcastStrategy.BroadcastStrategy,
    options?: { readonly isOrigin?: boolean }
  ) => Effect.Effect<ReadonlyArray<NodeId>, PeerSelectionFailed | DhtShutdown>
  readonly getMetadata: (key: MetadataKey) => Effect.Effect<Option.Option<Uint8Array>, StoreError | DhtShutdown>
  readonly setMetadata: (key: MetadataKey, value: Uint8Array) => Effect.Effect<void, StoreError | DhtShutdown>
  /**
   * `DialDiscoverPeer` (SPEC §10.4): dials a known peer; an unknown one, or one whose dial fails, is discovered
   * first (when a `Discovery` service is present), then dialled. Concurrent calls for one key share one attempt.
   */
  readonly dialDiscoverPeer: (publicKey: PublicKey) => Effect.Effect<void, DialDiscoverError | DhtShutdown>
  /**
   * `BanPeer` (SPEC §11.4): queues the ban and returns; commands queued afterwards see it. `High` bans for
   * `banDuration`, `Low` and `Medium` for `banDurationShort`; an existing longer ban is kept. Banning an unknown key
   * is logged and ignored.
   */
  readonly banPeer: (publicKey: PublicKey, severity: Severity, reason: string) => Effect.Effect<void, DhtShutdown>
  /** `SendJoin` (SPEC §10.1): queues a join through the `JoinSender`, if any, and returns. */
  readonly sendJoin: Effect.Effect<void, DhtShutdown>
  /** `TrimDedupCache`: what the actor sends itself every `dedupCacheTrimInterval`; queues a trim and returns. */
  readonly trimDedupCache: Effect.Effect<void, DhtShutdown>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class DhtActor extends Context.Tag("@comms-dht/core/DhtActor")<DhtActor, DhtActorService>() {}

// --- commands ---

type DialJob = Deferred.Deferred<void, DialDiscoverError | DhtShutdown>

type Command =
  | { readonly _tag: "SendJoin" }
  | {
    readonly _tag: "MsgHashCacheInsert"
    readonly hash: Uint8Array
    readonly from: PublicKey
    readonly keepUntil: number | undefined
    readonly reply: Deferred.Deferred<DedupInsertResult, DhtShutdown>
  }
  | {
    readonly _tag: "GetMsgHashHitCount"
    readonly hash: Uint8Array
    readonly reply: Deferred.Deferred<number, DhtShutdown>
  }
  | {
    readonly _tag: "SelectPeers"
    readonly strategy: BroadcastStrategy.BroadcastStrategy
    readonly isOrigin: boolean
    readonly reply: Deferred.Deferred<ReadonlyArray<NodeId>, PeerSelectionFailed | DhtShutdown>
  }
  | {
    readonly _tag: "GetMetadata"
    readonly key: MetadataKey
    readonly reply: Deferred.Deferred<Option.Option<Uint8Array>, StoreError | DhtShutdown>
  }
  | {
    readonly _tag: "SetMetadata"
    readonly key: MetadataKey
    readonly value: Uint8Array
    readonly reply: Deferred.Deferred<void, StoreError | DhtShutdown>
  }
  | { readonly _tag: "DialDiscoverPeer"; readonly publicKey: PublicKey; readonly reply: DialJob }
  | {
    readonly _tag: "BanPeer"
    readonly publicKey: PublicKey
    readonly severity: Severity
    readonly reason: string
  }
  | { readonly _tag: "TrimDedupCache" }
  // sent by a finished dial job, so the table forgets it
  | { readonly _tag: "DialDiscoverDone"; readonly key: string; readonly job: DialJob }

interface State {
  /** in-flight dial-or-discover jobs by public key (hex) */
  readonly dials: HashMap.HashMap<string, DialJob>
}

const shutdownCause: Cause.Cause<DhtShutdown> = Cause.fail(new DhtShutdown())

// Completes a command's reply, if it has one, with `cause`; a reply already given is left as it is.
const release = (command: Command, cause: Cause.Cause<DhtShutdown>): Effect.Effect<boolean> => {
  switch (command._tag) {
    case "MsgHashCacheInsert":
      return Deferred.failCause(command.reply, cause)
    case "GetMsgHashHitCount":
      return Deferred.failCause(command.reply, cause)
    case "SelectPeers":
      return Deferred.failCause(command.reply, cause)
    case "GetMetadata":
      return Deferred.failCause(command.reply, cause)
    case "SetMetadata":
      return Deferred.failCause(command.reply, cause)
    case "DialDiscoverPeer":
      return Deferred.failCause(command.reply, cause)
    case "SendJoin":
    case "BanPeer":
    case "TrimDedupCache":
    case "DialDiscoverDone":
      return Effect.succeed(false)
  }
}

const answer = <A, E>(reply: Deferred.Deferred<A, E | DhtShutdown>, effect: Effect.Effect<A, E>) =>
  Effect.flatMap(Effect.exit(effect), (exit) => Deferred.done(reply, exit))

// --- the actor ---

/**
 * Starts the actor in the current scope and returns its client. Reads `OfflineTimestamp` at start (logged as
 * "offline since") and writes it when the scope closes. `Discovery` and `JoinSender` are used when present.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<
  DhtActorService,
  never,
  Scope.Scope | DedupCache | DhtMetadata | PeerManager | Transport | NodeIdentity | DhtEvents
> = Effect.gen(function*() {
  const config = yield* DhtConfig
  const dedup = yield* DedupCache
  const metadata = yield* DhtMetadata
  const peers = yield* PeerManager
  const transport = yield* Transport
  const identity = yield* NodeIdentity
  const events = yield* DhtEvents
  const discovery = yield* Effect.serviceOption(Discovery)
  const joinSender = yield* Effect.serviceOption(JoinSender)

  yield* logOfflineSince(metadata)

  const queue = yield* LightQueue.bounded<Command>(config.actorQueueCapacity)
  // set when shutdown begins: a caller that queued a command after the drain learns from it that nobody will answer
  const stopping = yield* Deferred.make<void>()

  // Registered before the FiberSet and the loop, so it runs after both have stopped (finalisers run in reverse).
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      yield* Deferred.succeed(stopping, undefined)
      const queued = yield* Queue.takeAll(queue)
      let dropped = 0
      for (const command of queued) {
        if (command._tag === "BanPeer" || command._tag === "SendJoin" || command._tag === "TrimDedupCache") dropped++
        else yield* release(command, shutdownCause)
      }
      if (dropped > 0) {
        yield* Effect.logInfo("DHT actor dropped queued commands without a reply at shutdown").pipe(
          Effect.annotateLogs({ dropped })
        )
      }
      const now = yield* Clock.currentTimeMillis
      yield* metadata.set("OfflineTimestamp", encodeMillis(now)).pipe(
        Effect.catchTag("StoreError", (error) => Effect.logWarning("could not record the offline timestamp", error))
      )
      yield* Queue.shutdown(queue)
      yield* Metric.set(DhtMetrics.actorQueueDepth, 0)
    })
  )

  const jobs = yield* FiberSet.make<void, never>()

  // --- quick commands ---

  const selectPeers = (strategy: BroadcastStrategy.BroadcastStrategy, isOrigin: boolean) =>
    Effect.gen(function*() {
      const nowMs = yield* Clock.currentTimeMillis
      const connected = yield* transport.connectedPeers
      // only the records the strategy can choose from: most strategies look at the connections alone
      const wanted = BroadcastStrategy.peersToRead(strategy, connected)
      const known = yield* (wanted === "All" ? peers.all : peers.getMany(wanted)).pipe(
        Effect.catchTag("StoreError", (error) =>
          Effect.as(Effect.logWarning("peer selection read no peers", error), []))
      )
      const ctx = BroadcastStrategy.makeContext(config, {
        self: identity.nodeId,
        peers: known,
        connected: BroadcastStrategy.connectedSet(connected),
        nowMs,
        isOrigin
      })
      return yield* BroadcastStrategy.select(strategy, ctx)
    })

  const ban = (publicKey: PublicKey, severity: Severity, reason: string) =>
    Effect.gen(function*() {
      if (equals(publicKey, identity.publicKey)) {
        return yield* Effect.logWarning("refused to ban this node's own key")
      }
      const nodeId = fromPublicKey(publicKey)
      const durationMs = millis(severity === "High" ? config.banDuration : config.banDurationShort)
      const now = yield* Clock.currentTimeMillis
      // `ban` never shortens a longer ban: the record tells how long the ban now lasts
      const peer = yield* peers.ban(nodeId, durationMs, reason)
      const until = peer.bannedUntil ?? now + durationMs
      yield* transport.disconnect(nodeId)
      yield* events.publish(PeerBanned({ publicKey, until, severity, reason }))
      yield* DhtMetrics.countBan(severity, reason)
      yield* Effect.logWarning("peer banned").pipe(
        Effect.annotateLogs({ peer: toHex(publicKey), severity, reason, until })
      )
    }).pipe(
      Effect.catchTags({
        PeerNotFound: () => DhtLog.debug("ban of an unknown peer ignored", {
          peer: toHex(publicKey),
          severity,
          reason
        }),
        StoreError: (error) => Effect.logWarning("ban not recorded", error)
      })
    )

  const trim = dedup.trim.pipe(
    Effect.flatMap((removed) => DhtLog.debug("dedup cache trimmed", { removed })),
    Effect.catchTag("StoreError", (error) => Effect.logWarning("dedup cache trim failed", error))
  )

  // --- long commands, forked ---

  const dialOrDiscover = (publicKey: PublicKey): Effect.Effect<void, DialDiscoverError> =>
    Effect.gen(function*() {
      if (equals(publicKey, identity.publicKey)) return yield* new CannotDiscoverThisNode()
      const known = yield* peers.getByPublicKey(publicKey).pipe(
        Effect.asSome,
        Effect.catchTags({
          PeerNotFound: () => Effect.succeedNone,
          StoreError: (error) => Effect.as(Effect.logWarning("peer lookup failed, discovering", error), Option.none())
        })
      )
      let dialError: Option.Option<DialError> = Option.none()
      if (Option.isSome(known)) {
        const dialed = yield* Effect.either(transport.dial(known.value.nodeId))
        if (Either.isRight(dialed)) return
        // a ban or a closed transport will not change by discovering the peer again
        if (dialed.left._tag !== "DialFailed") return yield* dialed.left
        dialError = Option.some(dialed.left)
      }
      if (Option.isNone(discovery)) {
        return yield* Option.getOrElse(dialError, () => new DialFailed({ attempts: 0 }))
      }
      const found = yield* discovery.value.discover(publicKey)
      yield* transport.dial(found.nodeId)
    })

  // Forked from an uninterruptible region, the job starts uninterruptible: an interruption arriving before its
  // first step still finds the handler that fails the shared reply with `DhtShutdown`.
  const startDial = (state: State, publicKey: PublicKey, reply: DialJob) =>
    Effect.uninterruptible(Effect.gen(function*() {
      const key = hexKey(publicKey)
      const running = HashMap.get(state.dials, key)
      if (Option.isSome(running) && !(yield* Deferred.isDone(running.value))) {
        yield* Deferred.completeWith(reply, Deferred.await(running.value))
        return state
      }
      const job: DialJob = yield* Deferred.make<void, DialDiscoverError | DhtShutdown>()
      yield* FiberSet.run(
        jobs,
        Effect.interruptible(dialOrDiscover(publicKey)).pipe(
          Effect.exit,
          Effect.flatMap((exit) =>
            Exit.isInterrupted(exit) ? Deferred.failCause(job, shutdownCause) : Deferred.done(job, exit)
          ),
          Effect.zipRight(Effect.interruptible(Queue.offer(queue, { _tag: "DialDiscoverDone", key, job }))),
          Effect.asVoid
        )
      )
      yield* Deferred.completeWith(reply, Deferred.await(job))
      return { ...state, dials: HashMap.set(state.dials, key, job) }
    }))

  const join = Option.match(joinSender, {
    onNone: () => Effect.logWarning("join requested but no JoinSender is installed"),
    onSome: (sender) =>
      sender.sendJoin.pipe(
        Effect.zipRight(events.publish(JoinSent())),
        Effect.zipRight(Metric.increment(DhtMetrics.joinsSent)),
        Effect.catchAll((error) => Effect.logWarning("join not sent", error))
      )
  })

  // --- the loop ---

  const step = (state: State, command: Command): Effect.Effect<State> => {
    switch (command._tag) {
      case "MsgHashCacheInsert":
        return Effect.as(answer(command.reply, dedup.insert(command.hash, command.from, command.keepUntil)), state)
      case "GetMsgHashHitCount":
        return Effect.as(answer(command.reply, dedup.hitCount(command.hash)), state)
      case "SelectPeers":
        return Effect.as(answer(command.reply, selectPeers(command.strategy, command.isOrigin)), state)
      case "GetMetadata":
        return Effect.as(answer(command.reply, metadata.get(command.key)), state)
      case "SetMetadata":
        return Effect.as(answer(command.reply, metadata.set(command.key, command.value)), state)
      case "BanPeer":
        return Effect.as(ban(command.publicKey, command.severity, command.reason), state)
      case "TrimDedupCache":
        return Effect.as(trim, state)
      case "SendJoin":
        return Effect.as(FiberSet.run(jobs, join), state)
      case "DialDiscoverPeer":
        return startDial(state, command.publicKey, command.reply)
      case "DialDiscoverDone":
        return Effect.succeed(
          Option.exists(HashMap.get(state.dials, command.key), (job) => job === command.job)
            ? { ...state, dials: HashMap.remove(state.dials, command.key) }
            : state
        )
    }
  }

  const handle = (state: State, command: Command): Effect.Effect<State> =>
    step(state, command).pipe(
      // interrupted mid-command at shutdown: its caller still gets an answer
      Effect.onInterrupt(() => release(command, shutdownCause)),
      // a defect answers its own caller and never ends the loop
      Effect.catchAllCause((cause) =>
        Effect.logError("DHT actor command failed", cause).pipe(
          Effect.annotateLogs({ command: command._tag }),
          Effect.zipRight(release(command, cause)),
          Effect.as(state)
        )
      )
    )

  const take = Effect.tap(
    Queue.take(queue),
    () => Effect.flatMap(Queue.size(queue), (depth) => Metric.set(DhtMetrics.actorQueueDepth, Math.max(0, depth)))
  )

  yield* Queue.offer(queue, { _tag: "TrimDedupCache" }).pipe(
    Effect.delay(config.dedupCacheTrimInterval),
    Effect.forever,
    Effect.forkScoped
  )

  const initial: State = { dials: HashMap.empty() }
  yield* Effect.iterate(initial, {
    while: constTrue,
    body: (state) => Effect.flatMap(take, (command) => handle(state, command))
  }).pipe(Effect.annotateLogs({ service: "DhtActor" }), Effect.forkScoped)

  // --- the client ---

  const shutdown = new DhtShutdown()

  // Offers a command; true when shutdown had begun by the time it was queued (then nobody may ever take it).
  const submit = (command: Command): Effect.Effect<boolean, DhtShutdown> =>
    Queue.offer(queue, command).pipe(
      // a shut queue answers an offer by interrupting it
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause) ? Effect.fail(shutdown) : Effect.failCause(cause)
      ),
      Effect.zipRight(Deferred.isDone(stopping))
    )

  const ask = <A, E>(build: (reply: Deferred.Deferred<A, E | DhtShutdown>) => Command) =>
    Effect.flatMap(LightDeferred.make<A, E | DhtShutdown>(), (reply) =>
      submit(build(reply)).pipe(
        Effect.flatMap((late) => late ? Deferred.fail(reply, shutdown) : Effect.void),
        Effect.zipRight(LightDeferred.awaitOnce(reply))
      ))

  const tell = (command: Command): Effect.Effect<void, DhtShutdown> =>
    Effect.flatMap(submit(command), (late) => late ? Effect.fail(shutdown) : Effect.void)

  return DhtActor.of({
    insertDedup: (hash, from, keepUntil) =>
      ask<DedupInsertResult, never>((reply) => ({ _tag: "MsgHashCacheInsert", hash, from, keepUntil, reply })),
    hitCount: (hash) => ask<number, never>((reply) => ({ _tag: "GetMsgHashHitCount", hash, reply })),
    selectPeers: (strategy, options) =>
      ask<ReadonlyArray<NodeId>, PeerSelectionFailed>((reply) => ({
        _tag: "SelectPeers",
        strategy,
        isOrigin: options?.isOrigin ?? true,
        reply
      })),
    getMetadata: (key) => ask<Option.Option<Uint8Array>, StoreError>((reply) => ({ _tag: "GetMetadata", key, reply })),
    setMetadata: (key, value) => ask<void, StoreError>((reply) => ({ _tag: "SetMetadata", key, value, reply })),
    dialDiscoverPeer: (publicKey) =>
      ask<void, DialDiscoverError>((reply) => ({ _tag: "DialDiscoverPeer", publicKey, reply })),
    banPeer: (publicKey, severity, reason) => tell({ _tag: "BanPeer", publicKey, severity, reason }),
    sendJoin: tell({ _tag: "SendJoin" }),
    trimDedupCache: tell({ _tag: "TrimDedupCache" })
  })
})

const logOfflineSince = (metadata: DhtMetadataService) =>
  metadata.get("OfflineTimestamp").pipe(
    Effect.flatMap((stored) =>
      Option.match(Option.flatMap(stored, decodeMillis), {
        onNone: () => Effect.logDebug("no offline timestamp recorded"),
        onSome: (offlineSince) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.logInfo("offline since").pipe(
              Effect.annotateLogs({ offlineSince, offlineForMs: Math.max(0, now - offlineSince) })
            ))
      })
    ),
    Effect.catchTag("StoreError", (error) => Effect.logWarning("could not read the offline timestamp", error))
  )

/**
 * The actor as a Layer: started when built, shut down (callers released, `OfflineTimestamp` written) when its scope
 * closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<
  DhtActor,
  never,
  DedupCache | DhtMetadata | PeerManager | Transport | NodeIdentity | DhtEvents
> = Layer.scoped(DhtActor, make)
