/**
 * Peer selection through the whole pipeline (SPEC §6.1–§6.2): on a hand-built 20-peer table, each strategy's
 * message arrives at exactly the peers the SPEC names, once each. The core tests cover `BroadcastStrategy.select`
 * itself; here the selection has to survive the snapshot, encryption, serialization and the memory transport.
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as Crypto from "@comms-dht/core/Crypto"
import * as Envelope from "@comms-dht/core/Envelope"
import * as NodeId from "@comms-dht/core/NodeId"
import type * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import {
  COMMUNICATION_CLIENT as C,
  COMMUNICATION_NODE as N,
  type EndpointServices,
  identityOf,
  MESSAGE_PROPAGATION as P,
  type Node,
  peerRecord,
  received,
  type SenderServices,
  sharedNetwork,
  startPeer,
  startSender
} from "./harness.js"

type State = "connected" | "known" | "unverified" | "offline"

interface Role {
  readonly features: number
  readonly state: State
  readonly banned?: boolean
}

// Rank r is the r-th closest of the 20 peers to `target`; the sender is farther from it than all of them.
const roles: Record<number, Role> = {
  1: { features: N, state: "unverified" },
  2: { features: N, state: "connected", banned: true },
  3: { features: N, state: "connected" },
  4: { features: N, state: "offline" },
  5: { features: C, state: "connected" },
  6: { features: N, state: "connected" },
  7: { features: N, state: "known" },
  8: { features: P, state: "connected" },
  9: { features: N, state: "connected" },
  10: { features: N, state: "connected" },
  11: { features: N, state: "known" },
  12: { features: N, state: "connected" },
  13: { features: N, state: "known", banned: true },
  14: { features: N, state: "connected" },
  15: { features: C, state: "connected" },
  16: { features: N, state: "connected" },
  17: { features: N, state: "connected" },
  18: { features: N, state: "connected" },
  19: { features: N, state: "connected" },
  20: { features: N, state: "connected" }
}

const RANKS = Object.keys(roles).map(Number)

interface Network {
  readonly sender: Node<SenderServices>
  /** every rank but the offline one has a running endpoint */
  readonly peers: ReadonlyMap<number, Node<EndpointServices>>
  readonly identities: ReadonlyMap<number, NodeIdentity.Identity>
  readonly destination: NodeId.PublicKey
  readonly target: NodeId.NodeId
}

const byDistance = (target: NodeId.NodeId) => (a: NodeIdentity.Identity, b: NodeIdentity.Identity) =>
  NodeId.compareDistance(target, a.nodeId, b.nodeId)

// Builds the table from 80 deterministic keys ordered by distance to the target: ranks 1–20 are the 20 closest,
// the sender the farthest.
const network = Effect.gen(function*() {
  const destination = (yield* identityOf(10_000, N)).publicKey
  const target = NodeId.fromPublicKey(destination)
  const candidates = yield* Effect.forEach(Array.from({ length: 80 }, (_, i) => i), (i) => identityOf(i, N))
  candidates.sort(byDistance(target))
  const sender = yield* startSender(candidates[candidates.length - 1]!)
  const identities = new Map<number, NodeIdentity.Identity>()
  const peers = new Map<number, Node<EndpointServices>>()
  for (const rank of RANKS) {
    const role = roles[rank]!
    const identity = { ...candidates[rank - 1]!, features: role.features }
    identities.set(rank, identity)
    if (role.state !== "offline") peers.set(rank, yield* startPeer(identity))
  }
  yield* sender.run(Effect.gen(function*() {
    const table = yield* PeerManager.PeerManager
    const transport = yield* Transport.Transport
    for (const rank of RANKS) {
      const role = roles[rank]!
      const identity = identities.get(rank)!
      yield* table.add(peerRecord(identity, {
        ...(role.state === "unverified" ? {} : { verifiedAt: 1 }),
        ...(role.state === "offline" ? { offlineAt: 1 } : {})
      }))
      if (role.state === "connected") yield* transport.dial(identity.nodeId)
      if (role.banned === true) yield* table.ban(identity.nodeId, 3_600_000, "test")
    }
  }).pipe(Effect.orDie))
  const net: Network = { sender, peers, identities, destination, target }
  return net
})

const id = (net: Network, rank: number) => net.identities.get(rank)!.nodeId
const key = (net: Network, rank: number) => net.identities.get(rank)!.publicKey

/** Sends one application message with `strategy`, waits for every copy, and returns the ranks it arrived at. */
const sendWith = (net: Network, strategy: BroadcastStrategy.BroadcastStrategy) =>
  Effect.gen(function*() {
    const body = yield* OutboundRequester.applicationBody(1, Uint8Array.of(1, 2, 3))
    const states = yield* net.sender.run(
      Effect.flatMap(
        OutboundRequester.OutboundRequester,
        (r) => r.send(OutboundRequester.makeParams({ strategy }), body)
      )
    ).pipe(Effect.flatMap(OutboundRequester.resolve))
    const results = yield* states.waitAll
    expect(results.failures).toEqual([])
    const arrived: Array<number> = []
    for (const [rank, node] of net.peers) {
      const frames = yield* received(node)
      if (frames.length > 0) {
        expect(frames.length).toBe(1)
        arrived.push(rank)
      }
    }
    return arrived.sort((a, b) => a - b)
  })

const run = <A, E>(f: (net: Network) => Effect.Effect<A, E, Crypto.Crypto>) =>
  Effect.scoped(Effect.flatMap(network, f)).pipe(Effect.provide(sharedNetwork))

// Random strategies: the same seed picks the same peers (the network is rebuilt, so no state carries over)
const seeded = <A, E>(seed: number, f: (net: Network) => Effect.Effect<A, E, Crypto.Crypto>) =>
  Effect.withRandom(run(f), Random.make(seed))

const connectedCommunicationNodes = [3, 6, 10, 12, 14, 16, 17, 18, 19, 20]

const isSubset = (xs: ReadonlyArray<number>, of: ReadonlyArray<number>) => xs.every((x) => of.includes(x))

describe("OutboundPipeline strategies", () => {
  it.effect("DirectPublicKey reaches the known peer with that key, dialling it if needed", () =>
    run((net) =>
      Effect.gen(function*() {
        expect(yield* sendWith(net, BroadcastStrategy.DirectPublicKey({ publicKey: key(net, 7) }))).toEqual([7])
        expect(yield* sendWith(net, BroadcastStrategy.DirectPublicKey({ publicKey: key(net, 3) }))).toEqual([3])
      })
    ))

  it.effect("DirectPublicKey of a banned or unknown peer queues nothing: NoMessagesQueued", () =>
    run((net) =>
      Effect.gen(function*() {
        for (const publicKey of [key(net, 2), net.destination]) {
          const error = yield* Effect.flip(sendWith(net, BroadcastStrategy.DirectPublicKey({ publicKey })))
          expect(error._tag).toBe("NoMessagesQueued")
        }
        for (const node of net.peers.values()) expect(yield* received(node)).toHaveLength(0)
      })
    ))

  it.effect("DirectNodeId reaches the known peer with that NodeId", () =>
    run((net) =>
      Effect.gen(function*() {
        expect(yield* sendWith(net, BroadcastStrategy.DirectNodeId({ nodeId: id(net, 12) }))).toEqual([12])
        expect(yield* sendWith(net, BroadcastStrategy.DirectNodeId({ nodeId: id(net, 11) }))).toEqual([11])
      })
    ))

  it.effect("Flood reaches every connected communication node but the excluded and the banned", () =>
    run((net) =>
      Effect.gen(function*() {
        const arrived = yield* sendWith(net, BroadcastStrategy.Flood({ excluded: [id(net, 9)] }))
        expect(arrived).toEqual(connectedCommunicationNodes)
      })
    ))

  it.effect("Broadcast reaches broadcastFactor (8) random connected communication nodes, the same for a seed", () =>
    Effect.gen(function*() {
      const pick = (seed: number) =>
        seeded(seed, (net) => sendWith(net, BroadcastStrategy.Broadcast({ excluded: [id(net, 9)] })))
      const first = yield* pick(42)
      expect(first).toHaveLength(8)
      expect(isSubset(first, connectedCommunicationNodes)).toBe(true)
      expect(yield* pick(42)).toEqual(first)
    }))

  it.effect("Random(n) reaches n known communication nodes, not offline or banned, connected or not", () =>
    Effect.gen(function*() {
      const pool = [1, 3, 6, 7, 10, 11, 12, 14, 16, 17, 18, 19, 20]
      const pick = (seed: number) =>
        seeded(seed, (net) => sendWith(net, BroadcastStrategy.Random({ n: 5, excluded: [id(net, 9)] })))
      const picks = yield* Effect.forEach([1, 2, 3, 4, 5, 6], pick)
      for (const chosen of picks) {
        expect(chosen).toHaveLength(5)
        expect(isSubset(chosen, pool)).toBe(true)
      }
      // the draw is random: different seeds do not all pick the same five
      expect(new Set(picks.map((p) => p.join(","))).size).toBeGreaterThan(1)
      expect(yield* pick(1)).toEqual(picks[0])
    }))

  it.effect("ClosestNodes: the 8 verified known communication nodes closest to the id, connected or not", () =>
    run((net) =>
      Effect.gen(function*() {
        const arrived = yield* sendWith(
          net,
          BroadcastStrategy.ClosestNodes({ id: net.target, excluded: [id(net, 9)], connectedOnly: false })
        )
        // 1 unverified, 2 and 13 banned, 4 offline, 5 and 15 clients, 8 not a communication node, 9 excluded
        expect(arrived).toEqual([3, 6, 7, 10, 11, 12, 14, 16])
      })
    ))

  it.effect("ClosestNodes connectedOnly: the 8 connected communication nodes closest to the id", () =>
    run((net) =>
      Effect.gen(function*() {
        const arrived = yield* sendWith(
          net,
          BroadcastStrategy.ClosestNodes({ id: net.target, excluded: [id(net, 9)], connectedOnly: true })
        )
        expect(arrived).toEqual([3, 6, 10, 12, 14, 16, 17, 18])
      })
    ))

  it.effect("DirectOrClosestNodes: the id itself when connected, else its closest nodes", () =>
    run((net) =>
      Effect.gen(function*() {
        const direct = BroadcastStrategy.DirectOrClosestNodes({ id: id(net, 10), excluded: [], connectedOnly: false })
        expect(yield* sendWith(net, direct)).toEqual([10])
        const closest = BroadcastStrategy.DirectOrClosestNodes({
          id: net.target,
          excluded: [id(net, 9)],
          connectedOnly: false
        })
        expect(yield* sendWith(net, closest)).toEqual([3, 6, 7, 10, 11, 12, 14, 16])
      })
    ))

  it.effect("SelectedPeers: exactly those ids, once each, banned ones skipped", () =>
    run((net) =>
      Effect.gen(function*() {
        const ids = [id(net, 3), id(net, 2), id(net, 7), id(net, 3), id(net, 5)]
        expect(yield* sendWith(net, BroadcastStrategy.SelectedPeers({ ids }))).toEqual([3, 5, 7])
      })
    ))

  it.effect("Propagate: the 3 closest connected propagating peers nearer the destination than this node", () =>
    run((net) =>
      Effect.gen(function*() {
        const towards = BroadcastStrategy.Propagate({
          destination: Envelope.destinationPublicKey(net.destination),
          excluded: [id(net, 9)]
        })
        // 2 banned, 5 a client without MESSAGE_PROPAGATION; 8 has it
        expect(yield* sendWith(net, towards)).toEqual([3, 6, 8])
        const connected = BroadcastStrategy.Propagate({
          destination: Envelope.destinationPublicKey(key(net, 10)),
          excluded: []
        })
        expect(yield* sendWith(net, connected)).toEqual([10])
      })
    ))

  it.effect("Propagate to an unknown destination gossips to gossipFactor (8) random connected nodes", () =>
    Effect.gen(function*() {
      const pick = (seed: number) =>
        seeded(seed, (net) =>
          sendWith(
            net,
            BroadcastStrategy.Propagate({ destination: Envelope.destinationUnknown(), excluded: [id(net, 9)] })
          ))
      const first = yield* pick(7)
      expect(first).toHaveLength(8)
      expect(isSubset(first, connectedCommunicationNodes)).toBe(true)
      expect(yield* pick(7)).toEqual(first)
    }))
})
