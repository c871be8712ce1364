/**
 * @comms-dht/inbound: the inbound pipeline — deserialize → validate → dedup → decrypt → forward → store-and-forward
 * seam → DHT handler → delivery — with one typed error per rejection and the bans of SPEC §14.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as InboundPipeline from "./InboundPipeline.js"

/**
 * @since 0.1.0
 */
export * as DhtHandler from "./DhtHandler.js"

/**
 * @since 0.1.0
 */
export * as Rejections from "./Rejections.js"

/**
 * @since 0.1.0
 */
export * as GossipBudget from "./GossipBudget.js"
