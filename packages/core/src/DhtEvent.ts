/**
 * What `Dht.events` publishes (SPEC §15): a tagged union, one case per event, carried to each subscriber by a
 * sliding queue of `eventBufferSize` (slow subscribers lose the oldest).
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import type { NodeId, PublicKey } from "./NodeId.js"
import type { AddressSource } from "./Peer.js"
import type { Severity } from "./PeerManager.js"

/**
 * The outcome of one network-discovery round (SPEC §12.1); the round succeeded ⇔ `numSucceeded > 0`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RoundInfo {
  readonly numNewPeers: number
  readonly numDuplicatePeers: number
  readonly numSucceeded: number
  readonly syncPeers: ReadonlyArray<NodeId>
}

/**
 * Why a discovery failed (SPEC §10.2).
 *
 * @since 0.1.0
 * @category models
 */
export type DiscoveryFailureReason = "Timeout" | "SendFailed" | "Shutdown"

/**
 * @since 0.1.0
 * @category models
 */
export type DhtEvent = Data.TaggedEnum<{
  /** a network-discovery state transition (§12), state names as `from` and `to` */
  NetworkDiscoveryStateChanged: { readonly from: string; readonly to: string }
  /** a discovery round or `OnConnect` found new peers (§12) */
  NetworkDiscoveryPeersAdded: { readonly roundInfo: RoundInfo }
  /** every SAF request of an online trigger was answered or timed out (§9.5) */
  StoreAndForwardMessagesReceived: {}
  /** a SAF response from `from` delivered `count` messages (§9.4 step 5) */
  SafMessagesDelivered: { readonly from: NodeId; readonly count: number }
  /** the peer table learnt a new peer from a join, discovery, peer sync or inbound message */
  PeerAdded: { readonly publicKey: PublicKey; readonly source: AddressSource }
  /** a peer was banned until `until` (epoch ms) (§11.4) */
  PeerBanned: {
    readonly publicKey: PublicKey
    readonly until: number
    readonly severity: Severity
    readonly reason: string
  }
  /** connections rose to `minConnectivity` or above */
  ConnectivityOnline: { readonly connected: number }
  /** the last connection closed */
  ConnectivityOffline: { readonly connected: number }
  /** neighbour or random pool membership changed (§11.2) */
  NeighboursChanged: { readonly neighbours: ReadonlyArray<NodeId>; readonly random: ReadonlyArray<NodeId> }
  /** a join was queued (§10.1) */
  JoinSent: {}
  /** a discovery for `publicKey` succeeded after `elapsedMs` (§10.3 step 9) */
  DiscoveryCompleted: { readonly publicKey: PublicKey; readonly elapsedMs: number }
  /** a discovery for `publicKey` failed (§10.2 step 4) */
  DiscoveryFailed: { readonly publicKey: PublicKey; readonly reason: DiscoveryFailureReason }
}>

/**
 * Constructors (`DhtEvent.PeerBanned({ … })`), guards (`$is("PeerBanned")`) and matchers (`$match`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const DhtEvent = Data.taggedEnum<DhtEvent>()

/**
 * @since 0.1.0
 * @category constructors
 */
export const {
  ConnectivityOffline,
  ConnectivityOnline,
  DiscoveryCompleted,
  DiscoveryFailed,
  JoinSent,
  NeighboursChanged,
  NetworkDiscoveryPeersAdded,
  NetworkDiscoveryStateChanged,
  PeerAdded,
  PeerBanned,
  SafMessagesDelivered,
  StoreAndForwardMessagesReceived
} = DhtEvent
