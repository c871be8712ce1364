/**
 * Every metric of SPEC §16 in one place. Metrics are process-global (no per-node tag); tests assert differences.
 * Tag them with `tagged` (data-first: piped inside `Metric.increment` the input type infers `never`).
 *
 * @since 0.1.0
 */
import * as Arr from "effect/Array"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as MetricBoundaries from "effect/MetricBoundaries"

const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

/** @since 0.1.0 @category metrics */
export const inboundMessages = counter("comms_dht_inbound_messages_total", "inbound envelopes by DHT message type")
/** @since 0.1.0 @category metrics */
export const inboundRejected = counter("comms_dht_inbound_rejected_total", "inbound messages rejected, by error tag")
/** @since 0.1.0 @category metrics */
export const inboundDuplicates = counter("comms_dht_inbound_duplicates_total", "duplicate inbound messages dropped")
/** @since 0.1.0 @category metrics */
export const inboundShed = counter("comms_dht_inbound_shed_total", "messages shed by a full queue, by where")
/** @since 0.1.0 @category metrics */
export const delivered = counter("comms_dht_delivered_total", "messages delivered to the application, by via")
/** @since 0.1.0 @category metrics */
export const forwarded = counter("comms_dht_forwarded_total", "messages forwarded, by rule")
/** @since 0.1.0 @category metrics */
export const outboundRequests = counter("comms_dht_outbound_requests_total", "outbound requests, by strategy")
/** @since 0.1.0 @category metrics */
export const outboundMessages = counter("comms_dht_outbound_messages_total", "per-peer outbound messages, by result")
/** @since 0.1.0 @category metrics */
export const sendFailures = counter("comms_dht_send_failures_total", "failed sends, by reason")
/** @since 0.1.0 @category metrics */
export const peerBans = counter("comms_dht_peer_bans_total", "peer bans, by severity and reason")
/** @since 0.1.0 @category metrics */
export const safStored = counter("comms_dht_saf_stored_total", "messages stored for others, by priority")
/** @since 0.1.0 @category metrics */
export const safEvicted = counter("comms_dht_saf_evicted_total", "stored messages evicted, by cause")
/** @since 0.1.0 @category metrics */
export const safInsertRejected = counter("comms_dht_saf_insert_rejected_total", "SAF inserts refused, by cause")
/** @since 0.1.0 @category metrics */
export const safRequestsSent = counter("comms_dht_saf_requests_sent_total", "SAF requests sent")
/** @since 0.1.0 @category metrics */
export const safRequestsReceived = counter("comms_dht_saf_requests_received_total", "SAF requests received")
/** @since 0.1.0 @category metrics */
export const safResponsesRejected = counter("comms_dht_saf_responses_rejected_total", "SAF responses rejected")
/** @since 0.1.0 @category metrics */
export const safMessagesDelivered = counter("comms_dht_saf_messages_delivered_total", "messages delivered via SAF")
/** @since 0.1.0 @category metrics */
export const discoveryRequests = counter("comms_dht_discovery_requests_total", "discovery requests, by result")
/** @since 0.1.0 @category metrics */
export const joinsSent = counter("comms_dht_joins_sent_total", "joins sent")
/** @since 0.1.0 @category metrics */
export const joinsReceived = counter("comms_dht_joins_received_total", "joins received")
/** @since 0.1.0 @category metrics */
export const networkDiscoveryRounds = counter("comms_dht_network_discovery_rounds_total", "discovery rounds")
/** @since 0.1.0 @category metrics */
export const dedupTrimmed = counter("comms_dht_dedup_trimmed_total", "dedup entries trimmed")
/** @since 0.1.0 @category metrics */
export const cryptoVerify = counter("comms_dht_crypto_verify_total", "Ed25519 verifications, by result")
/** @since 0.1.0 @category metrics */
export const claimsFiltered = counter("comms_dht_claims_filtered_total", "claim addresses or claims dropped by policy")
/** @since 0.1.0 @category metrics */
export const peersSkipped = counter("comms_dht_peers_skipped_total", "peers not added, by cause")
/** @since 0.1.0 @category metrics */
export const transportFrames = counter("comms_dht_transport_frames_total", "transport frames, by direction")
/** @since 0.1.0 @category metrics */
export const transportBytes = counter("comms_dht_transport_bytes_total", "transport bytes, by direction")
/** @since 0.1.0 @category metrics */
export const handshakeFailures = counter("comms_dht_transport_handshake_failures_total", "handshake failures")

/** @since 0.1.0 @category metrics */
export const connectedPeers = Metric.gauge("comms_dht_connected_peers")
/** @since 0.1.0 @category metrics */
export const knownPeers = Metric.gauge("comms_dht_known_peers")
/** @since 0.1.0 @category metrics */
export const neighbourPoolSize = Metric.gauge("comms_dht_neighbour_pool_size")
/** @since 0.1.0 @category metrics */
export const randomPoolSize = Metric.gauge("comms_dht_random_pool_size")
/** @since 0.1.0 @category metrics */
export const safStoredMessages = Metric.gauge("comms_dht_saf_stored_messages")
/** @since 0.1.0 @category metrics */
export const dedupCacheEntries = Metric.gauge("comms_dht_dedup_cache_entries")
/** @since 0.1.0 @category metrics */
export const discoveryInflight = Metric.gauge("comms_dht_discovery_inflight")
/** @since 0.1.0 @category metrics */
export const actorQueueDepth = Metric.gauge("comms_dht_actor_queue_depth")

/** @since 0.1.0 @category metrics */
export const inboundPipelineMs = Metric.histogram(
  "comms_dht_inbound_pipeline_ms",
  MetricBoundaries.fromIterable([1, 2, 5, 10, 25, 50, 100, 250, 1000])
)
/** @since 0.1.0 @category metrics */
export const inboundHopCount = Metric.histogram(
  "comms_dht_inbound_hop_count",
  MetricBoundaries.fromIterable([0, 1, 2, 3, 4, 6, 8, 12, 16, 32])
)

/**
 * Delivery receipts (docs/spec-departures.md §2), by `event`: `sent` (by a destination), `accepted` (verified by
 * an origin), `rejected`, `safCleaned` (stored copies a store-and-forward node removed on a receipt).
 *
 * @since 0.1.0
 * @category metrics
 */
export const receipts = counter("comms_dht_receipts_total", "delivery receipts by event")

/**
 * Runs `f` with the fiber's metric labels (what `Effect.tagMetrics` set) in one step, for the paths that run once per
 * frame: `Metric.increment` is a read of that fiber ref and a step of its own, so a batch of updates written with
 * `unsafeUpdate(value, labels)` here costs what one of them costs.
 *
 * @since 0.1.0
 * @category utils
 */
export const withLabels = <A>(f: (labels: ReadonlyArray<MetricLabel.MetricLabel>) => A): Effect.Effect<A> =>
  Effect.withFiberRuntime((fiber) => Effect.succeed(f(fiber.getFiberRef(FiberRef.currentMetricLabels))))

/**
 * `Metric.tagged(self, key, value)`, for metrics updated under the labels of the updating fiber (what
 * `Effect.tagMetrics` sets, or `withLabels` hands over). Effect's joins the tag to those labels into a new array at
 * every update, and it finds the metric by that array's identity, so under any label every update of a tagged
 * metric built the metric's key again and looked it up in the registry: 2.9 µs an update against 0.05 µs without
 * labels (a loop of a million, this machine), and a node updates four of them a frame. This one joins them once per
 * labels array, so an update finds its metric as an untagged one does. The keys, and so the values, are Effect's.
 *
 * @since 0.1.0
 * @category utils
 */
export const tagged = <Type, In, Out>(
  self: Metric.Metric<Type, In, Out>,
  key: string,
  value: string
): Metric.Metric<Type, In, Out> => {
  const tag: ReadonlyArray<MetricLabel.MetricLabel> = [MetricLabel.make(key, value)]
  const joined = new WeakMap<ReadonlyArray<MetricLabel.MetricLabel>, ReadonlyArray<MetricLabel.MetricLabel>>()
  const labels = (extra: ReadonlyArray<MetricLabel.MetricLabel>): ReadonlyArray<MetricLabel.MetricLabel> => {
    if (extra.length === 0) return tag
    let all = joined.get(extra)
    if (all === undefined) {
      all = Arr.union(tag, extra)
      joined.set(extra, all)
    }
    return all
  }
  return Metric.make(
    self.keyType,
    (input: In, extra) => self.unsafeUpdate(input, labels(extra)),
    (extra) => self.unsafeValue(labels(extra)),
    (input: In, extra) => self.unsafeModify(input, labels(extra))
  )
}

/**
 * Counts a ban in `peerBans` under its severity and reason: the actor's bans and the transports' short ones alike.
 *
 * @since 0.1.0
 * @category utils
 */
export const countBan = (severity: string, reason: string): Effect.Effect<void> =>
  Metric.increment(tagged(tagged(peerBans, "severity", severity), "reason", reason))
