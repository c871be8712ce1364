/**
 * The `Discovery` tag (SPEC §10.2–§10.3): find a peer by public key through the network. The implementation (a
 * scoped fiber with a bounded request queue and the in-flight table `nonce → {publicKey, waiters, startedAt}`)
 * lives in `@comms-dht/node`; the outbound pipeline and the inbound DHT handler meet it through this tag. The
 * handler runs the response checks of §10.3 in their order and asks this service only what it owns: which key a
 * nonce was for (steps 4 and 7), and, once the peer is added, to resolve the waiting requests (step 9).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type { DiscoveryError } from "./DhtError.js"
import type { PublicKey } from "./NodeId.js"
import type { Peer } from "./Peer.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface DiscoveryService {
  /**
   * Discovers `publicKey`: fails `CannotDiscoverThisNode` for the own key, `DiscoveryTimeout` after
   * `discoveryRequestTimeout`, `DiscoveryFailed` when the request could not be sent. Concurrent calls for one key
   * are all answered by the first valid response.
   */
  readonly discover: (publicKey: PublicKey) => Effect.Effect<Peer, DiscoveryError>
  /** The key the in-flight request with `nonce` is for; none when unknown, late or cancelled (§10.3 step 4). */
  readonly pendingKey: (nonce: bigint) => Effect.Effect<Option.Option<PublicKey>>
  /**
   * A validated response (§10.3 steps 1–8 passed, `peer` added): removes the request with `nonce` and resolves every
   * request waiting for `peer.publicKey`. False when nothing was waiting any more (it timed out meanwhile).
   */
  readonly handleResponse: (nonce: bigint, peer: Peer) => Effect.Effect<boolean>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Discovery extends Context.Tag("@comms-dht/core/Discovery")<Discovery, DiscoveryService>() {}
