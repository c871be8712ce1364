/**
 * @comms-dht/core: identities, wire format, crypto, configuration, peers, storage and transport tags, and the in-memory network. Test helpers (seeded Crypto layers) live in `@comms-dht/core/testing`.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as BroadcastStrategy from "./BroadcastStrategy.js"

/**
 * @since 0.1.0
 */
export * as Crypto from "./Crypto.js"

/**
 * @since 0.1.0
 */
export * as CryptoBackend from "./CryptoBackend.js"

/**
 * @since 0.1.0
 */
export * as DedupCache from "./DedupCache.js"

/**
 * @since 0.1.0
 */
export * as DhtConfig from "./DhtConfig.js"

/**
 * @since 0.1.0
 */
export * as DhtError from "./DhtError.js"

/**
 * @since 0.1.0
 */
export * as DhtEvent from "./DhtEvent.js"

/**
 * @since 0.1.0
 */
export * as DhtLog from "./DhtLog.js"

/**
 * @since 0.1.0
 */
export * as DhtMessages from "./DhtMessages.js"

/**
 * @since 0.1.0
 */
export * as DhtMetadata from "./DhtMetadata.js"

/**
 * @since 0.1.0
 */
export * as DhtMetrics from "./DhtMetrics.js"

/**
 * @since 0.1.0
 */
export * as Discovery from "./Discovery.js"

/**
 * @since 0.1.0
 */
export * as Drbg from "./Drbg.js"

/**
 * @since 0.1.0
 */
export * as Ed25519 from "./Ed25519.js"

/**
 * @since 0.1.0
 */
export * as Envelope from "./Envelope.js"

/**
 * @since 0.1.0
 */
export * as FiberClock from "./FiberClock.js"

/**
 * @since 0.1.0
 */
export * as FloodWindow from "./FloodWindow.js"

/**
 * @since 0.1.0
 */
export * as HandshakePayload from "./HandshakePayload.js"

/**
 * @since 0.1.0
 */
export * as LightDeferred from "./LightDeferred.js"

/**
 * @since 0.1.0
 */
export * as LightLock from "./LightLock.js"

/**
 * @since 0.1.0
 */
export * as LightQueue from "./LightQueue.js"

/**
 * @since 0.1.0
 */
export * as MemoryNetwork from "./MemoryNetwork.js"

/**
 * @since 0.1.0
 */
export * as MessageCrypto from "./MessageCrypto.js"

/**
 * @since 0.1.0
 */
export * as MessageStore from "./MessageStore.js"

/**
 * @since 0.1.0
 */
export * as MinHeap from "./MinHeap.js"

/**
 * @since 0.1.0
 */
export * as NodeId from "./NodeId.js"

/**
 * @since 0.1.0
 */
export * as NodeIdentity from "./NodeIdentity.js"

/**
 * @since 0.1.0
 */
export * as Noise from "./Noise.js"

/**
 * @since 0.1.0
 */
export * as OutboundRequester from "./OutboundRequester.js"

/**
 * @since 0.1.0
 */
export * as Peer from "./Peer.js"

/**
 * @since 0.1.0
 */
export * as PeerManager from "./PeerManager.js"

/**
 * @since 0.1.0
 */
export * as PeerSyncMessages from "./PeerSyncMessages.js"

/**
 * @since 0.1.0
 */
export * as PeerValidator from "./PeerValidator.js"

/**
 * @since 0.1.0
 */
export * as Receipts from "./Receipts.js"

/**
 * @since 0.1.0
 */
export * as StoreForwardMessages from "./StoreForwardMessages.js"

/**
 * @since 0.1.0
 */
export * as Transport from "./Transport.js"

/**
 * @since 0.1.0
 */
export * as VerifyMemo from "./VerifyMemo.js"

/**
 * @since 0.1.0
 */
export * as DhtActor from "./DhtActor.js"

/**
 * @since 0.1.0
 */
export * as DhtEvents from "./DhtEvents.js"

/**
 * @since 0.1.0
 */
export * as InboundMessages from "./InboundMessages.js"

/**
 * @since 0.1.0
 */
export * as SafStage from "./SafStage.js"
