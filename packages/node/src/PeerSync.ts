/**
 * Peer sync (SPEC §12.4): both sides of the `GetPeersRequest` / `PeerSyncResponse` exchange that network discovery
 * (§12) uses to fill the peer table. Tari runs it over RPC; we carry it as cleartext, unsigned DHT messages sent
 * `DirectNodeId`, so a response is tied to its request by `(responder, request_id)` only.
 *
 * - **Responder**: serves at most one request per requester per 10 s (`RateLimited` otherwise, dropped, no ban) and
 *   relays the verified, active, unbanned peers closest to the requester (docs/spec-departures.md §6), each with its
 *   signed claims as they were signed: a claim with more addresses than asked for is omitted, never truncated, and a
 *   peer left without claims is omitted.
 * - **Requester**: `requestPeers` dials the peer, sends the request and waits `peerSyncTimeout` for the response.
 *   The response is judged in two parts: counts the responder controls (more peers than asked, a duplicate key, an
 *   empty `PeerInfo`, more claims or addresses than asked) fail the whole response with the §14.1 tag, which the
 *   inbound pipeline turns into a `High` ban of the source; anything wrong with a relayed claim itself (key check,
 *   signature, policy) proves nothing against the relayer, so only that `PeerInfo` is skipped
 *   (`comms_dht_peers_skipped_total{cause="relayedInvalid"}`). Valid peers are added unverified, source `PeerSync`,
 *   within the per-source budget of §2.5, and counted new or duplicate.
 *
 * `handle` is the seam for the inbound pipeline: `InboundPipeline.layer({ peerSync: service.handle })`.
 *
 * @since 0.1.0
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as Crypto from "@comms-dht/core/Crypto"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as DhtLog from "@comms-dht/core/DhtLog"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Envelope from "@comms-dht/core/Envelope"
import type * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as LightDeferred from "@comms-dht/core/LightDeferred"
import * as LightQueue from "@comms-dht/core/LightQueue"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as PeerSyncMessages from "@comms-dht/core/PeerSyncMessages"
import * as PeerValidator from "@comms-dht/core/PeerValidator"
import * as Transport from "@comms-dht/core/Transport"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as Rules from "./internal/peerSyncRules.js"

/**
 * What one peer sync added to the table.
 *
 * @since 0.1.0
 * @category models
 */
export interface SyncOutcome {
  /** peers the table did not know */
  readonly numNew: number
  /** peers it knew already (their claims applied if newer) */
  readonly numDuplicate: number
  /** `PeerInfo`s skipped: a relayed claim that failed, the own key, the table's bounds (§2.5) */
  readonly numSkipped: number
  /** the new peers, in response order */
  readonly newPeers: ReadonlyArray<NodeId.NodeId>
}

/**
 * What the responder's own counts got wrong (SPEC §12.4): the source is banned `High`.
 *
 * @since 0.1.0
 * @category errors
 */
export type ResponseFault = Rules.StructureFault

/**
 * Why a `requestPeers` attempt failed: the peer is unknown or could not be dialled, the request could not be sent,
 * no response came within `peerSyncTimeout` (`Timeout`), the response broke its limits, or the peer table failed.
 * None of these is a ban by itself; a `ResponseFault` is banned by the inbound pipeline that reported it.
 *
 * @since 0.1.0
 * @category errors
 */
export type RequestError =
  | DhtError.PeerNotFound
  | DhtError.DialError
  | DhtError.SendFailure
  | DhtError.SendFailReason
  | ResponseFault
  | DhtError.StoreError

/**
 * What `handle` fails with, for the inbound pipeline to log, count and ban by (SPEC §14.1).
 *
 * @since 0.1.0
 * @category errors
 */
export type HandleError =
  | ResponseFault
  | DhtError.RateLimited
  | DhtError.InvalidMessageBody
  | DhtError.StoreError

/**
 * `n` and `include_clients` of a request; `max_claims` and `max_addresses_per_claim` always come from the config
 * (`maxPermittedPeerClaims`, `peerValidator.maxAddressesPerClaim`).
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestOptions {
  readonly n: number
  readonly includeClients: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface PeerSyncService {
  /** Requester (SPEC §12.4): dial `peer`, ask it for peers, validate and add what it returns. */
  readonly requestPeers: (peer: NodeId.NodeId, options: RequestOptions) => Effect.Effect<SyncOutcome, RequestError>
  /**
   * The inbound seam for `PeerSyncRequest` and `PeerSyncResponse` (types 30 and 31): answers requests and resolves
   * the requests in flight. Plug it into `InboundPipeline.layer({ peerSync })`; its failures are §14.1 rows.
   */
  readonly handle: (message: InboundMessages.DecryptedDhtMessage) => Effect.Effect<void, HandleError>
  /** Requests waiting for their response. */
  readonly inFlight: Effect.Effect<number>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class PeerSync extends Context.Tag("@comms-dht/node/PeerSync")<PeerSync, PeerSyncService>() {}

/**
 * What the service reads from the Layer graph.
 *
 * @since 0.1.0
 * @category models
 */
export type Requirements =
  | PeerManager.PeerManager
  | Transport.Transport
  | OutboundRequester.OutboundRequester
  | NodeIdentity.NodeIdentity
  | Crypto.Crypto
  | DhtEvents.DhtEvents

interface Pending {
  readonly limits: Rules.Limits
  readonly reply: Deferred.Deferred<SyncOutcome, RequestError>
  /** when the reply fails with `Timeout` (`peerSyncTimeout` after the request was registered) */
  readonly deadline: number
}

type Learnt =
  | { readonly _tag: "New"; readonly nodeId: NodeId.NodeId }
  | { readonly _tag: "Duplicate" }
  | { readonly _tag: "Skipped" }

// a valid peer the table does not hold yet: added with the rest of its response
type ToAdd = { readonly _tag: "ToAdd"; readonly peer: Peer.Peer }

type Relayed =
  | { readonly _tag: "Invalid"; readonly reason: string }
  | { readonly _tag: "Own" }
  | {
    readonly _tag: "Read"
    readonly publicKey: NodeId.PublicKey
    readonly nodeId: NodeId.NodeId
    readonly claims: ReadonlyArray<Peer.PeerClaim>
  }

// The part of learning a relayed peer that depends on the entry alone: the key check and the claims' shape. Decoded
// entries are shared between the nodes of a process (`decodePeerSyncResponse` memoises them), so this is read once
// per distinct entry.
const readMemo = new WeakMap<PeerSyncMessages.PeerInfo, Relayed>()
const readInfo = (info: PeerSyncMessages.PeerInfo): Relayed => {
  const known = readMemo.get(info)
  if (known !== undefined) return known
  const read = ((): Relayed => {
    const checked = info.publicKeyChecked
    if (Option.isNone(checked)) return { _tag: "Invalid", reason: "public key fails the key check" }
    const publicKey = checked.value
    const claims: Array<Peer.PeerClaim> = []
    for (const relayed of info.claims) {
      const claim = PeerSyncMessages.toPeerClaim(relayed)
      if (Option.isNone(claim)) return { _tag: "Invalid", reason: "malformed claim" }
      claims.push(claim.value)
    }
    return { _tag: "Read", publicKey, nodeId: NodeId.fromPublicKey(publicKey), claims }
  })()
  readMemo.set(info, read)
  return read
}

const duplicate: Learnt = { _tag: "Duplicate" }
const skipped: Learnt = { _tag: "Skipped" }
const learntNew = (nodeId: NodeId.NodeId): Learnt => ({ _tag: "New", nodeId })

const relayedInvalid = DhtMetrics.tagged(DhtMetrics.peersSkipped, "cause", "relayedInvalid")
const mismatch = DhtMetrics.tagged(DhtMetrics.inboundRejected, "reason", "NewAndExistingMismatch")

const pendingKey = (peer: NodeId.NodeId, requestId: number) => `${NodeId.toHex(peer)}/${requestId}`

// u32 request ids; 0 is left out because it is also what a request without the field decodes to
const randomRequestId = Random.nextIntBetween(1, 0x1_0000_0000)

const EMPTY = new Uint8Array(0)

const firstPart = (message: InboundMessages.DecryptedDhtMessage): Option.Option<Uint8Array> =>
  message.decryption._tag === "Succeeded"
    ? Option.some(message.decryption.body.parts[0] ?? EMPTY)
    : Option.none()

const bodyOf = (bytes: Uint8Array) => new Envelope.EnvelopeBody({ parts: [bytes] }, true)

const directParams = (
  peer: NodeId.NodeId,
  publicKey: NodeId.PublicKey,
  messageType: Envelope.DhtMessageType
) =>
  OutboundRequester.makeParams({
    strategy: BroadcastStrategy.DirectNodeId({ nodeId: peer }),
    destination: Envelope.destinationPublicKey(publicKey),
    messageType
  })

/**
 * Starts the service in the current scope. Requests still in flight when the scope closes fail `DhtShutdown`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<PeerSyncService, never, Requirements | Scope.Scope> = Effect.gen(function*() {
  const config = yield* DhtConfig.DhtConfig
  const peers = yield* PeerManager.PeerManager
  const transport = yield* Transport.Transport
  const requester = yield* OutboundRequester.OutboundRequester
  const identity = yield* NodeIdentity.NodeIdentity
  const events = yield* DhtEvents.DhtEvents
  const crypto = yield* Crypto.Crypto

  // requests awaiting their response, by peer and request id: changed only in single synchronous steps, so a plain
  // map serves where a `Ref` of a persistent map cost a copy and a dozen steps per change
  const pending = new Map<string, Pending>()

  // One fiber fails the replies whose deadline has passed, sleeping until the earliest, rather than a race of two
  // fibers per request (`Effect.timeoutFail`: 56 steps of the run loop beside the wait it guards). Every request waits
  // the same `peerSyncTimeout` from its registration, so the map's order (insertion) is the order of the deadlines.
  // Woken when a request is registered while it is idle; idle again once nothing is pending.
  const timeoutMs = DhtConfig.millis(config.networkDiscovery.peerSyncTimeout)
  const wake = yield* LightQueue.bounded<void>(1)
  let sweeping = false
  const expire: Effect.Effect<void> = Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const due: Array<Pending["reply"]> = []
    let next: number | undefined
    for (const [key, entry] of pending) {
      if (entry.deadline > now) {
        next = entry.deadline
        break
      }
      pending.delete(key)
      due.push(entry.reply)
    }
    if (next === undefined) sweeping = false
    const failDue = Effect.forEach(due, (reply) => Deferred.fail(reply, new DhtError.Timeout()), { discard: true })
    return next === undefined ? failDue : Effect.zipRight(failDue, Effect.zipRight(Effect.sleep(next - now), expire))
  })
  yield* Effect.forkScoped(LightQueue.consume(wake, () => expire))
  const served = yield* Ref.make(HashMap.empty<string, number>())

  yield* Effect.addFinalizer(() =>
    Effect.suspend(() => {
      const all = Array.from(pending.values())
      pending.clear()
      return Effect.forEach(all, (p) => Deferred.fail(p.reply, new DhtError.DhtShutdown()), { discard: true })
    })
  )

  const maxPeers = config.networkDiscovery.maxPeersToSyncPerRound

  // --- responder ---

  // A stored peer as relayed (its `PeerInfo` bytes, or none without a claim to relay), per record and limits: a record
  // is replaced, never changed, when the table learns something of the peer, so its bytes stay right as long as it
  // lives. A settled table answers every request from this cache instead of re-encoding each peer's claims.
  const encodedInfos = new WeakMap<Peer.Peer, Map<string, Uint8Array | undefined>>()
  const encodedInfo = (peer: Peer.Peer, maxClaims: number, maxAddressesPerClaim: number) => {
    const limits = `${maxClaims}/${maxAddressesPerClaim}`
    let byLimits = encodedInfos.get(peer)
    if (byLimits === undefined) {
      byLimits = new Map()
      encodedInfos.set(peer, byLimits)
    }
    if (byLimits.has(limits)) return byLimits.get(limits)
    const claims = Rules.relayableClaims(peer, maxClaims, maxAddressesPerClaim)
    const bytes = claims.length === 0
      ? undefined
      : PeerSyncMessages.encodePeerInfo(new PeerSyncMessages.PeerInfo({ publicKey: peer.publicKey, claims }, true))
    byLimits.set(limits, bytes)
    return bytes
  }

  const selectPeers = (request: PeerSyncMessages.GetPeersRequest, requesterId: NodeId.NodeId) =>
    Effect.gen(function*() {
      if (request.maxClaims === 0 || request.maxAddressesPerClaim === 0) return []
      const n = Rules.effectiveCount(request.n, maxPeers)
      const nowMs = yield* Clock.currentTimeMillis
      // in NodeId order, so the closest are read from a run of it rather than the whole table
      const known = yield* peers.all
      const eligible = (peer: Peer.Peer) =>
        peer.isVerified && peer.isActive(nowMs) && !NodeId.equals(peer.nodeId, requesterId) &&
        !NodeId.equals(peer.nodeId, identity.nodeId) && (request.includeClients || peer.isCommunicationNode)
      const infoOf = (peer: Peer.Peer) => encodedInfo(peer, request.maxClaims, request.maxAddressesPerClaim)
      // The answer is the n eligible peers closest to the requester that have a claim to relay (Kademlia's
      // FIND_NODE of the requester's own id, not SPEC §12.4's unspecified choice; docs/spec-departures.md §6).
      // Nearly all have a claim, so the n closest are chosen and their claims read; only when one has none are the
      // claims read as the peers are chosen.
      const closest = PeerManager.closestSorted(known, requesterId, n, eligible).map(infoOf)
      if (closest.every((info) => info !== undefined)) return closest.filter((info) => info !== undefined)
      return PeerManager.closestSorted(known, requesterId, n, (peer) => eligible(peer) && infoOf(peer) !== undefined)
        .flatMap((peer) => infoOf(peer) ?? [])
    })

  const respond = (message: InboundMessages.DecryptedDhtMessage, bytes: Uint8Array) =>
    Effect.gen(function*() {
      const request = yield* PeerSyncMessages.decodeGetPeersRequest(bytes)
      const source = message.sourcePeer
      const nowMs = yield* Clock.currentTimeMillis
      const admitted = yield* Ref.modify(served, (map) => Rules.admit(map, NodeId.toHex(source.nodeId), nowMs))
      if (!admitted) return yield* new DhtError.RateLimited({ what: "peer sync" })
      const infos = yield* selectPeers(request, source.nodeId)
      // dropping offer: no inbound stage waits on the outbound queue (§13.1); the requester times out instead
      const queued = yield* requester.offerForward(
        directParams(source.nodeId, source.publicKey, Envelope.DhtMessageType.PeerSyncResponse),
        PeerSyncMessages.encodePeerSyncResponseBodyOf(infos, request.requestId)
      )
      yield* DhtLog.debug(queued ? "peer sync request answered" : "peer sync response shed", {
        peer: NodeId.toHex(source.nodeId),
        peers: infos.length
      })
    })

  // --- requester: one relayed peer ---

  const skipRelayed = (info: PeerSyncMessages.PeerInfo, reason: string) =>
    Metric.increment(relayedInvalid).pipe(
      Effect.zipRight(
        DhtLog.debug("relayed peer skipped", { peer: NodeId.toHex(info.publicKey), reason })
      ),
      Effect.as(skipped)
    )

  const readRelayed = (info: PeerSyncMessages.PeerInfo): Relayed => {
    const read = readInfo(info)
    return read._tag === "Read" && NodeId.equals(read.publicKey, identity.publicKey) ? { _tag: "Own" } : read
  }

  // A plain chain of effects rather than a generator: a join learns about 220,000 new peers at 1000 nodes, and the
  // generator's steps came to about as many as the validation's.
  const learn = (
    info: PeerSyncMessages.PeerInfo,
    relayed: Extract<Relayed, { _tag: "Read" }>,
    existing: Option.Option<Peer.Peer>,
    nowMs: number
  ): Effect.Effect<Learnt | ToAdd, DhtError.StoreError> => {
    const { claims, nodeId, publicKey } = relayed
    if (Option.isSome(existing) && !NodeId.equals(existing.value.publicKey, publicKey)) {
      return Effect.as(Metric.increment(mismatch), skipped)
    }
    const validated = PeerValidator.validateClaimsWith(crypto, config, publicKey, claims, {
      keyChecked: true,
      storedUpdatedAt: Option.isSome(existing) ? existing.value.claimUpdatedAt : undefined
    })
    return Effect.matchEffect(validated, {
      onFailure: (error) => skipRelayed(info, error.reason),
      onSuccess: (accepted): Effect.Effect<Learnt | ToAdd, DhtError.StoreError> => {
        const apply = (peer: Peer.Peer) =>
          PeerValidator.applyClaims(peer, accepted, {
            source: "PeerSync",
            maxAddressesPerPeer: config.peerValidator.maxAddressesPerPeer
          })
        if (Option.isSome(existing)) {
          if (accepted.length === 0) return Effect.succeed(duplicate)
          return Effect.as(
            peers.update(nodeId, apply).pipe(Effect.catchTag("PeerNotFound", () => Effect.void)),
            duplicate
          )
        }
        const newest = accepted[accepted.length - 1]
        if (newest === undefined) return skipRelayed(info, "no claim survived policy")
        const features = newest.claim.features
        const toAdd: ToAdd = {
          _tag: "ToAdd",
          peer: apply(Peer.make({ publicKey, addresses: [], features, source: "PeerSync", nowMs }))
        }
        return Effect.succeed(toAdd)
      }
    })
  }

  const added = (peer: Peer.Peer, result: PeerManager.AddResult): Effect.Effect<Learnt> => {
    switch (result) {
      case "Added":
        return Effect.as(
          events.publish(DhtEvent.PeerAdded({ publicKey: peer.publicKey, source: "PeerSync" })),
          learntNew(peer.nodeId)
        )
      case "Updated":
        return Effect.succeed(duplicate)
      case "SkippedBudget":
      case "SkippedCapacity":
        return Effect.succeed(skipped)
    }
  }

  const learnAll = (response: PeerSyncMessages.PeerSyncResponse, source: NodeId.NodeId) =>
    Effect.gen(function*() {
      let numNew = 0
      let numDuplicate = 0
      let numSkipped = 0
      const newPeers: Array<NodeId.NodeId> = []
      const count = (learnt: Learnt) => {
        if (learnt._tag === "New") {
          numNew++
          newPeers.push(learnt.nodeId)
        } else if (learnt._tag === "Duplicate") numDuplicate++
        else numSkipped++
      }
      const nowMs = yield* Clock.currentTimeMillis
      const relayed = response.peers.map(readRelayed)
      const ids = relayed.flatMap((r) => r._tag === "Read" ? [r.nodeId] : [])
      // One lookup for the whole response. It stays true while this response is learnt unless an addition evicts a
      // peer (a table within a response of its bound); then each peer is looked up when its turn comes.
      const exact = (yield* peers.count) + ids.length < config.maxKnownPeers
      const known = new Map<string, Peer.Peer>()
      if (exact) for (const peer of yield* peers.getMany(ids)) known.set(NodeId.toHex(peer.nodeId), peer)
      // the new peers of an exact response, added together after the loop: no addition there can evict a peer
      // the loop looked up
      const batch: Array<Peer.Peer> = []
      for (const [i, info] of response.peers.entries()) {
        const r = relayed[i]!
        let learnt: Learnt | ToAdd
        if (r._tag === "Own") learnt = skipped
        else if (r._tag === "Invalid") learnt = yield* skipRelayed(info, r.reason)
        else {
          const existing = exact
            ? Option.fromNullable(known.get(NodeId.toHex(r.nodeId)))
            : Option.fromNullable((yield* peers.getMany([r.nodeId]))[0])
          // Claims the record already holds, field for field, were validated when they were accepted and would be
          // again (key, signature and policy answer the same for the same bytes; a claim never becomes older than
          // itself), and applying them changes nothing. Once a network has settled nearly every relayed peer is
          // such a duplicate: it is counted without re-validating or rewriting the record.
          const held = Option.isSome(existing) && NodeId.equals(existing.value.publicKey, r.publicKey) &&
            r.claims.length > 0 && r.claims.every((claim) => PeerValidator.holdsClaim(existing.value, claim))
          learnt = held ? duplicate : yield* learn(info, r, existing, nowMs)
        }
        if (learnt._tag === "ToAdd") {
          const { peer } = learnt
          if (exact) {
            batch.push(peer)
            continue
          }
          learnt = yield* Effect.flatMap(peers.add(peer, { source }), (result) => added(peer, result))
        }
        count(learnt)
      }
      const results = batch.length === 0 ? [] : yield* peers.addMany(batch, { source })
      for (const [i, result] of results.entries()) count(yield* added(batch[i]!, result))
      const outcome: SyncOutcome = { numNew, numDuplicate, numSkipped, newPeers }
      return outcome
    })

  const resolve = (message: InboundMessages.DecryptedDhtMessage, bytes: Uint8Array) =>
    Effect.gen(function*() {
      const response = yield* PeerSyncMessages.decodePeerSyncResponse(bytes)
      const source = message.sourcePeer.nodeId
      const key = pendingKey(source, response.requestId)
      const found = pending.get(key)
      pending.delete(key)
      if (found === undefined) {
        return yield* DhtLog.debug("unrequested peer sync response ignored", {
          peer: NodeId.toHex(source),
          requestId: response.requestId
        })
      }
      const { limits, reply } = found
      const fault = Rules.structureFault(response, limits)
      if (Option.isSome(fault)) {
        yield* Deferred.fail(reply, fault.value)
        return yield* fault.value
      }
      const outcome = yield* learnAll(response, source).pipe(Effect.tapError((error) => Deferred.fail(reply, error)))
      yield* Deferred.succeed(reply, outcome)
    })

  const handle = (message: InboundMessages.DecryptedDhtMessage): Effect.Effect<void, HandleError> =>
    Option.match(firstPart(message), {
      onNone: () => Effect.void,
      onSome: (bytes) => {
        switch (message.header.messageType) {
          case Envelope.DhtMessageType.PeerSyncRequest:
            return respond(message, bytes)
          case Envelope.DhtMessageType.PeerSyncResponse:
            return resolve(message, bytes)
          default:
            return Effect.void
        }
      }
    })

  // --- requester: the exchange ---

  // registers a fresh (peer, request_id): a draw that collides with one in flight is drawn again
  const register = (peer: NodeId.NodeId, limits: Omit<Rules.Limits, "n">, n: number) =>
    Effect.gen(function*() {
      const reply = yield* Deferred.make<SyncOutcome, RequestError>()
      const deadline = (yield* Clock.currentTimeMillis) + timeoutMs
      for (;;) {
        const requestId = yield* randomRequestId
        const key = pendingKey(peer, requestId)
        if (!pending.has(key)) {
          pending.set(key, { limits: { ...limits, n }, reply, deadline })
          if (!sweeping) {
            sweeping = true
            wake.unsafeOffer(undefined)
          }
          return { requestId, key, reply }
        }
      }
    })

  const requestPeers = (peerId: NodeId.NodeId, options: RequestOptions) =>
    Effect.gen(function*() {
      const peer = yield* peers.get(peerId)
      yield* transport.dial(peerId)
      const limits = {
        maxClaims: config.maxPermittedPeerClaims,
        maxAddressesPerClaim: config.peerValidator.maxAddressesPerClaim
      }
      const n = Rules.effectiveCount(options.n, maxPeers)
      const { key, reply, requestId } = yield* register(peerId, limits, n)
      const request = new PeerSyncMessages.GetPeersRequest({
        n,
        includeClients: options.includeClients,
        maxClaims: limits.maxClaims,
        maxAddressesPerClaim: limits.maxAddressesPerClaim,
        requestId
      }, true)
      const exchange = Effect.gen(function*() {
        const sent = yield* requester.send(
          directParams(peerId, peer.publicKey, Envelope.DhtMessageType.PeerSyncRequest),
          bodyOf(PeerSyncMessages.encodeGetPeersRequest(request))
        )
        const states = yield* OutboundRequester.resolve(sent)
        // a write that fails ends the attempt now rather than at the timeout
        yield* Effect.forEach(states.states, (state) => LightDeferred.awaitOnce(state.result), { discard: true })
        return yield* LightDeferred.awaitOnce(reply)
      })
      // the reply fails with `Timeout` at the deadline (`expire`); a write still pending then is the transport's
      // to end (its dial has a timeout of its own)
      return yield* Effect.ensuring(exchange, Effect.sync(() => pending.delete(key)))
    })

  return PeerSync.of({
    requestPeers,
    handle,
    inFlight: Effect.sync(() => pending.size)
  })
})

/**
 * `make` as a Layer: the service lives as long as the Layer's scope.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<PeerSync, never, Requirements> = Layer.scoped(PeerSync, make)
