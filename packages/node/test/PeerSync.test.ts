/**
 * Peer sync (SPEC §12.4) on a MemoryNetwork, end to end through both pipelines: a full node's requester against a
 * full responder or a raw peer playing a dishonest one, and a raw requester reading exactly what a full responder
 * sends. Time is the `TestClock`. Scenarios 28 (bans, relayed claims) and 44 (claims omitted, not truncated).
 */
import type * as Crypto from "@comms-dht/core/Crypto"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import type * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as NodeId from "@comms-dht/core/NodeId"
import type * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as PeerSyncMessages from "@comms-dht/core/PeerSyncMessages"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as PeerSync from "../src/PeerSync.js"
import {
  addPeers,
  addressOf,
  claimedRecord,
  claimOf,
  COMMUNICATION_CLIENT,
  config,
  connect,
  eventsSoFar,
  eventually,
  identityOf,
  nextRequest,
  nextResponse,
  receivedOf,
  recordOf,
  sendRequest,
  sendResponse,
  settle,
  shared,
  startNode,
  startRaw
} from "./peerSyncNetwork.js"

const HOUR = 3_600_000
const DAY = 24 * HOUR
// late enough that "seen more than 7 days ago" is a time after the epoch
const T0 = 30 * DAY

const quiet = DhtConfig.unsafeMake({ networkDiscovery: { enabled: false } }, config)

const count = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => state.count)
const relayedInvalid = count(Metric.tagged(DhtMetrics.peersSkipped, "cause", "relayedInvalid"))
const budgetSkipped = count(Metric.tagged(DhtMetrics.peersSkipped, "cause", "budget"))
const rejected = (reason: string) => count(Metric.tagged(DhtMetrics.inboundRejected, "reason", reason))

const requestPeers = (options: PeerSync.RequestOptions, peer: NodeIdentity.Identity) =>
  Effect.flatMap(PeerSync.PeerSync, (sync) => sync.requestPeers(peer.nodeId, options))

const request = (fields: Partial<PeerSyncMessages.GetPeersRequest> = {}) =>
  new PeerSyncMessages.GetPeersRequest({
    n: 100,
    includeClients: false,
    maxClaims: 5,
    maxAddressesPerClaim: 5,
    requestId: 77,
    ...fields
  })

const relay = (publicKey: Uint8Array, claims: ReadonlyArray<Peer.PeerClaim>) =>
  new PeerSyncMessages.PeerInfo({ publicKey, claims: claims.map(PeerSyncMessages.fromPeerClaim) })

// a PeerInfo that is well formed in its counts only: a distinct key, one claim of one address, a zero signature
const junk = (i: number, addresses = 1) =>
  new PeerSyncMessages.PeerInfo({
    publicKey: Uint8Array.from({ length: 32 }, (_, j) => (i * 31 + j) & 0xff),
    claims: [
      new PeerSyncMessages.PeerIdentityClaim({
        addresses: Array.from({ length: addresses }, (_, j) => new TextEncoder().encode(`mem://junk-${i}-${j}`)),
        peerFeatures: Peer.PeerFeatures.COMMUNICATION_NODE,
        identitySignature: Option.some(
          new Peer.IdentitySignature({ version: 0, signature: new Uint8Array(64), updatedAt: 0n })
        )
      })
    ]
  })

const bannedEvents = (events: ReadonlyArray<DhtEvent.DhtEvent>) =>
  events.filter((e): e is Extract<DhtEvent.DhtEvent, { _tag: "PeerBanned" }> => e._tag === "PeerBanned")

/** A full requester connected to a raw peer that will play the responder. */
const requesterAndRaw = (cfg: DhtConfig.Config = quiet) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(T0)
    const a = yield* startNode(yield* identityOf(1), { config: cfg })
    const m = yield* startRaw(yield* identityOf(2), cfg)
    yield* connect(a, m)
    return { a, m }
  })

describe("requester", () => {
  it.scoped("learns a full responder's verified, active peers, unverified and from PeerSync", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const a = yield* startNode(yield* identityOf(1), { config: quiet })
      const r = yield* startNode(yield* identityOf(2), { config: quiet })
      const [p, unverified, stale, banned, client] = yield* Effect.forEach(
        [3, 4, 5, 6, 7],
        (n) => identityOf(n, n === 7 ? COMMUNICATION_CLIENT : Peer.PeerFeatures.COMMUNICATION_NODE)
      )
      yield* addPeers(r, [
        claimedRecord(p!, [yield* claimOf(p!)], { lastSeen: T0 }),
        claimedRecord(unverified!, [yield* claimOf(unverified!)], { verified: false }),
        claimedRecord(stale!, [yield* claimOf(stale!)], { lastSeen: T0 - 8 * DAY }),
        new Peer.Peer({
          ...claimedRecord(banned!, [yield* claimOf(banned!)], { lastSeen: T0 }),
          bannedUntil: T0 + HOUR
        }),
        claimedRecord(client!, [yield* claimOf(client!)], { lastSeen: T0 })
      ])
      yield* connect(a, r)

      const outcome = yield* a.run(requestPeers({ n: 100, includeClients: false }, r.identity))
      expect(outcome).toEqual({ numNew: 1, numDuplicate: 0, numSkipped: 0, newPeers: [p!.nodeId] })
      const learnt = yield* recordOf(a, p!)
      expect(Option.isSome(learnt)).toBe(true)
      if (Option.isSome(learnt)) {
        expect(learnt.value.isVerified).toBe(false)
        expect(learnt.value.addresses.map((x) => [x.address, x.source])).toEqual([[addressOf(p!), "PeerSync"]])
      }
      for (const absent of [unverified!, stale!, banned!, client!]) {
        expect(Option.isNone(yield* recordOf(a, absent))).toBe(true)
      }
      const added = (yield* eventsSoFar(a)).filter((e) => e._tag === "PeerAdded")
      expect(added).toEqual([expect.objectContaining({ publicKey: p!.publicKey, source: "PeerSync" })])

      // the responder serves one request per requester per 10 s; then clients come when asked for
      yield* TestClock.adjust(10_000)
      const again = yield* a.run(requestPeers({ n: 100, includeClients: true }, r.identity))
      expect(again).toEqual({ numNew: 1, numDuplicate: 1, numSkipped: 0, newPeers: [client!.nodeId] })
    }).pipe(Effect.provide(shared)))

  it.scoped("a relayed claim with a bad signature, a private address or a bad key is skipped without a ban", () =>
    Effect.gen(function*() {
      const { a, m } = yield* requesterAndRaw()
      const [forged, private_, good] = yield* Effect.forEach([3, 4, 5], (n) => identityOf(n))
      const forgedClaim = yield* claimOf(forged!)
      const signature = forgedClaim.identitySignature.signature.slice()
      signature[0] ^= 1
      const badSignature = new Peer.PeerClaim({
        ...forgedClaim,
        identitySignature: new Peer.IdentitySignature({ ...forgedClaim.identitySignature, signature })
      })
      const privateClaim = yield* claimOf(private_!, ["tcp://192.168.1.5:18141"])
      const before = yield* relayedInvalid

      const fiber = yield* a.run(requestPeers({ n: 32, includeClients: true }, m.identity)).pipe(Effect.fork)
      const asked = yield* nextRequest(m)
      expect(asked).toMatchObject({ n: 32, includeClients: true, maxClaims: 5, maxAddressesPerClaim: 5 })
      yield* sendResponse(
        m,
        a.identity,
        new PeerSyncMessages.PeerSyncResponse({
          requestId: asked.requestId,
          peers: [
            relay(forged!.publicKey, [badSignature]),
            relay(private_!.publicKey, [privateClaim]),
            relay(new Uint8Array(32).fill(0xff), [yield* claimOf(good!)]),
            relay(a.identity.publicKey, [yield* claimOf(a.identity)]),
            relay(good!.publicKey, [yield* claimOf(good!)])
          ]
        })
      )
      const outcome = yield* Fiber.join(fiber)
      expect(outcome).toEqual({ numNew: 1, numDuplicate: 0, numSkipped: 4, newPeers: [good!.nodeId] })
      // three relayed claims proved nothing; the own key is skipped without being counted as invalid
      expect((yield* relayedInvalid) - before).toBe(3)
      expect(Option.isNone(yield* recordOf(a, forged!))).toBe(true)
      expect(Option.isNone(yield* recordOf(a, private_!))).toBe(true)
      const relayer = yield* recordOf(a, m.identity)
      expect(Option.map(relayer, (peer) => peer.isBanned(T0))).toEqual(Option.some(false))
      expect(bannedEvents(yield* eventsSoFar(a))).toEqual([])
    }).pipe(Effect.provide(shared)))

  it.scoped("a peer relayed again with the claim it holds is a duplicate; a forged copy of that claim is still skipped", () =>
    Effect.gen(function*() {
      const { a, m } = yield* requesterAndRaw()
      const p = yield* identityOf(3)
      const claim = yield* claimOf(p, [addressOf(p)], 1_000n)
      // the same signature over other addresses: it claims what the peer never signed
      const forged = new Peer.PeerClaim({ ...claim, addresses: ["mem://elsewhere"] })
      const newer = yield* claimOf(p, ["mem://moved"], 2_000n)
      const exchange = (claims: ReadonlyArray<Peer.PeerClaim>) =>
        Effect.gen(function*() {
          yield* TestClock.adjust(10_000)
          const fiber = yield* a.run(requestPeers({ n: 10, includeClients: false }, m.identity)).pipe(Effect.fork)
          const asked = yield* nextRequest(m)
          yield* sendResponse(
            m,
            a.identity,
            new PeerSyncMessages.PeerSyncResponse({ requestId: asked.requestId, peers: [relay(p.publicKey, claims)] })
          )
          return yield* Fiber.join(fiber)
        })

      expect(yield* exchange([claim])).toMatchObject({ numNew: 1, numDuplicate: 0, numSkipped: 0 })
      const learnt = yield* recordOf(a, p)
      expect((yield* exchange([claim]))).toMatchObject({ numNew: 0, numDuplicate: 1, numSkipped: 0 })
      expect(yield* recordOf(a, p)).toEqual(learnt)

      const before = yield* relayedInvalid
      expect(yield* exchange([forged])).toMatchObject({ numNew: 0, numDuplicate: 0, numSkipped: 1 })
      expect((yield* relayedInvalid) - before).toBe(1)
      expect(yield* recordOf(a, p)).toEqual(learnt)

      // a newer claim is validated and applied as before
      expect(yield* exchange([newer])).toMatchObject({ numNew: 0, numDuplicate: 1, numSkipped: 0 })
      const moved = yield* recordOf(a, p)
      expect(Option.map(moved, (peer) => peer.addresses.map((x) => x.address))).toEqual(Option.some(["mem://moved"]))
    }).pipe(Effect.provide(shared)))

  const faults: ReadonlyArray<readonly [string, string, (n: number) => ReadonlyArray<PeerSyncMessages.PeerInfo>]> = [
    ["501 peers for n = 500", "TooManyPeersReceived", () => Array.from({ length: 501 }, (_, i) => junk(i))],
    ["a duplicate peer", "DuplicatePeerReceived", () => [junk(1), junk(2), junk(1)]],
    ["a PeerInfo without claims", "EmptyPeerMessageReceived", () => [
      junk(1),
      new PeerSyncMessages.PeerInfo({ publicKey: junk(2).publicKey, claims: [] })
    ]],
    ["six claims when five were asked for", "PeerValidationError", () => [
      new PeerSyncMessages.PeerInfo({ publicKey: junk(1).publicKey, claims: Array(6).fill(junk(1).claims[0]!) })
    ]],
    ["a claim of six addresses when five were asked for", "PeerValidationError", () => [junk(1, 6)]]
  ]

  for (const [what, tag, peers] of faults) {
    it.scoped(`a responder sending ${what} fails the request (${tag}) and is banned 2 h`, () =>
      Effect.gen(function*() {
        const { a, m } = yield* requesterAndRaw()
        const before = yield* rejected(tag)
        const fiber = yield* a.run(requestPeers({ n: 500, includeClients: true }, m.identity)).pipe(Effect.fork)
        const asked = yield* nextRequest(m)
        yield* sendResponse(
          m,
          a.identity,
          new PeerSyncMessages.PeerSyncResponse({ requestId: asked.requestId, peers: peers(0) })
        )
        const result = yield* Effect.either(Fiber.join(fiber))
        expect(Either.isLeft(result) && result.left._tag).toBe(tag)
        yield* eventually(Effect.map(recordOf(a, m.identity), Option.exists((peer) => peer.isBanned(T0))))
        const relayer = yield* recordOf(a, m.identity)
        expect(Option.map(relayer, (peer) => peer.bannedUntil)).toEqual(Option.some(T0 + 2 * HOUR))
        // the actor records the ban, closes the connection, then publishes: the event may come a step later
        const seen: Array<DhtEvent.DhtEvent> = []
        yield* eventually(Effect.map(eventsSoFar(a), (events) => {
          seen.push(...events)
          return bannedEvents(seen).length > 0
        }))
        yield* settle
        seen.push(...(yield* eventsSoFar(a)))
        expect(bannedEvents(seen)).toEqual([
          expect.objectContaining({ publicKey: m.identity.publicKey, severity: "High", reason: tag })
        ])
        expect((yield* rejected(tag)) - before).toBe(1)
        expect((yield* a.run(Effect.flatMap(PeerSync.PeerSync, (s) => s.inFlight)))).toBe(0)
      }).pipe(Effect.provide(shared)))
  }

  it.scoped("no response within peerSyncTimeout fails the attempt with Timeout, without a ban", () =>
    Effect.gen(function*() {
      const { a, m } = yield* requesterAndRaw()
      const fiber = yield* a.run(requestPeers({ n: 100, includeClients: false }, m.identity)).pipe(Effect.fork)
      yield* nextRequest(m)
      expect(yield* a.run(Effect.flatMap(PeerSync.PeerSync, (s) => s.inFlight))).toBe(1)
      yield* TestClock.adjust(30_000 - 1)
      yield* settle
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      yield* TestClock.adjust(1)
      const result = yield* Effect.either(Fiber.join(fiber))
      expect(Either.isLeft(result) && result.left._tag).toBe("Timeout")
      expect(yield* a.run(Effect.flatMap(PeerSync.PeerSync, (s) => s.inFlight))).toBe(0)
      expect(Option.map(yield* recordOf(a, m.identity), (peer) => peer.isBanned(T0 + 30_000))).toEqual(
        Option.some(false)
      )
    }).pipe(Effect.provide(shared)))

  it.scoped("a response with an unrequested request_id, or one arriving after the timeout, is ignored", () =>
    Effect.gen(function*() {
      const { a, m } = yield* requesterAndRaw()
      const good = yield* identityOf(3)
      const answer = (requestId: number) =>
        sendResponse(
          m,
          a.identity,
          new PeerSyncMessages.PeerSyncResponse({
            requestId,
            peers: Array.from({ length: 2 }, (_, i) => junk(i)).concat([junk(0)]) // a duplicate: would ban
          })
        )
      const fiber = yield* a.run(requestPeers({ n: 100, includeClients: false }, m.identity)).pipe(Effect.fork)
      const asked = yield* nextRequest(m)
      yield* answer((asked.requestId ^ 1) >>> 0)
      yield* settle
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      yield* TestClock.adjust(30_000)
      expect(Either.isLeft(yield* Effect.either(Fiber.join(fiber)))).toBe(true)
      yield* answer(asked.requestId)
      yield* sendResponse(
        m,
        a.identity,
        new PeerSyncMessages.PeerSyncResponse({
          requestId: asked.requestId,
          peers: [relay(good.publicKey, [yield* claimOf(good)])]
        })
      )
      yield* settle
      expect(Option.isNone(yield* recordOf(a, good))).toBe(true)
      expect(Option.map(yield* recordOf(a, m.identity), (peer) => peer.isBanned(T0 + 30_000))).toEqual(
        Option.some(false)
      )
    }).pipe(Effect.provide(shared)))

  it.scoped("peers beyond the source's hourly budget are skipped, counted, unbanned; known ones are duplicates", () =>
    Effect.gen(function*() {
      const cfg = DhtConfig.unsafeMake({ maxPeersAddedPerSourcePerHour: 3 }, quiet)
      const { a, m } = yield* requesterAndRaw(cfg)
      const relayed = yield* Effect.forEach([3, 4, 5, 6, 7, 8], (n) => identityOf(n))
      yield* addPeers(a, [claimedRecord(relayed[0]!, [yield* claimOf(relayed[0]!)], { verified: false })])
      const before = yield* budgetSkipped
      const fiber = yield* a.run(requestPeers({ n: 100, includeClients: false }, m.identity)).pipe(Effect.fork)
      const asked = yield* nextRequest(m)
      const peers = yield* Effect.forEach(
        relayed,
        (identity) => Effect.map(claimOf(identity), (c) => relay(identity.publicKey, [c]))
      )
      yield* sendResponse(m, a.identity, new PeerSyncMessages.PeerSyncResponse({ requestId: asked.requestId, peers }))
      const outcome = yield* Fiber.join(fiber)
      expect(outcome.numNew).toBe(3)
      expect(outcome.numDuplicate).toBe(1)
      expect(outcome.numSkipped).toBe(2)
      expect(outcome.newPeers).toEqual(relayed.slice(1, 4).map((i) => i.nodeId))
      expect((yield* budgetSkipped) - before).toBe(2)
      expect(bannedEvents(yield* eventsSoFar(a))).toEqual([])
    }).pipe(Effect.provide(shared)))
})

describe("responder", () => {
  /** A full responder and a raw requester connected to it; `r` knows `records` besides. */
  const responderAndRaw = (
    records: Effect.Effect<ReadonlyArray<Peer.Peer>, never, Crypto.Crypto>,
    cfg: DhtConfig.Config = quiet
  ) =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const r = yield* startNode(yield* identityOf(1), { config: cfg })
      const q = yield* startRaw(yield* identityOf(2), quiet)
      yield* addPeers(r, yield* records)
      yield* connect(q, r)
      return { r, q }
    })

  it.scoped("omits claims with more addresses than asked for, never truncating, and peers left without (44)", () =>
    Effect.gen(function*() {
      const [p, q6] = yield* Effect.forEach([3, 4], (n) => identityOf(n))
      const long = Array.from({ length: 6 }, (_, i) => `mem://p-${i}`)
      const pLong = yield* claimOf(p!, long, BigInt(T0 / 1000))
      const pShort = yield* claimOf(p!, ["mem://p-a", "mem://p-b"], BigInt(T0 / 1000) - 60n)
      const qLong = yield* claimOf(q6!, long.map((x) => `${x}-q`))
      const { q, r } = yield* responderAndRaw(Effect.succeed([
        claimedRecord(p!, [pShort, pLong], { lastSeen: T0 }),
        claimedRecord(q6!, [qLong], { lastSeen: T0 })
      ]))
      yield* sendRequest(q, r.identity, request({ requestId: 77 }))
      const response = yield* nextResponse(q)
      expect(response.requestId).toBe(77)
      expect(response.peers.map((info) => NodeId.toHex(info.publicKey))).toEqual([NodeId.toHex(p!.publicKey)])
      // the short claim exactly as signed: its signature still verifies at the requester
      expect(response.peers[0]!.claims).toEqual([PeerSyncMessages.fromPeerClaim(pShort)])

      // with room for six addresses the newer, longer claim comes first; max_claims = 1 keeps only it
      yield* TestClock.adjust(10_000)
      yield* sendRequest(q, r.identity, request({ requestId: 78, maxAddressesPerClaim: 6, maxClaims: 1 }))
      const wide = yield* nextResponse(q)
      const claimsByKey = new Map(wide.peers.map((info) => [NodeId.toHex(info.publicKey), info.claims]))
      expect(claimsByKey.get(NodeId.toHex(p!.publicKey))).toEqual([PeerSyncMessages.fromPeerClaim(pLong)])
      expect(claimsByKey.get(NodeId.toHex(q6!.publicKey))).toEqual([PeerSyncMessages.fromPeerClaim(qLong)])
      expect(wide.peers).toHaveLength(2)

      // max_claims = 0 or max_addresses_per_claim = 0 is a bad request: answered with no peers
      yield* TestClock.adjust(10_000)
      yield* sendRequest(q, r.identity, request({ requestId: 79, maxClaims: 0 }))
      expect((yield* nextResponse(q)).peers).toEqual([])
    }).pipe(Effect.provide(shared)))

  it.scoped("serves one request per requester per 10 s; the next is dropped as RateLimited, without a ban", () =>
    Effect.gen(function*() {
      const p = yield* identityOf(3)
      const { q, r } = yield* responderAndRaw(
        Effect.map(claimOf(p), (c) => [claimedRecord(p, [c], { lastSeen: T0 })])
      )
      const before = yield* rejected("RateLimited")
      yield* sendRequest(q, r.identity, request({ requestId: 1 }))
      expect((yield* nextResponse(q)).requestId).toBe(1)
      yield* TestClock.adjust(10_000 - 1)
      yield* sendRequest(q, r.identity, request({ requestId: 2 }))
      yield* eventually(Effect.map(rejected("RateLimited"), (n) => n - before === 1))
      yield* settle
      expect(yield* receivedOf(q)).toEqual([])
      expect(Option.map(yield* recordOf(r, q.identity), (peer) => peer.isBanned(T0 + 10_000))).toEqual(
        Option.some(false)
      )
      yield* TestClock.adjust(1)
      yield* sendRequest(q, r.identity, request({ requestId: 3 }))
      expect((yield* nextResponse(q)).requestId).toBe(3)
    }).pipe(Effect.provide(shared)))

  const withPeers = (count: number) =>
    Effect.flatMap(
      Effect.forEach(Array.from({ length: count }, (_, i) => i + 10), (n) => identityOf(n)),
      (ids) => Effect.forEach(ids, (id) => Effect.map(claimOf(id), (c) => claimedRecord(id, [c], { lastSeen: T0 })))
    )
  const keysOf = (infos: ReadonlyArray<PeerSyncMessages.PeerInfo>) => infos.map((info) => NodeId.toHex(info.publicKey))

  it.scoped("answers with the n eligible peers closest to the requester, at most maxPeersToSyncPerRound (32)", () =>
    Effect.gen(function*() {
      const { q, r } = yield* responderAndRaw(withPeers(120))
      const records = yield* r.run(Effect.flatMap(PeerManager.PeerManager, (table) => table.all))
      const eligible = records.filter((peer) => !NodeId.equals(peer.nodeId, q.identity.nodeId))
      const closestKeys = (n: number) =>
        NodeId.closestOf(q.identity.nodeId, eligible, n, (peer) => peer.nodeId).map((peer) =>
          NodeId.toHex(peer.publicKey)
        )
      yield* sendRequest(q, r.identity, request({ n: 10, requestId: 1 }))
      expect(keysOf((yield* nextResponse(q)).peers)).toEqual(closestKeys(10))
      // the default clamp (SPEC §12.4's is 500: docs/spec-departures.md §6)
      yield* TestClock.adjust(10_000)
      yield* sendRequest(q, r.identity, request({ n: 500, requestId: 2 }))
      expect(keysOf((yield* nextResponse(q)).peers)).toEqual(closestKeys(32))
    }).pipe(Effect.provide(shared)))

  it.scoped("n = 0 means 100 and n above the configured maximum is clamped to it", () =>
    Effect.gen(function*() {
      const wide = DhtConfig.unsafeMake({ networkDiscovery: { enabled: false, maxPeersToSyncPerRound: 500 } }, config)
      const { q, r } = yield* responderAndRaw(withPeers(520), wide)
      yield* sendRequest(q, r.identity, request({ n: 0, requestId: 1 }))
      expect((yield* nextResponse(q)).peers).toHaveLength(100)
      yield* TestClock.adjust(10_000)
      yield* sendRequest(q, r.identity, request({ n: 1000, requestId: 2 }))
      const clamped = yield* nextResponse(q)
      expect(clamped.peers).toHaveLength(500)
      expect(new Set(keysOf(clamped.peers)).size).toBe(500)
      // the requester itself is never among them
      expect(clamped.peers.some((info) => NodeId.equals(info.publicKey, q.identity.publicKey))).toBe(false)
    }).pipe(Effect.provide(shared)))
})
