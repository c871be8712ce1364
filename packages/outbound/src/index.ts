/**
 * @comms-dht/outbound: the outbound pipeline (broadcast → encrypt → serialize) and the live OutboundRequester.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as OutboundPipeline from "./OutboundPipeline.js"
