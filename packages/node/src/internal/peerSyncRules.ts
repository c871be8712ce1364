/** @internal */
import * as DhtError from "@comms-dht/core/DhtError"
import * as NodeId from "@comms-dht/core/NodeId"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerSyncMessages from "@comms-dht/core/PeerSyncMessages"
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"

/** @internal the `n` a responder uses when the request leaves it at 0 (SPEC §12.4, Tari) */
export const DEFAULT_PEERS_PER_REQUEST = 100

/** @internal one request per requester is served in this window (SPEC §12.4, ours) */
export const RATE_LIMIT_WINDOW_MS = 10_000

/** @internal SPEC §12.4: 0 means the default; more than `max` is clamped */
export const effectiveCount = (n: number, max: number): number =>
  n === 0 ? Math.min(DEFAULT_PEERS_PER_REQUEST, max) : Math.min(n, max)

const signatureKey = (claim: Peer.PeerClaim): string => NodeId.toHex(claim.identitySignature.signature)

/**
 * @internal The claims of a stored peer as a responder relays them (SPEC §12.4): each distinct signed claim once,
 * newest first; a claim with more addresses than the requester accepts is omitted whole, because cutting its
 * address list would break its signature; at most `maxClaims` of the rest.
 */
export const relayableClaims = (
  peer: Peer.Peer,
  maxClaims: number,
  maxAddressesPerClaim: number
): ReadonlyArray<PeerSyncMessages.PeerIdentityClaim> => {
  const seen = new Set<string>()
  const claims: Array<Peer.PeerClaim> = []
  for (const address of peer.addresses) {
    const claim = address.claim
    if (claim === undefined) continue
    const key = signatureKey(claim)
    if (seen.has(key)) continue
    seen.add(key)
    claims.push(claim)
  }
  return claims
    .filter((claim) => claim.addresses.length <= maxAddressesPerClaim)
    .sort((a, b) => {
      const x = a.identitySignature.updatedAt
      const y = b.identitySignature.updatedAt
      return x > y ? -1 : x < y ? 1 : 0
    })
    .slice(0, maxClaims)
    .map(PeerSyncMessages.fromPeerClaim)
}

/** @internal what a response may hold, from the request it answers */
export interface Limits {
  readonly n: number
  readonly maxClaims: number
  readonly maxAddressesPerClaim: number
}

/** @internal a fault of the responder's own making (SPEC §12.4): the relayer is banned `High` for it */
export type StructureFault =
  | DhtError.TooManyPeersReceived
  | DhtError.DuplicatePeerReceived
  | DhtError.EmptyPeerMessageReceived
  | DhtError.PeerValidationError

/**
 * @internal The counts a responder controls, checked over the whole response before any peer is added, so a
 * response that breaks them adds nothing. Keys, signatures and addresses are the relayed peers' and are judged
 * one `PeerInfo` at a time afterwards.
 */
export const structureFault = (
  response: PeerSyncMessages.PeerSyncResponse,
  limits: Limits
): Option.Option<StructureFault> => {
  if (response.peers.length > limits.n) {
    return Option.some(new DhtError.TooManyPeersReceived({ received: response.peers.length, limit: limits.n }))
  }
  const keys = new Set<string>()
  for (const info of response.peers) {
    if (info.isEmpty) return Option.some(new DhtError.EmptyPeerMessageReceived())
    // a key's own bytes as the set's key: its hex (a key is not NodeId-sized, so not memoised) was a fresh string
    // and array of character codes per relayed peer
    const key = NodeId.mapKey(info.publicKey)
    if (keys.has(key)) return Option.some(new DhtError.DuplicatePeerReceived())
    keys.add(key)
    if (info.claims.length > limits.maxClaims) {
      return Option.some(
        new DhtError.PeerValidationError({
          reason: `TooManyClaims: ${info.claims.length} claims, at most ${limits.maxClaims} requested`
        })
      )
    }
    for (const claim of info.claims) {
      if (claim.addresses.length > limits.maxAddressesPerClaim) {
        return Option.some(
          new DhtError.PeerValidationError({
            reason: `TooManyAddresses: a claim of ${claim.addresses.length} addresses, at most ${
              limits.maxAddressesPerClaim
            } requested`
          })
        )
      }
    }
  }
  return Option.none()
}

/**
 * @internal The rate limit of SPEC §12.4 over `served` (requester hex → when it was last served): whether a request
 * from `requester` at `nowMs` is served, and the map to keep. Entries older than the window are dropped on the way,
 * so the map holds only the requesters of the last window.
 */
export const admit = (
  served: HashMap.HashMap<string, number>,
  requester: string,
  nowMs: number
): readonly [boolean, HashMap.HashMap<string, number>] => {
  const live = HashMap.filter(served, (at) => nowMs - at < RATE_LIMIT_WINDOW_MS)
  return HashMap.has(live, requester) ? [false, live] : [true, HashMap.set(live, requester, nowMs)]
}
