/**
 * @comms-dht/store: sqlite storage through @effect/sql-sqlite-node — `SqliteStore.layer({ filename })` supplies the
 * peer table, the store-and-forward message store with its cursors, the dedup cache and the DHT metadata.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as SqliteStore from "./SqliteStore.js"

/**
 * @since 0.1.0
 */
export * as SqlitePeerManager from "./SqlitePeerManager.js"

/**
 * @since 0.1.0
 */
export * as SqliteMessageStore from "./SqliteMessageStore.js"

/**
 * @since 0.1.0
 */
export * as SqliteDedupCache from "./SqliteDedupCache.js"

/**
 * @since 0.1.0
 */
export * as SqliteMetadata from "./SqliteMetadata.js"
export * as StoreAndForward from "./StoreAndForward.js"
