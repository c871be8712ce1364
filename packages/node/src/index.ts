/**
 * @comms-dht/node: the composition root, the node:crypto backend (`Crypto.layerNode`), the TCP transport and the CLI. Test helpers (seeded Crypto layers) live in `@comms-dht/node/testing`.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as Crypto from "./Crypto.js"

/**
 * @since 0.1.0
 */
export * as Dht from "./Dht.js"

/**
 * @since 0.1.0
 */
export * as Connectivity from "./Connectivity.js"

/**
 * @since 0.1.0
 */
export * as Discovery from "./Discovery.js"

/**
 * @since 0.1.0
 */
export * as NetworkDiscovery from "./NetworkDiscovery.js"

/**
 * @since 0.1.0
 */
export * as PeerSync from "./PeerSync.js"

/**
 * @since 0.1.0
 */
export * as Simulation from "./Simulation.js"

/**
 * @since 0.1.0
 */
export * as TcpTransport from "./TcpTransport.js"

/**
 * @since 0.1.0
 */
export * as VirtualClock from "./VirtualClock.js"

/**
 * @since 0.1.0
 */
export * as Reliable from "./Reliable.js"
