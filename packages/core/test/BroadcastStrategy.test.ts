import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fc from "effect/FastCheck"
import * as Random from "effect/Random"
import * as BroadcastStrategy from "../src/BroadcastStrategy.js"
import * as DhtConfig from "../src/DhtConfig.js"
import * as NodeId from "../src/NodeId.js"
import * as Peer from "../src/Peer.js"

const { COMMUNICATION_CLIENT: C, COMMUNICATION_NODE: N, DHT_STORE_FORWARD: S, MESSAGE_PROPAGATION: P } =
  Peer.PeerFeatures

// Every id is `target XOR delta` with `delta` non-zero in the first byte only, so the XOR distance of peer i to the
// target is i · 2^96: the table below reads directly as "peer i is the i-th closest to the target".
const destinationKey = NodeId.PublicKey.make(new Uint8Array(32).fill(7))
const target = NodeId.fromPublicKey(destinationKey)
const idAt = (delta: number, last = 0): NodeId.NodeId => {
  const out = Uint8Array.from(target)
  out[0] = out[0]! ^ delta
  out[12] = out[12]! ^ last
  return NodeId.NodeId.make(out)
}

interface Row {
  readonly features: number
  readonly connected: boolean
  readonly verified: boolean
  readonly banned?: boolean
  readonly offline?: boolean
}

// the hand-built 20-peer table (index = distance rank to the target)
const rows: Record<number, Row> = {
  1: { features: N, connected: true, verified: true },
  2: { features: N, connected: true, verified: true },
  3: { features: C, connected: true, verified: true },
  4: { features: N, connected: false, verified: true, banned: true },
  5: { features: N, connected: true, verified: true, banned: true },
  6: { features: N, connected: false, verified: false },
  7: { features: P, connected: true, verified: true },
  8: { features: N, connected: true, verified: true },
  9: { features: S, connected: false, verified: true },
  10: { features: N, connected: true, verified: true },
  11: { features: C, connected: false, verified: true },
  12: { features: N, connected: true, verified: true },
  13: { features: N, connected: false, verified: false },
  14: { features: N, connected: true, verified: true },
  15: { features: N, connected: false, verified: true, offline: true },
  16: { features: N, connected: true, verified: true },
  17: { features: N, connected: false, verified: true },
  18: { features: N, connected: true, verified: true },
  19: { features: N, connected: false, verified: true },
  20: { features: N, connected: true, verified: true }
}

const NOW = 1_000_000
const keyOf = (i: number) => NodeId.PublicKey.make(new Uint8Array(32).fill(100 + i))

const peerAt = (i: number, row: Row) =>
  new Peer.Peer({
    publicKey: keyOf(i),
    nodeId: idAt(i),
    addresses: [
      new Peer.PeerAddress({ address: `tcp://10.0.0.${i}:18189`, connectionFailures: 0, source: "Join" })
    ],
    features: row.features,
    flags: Peer.PeerFlags.NONE,
    bannedReason: row.banned === true ? "test" : "",
    addedAt: 0,
    ...(row.banned === true ? { bannedUntil: NOW + 60_000 } : {}),
    ...(row.offline === true ? { offlineAt: NOW - 1 } : {}),
    ...(row.verified ? { verifiedAt: 1 } : {})
  })

const table = Object.entries(rows).map(([i, row]) => peerAt(Number(i), row))
const byIndex = new Map(table.map((p, k) => [k + 1, p]))
const id = (i: number) => byIndex.get(i)!.nodeId
const hexOf = (ids: ReadonlyArray<NodeId.NodeId>) => ids.map(NodeId.toHex)
const indexOf = (ids: ReadonlyArray<NodeId.NodeId>): Array<number> =>
  ids.map((x) => table.findIndex((p) => NodeId.equals(p.nodeId, x)) + 1)
const connectedSet = new Set(table.filter((_, k) => rows[k + 1]!.connected).map((p) => NodeId.toHex(p.nodeId)))

const context = (overrides: Partial<BroadcastStrategy.SelectionContext> = {}): BroadcastStrategy.SelectionContext => ({
  ...BroadcastStrategy.makeContext(DhtConfig.defaultConfig, {
    self: idAt(12, 1), // just farther from the target than peer 12
    peers: table,
    connected: connectedSet,
    nowMs: NOW,
    isOrigin: true
  }),
  ...overrides
})

const select = (strategy: BroadcastStrategy.BroadcastStrategy, ctx = context()) =>
  BroadcastStrategy.select(strategy, ctx)

const sorted = (xs: ReadonlyArray<number>) => xs.slice().sort((a, b) => a - b)

// connected communication nodes, not banned
const CONNECTED_NODES = [1, 2, 8, 10, 12, 14, 16, 18, 20]

describe("BroadcastStrategy.select", () => {
  it.effect("DirectPublicKey / DirectNodeId: the known peer, else nothing; never a banned one", () =>
    Effect.gen(function*() {
      expect(indexOf(yield* select(BroadcastStrategy.DirectPublicKey({ publicKey: keyOf(17) })))).toEqual([17])
      expect(yield* select(BroadcastStrategy.DirectPublicKey({ publicKey: destinationKey }))).toEqual([])
      expect(yield* select(BroadcastStrategy.DirectPublicKey({ publicKey: keyOf(4) }))).toEqual([])
      expect(indexOf(yield* select(BroadcastStrategy.DirectNodeId({ nodeId: id(6) })))).toEqual([6])
      expect(yield* select(BroadcastStrategy.DirectNodeId({ nodeId: idAt(99) }))).toEqual([])
      expect(yield* select(BroadcastStrategy.DirectNodeId({ nodeId: id(5) }))).toEqual([])
    }))

  it.effect("Flood: every connected communication node not excluded", () =>
    Effect.gen(function*() {
      expect(sorted(indexOf(yield* select(BroadcastStrategy.Flood({ excluded: [] }))))).toEqual(CONNECTED_NODES)
      expect(sorted(indexOf(yield* select(BroadcastStrategy.Flood({ excluded: [id(2), id(20)] })))))
        .toEqual([1, 8, 10, 12, 14, 16, 18])
    }))

  it.effect("Broadcast: broadcastFactor random connected communication nodes", () =>
    Effect.gen(function*() {
      const picked = indexOf(yield* select(BroadcastStrategy.Broadcast({ excluded: [] })))
      expect(picked.length).toBe(8)
      expect(new Set(picked).size).toBe(8)
      for (const i of picked) expect(CONNECTED_NODES).toContain(i)
      // with one excluded exactly eight remain, so all of them are chosen
      expect(sorted(indexOf(yield* select(BroadcastStrategy.Broadcast({ excluded: [id(1)] })))))
        .toEqual([2, 8, 10, 12, 14, 16, 18, 20])
    }))

  it.effect("Random: n known communication nodes, not offline or banned, connected or not", () =>
    Effect.gen(function*() {
      const eligible = [1, 2, 6, 8, 10, 12, 13, 14, 16, 17, 18, 19, 20]
      expect(sorted(indexOf(yield* select(BroadcastStrategy.Random({ n: 50, excluded: [] }))))).toEqual(eligible)
      expect(sorted(indexOf(yield* select(BroadcastStrategy.Random({ n: 50, excluded: [id(6), id(19)] })))))
        .toEqual(eligible.filter((i) => i !== 6 && i !== 19))
      const three = indexOf(yield* select(BroadcastStrategy.Random({ n: 3, excluded: [] })))
      expect(new Set(three).size).toBe(3)
      for (const i of three) expect(eligible).toContain(i)
    }))

  it.effect("random strategies are reproducible under a seeded Random, whatever the table's order", () =>
    Effect.gen(function*() {
      const strategies = [
        BroadcastStrategy.Random({ n: 4, excluded: [] }),
        BroadcastStrategy.Broadcast({ excluded: [] }),
        BroadcastStrategy.Propagate({ destination: { _tag: "Unknown" }, excluded: [] })
      ]
      for (const strategy of strategies) {
        const a = yield* select(strategy).pipe(Effect.withRandom(Random.make(1)))
        const b = yield* select(strategy, context({ peers: table.slice().reverse() })).pipe(
          Effect.withRandom(Random.make(1))
        )
        expect(hexOf(a)).toEqual(hexOf(b))
      }
      // and different seeds do choose differently
      const draws = new Set<string>()
      for (let seed = 0; seed < 20; seed++) {
        const r = yield* select(BroadcastStrategy.Random({ n: 4, excluded: [] })).pipe(
          Effect.withRandom(Random.make(seed))
        )
        draws.add(hexOf(r).join())
      }
      expect(draws.size).toBeGreaterThan(1)
    }))

  it.effect("ClosestNodes connectedOnly: the 8 connected communication nodes closest by XOR", () =>
    Effect.gen(function*() {
      const closest = (excluded: ReadonlyArray<NodeId.NodeId>) =>
        select(BroadcastStrategy.ClosestNodes({ id: target, excluded, connectedOnly: true }))
      expect(indexOf(yield* closest([]))).toEqual([1, 2, 8, 10, 12, 14, 16, 18])
      expect(indexOf(yield* closest([id(8)]))).toEqual([1, 2, 10, 12, 14, 16, 18, 20])
    }))

  it.effect("ClosestNodes: the 8 closest verified communication nodes, not banned/offline, connected or not", () =>
    Effect.gen(function*() {
      // 4, 5 banned; 6, 13 unverified; 15 offline; 3, 7, 9, 11 not communication nodes
      expect(indexOf(yield* select(BroadcastStrategy.ClosestNodes({ id: target, excluded: [], connectedOnly: false }))))
        .toEqual([1, 2, 8, 10, 12, 14, 16, 17])
      // closest to peer 17: distances are i XOR 17 → 17:0, 16:1, 19:2, 18:3, 20:5, 1:16, 2:19, 8:25
      expect(indexOf(yield* select(BroadcastStrategy.ClosestNodes({ id: id(17), excluded: [], connectedOnly: false }))))
        .toEqual([17, 16, 19, 18, 20, 1, 2, 8])
      expect(
        indexOf(yield* select(BroadcastStrategy.ClosestNodes({ id: id(17), excluded: [id(17)], connectedOnly: false })))
      ).toEqual([16, 19, 18, 20, 1, 2, 8, 10])
    }))

  it.effect("DirectOrClosestNodes: [id] when connected to it (not banned), else ClosestNodes", () =>
    Effect.gen(function*() {
      const direct = BroadcastStrategy.DirectOrClosestNodes({ id: id(10), excluded: [], connectedOnly: false })
      const resolved = yield* select(direct)
      expect(indexOf(resolved)).toEqual([10])
      expect(BroadcastStrategy.isBroadcast(direct, resolved)).toBe(false)

      const far = BroadcastStrategy.DirectOrClosestNodes({ id: id(17), excluded: [], connectedOnly: false })
      const closest = yield* select(far)
      expect(indexOf(closest)).toEqual([17, 16, 19, 18, 20, 1, 2, 8])
      expect(BroadcastStrategy.isBroadcast(far, closest)).toBe(true)

      // connected but banned: no direct send
      const banned = BroadcastStrategy.DirectOrClosestNodes({ id: id(5), excluded: [], connectedOnly: true })
      expect(indexOf(yield* select(banned))).not.toContain(5)
    }))

  it.effect("SelectedPeers: exactly the ids, minus banned ones and duplicates", () =>
    Effect.gen(function*() {
      const unknown = idAt(99)
      const picked = yield* select(BroadcastStrategy.SelectedPeers({ ids: [id(17), id(4), unknown, id(17), id(3)] }))
      expect(hexOf(picked)).toEqual(hexOf([id(17), unknown, id(3)]))
    }))

  describe("Propagate", () => {
    const toTarget = (excluded: ReadonlyArray<NodeId.NodeId> = []) =>
      BroadcastStrategy.Propagate({ destination: { _tag: "PublicKey", publicKey: destinationKey }, excluded })

    it.effect("connected to the destination → only it", () =>
      Effect.gen(function*() {
        const connected = new Set([...connectedSet, NodeId.toHex(target)])
        expect(yield* select(toTarget(), context({ connected }))).toEqual([target])
        // unless excluded: then greedy as usual
        expect(indexOf(yield* select(toTarget([target]), context({ connected })))).toEqual([1, 2, 7])
      }))

    it.effect("greedy: connected propagators strictly closer than this node, closest first, at most 3", () =>
      Effect.gen(function*() {
        // closer than self (just past 12): 1, 2, 3 (client), 5 (banned), 7 (propagation only), 8, 10, 12
        expect(indexOf(yield* select(toTarget()))).toEqual([1, 2, 7])
        expect(indexOf(yield* select(toTarget([id(1), id(7)])))).toEqual([2, 8, 10])
        // from farther away the set of closer peers is the same; from just past 8, only 1, 2, 7, 8 qualify
        expect(indexOf(yield* select(toTarget([id(1), id(2)]), context({ self: idAt(8, 1) })))).toEqual([7, 8])
        // a forwarder uses the same rule
        expect(indexOf(yield* select(toTarget(), context({ isOrigin: false })))).toEqual([1, 2, 7])
      }))

    it.effect("factor: caps the closer peers a hop takes instead of propagationFactor", () =>
      Effect.gen(function*() {
        const withFactor = (factor: number) =>
          BroadcastStrategy.Propagate({
            destination: { _tag: "PublicKey", publicKey: destinationKey },
            excluded: [],
            factor
          })
        expect(indexOf(yield* select(withFactor(1)))).toEqual([1])
        expect(indexOf(yield* select(withFactor(5)))).toEqual([1, 2, 7, 8, 10])
        // the origin's fallback (none closer) is not the factor's
        expect(indexOf(yield* select(withFactor(1), context({ self: idAt(0, 1), isOrigin: true })))).toEqual([1, 2])
      }))

    it.effect("no closer peer: the origin falls back to the 2 closest connected, a forwarder sends nothing", () =>
      Effect.gen(function*() {
        const nearest = idAt(0, 1) // closer to the target than any peer of the table
        expect(indexOf(yield* select(toTarget(), context({ self: nearest, isOrigin: true })))).toEqual([1, 2])
        expect(indexOf(yield* select(toTarget([id(1)]), context({ self: nearest, isOrigin: true })))).toEqual([2, 3])
        expect(yield* select(toTarget(), context({ self: nearest, isOrigin: false }))).toEqual([])
      }))

    it.effect("unknown destination: gossipFactor random connected communication nodes", () =>
      Effect.gen(function*() {
        const gossip = indexOf(
          yield* select(
            BroadcastStrategy.Propagate({ destination: { _tag: "Unknown" }, excluded: [id(1)] }),
            // fewer than the 8 candidates, so the draw is a choice
            context({ gossipFactor: 5 })
          )
        )
        expect(gossip.length).toBe(5)
        expect(new Set(gossip).size).toBe(5)
        for (const i of gossip) expect(CONNECTED_NODES.filter((x) => x !== 1)).toContain(i)
      }))
  })

  describe("excludedDialAddresses", () => {
    it.effect("peers whose every address is excluded are skipped", () =>
      Effect.gen(function*() {
        const partly = table.map((p, k) =>
          k + 1 === 2
            ? new Peer.Peer({
              ...p,
              addresses: [
                ...p.addresses,
                new Peer.PeerAddress({ address: "tcp://192.168.1.2:18189", connectionFailures: 0, source: "Join" })
              ]
            })
            : p
        )
        const ctx = context({ peers: partly, excludedDialAddresses: ["tcp://10.0.0.1*:*", "tcp://*.0.0.2:18189"] })
        // 1 and 10–19 are refused; 2 keeps its 192.168 address
        expect(sorted(indexOf(yield* select(BroadcastStrategy.Flood({ excluded: [] }), ctx)))).toEqual([2, 8, 20])
        const closest = BroadcastStrategy.ClosestNodes({ id: target, excluded: [], connectedOnly: false })
        expect(indexOf(yield* select(closest, ctx))).toEqual([2, 8, 20])
      }))

    it.effect("a selection emptied by the filter is PeerSelectionFailed; one empty anyway is not", () =>
      Effect.gen(function*() {
        const ctx = context({ excludedDialAddresses: ["tcp://10.0.0.*:*"] })
        const error = yield* Effect.flip(select(BroadcastStrategy.Flood({ excluded: [] }), ctx))
        expect(error._tag).toBe("PeerSelectionFailed")
        expect((yield* Effect.flip(select(BroadcastStrategy.DirectNodeId({ nodeId: id(17) }), ctx)))._tag)
          .toBe("PeerSelectionFailed")
        expect(yield* select(BroadcastStrategy.DirectNodeId({ nodeId: idAt(99) }), ctx)).toEqual([])
        // a peer in the connected set but unknown to the table has no addresses to refuse
        const connected = new Set([NodeId.toHex(target)])
        expect(yield* select(BroadcastStrategy.SelectedPeers({ ids: [target] }), context({ ...ctx, connected })))
          .toEqual([target])
      }))
  })
})

describe("BroadcastStrategy.isBroadcast", () => {
  it("is true for the fan-out strategies and false for direct ones", () => {
    const resolved = [id(1)]
    expect(BroadcastStrategy.isBroadcast(BroadcastStrategy.Flood({ excluded: [] }), resolved)).toBe(true)
    expect(BroadcastStrategy.isBroadcast(BroadcastStrategy.Broadcast({ excluded: [] }), resolved)).toBe(true)
    expect(BroadcastStrategy.isBroadcast(BroadcastStrategy.Random({ n: 1, excluded: [] }), resolved)).toBe(true)
    expect(
      BroadcastStrategy.isBroadcast(
        BroadcastStrategy.ClosestNodes({ id: id(1), excluded: [], connectedOnly: true }),
        resolved
      )
    ).toBe(true)
    expect(
      BroadcastStrategy.isBroadcast(
        BroadcastStrategy.Propagate({ destination: { _tag: "Unknown" }, excluded: [] }),
        resolved
      )
    ).toBe(true)
    expect(BroadcastStrategy.isBroadcast(BroadcastStrategy.DirectNodeId({ nodeId: id(1) }), resolved)).toBe(false)
    expect(BroadcastStrategy.isBroadcast(BroadcastStrategy.DirectPublicKey({ publicKey: keyOf(1) }), resolved))
      .toBe(false)
    expect(BroadcastStrategy.isBroadcast(BroadcastStrategy.SelectedPeers({ ids: resolved }), resolved)).toBe(false)
    const doc = BroadcastStrategy.DirectOrClosestNodes({ id: id(1), excluded: [], connectedOnly: true })
    expect(BroadcastStrategy.isBroadcast(doc, [id(1)])).toBe(false)
    expect(BroadcastStrategy.isBroadcast(doc, [id(2)])).toBe(true)
    expect(BroadcastStrategy.isBroadcast(doc, [id(1), id(2)])).toBe(true)
  })
})

describe("thresholds (§2.3)", () => {
  const ctx = { peers: table, nowMs: NOW }
  const d = (i: number) => BigInt(i) << 96n

  it("threshold is the n-th smallest distance among verified, unbanned, online peers with those features", () => {
    // verified communication nodes not banned or offline: 1, 2, 8, 10, 12, 14, 16, 17, 18, 19, 20
    expect(BroadcastStrategy.threshold(ctx, target, 1, N)).toBe(d(1))
    expect(BroadcastStrategy.threshold(ctx, target, 3, N)).toBe(d(8))
    expect(BroadcastStrategy.threshold(ctx, target, 11, N)).toBe(d(20))
    expect(BroadcastStrategy.threshold(ctx, target, 12, N)).toBe(BroadcastStrategy.MAX_DISTANCE)
    expect(BroadcastStrategy.threshold(ctx, target, 0, N)).toBe(BroadcastStrategy.MAX_DISTANCE)
    // clients: 3 and 11
    expect(BroadcastStrategy.threshold(ctx, target, 2, C)).toBe(d(11))
    expect(BroadcastStrategy.threshold({ peers: [], nowMs: NOW }, target, 1, N)).toBe(BroadcastStrategy.MAX_DISTANCE)
  })

  it("inRegion: within either the node or the client threshold", () => {
    expect(BroadcastStrategy.inRegion(ctx, idAt(2), target, 2)).toBe(true) // node threshold 2
    expect(BroadcastStrategy.inRegion(ctx, idAt(9), target, 2)).toBe(true) // client threshold 11
    expect(BroadcastStrategy.inRegion(ctx, idAt(13), target, 2)).toBe(false)
    expect(BroadcastStrategy.inRegion(ctx, idAt(13), target, 3)).toBe(true) // only 2 clients: MAX_DISTANCE
    expect(BroadcastStrategy.MAX_DISTANCE > BroadcastStrategy.distanceValue(idAt(255, 255), target)).toBe(true)
  })
})

describe("BroadcastStrategy.peersToRead", () => {
  // the hand-built rows again, with NodeIds derived from the keys as in any real table (SPEC §2.2): the direct and
  // propagated strategies name a key, and the records to read are found by the NodeId it derives
  const derived = table.map((p) => new Peer.Peer({ ...p, nodeId: NodeId.fromPublicKey(p.publicKey) }))
  const at = (i: number) => derived[i - 1]!.nodeId
  // a strategy over the table's indices (0 = a key the table does not know), with what it may exclude
  const index = fc.integer({ min: 0, max: 20 })
  const idOf = (i: number) => i === 0 ? NodeId.fromPublicKey(destinationKey) : at(i)
  const keyAt = (i: number) => i === 0 ? destinationKey : keyOf(i)
  const strategy: fc.Arbitrary<BroadcastStrategy.BroadcastStrategy> = fc.tuple(
    fc.integer({ min: 0, max: 9 }),
    index,
    fc.array(index, { maxLength: 6 }),
    fc.boolean(),
    fc.integer({ min: 0, max: 25 })
  ).map(([kind, i, others, flag, n]) => {
    const excluded = others.map(idOf)
    switch (kind) {
      case 0:
        return BroadcastStrategy.DirectPublicKey({ publicKey: keyAt(i) })
      case 1:
        return BroadcastStrategy.DirectNodeId({ nodeId: idOf(i) })
      case 2:
        return BroadcastStrategy.Flood({ excluded })
      case 3:
        return BroadcastStrategy.Broadcast({ excluded })
      case 4:
        return BroadcastStrategy.Random({ n, excluded })
      case 5:
        return BroadcastStrategy.ClosestNodes({ id: idOf(i), excluded, connectedOnly: flag })
      case 6:
        return BroadcastStrategy.DirectOrClosestNodes({ id: idOf(i), excluded, connectedOnly: flag })
      case 7:
        return BroadcastStrategy.SelectedPeers({ ids: [idOf(i), ...excluded] })
      case 8:
        return BroadcastStrategy.Propagate({
          destination: { _tag: "PublicKey", publicKey: keyAt(i) },
          excluded
        })
      default:
        return BroadcastStrategy.Propagate({ destination: { _tag: "Unknown" }, excluded })
    }
  })

  it.effect.prop(
    "a context holding only the records it names selects what the whole table selects",
    [strategy, fc.subarray(table.map((_, k) => k + 1)), fc.boolean(), fc.integer(), fc.boolean()],
    ([strategy, connectedIndices, isOrigin, seed, repeat]) =>
      Effect.gen(function*() {
        // a transport's list may (wrongly) name a connection twice: still each record once
        const listed = connectedIndices.map(at)
        const connected = repeat && listed.length > 0 ? [...listed, listed[0]!] : listed
        const full = context({ peers: derived, connected: new Set(connected.map(NodeId.toHex)), isOrigin })
        const wanted = BroadcastStrategy.peersToRead(strategy, connected)
        const byHex = new Map(derived.map((p) => [NodeId.toHex(p.nodeId), p]))
        const partial = wanted === "All"
          ? full
          : { ...full, peers: wanted.flatMap((x) => byHex.get(NodeId.toHex(x)) ?? []) }
        if (wanted !== "All") expect(new Set(wanted.map(NodeId.toHex)).size).toBe(wanted.length)
        const run = (ctx: BroadcastStrategy.SelectionContext) =>
          Effect.either(BroadcastStrategy.select(strategy, ctx)).pipe(Effect.withRandom(Random.make(seed)))
        expect(yield* run(partial)).toEqual(yield* run(full))
      }),
    { fastCheck: { numRuns: 500 } }
  )

  it("names no more than the connections and the targets for the strategies that forward and send", () => {
    const connected = [at(1), at(2)]
    expect(BroadcastStrategy.peersToRead(BroadcastStrategy.DirectNodeId({ nodeId: at(9) }), connected))
      .toEqual([at(9)])
    expect(BroadcastStrategy.peersToRead(BroadcastStrategy.Flood({ excluded: [] }), connected)).toEqual(connected)
    expect(
      BroadcastStrategy.peersToRead(
        BroadcastStrategy.Propagate({
          destination: { _tag: "PublicKey", publicKey: keyOf(1) },
          excluded: []
        }),
        connected
      )
    ).toEqual(connected)
    expect(BroadcastStrategy.peersToRead(BroadcastStrategy.Random({ n: 3, excluded: [] }), connected)).toBe("All")
  })
})

describe("BroadcastStrategy.drawFromConnections", () => {
  const byHex = new Map(table.map((p) => [NodeId.toHex(p.nodeId), p]))
  const reader = (reads: Array<NodeId.NodeId>) => (ids: ReadonlyArray<NodeId.NodeId>) =>
    Effect.sync(() => {
      reads.push(...ids)
      return ids.flatMap((x) => byHex.get(NodeId.toHex(x)) ?? [])
    })
  const self = idAt(12, 1)
  const draw = (
    strategy: BroadcastStrategy.BroadcastStrategy,
    connected: ReadonlyArray<NodeId.NodeId>,
    config: DhtConfig.Config = DhtConfig.defaultConfig,
    reads: Array<NodeId.NodeId> = []
  ) => {
    const drawn = BroadcastStrategy.drawFromConnections(strategy, config, { self, connected, nowMs: NOW }, reader(reads))
    if (drawn === undefined) return Effect.dieMessage("the strategy draws from its connections")
    return drawn
  }
  const gossip = (excluded: ReadonlyArray<NodeId.NodeId>) =>
    BroadcastStrategy.Propagate({ destination: { _tag: "Unknown" }, excluded })

  it("draws for Broadcast and gossip only", () => {
    const config = DhtConfig.defaultConfig
    const none = (strategy: BroadcastStrategy.BroadcastStrategy) =>
      BroadcastStrategy.drawFromConnections(strategy, config, { self, connected: [], nowMs: NOW }, reader([]))
    expect(none(BroadcastStrategy.Flood({ excluded: [] }))).toBeUndefined()
    expect(none(BroadcastStrategy.Random({ n: 3, excluded: [] }))).toBeUndefined()
    expect(none(BroadcastStrategy.Propagate({ destination: { _tag: "PublicKey", publicKey: keyOf(1) }, excluded: [] })))
      .toBeUndefined()
    expect(BroadcastStrategy.drawsFromConnections(BroadcastStrategy.Broadcast({ excluded: [] }), config))
      .toBe(config.broadcastFactor)
    expect(BroadcastStrategy.drawsFromConnections(gossip([]), config)).toBe(config.gossipFactor)
  })

  it.effect.prop(
    "chooses as many as select would, among the peers select may choose, and fails where it fails",
    [
      fc.subarray(table.map((_, k) => k + 1)),
      fc.subarray(table.map((_, k) => k + 1), { maxLength: 4 }),
      fc.integer({ min: 1, max: 12 }),
      fc.constantFrom<ReadonlyArray<string>>([], ["tcp://10.0.0.1*:*"], ["tcp://10.0.0.*:*"]),
      fc.boolean(),
      fc.integer()
    ],
    ([connectedIndices, excludedIndices, factor, patterns, broadcast, seed]) =>
      Effect.gen(function*() {
        const connected = connectedIndices.map(id)
        const excluded = excludedIndices.map(id)
        const config = { ...DhtConfig.defaultConfig, gossipFactor: factor, broadcastFactor: factor }
        const strategy = broadcast ? BroadcastStrategy.Broadcast({ excluded }) : gossip(excluded)
        const ctx = {
          ...BroadcastStrategy.makeContext(config, {
            self,
            peers: table,
            connected: new Set(connected.map(NodeId.toHex)),
            nowMs: NOW,
            isOrigin: false
          }),
          excludedDialAddresses: patterns
        }
        const expected = yield* Effect.either(BroadcastStrategy.select(strategy, ctx))
        const eligible = yield* Effect.either(BroadcastStrategy.select(BroadcastStrategy.Flood({ excluded }), ctx))
        const drawn = yield* Effect.either(draw(strategy, connected, { ...config, excludedDialAddresses: patterns }))
          .pipe(Effect.withRandom(Random.make(seed)))
        expect(drawn._tag).toBe(expected._tag)
        if (drawn._tag === "Left" || expected._tag === "Left" || eligible._tag === "Left") return
        expect(drawn.right.length).toBe(expected.right.length)
        expect(new Set(hexOf(drawn.right)).size).toBe(drawn.right.length)
        for (const x of hexOf(drawn.right)) expect(hexOf(eligible.right)).toContain(x)
      }),
    { fastCheck: { numRuns: 500 } }
  )

  it.effect("reads the records of the connections it draws, not of every connection", () =>
    Effect.gen(function*() {
      const reads: Array<NodeId.NodeId> = []
      const config = { ...DhtConfig.defaultConfig, gossipFactor: 2 }
      // nine eligible among eleven connections (3 is a client, 5 is banned)
      const connected = [1, 2, 3, 5, 8, 10, 12, 14, 16, 18, 20].map(id)
      const chosen = yield* draw(gossip([]), connected, config, reads).pipe(Effect.withRandom(Random.make(7)))
      expect(chosen.length).toBe(2)
      // the two chosen, and at most the two ineligible ones drawn before them
      expect(reads.length).toBeLessThanOrEqual(4)
      for (const x of hexOf(chosen)) expect(hexOf(reads)).toContain(x)
    }))

  it.effect("every eligible connection is as likely to be drawn, whatever the order it is listed in", () =>
    Effect.gen(function*() {
      const counts = new Map<number, number>()
      const config = { ...DhtConfig.defaultConfig, gossipFactor: 3 }
      const eligible = CONNECTED_NODES.filter((i) => i !== 1)
      for (let seed = 0; seed < 2_000; seed++) {
        // 1 excluded, 3 a client, 5 banned: drawn maybe, never chosen
        const listed = [20, 5, 3, 1, ...eligible.slice(0, 7)].map(id)
        const connected = seed % 2 === 0 ? listed : listed.slice().reverse()
        const chosen = yield* draw(gossip([id(1)]), connected, config).pipe(Effect.withRandom(Random.make(seed)))
        expect(chosen.length).toBe(3)
        for (const i of indexOf(chosen)) counts.set(i, (counts.get(i) ?? 0) + 1)
      }
      expect(sorted([...counts.keys()])).toEqual(eligible)
      // 6,000 draws among 8: 750 each expected
      for (const count of counts.values()) expect(Math.abs(count - 750)).toBeLessThan(120)
    }))

  it.effect("the same seed and connections draw the same peers, in whatever order they are listed", () =>
    Effect.gen(function*() {
      const connected = CONNECTED_NODES.map(id)
      const once = (ids: ReadonlyArray<NodeId.NodeId>) =>
        draw(gossip([]), ids, { ...DhtConfig.defaultConfig, gossipFactor: 4 }).pipe(Effect.withRandom(Random.make(3)))
      expect(yield* once(connected)).toEqual(yield* once(connected.slice().reverse()))
    }))
})

describe("matchesAddressPattern", () => {
  const cases: ReadonlyArray<readonly [string, string, boolean]> = [
    ["tcp://127.*:*", "tcp://127.0.0.1:18189", true],
    ["tcp://127.*:*", "tcp://10.0.0.1:18189", false],
    ["tcp://*:18189", "tcp://seed.example.com:18189", true],
    ["tcp://*:18189", "tcp://seed.example.com:18188", false],
    ["tcp://10.0.0.1:80", "tcp://10.0.0.1:80", true],
    ["tcp://10.0.0.1:80", "tcp://10.0.0.1:8080", false],
    ["tcp://SEED.example.com:*", "tcp://seed.EXAMPLE.com:1", true],
    ["tcp://*.*.*.*:*", "mem://42", false],
    ["*", "anything", true],
    ["tcp://*a*b*:1", "tcp://xaybz:1", true],
    ["tcp://*a*b*:1", "tcp://xbyaz:1", false]
  ]
  for (const [pattern, address, expected] of cases) {
    it(`${pattern} ${expected ? "matches" : "does not match"} ${address}`, () => {
      expect(BroadcastStrategy.matchesAddressPattern(pattern, address)).toBe(expected)
    })
  }
})
