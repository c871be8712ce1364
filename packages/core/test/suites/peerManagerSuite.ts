/**
 * The `PeerManager` cases (SPEC §2.5, scenario 45) every implementation must pass: core runs them on `layerMemory`,
 * `@comms-dht/store` on its sqlite table. Imports core by package name so that both packages' tests resolve the same
 * modules.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as NodeId from "@comms-dht/core/NodeId"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"

const key = (i: number, salt = 0): NodeId.PublicKey => {
  const bytes = new Uint8Array(32)
  bytes[0] = salt
  bytes[28] = (i >>> 24) & 0xff
  bytes[29] = (i >>> 16) & 0xff
  bytes[30] = (i >>> 8) & 0xff
  bytes[31] = i & 0xff
  return NodeId.PublicKey.make(bytes)
}

const peer = (i: number, options: { readonly nowMs?: number; readonly flags?: number; readonly salt?: number } = {}) =>
  Peer.make({
    publicKey: key(i, options.salt),
    addresses: [`tcp://10.0.0.${i % 250}:18189`],
    features: Peer.PeerFeatures.COMMUNICATION_NODE,
    source: "Join",
    nowMs: options.nowMs ?? 0,
    ...(options.flags === undefined ? {} : { flags: options.flags })
  })

const verified = (p: Peer.Peer, lastSeen: number) => new Peer.Peer({ ...p, verifiedAt: lastSeen, lastSeen })

const skipped = (cause: string) =>
  Effect.map(Metric.value(Metric.tagged(DhtMetrics.peersSkipped, "cause", cause)), (state) => state.count)

const MINUTE = 60_000

const currentMillis = Effect.clockWith((clock) => clock.currentTimeMillis)

/**
 * Declares the `PeerManager` cases under `name`. `layer` must build a fresh, empty store each time it is provided; the
 * suite supplies the `DhtConfig` each case needs.
 */
export const peerManagerSuite = <E>(name: string, layer: Layer.Layer<PeerManager.PeerManager, E>): void => {
  const withTable = (overrides: DhtConfig.Overrides = {}) =>
    Effect.provide(Layer.provide(layer, DhtConfig.layer(DhtConfig.unsafeMake(overrides))))

  describe(name, () => {
    it.effect("getMany: the known peers among the ids, in their order, as they are now; unknown ids left out", () =>
      Effect.gen(function*() {
        const table = yield* PeerManager.PeerManager
        const [a, b, c] = [peer(1), peer(2), peer(3)]
        yield* Effect.forEach([a, b, c], (p) => table.add(p), { discard: true })
        const stranger = peer(9)
        expect(yield* table.getMany([c.nodeId, stranger.nodeId, a.nodeId])).toEqual([c, a])
        expect(yield* table.getMany([])).toEqual([])
        const seen = yield* table.update(b.nodeId, (p) => new Peer.Peer({ ...p, lastSeen: 7 }))
        expect(yield* table.getMany([b.nodeId])).toEqual([seen])
        yield* table.remove(c.nodeId)
        expect(yield* table.getMany([c.nodeId, b.nodeId])).toEqual([seen])
      }).pipe(withTable()))

    it.effect("unsafeGet, where the table offers it, answers as get does, at once", () =>
      Effect.gen(function*() {
        const table = yield* PeerManager.PeerManager
        const unsafeGet = table.unsafeGet
        if (unsafeGet === undefined) return
        const a = peer(1)
        expect(unsafeGet(a.nodeId)).toBeUndefined()
        yield* table.add(a)
        expect(unsafeGet(a.nodeId)).toEqual(yield* table.get(a.nodeId))
        const seen = yield* table.update(a.nodeId, (p) => new Peer.Peer({ ...p, lastSeen: 7 }))
        expect(unsafeGet(a.nodeId)).toEqual(seen)
        yield* table.remove(a.nodeId)
        expect(unsafeGet(a.nodeId)).toBeUndefined()
      }).pipe(withTable()))

    it.effect("getOption: the stored peer, or none for a stranger and after removal", () =>
      Effect.gen(function*() {
        const table = yield* PeerManager.PeerManager
        const a = peer(1)
        yield* table.add(a)
        expect(yield* PeerManager.getOption(table, a.nodeId)).toEqual(Option.some(a))
        expect(yield* PeerManager.getOption(table, peer(9).nodeId)).toEqual(Option.none())
        yield* table.remove(a.nodeId)
        expect(yield* PeerManager.getOption(table, a.nodeId)).toEqual(Option.none())
      }).pipe(withTable()))

    it.effect("adds, updates, finds by NodeId or key, removes", () =>
      Effect.gen(function*() {
        const table = yield* PeerManager.PeerManager
        const alice = peer(1)
        expect(yield* table.add(alice)).toBe("Added")
        expect(yield* table.get(alice.nodeId)).toEqual(alice)
        expect(yield* table.getByPublicKey(alice.publicKey)).toEqual(alice)
        expect(yield* table.exists(alice.nodeId)).toBe(true)

        const renamed = new Peer.Peer({ ...alice, features: Peer.PeerFeatures.COMMUNICATION_CLIENT })
        expect(yield* table.add(renamed)).toBe("Updated")
        expect((yield* table.get(alice.nodeId)).features).toBe(Peer.PeerFeatures.COMMUNICATION_CLIENT)
        expect(yield* table.count).toBe(1)

        const updated = yield* table.update(alice.nodeId, (p) => new Peer.Peer({ ...p, lastSeen: 42 }))
        expect(updated.lastSeen).toBe(42)
        expect((yield* table.get(alice.nodeId)).lastSeen).toBe(42)

        yield* table.remove(alice.nodeId)
        expect(yield* table.exists(alice.nodeId)).toBe(false)
        const missing = yield* Effect.flip(table.get(alice.nodeId))
        expect(missing._tag).toBe("PeerNotFound")
        expect((yield* Effect.flip(table.getByPublicKey(alice.publicKey)))._tag).toBe("PeerNotFound")
        expect((yield* Effect.flip(table.update(alice.nodeId, (p) => p)))._tag).toBe("PeerNotFound")
        expect((yield* Effect.flip(table.ban(alice.nodeId, 1_000, "x")))._tag).toBe("PeerNotFound")
      }).pipe(withTable()))

    it.effect("all: every peer in NodeId order, as it is now; an array read earlier keeps what it held", () =>
      Effect.gen(function*() {
        const table = yield* PeerManager.PeerManager
        const ids = (peers: ReadonlyArray<Peer.Peer>) => peers.map((p) => NodeId.toHex(p.nodeId))
        const inOrder = (peers: ReadonlyArray<Peer.Peer>) => [...ids(peers)].sort()
        const batch = Array.from({ length: 12 }, (_, i) => peer(i + 1))
        yield* table.addMany(batch.slice(0, 8))
        const before = yield* table.all
        const copied = [...before]
        expect(ids(before)).toEqual(inOrder(batch.slice(0, 8)))
        // replaced under their keys: by update, add, ban and a batch that only updates
        const target = before[3]!
        const seen = yield* table.update(target.nodeId, (p) => new Peer.Peer({ ...p, lastSeen: 99 }))
        const renamed = new Peer.Peer({ ...before[0]!, features: Peer.PeerFeatures.COMMUNICATION_CLIENT })
        expect(yield* table.add(renamed)).toBe("Updated")
        yield* table.ban(before[5]!.nodeId, 1_000, "test")
        const relisted = [before[6]!, before[7]!].map((p) => new Peer.Peer({ ...p, lastSeen: 5 }))
        expect(yield* table.addMany(relisted)).toEqual(["Updated", "Updated"])
        const after = yield* table.all
        expect(before).toEqual(copied)
        expect(ids(after)).toEqual(ids(before))
        for (const p of after) expect(p).toEqual(yield* table.get(p.nodeId))
        expect(after[3]).toEqual(seen)
        expect(after[0]!.features).toBe(Peer.PeerFeatures.COMMUNICATION_CLIENT)
        expect(after[5]!.bannedReason).toBe("test")
        // new keys and removals change the order
        yield* table.addMany(batch.slice(8))
        yield* table.remove(target.nodeId)
        const last = yield* table.all
        expect(ids(last)).toEqual(inOrder(batch.filter((p) => !NodeId.equals(p.nodeId, target.nodeId))))
        for (const p of last) expect(p).toEqual(yield* table.get(p.nodeId))
      }).pipe(withTable()))

    it.effect("each build is a fresh, empty table", () =>
      Effect.gen(function*() {
        yield* Effect.flatMap(PeerManager.PeerManager, (t) => t.add(peer(1))).pipe(withTable())
        expect(yield* Effect.flatMap(PeerManager.PeerManager, (t) => t.count).pipe(withTable())).toBe(0)
      }))

    it.effect("keeps the known_peers gauge at the table size", () =>
      Effect.gen(function*() {
        const table = yield* PeerManager.PeerManager
        yield* table.add(peer(1))
        yield* table.add(peer(2))
        expect((yield* Metric.value(DhtMetrics.knownPeers)).value).toBe(2)
        yield* table.remove(peer(1).nodeId)
        expect((yield* Metric.value(DhtMetrics.knownPeers)).value).toBe(1)
      }).pipe(withTable()))

    describe("bans", () => {
      it.effect("expire by the clock, are never shortened, and unban clears them", () =>
        Effect.gen(function*() {
          const table = yield* PeerManager.PeerManager
          const p = peer(1)
          yield* table.add(p)

          const banned = yield* table.ban(p.nodeId, 2 * 60 * MINUTE, "forged signature")
          expect(banned.bannedUntil).toBe(2 * 60 * MINUTE)
          expect(banned.bannedReason).toBe("forged signature")

          // a shorter ban while the long one runs leaves it alone
          const again = yield* table.ban(p.nodeId, 10 * MINUTE, "flooding")
          expect(again.bannedUntil).toBe(2 * 60 * MINUTE)
          expect(again.bannedReason).toBe("forged signature")

          yield* TestClock.adjust("119 minutes")
          expect((yield* table.get(p.nodeId)).isBanned(yield* currentMillis)).toBe(true)
          yield* TestClock.adjust("1 minute")
          expect((yield* table.get(p.nodeId)).isBanned(yield* currentMillis)).toBe(false)

          // once expired, a new ban applies from now
          const fresh = yield* table.ban(p.nodeId, 10 * MINUTE, "flooding")
          expect(fresh.bannedUntil).toBe(130 * MINUTE)
          // a longer ban extends a shorter running one
          const longer = yield* table.ban(p.nodeId, 60 * MINUTE, "invalid claim")
          expect(longer.bannedUntil).toBe(180 * MINUTE)
          expect(longer.bannedReason).toBe("invalid claim")

          yield* table.unban(p.nodeId)
          const unbanned = yield* table.get(p.nodeId)
          expect(unbanned.bannedUntil).toBeUndefined()
          expect(unbanned.bannedReason).toBe("")
          expect(unbanned.isBanned(yield* currentMillis)).toBe(false)
        }).pipe(withTable()))
    })

    describe("capacity (maxKnownPeers)", () => {
      it.effect("evicts the oldest unverified, then the least recently seen verified; never seeds or banned", () =>
        Effect.gen(function*() {
          const table = yield* PeerManager.PeerManager
          const source = peer(999).nodeId
          const seed = peer(1, { flags: Peer.PeerFlags.SEED, nowMs: 0 })
          const bad = peer(2, { nowMs: 0 })
          const unverified = peer(3, { nowMs: 1_000 })
          const old = verified(peer(4, { nowMs: 0 }), 500)
          for (const p of [seed, bad, unverified, old]) yield* table.add(p)
          yield* table.ban(bad.nodeId, 10 * MINUTE, "test")
          expect(yield* table.count).toBe(4)

          // seed and banned are older, but the unverified peer goes
          const n1 = peer(10, { nowMs: 2_000 })
          expect(yield* table.add(n1, { source })).toBe("Added")
          expect(yield* table.exists(unverified.nodeId)).toBe(false)
          expect(yield* table.count).toBe(4)

          // still an unverified candidate (n1, newer than every verified peer): it goes before the verified one
          const n2 = peer(11, { nowMs: 3_000 })
          expect(yield* table.add(n2, { source })).toBe("Added")
          expect(yield* table.exists(n1.nodeId)).toBe(false)
          expect(yield* table.exists(old.nodeId)).toBe(true)

          // no unverified candidate left: the verified peer seen least recently goes
          yield* table.update(n2.nodeId, (p) => verified(p, 4_000))
          const n3 = peer(12, { nowMs: 5_000 })
          expect(yield* table.add(n3, { source })).toBe("Added")
          expect(yield* table.exists(old.nodeId)).toBe(false)
          expect(yield* table.exists(n2.nodeId)).toBe(true)
          expect(yield* table.exists(seed.nodeId)).toBe(true)
          expect(yield* table.exists(bad.nodeId)).toBe(true)

          // everything left is a seed or banned: the newcomer is skipped and counted
          yield* table.ban(n2.nodeId, 10 * MINUTE, "test")
          yield* table.ban(n3.nodeId, 10 * MINUTE, "test")
          const before = yield* skipped("capacity")
          const n4 = peer(13)
          expect(yield* table.add(n4, { source })).toBe("SkippedCapacity")
          expect(yield* table.exists(n4.nodeId)).toBe(false)
          expect((yield* skipped("capacity")) - before).toBe(1)

          // the transport's own registrations and config seeds (no source) are never refused
          expect(yield* table.add(n4)).toBe("Added")
          expect(yield* table.count).toBe(5)

          // bans expire; then the peers are evictable again (unverified bad, added at 0, goes first)
          yield* TestClock.adjust("10 minutes")
          expect(yield* table.add(peer(14), { source })).toBe("Added")
          expect(yield* table.exists(bad.nodeId)).toBe(false)
          expect(yield* table.exists(seed.nodeId)).toBe(true)
        }).pipe(withTable({ maxKnownPeers: 4 })))
    })

    describe("addMany", () => {
      // the same steps on two fresh tables: one batch on the first, one `add` at a time on the second
      const compare = (
        overrides: DhtConfig.Overrides,
        before: ReadonlyArray<Peer.Peer>,
        batch: ReadonlyArray<Peer.Peer>
      ) =>
        Effect.gen(function*() {
          const source = peer(100_000).nodeId
          const run = (batched: boolean) =>
            Effect.gen(function*() {
              const table = yield* PeerManager.PeerManager
              for (const p of before) yield* table.add(p, { source })
              const skips = { budget: yield* skipped("budget"), capacity: yield* skipped("capacity") }
              const results = batched
                ? yield* table.addMany(batch, { source })
                : yield* Effect.forEach(batch, (p) => table.add(p, { source }))
              return {
                results,
                all: yield* table.all,
                budget: (yield* skipped("budget")) - skips.budget,
                capacity: (yield* skipped("capacity")) - skips.capacity
              }
            }).pipe(withTable(overrides))
          const batched = yield* run(true)
          expect(batched).toEqual(yield* run(false))
          return batched
        })
      const moved = (i: number) => new Peer.Peer({ ...peer(i), addresses: [] })

      it.effect("one batch does what `add` one peer at a time does: new, updated, and over the source's budget", () =>
        Effect.gen(function*() {
          const batch = [peer(3), moved(1), ...Array.from({ length: 10 }, (_, k) => peer(10 + k)), peer(2)]
          const outcome = yield* compare({ maxPeersAddedPerSourcePerHour: 8 }, [peer(1), peer(2), peer(4)], batch)
          // 3 of the budget's 8 were spent before: 5 new peers fit, the rest is skipped; known peers are updates
          expect(outcome.results).toEqual([
            "Added",
            "Updated",
            ...Array.from({ length: 4 }, () => "Added"),
            ...Array.from({ length: 6 }, () => "SkippedBudget"),
            "Updated"
          ])
          expect(outcome.budget).toBe(6)
          expect(outcome.all.find((p) => NodeId.equals(p.nodeId, peer(1).nodeId))?.addresses).toEqual([])
        }))

      it.effect("a batch that fills the table evicts as `add` does, and one naming a peer twice updates it", () =>
        Effect.gen(function*() {
          const full = yield* compare(
            { maxKnownPeers: 4 },
            [peer(1), verified(peer(2), 5)],
            Array.from({ length: 5 }, (_, k) => peer(10 + k))
          )
          expect(full.results).toEqual(["Added", "Added", "Added", "Added", "Added"])
          expect(full.all).toHaveLength(4)
          const twice = yield* compare({}, [], [peer(1), peer(2), moved(1)])
          expect(twice.results).toEqual(["Added", "Added", "Updated"])
          expect(yield* compare({}, [peer(1)], [])).toMatchObject({ results: [], budget: 0, capacity: 0 })
        }))
    })

    describe("per-source budget (maxPeersAddedPerSourcePerHour)", () => {
      it.effect("a source adding 501 new peers within an hour has the last one skipped", () =>
        Effect.gen(function*() {
          const table = yield* PeerManager.PeerManager
          const source = peer(100_000).nodeId
          const before = yield* skipped("budget")
          for (let i = 0; i < 500; i++) {
            expect(yield* table.add(peer(i), { source })).toBe("Added")
          }
          expect(yield* table.add(peer(500), { source })).toBe("SkippedBudget")
          expect(yield* table.exists(peer(500).nodeId)).toBe(false)
          expect((yield* skipped("budget")) - before).toBe(1)

          // updates of known peers are not new peers; other sources and source-less adds have their own budget
          expect(yield* table.add(peer(0), { source })).toBe("Updated")
          expect(yield* table.add(peer(500), { source: peer(100_001).nodeId })).toBe("Added")
          expect(yield* table.add(peer(501))).toBe("Added")
        }).pipe(withTable()))

      it.effect("the budget is a sliding hour of one-minute buckets", () =>
        Effect.gen(function*() {
          const table = yield* PeerManager.PeerManager
          const source = peer(100_000).nodeId
          for (let i = 0; i < 6; i++) yield* table.add(peer(i), { source })
          yield* TestClock.adjust("30 minutes")
          for (let i = 6; i < 10; i++) yield* table.add(peer(i), { source })
          expect(yield* table.add(peer(10), { source })).toBe("SkippedBudget")

          yield* TestClock.adjust("29 minutes") // minute 59: the first 6 still count
          expect(yield* table.add(peer(10), { source })).toBe("SkippedBudget")
          yield* TestClock.adjust("1 minute") // minute 60: they fall out of the window
          for (let i = 10; i < 16; i++) expect(yield* table.add(peer(i), { source })).toBe("Added")
          expect(yield* table.add(peer(16), { source })).toBe("SkippedBudget")
        }).pipe(withTable({ maxPeersAddedPerSourcePerHour: 10 })))
    })

    describe("selection", () => {
      it.effect("closest sorts by XOR distance and honours the query", () =>
        Effect.gen(function*() {
          const table = yield* PeerManager.PeerManager
          const peers = Array.from({ length: 30 }, (_, i) => peer(i))
          for (const p of peers) yield* table.add(p)
          const target = peer(1_000).nodeId
          const byDistance = peers.slice().sort((a, b) => NodeId.byDistanceTo(target)(a.nodeId, b.nodeId))

          const five = yield* table.closest(target, 5)
          const hex = (ps: ReadonlyArray<Peer.Peer>) => ps.map((p) => NodeId.toHex(p.nodeId))
          expect(hex(five)).toEqual(hex(byDistance.slice(0, 5)))

          const [first, second] = byDistance
          yield* table.ban(first!.nodeId, MINUTE, "test")
          yield* table.update(second!.nodeId, (p) => verified(p, 1))
          const unbanned = yield* table.closest(target, 1, { excludeBanned: true })
          expect(unbanned.map((p) => p.nodeId)).toEqual([second!.nodeId])
          const onlyVerified = yield* table.closest(target, 10, { verifiedOnly: true })
          expect(onlyVerified.map((p) => p.nodeId)).toEqual([second!.nodeId])
          const excluded = yield* table.closest(target, 2, { excluded: [first!.nodeId] })
          expect(excluded.map((p) => p.nodeId)).toEqual([second!.nodeId, byDistance[2]!.nodeId])
          expect(yield* table.closest(target, 10, { features: Peer.PeerFeatures.COMMUNICATION_CLIENT })).toEqual([])
        }).pipe(withTable()))

      it.effect("closerCount: the matching peers nearer the target than a node, up to a limit, as closest ranks", () =>
        Effect.gen(function*() {
          const table = yield* PeerManager.PeerManager
          const peers = Array.from({ length: 30 }, (_, i) => peer(i))
          for (const p of peers) yield* table.add(p)
          for (const p of peers.slice(0, 6)) yield* table.ban(p.nodeId, MINUTE, "test")
          for (const p of peers.slice(3, 20)) yield* table.update(p.nodeId, (q) => verified(q, 1))
          const own = table.closerCount
          expect(own).toBeDefined()
          // the helper's fallback, for a table without its own count
          const { closerCount: _, ...withoutCount } = table
          const queries: ReadonlyArray<PeerManager.PeerQuery | undefined> = [
            undefined,
            { excludeBanned: true, verifiedOnly: true },
            { excluded: [peers[7]!.nodeId, peers[8]!.nodeId] },
            { features: Peer.PeerFeatures.COMMUNICATION_CLIENT }
          ]
          const now = yield* currentMillis
          const all = yield* table.all
          for (const target of [peer(1_000).nodeId, peers[12]!.nodeId, peer(77, { salt: 9 }).nodeId]) {
            for (const nodeId of [peers[0]!.nodeId, peers[12]!.nodeId, peers[25]!.nodeId, peer(500).nodeId]) {
              for (const query of queries) {
                const matches = PeerManager.matchesQuery(query, now)
                const closer = all.filter((p) => matches(p) && NodeId.isCloser(target, p.nodeId, nodeId)).length
                for (const limit of [0, 1, 3, 8, 40]) {
                  const expected = Math.min(limit, closer)
                  expect(yield* own!(target, nodeId, limit, query)).toBe(expected)
                  expect(yield* PeerManager.closerCount(table, target, nodeId, limit, query)).toBe(expected)
                  expect(yield* PeerManager.closerCount(withoutCount, target, nodeId, limit, query)).toBe(expected)
                  // a matching peer is among the n closest exactly when fewer than n are closer
                  if (limit > 0 && all.some((p) => NodeId.equals(p.nodeId, nodeId) && matches(p))) {
                    const closest = yield* table.closest(target, limit, query)
                    expect(closest.some((p) => NodeId.equals(p.nodeId, nodeId))).toBe(expected < limit)
                  }
                }
              }
            }
          }
        }).pipe(withTable()))

      it.effect("random draws distinct matching peers, reproducibly for a seed", () =>
        Effect.gen(function*() {
          const table = yield* PeerManager.PeerManager
          const peers = Array.from({ length: 20 }, (_, i) => peer(i))
          for (const p of peers) yield* table.add(p)
          const hex = (ps: ReadonlyArray<Peer.Peer>) => ps.map((p) => NodeId.toHex(p.nodeId))

          const a = yield* table.random(5).pipe(Effect.withRandom(Random.make("seed")))
          const b = yield* table.random(5).pipe(Effect.withRandom(Random.make("seed")))
          expect(hex(a)).toEqual(hex(b))
          expect(new Set(hex(a)).size).toBe(5)

          const all = yield* table.random(50)
          expect(new Set(hex(all))).toEqual(new Set(hex(peers)))

          yield* table.ban(peers[0]!.nodeId, MINUTE, "test")
          const unbanned = yield* table.random(50, { excludeBanned: true })
          expect(unbanned.length).toBe(19)
          expect(hex(unbanned)).not.toContain(NodeId.toHex(peers[0]!.nodeId))

          // uniform: over many seeded draws of one peer every peer comes up about equally often
          const counts = new Map<string, number>()
          for (let i = 0; i < 4_000; i++) {
            const [one] = yield* table.random(1)
            const h = NodeId.toHex(one!.nodeId)
            counts.set(h, (counts.get(h) ?? 0) + 1)
          }
          expect(counts.size).toBe(20)
          for (const n of counts.values()) expect(n).toBeGreaterThan(120) // expected 200 each
        }).pipe(withTable(), Effect.withRandom(Random.make(7))))
    })
  })
}
