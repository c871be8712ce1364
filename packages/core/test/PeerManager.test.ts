import * as NodeId from "@comms-dht/core/NodeId"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import { describe, expect, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { peerManagerSuite } from "./suites/peerManagerSuite.js"

peerManagerSuite("PeerManager.layerMemory", PeerManager.layerMemory)

// a NodeId sharing exactly `bits` leading bits with `id` (all of them at 104)
const flipped = (id: NodeId.NodeId, bits: number): NodeId.NodeId => {
  const out = Uint8Array.from(id)
  if (bits < NodeId.NODE_ID_LENGTH * 8) out[bits >>> 3] = out[bits >>> 3]! ^ (0x80 >>> (bits & 7))
  return NodeId.NodeId.make(out)
}

// peers of the given keys, every `every`-th a communication node, the rest clients
const tableOf = (keys: ReadonlyArray<Uint8Array>, every: number) =>
  keys.map((key, i) =>
    Peer.make({
      publicKey: NodeId.PublicKey.make(key),
      addresses: [],
      features: i % every === 0 ? Peer.PeerFeatures.COMMUNICATION_NODE : Peer.PeerFeatures.COMMUNICATION_CLIENT,
      source: "Join",
      nowMs: 0
    })
  )

describe("countCloserSorted", () => {
  it.prop(
    "counts what the scan of the whole table counts, for targets and nodes sharing any number of leading bits",
    [
      FastCheck.uniqueArray(FastCheck.uint8Array({ minLength: 32, maxLength: 32 }), {
        minLength: 1,
        maxLength: 60,
        selector: (key) => NodeId.toHex(key)
      }),
      FastCheck.nat(),
      FastCheck.integer({ min: 0, max: 104 }),
      FastCheck.nat(),
      FastCheck.integer({ min: 0, max: 104 }),
      FastCheck.integer({ min: 0, max: 12 }),
      FastCheck.integer({ min: 1, max: 4 })
    ],
    ([keys, t, targetBits, n, nodeBits, limit, every]) => {
      const peers = tableOf(keys, every)
      const sorted = peers.slice().sort((a, b) => NodeId.compareBytes(a.nodeId, b.nodeId))
      // the target and the node near a peer of the table, or the node near the target, at every depth
      const target = flipped(peers[t % peers.length]!.nodeId, targetBits)
      const nodeId = n % 3 === 0 ? flipped(target, nodeBits) : flipped(peers[n % peers.length]!.nodeId, nodeBits)
      const matches = (peer: Peer.Peer) => peer.isCommunicationNode
      expect(PeerManager.countCloserSorted(sorted, target, nodeId, limit, matches))
        .toBe(PeerManager.countCloser(peers, target, nodeId, limit, matches))
    },
    { fastCheck: { numRuns: 2_000 } }
  )

  it.prop(
    "closestSorted picks what closestAmong picks, in the same order",
    [
      FastCheck.uniqueArray(FastCheck.uint8Array({ minLength: 32, maxLength: 32 }), {
        maxLength: 80,
        selector: (key) => NodeId.toHex(key)
      }),
      FastCheck.nat(),
      FastCheck.integer({ min: 0, max: 104 }),
      FastCheck.integer({ min: 0, max: 20 }),
      FastCheck.integer({ min: 1, max: 5 })
    ],
    ([keys, t, targetBits, n, every]) => {
      const peers = tableOf(keys, every)
      const sorted = peers.slice().sort((a, b) => NodeId.compareBytes(a.nodeId, b.nodeId))
      const target = peers.length === 0
        ? NodeId.NodeId.make(new Uint8Array(NodeId.NODE_ID_LENGTH))
        : flipped(peers[t % peers.length]!.nodeId, targetBits)
      const matches = (peer: Peer.Peer) => peer.isCommunicationNode
      expect(PeerManager.closestSorted(sorted, target, n, matches))
        .toEqual(PeerManager.closestAmong(peers, target, n, matches))
    },
    { fastCheck: { numRuns: 2_000 } }
  )
})
