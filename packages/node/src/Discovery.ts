/**
 * The live `Discovery` service (SPEC §10.2, and §10.3 step 9 at the requester): finds a peer by public key through
 * the network. A request travels encrypted for the key, propagated greedily towards it; the target answers directly
 * with its signed claim. The inbound DHT handler runs the checks of §10.3 and hands a valid response over through
 * `handleResponse`.
 *
 * One fiber takes requests from a bounded queue of `discoveryQueueCapacity` (callers suspend while it is full) and
 * sends them one at a time, so a slow outbound pipeline slows discovery instead of piling up requests. The in-flight
 * table maps each nonce to its key, start time and shared result: concurrent discoveries of one key share one
 * request, and a request whose callers have all gone is dropped. Each request ends once, in one of four ways, and
 * only that end publishes its event and counts its metric: a response (`DiscoveryCompleted`), the timeout of
 * `discoveryRequestTimeout` on the Effect clock (`DiscoveryTimeout`), a failed send (`DiscoveryFailed{SendFailed}`),
 * or the scope closing (`DiscoveryFailed{Shutdown}`).
 *
 * The service sends through the `OutboundRequester`, and the outbound pipeline discovers unknown destinations
 * through this service: a composition root builds the pipeline with a `discover` option that reaches this service
 * once built (a `Deferred` ties the knot; see `OutboundPipeline.Options`).
 *
 * @since 0.1.0
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import type * as Crypto from "@comms-dht/core/Crypto"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as DhtLog from "@comms-dht/core/DhtLog"
import * as DhtMessages from "@comms-dht/core/DhtMessages"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as CoreDiscovery from "@comms-dht/core/Discovery"
import * as Envelope from "@comms-dht/core/Envelope"
import * as LightQueue from "@comms-dht/core/LightQueue"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import type * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as PeerValidator from "@comms-dht/core/PeerValidator"
import * as Transport from "@comms-dht/core/Transport"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
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
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"

/**
 * What the service reads from the Layer graph: the requester it sends through, this node's identity and listen
 * addresses (for its signed claim), the peer table and the event hub.
 *
 * @since 0.1.0
 * @category models
 */
export type Requirements =
  | OutboundRequester.OutboundRequester
  | NodeIdentity.NodeIdentity
  | Transport.Transport
  | Crypto.Crypto
  | PeerManager.PeerManager
  | DhtEvents.DhtEvents

// --- the in-flight table ---

interface Request {
  readonly nonce: bigint
  readonly publicKey: NodeId.PublicKey
  readonly key: string
  /** unix ms of the first caller */
  readonly startedAt: number
  readonly result: Deferred.Deferred<Peer.Peer, DhtError.DiscoveryError>
}

interface Entry {
  readonly request: Request
  /** callers still waiting; at 0 the request is dropped */
  readonly waiters: number
}

interface Table {
  /** set when the scope closes: no request is registered after that */
  readonly closed: boolean
  readonly byNonce: HashMap.HashMap<bigint, Entry>
  readonly byKey: HashMap.HashMap<string, bigint>
}

type Registration =
  | { readonly _tag: "Created"; readonly request: Request }
  | { readonly _tag: "Joined"; readonly request: Request }
  | { readonly _tag: "NonceTaken" }
  | { readonly _tag: "Closed" }

const register = (table: Table, candidate: Request): readonly [Registration, Table] => {
  if (table.closed) return [{ _tag: "Closed" }, table]
  const running = Option.flatMap(HashMap.get(table.byKey, candidate.key), (nonce) => HashMap.get(table.byNonce, nonce))
  if (Option.isSome(running)) {
    const entry = running.value
    return [
      { _tag: "Joined", request: entry.request },
      {
        ...table,
        byNonce: HashMap.set(table.byNonce, entry.request.nonce, { ...entry, waiters: entry.waiters + 1 })
      }
    ]
  }
  if (HashMap.has(table.byNonce, candidate.nonce)) return [{ _tag: "NonceTaken" }, table]
  return [
    { _tag: "Created", request: candidate },
    {
      ...table,
      byNonce: HashMap.set(table.byNonce, candidate.nonce, { request: candidate, waiters: 1 }),
      byKey: HashMap.set(table.byKey, candidate.key, candidate.nonce)
    }
  ]
}

const isCurrent = (table: Table, request: Request) =>
  Option.exists(HashMap.get(table.byNonce, request.nonce), (entry) => entry.request === request)

const without = (table: Table, request: Request): Table => ({
  ...table,
  byNonce: HashMap.remove(table.byNonce, request.nonce),
  byKey: HashMap.remove(table.byKey, request.key)
})

// --- outcomes ---

type Outcome =
  | { readonly _tag: "Found"; readonly peer: Peer.Peer }
  | { readonly _tag: "Failed"; readonly reason: DhtEvent.DiscoveryFailureReason }

const requestsOk = DhtMetrics.tagged(DhtMetrics.discoveryRequests, "result", "ok")
const requestsTimeout = DhtMetrics.tagged(DhtMetrics.discoveryRequests, "result", "timeout")
const requestsFailed = DhtMetrics.tagged(DhtMetrics.discoveryRequests, "result", "failed")

const callerError = (reason: DhtEvent.DiscoveryFailureReason): DhtError.DiscoveryError =>
  reason === "Timeout" ? new DhtError.DiscoveryTimeout() : new DhtError.DiscoveryFailed({ reason })

// --- the service ---

/**
 * Starts the discovery service in the current scope. Closing the scope fails every waiting caller with
 * `DiscoveryFailed{Shutdown}` (publishing the event for each request) and every later call the same way.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<CoreDiscovery.DiscoveryService, never, Requirements | Scope.Scope> = Effect.gen(
  function*() {
    const config = yield* DhtConfig.DhtConfig
    const identity = yield* NodeIdentity.NodeIdentity
    const requester = yield* OutboundRequester.OutboundRequester
    const transport = yield* Transport.Transport
    const peers = yield* PeerManager.PeerManager
    const events = yield* DhtEvents.DhtEvents
    const context = yield* Effect.context<Crypto.Crypto>()
    const timeout = config.discoveryRequestTimeout

    const table = yield* Ref.make<Table>({ closed: false, byNonce: HashMap.empty(), byKey: HashMap.empty() })
    const queue = yield* LightQueue.bounded<Request>(config.discoveryQueueCapacity)

    const publishInflight = Effect.flatMap(
      Ref.get(table),
      (t) => Metric.set(DhtMetrics.discoveryInflight, HashMap.size(t.byNonce))
    )

    // Reports an ended request: its callers' answer, its event, its metric. Runs once per request, for whoever
    // removed it from the table.
    const report = (request: Request, outcome: Outcome) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const elapsedMs = Math.max(0, now - request.startedAt)
        const annotations = { peer: NodeId.toHex(request.publicKey), elapsedMs }
        if (outcome._tag === "Found") {
          yield* Deferred.succeed(request.result, outcome.peer)
          yield* events.publish(DhtEvent.DiscoveryCompleted({ publicKey: request.publicKey, elapsedMs }))
          yield* Metric.increment(requestsOk)
          yield* DhtLog.debug("discovery completed", annotations)
        } else {
          yield* Deferred.fail(request.result, callerError(outcome.reason))
          yield* events.publish(DhtEvent.DiscoveryFailed({ publicKey: request.publicKey, reason: outcome.reason }))
          yield* Metric.increment(outcome.reason === "Timeout" ? requestsTimeout : requestsFailed)
          yield* DhtLog.debug("discovery failed", { ...annotations, reason: outcome.reason })
        }
      })

    const finish = (request: Request, outcome: Outcome): Effect.Effect<boolean> =>
      Ref.modify(table, (t) => isCurrent(t, request) ? [true, without(t, request)] as const : [false, t] as const)
        .pipe(
          Effect.tap((removed) => removed ? Effect.zipRight(report(request, outcome), publishInflight) : Effect.void)
        )

    // A caller gone (interrupted): the request is dropped with its last caller.
    const leave = (request: Request) =>
      Ref.modify(table, (t): readonly [boolean, Table] =>
        Option.match(HashMap.get(t.byNonce, request.nonce), {
          onNone: () => [false, t],
          onSome: (entry) => {
            if (entry.request !== request) return [false, t]
            if (entry.waiters > 1) {
              const fewer = { ...entry, waiters: entry.waiters - 1 }
              return [false, { ...t, byNonce: HashMap.set(t.byNonce, request.nonce, fewer) }]
            }
            return [true, without(t, request)]
          }
        })).pipe(
          Effect.flatMap((dropped) =>
            dropped
              ? DhtLog.debug("discovery dropped: its callers have gone", {
                peer: NodeId.toHex(request.publicKey)
              }).pipe(
                // ends the request's timer
                Effect.zipRight(Deferred.interrupt(request.result)),
                Effect.zipRight(publishInflight)
              )
              : Effect.void
          )
        )

    // Registered before the worker and its jobs exist, so it runs after they have stopped (finalisers run in
    // reverse): every request still in the table is answered, and the queue is shut so no caller waits on it.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const pending = yield* Ref.modify(table, (t) =>
          [
            Array.from(HashMap.values(t.byNonce), (entry) => entry.request),
            { closed: true, byNonce: HashMap.empty(), byKey: HashMap.empty() }
          ] as const)
        yield* Effect.forEach(pending, (request) => report(request, { _tag: "Failed", reason: "Shutdown" }), {
          discard: true
        })
        yield* Queue.shutdown(queue)
        yield* Metric.set(DhtMetrics.discoveryInflight, 0)
      })
    )

    const jobs = yield* FiberSet.make<void, never>()

    // SPEC §10.2 step 2: our signed claim with the nonce, encrypted for the key and propagated towards it.
    const send = (request: Request) =>
      Effect.gen(function*() {
        const claim = yield* PeerValidator.signClaim({
          secretKey: identity.secretKey,
          publicKey: identity.publicKey,
          addresses: transport.listenAddresses,
          features: identity.features
        })
        // our own key, our own claim, a u64 nonce: valid by construction
        const message = new DhtMessages.DiscoveryMessage({
          publicKey: identity.publicKey,
          addresses: claim.addresses,
          peerFeatures: claim.features,
          nonce: request.nonce,
          identitySignature: claim.identitySignature
        }, true)
        const destination = Envelope.destinationPublicKey(request.publicKey)
        return yield* requester.send(
          OutboundRequester.makeParams({
            strategy: BroadcastStrategy.Propagate({ destination, excluded: [] }),
            destination,
            encryption: OutboundRequester.encryptFor(request.publicKey),
            messageType: Envelope.DhtMessageType.Discovery
          }),
          new Envelope.EnvelopeBody({ parts: [DhtMessages.encodeDiscovery(message)] }, true)
        )
      }).pipe(Effect.provide(context))

    // The response window opens once the request is out; it closes early when the request ends otherwise.
    const expire = (request: Request) =>
      Deferred.await(request.result).pipe(
        Effect.timeout(timeout),
        Effect.catchTag("TimeoutException", () => finish(request, { _tag: "Failed", reason: "Timeout" })),
        Effect.ignore
      )

    const serve = (request: Request) =>
      Effect.gen(function*() {
        if (!isCurrent(yield* Ref.get(table), request)) return
        const sent = yield* Effect.either(send(request))
        if (Either.isLeft(sent)) {
          yield* DhtLog.debug("discovery request not sent", {
            peer: NodeId.toHex(request.publicKey),
            reason: sent.left._tag
          })
          yield* finish(request, { _tag: "Failed", reason: "SendFailed" })
          return
        }
        yield* FiberSet.run(jobs, expire(request))
      })

    yield* Effect.iterate(undefined, {
      while: constTrue,
      body: () => Effect.flatMap(Queue.take(queue), serve)
    }).pipe(Effect.annotateLogs({ service: "Discovery" }), Effect.forkScoped)

    // --- the client ---

    const shutdownError = new DhtError.DiscoveryFailed({ reason: "Shutdown" })

    const registerCaller = (publicKey: NodeId.PublicKey): Effect.Effect<Registration> =>
      Effect.gen(function*() {
        const candidate: Request = {
          nonce: yield* OutboundRequester.randomU64,
          publicKey,
          key: NodeId.toHex(publicKey),
          startedAt: yield* Clock.currentTimeMillis,
          result: yield* Deferred.make<Peer.Peer, DhtError.DiscoveryError>()
        }
        const registration = yield* Ref.modify(table, (t) => register(t, candidate))
        // two live requests never share a nonce: draw again (once in 2^64)
        return registration._tag === "NonceTaken" ? yield* registerCaller(publicKey) : registration
      })

    // A queue shut under a waiting offer interrupts it: that is the service closing.
    const enqueue = (request: Request) =>
      Queue.offer(queue, request).pipe(
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause)
            ? finish(request, { _tag: "Failed", reason: "Shutdown" })
            : Effect.failCause(cause)
        )
      )

    const discover = (publicKey: NodeId.PublicKey): Effect.Effect<Peer.Peer, DhtError.DiscoveryError> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          if (NodeId.equals(publicKey, identity.publicKey)) return yield* new DhtError.CannotDiscoverThisNode()
          const registration = yield* registerCaller(publicKey)
          if (registration._tag === "Closed" || registration._tag === "NonceTaken") {
            yield* events.publish(DhtEvent.DiscoveryFailed({ publicKey, reason: "Shutdown" }))
            return yield* shutdownError
          }
          const { request } = registration
          const waitForResult = restore(Deferred.await(request.result)).pipe(Effect.onInterrupt(() => leave(request)))
          if (registration._tag === "Joined") return yield* waitForResult
          yield* publishInflight
          const queued = yield* Effect.exit(restore(enqueue(request)))
          if (Exit.isFailure(queued)) {
            // the caller that made the request went away while it waited for room: the request goes on for the
            // callers that joined it meanwhile
            yield* leave(request)
            if (isCurrent(yield* Ref.get(table), request)) yield* FiberSet.run(jobs, Effect.asVoid(enqueue(request)))
            return yield* Effect.failCause(queued.cause)
          }
          return yield* waitForResult
        })
      )

    return CoreDiscovery.Discovery.of({
      discover,
      pendingKey: (nonce) =>
        Effect.map(
          Ref.get(table),
          (t) => Option.map(HashMap.get(t.byNonce, nonce), (entry) => entry.request.publicKey)
        ),
      handleResponse: (nonce, peer) =>
        Effect.gen(function*() {
          const t = yield* Ref.get(table)
          const byNonce = Option.map(HashMap.get(t.byNonce, nonce), (entry) => entry.request)
          const byKey = Option.flatMap(
            HashMap.get(t.byKey, NodeId.toHex(peer.publicKey)),
            (n) => Option.map(HashMap.get(t.byNonce, n), (entry) => entry.request)
          )
          // only requests for the key that answered: the handler has checked this (§10.3 step 7), keep it true here
          const waiting = [byNonce, byKey].flatMap((o) =>
            Option.isSome(o) && NodeId.equals(o.value.publicKey, peer.publicKey) ? [o.value] : []
          ).filter((request, i, all) => all.indexOf(request) === i)
          if (waiting.length === 0) return false
          yield* ensureKnown(peers, peer)
          const resolved = yield* Effect.forEach(waiting, (request) => finish(request, { _tag: "Found", peer }))
          return resolved.some((r) => r)
        })
    })
  }
)

// The handler adds the peer before handing it over (§10.3 step 8); a caller that skipped that still finds it known.
const ensureKnown = (peers: PeerManager.PeerManagerService, peer: Peer.Peer) =>
  peers.exists(peer.nodeId).pipe(
    Effect.flatMap((known) => known ? Effect.void : Effect.asVoid(peers.add(peer))),
    Effect.catchTag("StoreError", (error) => Effect.logWarning("discovered peer not recorded", error))
  )

/**
 * The discovery service as a Layer: its worker runs while the Layer's scope is open.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<CoreDiscovery.Discovery, never, Requirements> = Layer.scoped(
  CoreDiscovery.Discovery,
  make
)
