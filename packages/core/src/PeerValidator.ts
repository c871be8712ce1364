/**
 * Peer identity claims (SPEC §2.6, §4.7): signing this node's claim and validating the claims of others.
 *
 * Validation separates proof from policy. Structure and proof (claim and address counts, the key check, every
 * signature) decide whether the claim set is genuine: a failure is a `PeerValidationError`, which the caller turns
 * into a ban or a refused handshake. Policy (address length and syntax, test addresses, `updatedAt` bounds, claims
 * older than the stored one) only filters: a failing address or claim is dropped silently and counted in
 * `comms_dht_claims_filtered_total{reason}`, because an honest peer may announce addresses we do not accept.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Crypto from "./Crypto.js"
import * as DhtConfig from "./DhtConfig.js"
import type { HandshakeFailed } from "./DhtError.js"
import { PeerValidationError } from "./DhtError.js"
import * as DhtLog from "./DhtLog.js"
import * as DhtMetrics from "./DhtMetrics.js"
import * as Ed25519 from "./Ed25519.js"
import * as FiberClock from "./FiberClock.js"
import * as HandshakePayload from "./HandshakePayload.js"
import * as Wire from "./internal/wire.js"
import * as MessageCrypto from "./MessageCrypto.js"
import type { NodeId, PublicKey, SecretKey } from "./NodeId.js"
import { equals, fromPublicKey, toHex } from "./NodeId.js"
import type { AddressSource } from "./Peer.js"
import { Peer, PeerAddress, PeerClaim, sameClaim, unsafePeer, unsafePeerAddress } from "./Peer.js"
import { getOption, type PeerManagerService } from "./PeerManager.js"

// --- claim signatures (§4.7): the construction is MessageCrypto's; these build and check whole claims ---

/**
 * Signs a claim over `addresses` and `features`; `updatedAt` (unix seconds) defaults to the `Clock`'s now. A node
 * re-signs whenever its addresses or features change (SPEC §4.7).
 *
 * @since 0.1.0
 * @category constructors
 */
export const signClaim = (options: {
  readonly secretKey: SecretKey
  readonly publicKey: PublicKey
  readonly addresses: ReadonlyArray<string>
  readonly features: number
  readonly updatedAt?: bigint
}): Effect.Effect<PeerClaim, never, Crypto.Crypto> =>
  Effect.gen(function*() {
    const updatedAt = options.updatedAt ?? BigInt(Math.floor((yield* Clock.currentTimeMillis) / 1000))
    const identitySignature = yield* MessageCrypto.signClaim(options, {
      addresses: options.addresses,
      features: options.features,
      updatedAt
    })
    return new PeerClaim({ addresses: [...options.addresses], features: options.features, identitySignature })
  })

/**
 * The claim's signature verifies against `publicKey` (SPEC §4.3's predicate, through the memo); a signature version
 * other than 0 never does.
 *
 * @since 0.1.0
 * @category utils
 */
export const verifyClaim: (publicKey: Uint8Array, claim: PeerClaim) => Effect.Effect<boolean, never, Crypto.Crypto> =
  MessageCrypto.verifyClaim

// --- addresses (§2.6, §17.7) ---

/**
 * A parsed address: `tcp://HOST:PORT` (HOST an IPv4 literal, a bracketed IPv6 literal or a DNS name) or `mem://ID`.
 *
 * @since 0.1.0
 * @category models
 */
export type ParsedAddress =
  | {
    readonly scheme: "tcp"
    readonly host: string
    readonly hostKind: "ipv4" | "ipv6" | "dns"
    /** the address bytes for IP literals (4 or 16), for range checks */
    readonly ip: ReadonlyArray<number> | undefined
    readonly port: number
  }
  | { readonly scheme: "mem"; readonly id: string }

/**
 * Why an address is not usable: not parseable, or a scheme we do not speak.
 *
 * @since 0.1.0
 * @category models
 */
export type AddressParseFailure = "UnknownScheme" | "AddressUnparseable"

const parseIpv4 = (s: string): Array<number> | undefined => {
  const parts = s.split(".")
  if (parts.length !== 4) return undefined
  const out: Array<number> = []
  for (const p of parts) {
    // no leading zeros: "010" reads as octal in some resolvers, so it is ambiguous
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined
    const n = Number(p)
    if (n > 255) return undefined
    out.push(n)
  }
  return out
}

const parseHextets = (s: string): Array<number> | undefined => {
  if (s === "") return []
  const out: Array<number> = []
  for (const h of s.split(":")) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(h)) return undefined
    out.push(parseInt(h, 16))
  }
  return out
}

const parseIpv6 = (s: string): Array<number> | undefined => {
  let text = s
  // an embedded IPv4 tail (::ffff:1.2.3.4) is rewritten as its two hextets
  const lastColon = text.lastIndexOf(":")
  if (lastColon >= 0 && text.includes(".", lastColon)) {
    const v4 = parseIpv4(text.slice(lastColon + 1))
    if (v4 === undefined) return undefined
    const hex = (hi: number, lo: number) => ((hi << 8) | lo).toString(16)
    text = `${text.slice(0, lastColon + 1)}${hex(v4[0]!, v4[1]!)}:${hex(v4[2]!, v4[3]!)}`
  }
  const halves = text.split("::")
  if (halves.length > 2) return undefined
  let hextets: Array<number>
  if (halves.length === 2) {
    const head = parseHextets(halves[0]!)
    const tail = parseHextets(halves[1]!)
    if (head === undefined || tail === undefined) return undefined
    const missing = 8 - head.length - tail.length
    if (missing < 1) return undefined
    hextets = [...head, ...new Array<number>(missing).fill(0), ...tail]
  } else {
    const all = parseHextets(text)
    if (all === undefined || all.length !== 8) return undefined
    hextets = all
  }
  const bytes: Array<number> = []
  for (const h of hextets) bytes.push(h >> 8, h & 0xff)
  return bytes
}

const dnsLabel = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/

const isDnsName = (s: string): boolean => {
  const name = s.endsWith(".") ? s.slice(0, -1) : s
  return name.length > 0 && name.length <= 253 && name.split(".").every((l) => dnsLabel.test(l)) &&
    // an all-numeric dotted name is a malformed IPv4 literal, not a host name
    !/^[0-9.]+$/.test(name)
}

const memId = /^[A-Za-z0-9._~-]+$/

/**
 * Parses an address of SPEC §17.7.
 *
 * @since 0.1.0
 * @category utils
 */
export const parseAddress = (address: string): Option.Option<ParsedAddress> =>
  Option.fromNullable(parseAddressOrFailure(address)[0])

const parseAddressOrFailure = (
  address: string
): readonly [ParsedAddress, undefined] | readonly [undefined, AddressParseFailure] => {
  const sep = address.indexOf("://")
  if (sep < 0) return [undefined, "AddressUnparseable"]
  const scheme = address.slice(0, sep)
  const rest = address.slice(sep + 3)
  if (scheme === "mem") {
    return memId.test(rest) ? [{ scheme: "mem", id: rest }, undefined] : [undefined, "AddressUnparseable"]
  }
  if (scheme !== "tcp") return [undefined, "UnknownScheme"]
  const colon = rest.lastIndexOf(":")
  if (colon < 0) return [undefined, "AddressUnparseable"]
  const hostPart = rest.slice(0, colon)
  const portPart = rest.slice(colon + 1)
  if (!/^[1-9][0-9]{0,4}$/.test(portPart)) return [undefined, "AddressUnparseable"]
  const port = Number(portPart)
  if (port > 65535) return [undefined, "AddressUnparseable"]
  if (hostPart.startsWith("[") && hostPart.endsWith("]")) {
    const host = hostPart.slice(1, -1)
    const ip = parseIpv6(host)
    return ip === undefined
      ? [undefined, "AddressUnparseable"]
      : [{ scheme: "tcp", host, hostKind: "ipv6", ip, port }, undefined]
  }
  const v4 = parseIpv4(hostPart)
  if (v4 !== undefined) return [{ scheme: "tcp", host: hostPart, hostKind: "ipv4", ip: v4, port }, undefined]
  return isDnsName(hostPart)
    ? [{ scheme: "tcp", host: hostPart, hostKind: "dns", ip: undefined, port }, undefined]
    : [undefined, "AddressUnparseable"]
}

const isTestIpv4 = (ip: ReadonlyArray<number>): boolean => {
  const [a, b] = [ip[0]!, ip[1]!]
  return a === 127 || a === 10 || a === 0 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) ||
    (a === 169 && b === 254)
}

const isTestIpv6 = (ip: ReadonlyArray<number>): boolean => {
  const zeroUpTo = (n: number) => ip.slice(0, n).every((b) => b === 0)
  if (zeroUpTo(15) && (ip[15] === 1 || ip[15] === 0)) return true // ::1 loopback, :: unspecified
  if (ip[0] === 0xfe && (ip[1]! & 0xc0) === 0x80) return true // fe80::/10 link-local
  if ((ip[0]! & 0xfe) === 0xfc) return true // fc00::/7 unique local (the IPv6 private range)
  if (zeroUpTo(10) && ip[10] === 0xff && ip[11] === 0xff) return isTestIpv4(ip.slice(12)) // ::ffff:a.b.c.d
  return false
}

/**
 * Loopback, link-local or private (SPEC §17.7): 127/8, 10/8, 172.16/12, 192.168/16, 169.254/16, `::1`, fe80::/10,
 * `localhost`; also the unspecified addresses (0/8, `::`), IPv6 unique-local fc00::/7 and IPv4-mapped forms of the
 * above, which no peer can be reached at from outside either. `mem://` addresses are not test addresses.
 *
 * @since 0.1.0
 * @category utils
 */
export const isTestAddress = (address: ParsedAddress): boolean => {
  if (address.scheme === "mem") return false
  switch (address.hostKind) {
    case "ipv4":
      return address.ip !== undefined && isTestIpv4(address.ip)
    case "ipv6":
      return address.ip !== undefined && isTestIpv6(address.ip)
    case "dns": {
      const host = address.host.toLowerCase().replace(/\.$/, "")
      return host === "localhost" || host.endsWith(".localhost")
    }
  }
}

// --- validation (§2.6) ---

/**
 * Why a claim or one of its addresses was dropped by policy; the `reason` tag of `comms_dht_claims_filtered_total`.
 *
 * @since 0.1.0
 * @category models
 */
export type PolicyReason =
  | AddressParseFailure
  | "AddressTooLong"
  | "TestAddress"
  | "UpdatedAtNegative"
  | "UpdatedAtInFuture"
  | "OlderThanStored"
  | "NoAddresses"

/**
 * A claim that passed proof and policy: the claim as signed (so it can be relayed and re-verified) and the
 * addresses of it that policy accepts.
 *
 * @since 0.1.0
 * @category models
 */
export interface AcceptedClaim {
  readonly claim: PeerClaim
  readonly addresses: ReadonlyArray<string>
}

const FUTURE_ALLOWANCE_SECONDS = 24n * 60n * 60n

const filtered = (reason: PolicyReason) =>
  Metric.increment(DhtMetrics.tagged(DhtMetrics.claimsFiltered, "reason", reason)).pipe(
    Effect.zipRight(DhtLog.debug("claim filtered by policy", { reason }))
  )

const fail = (reason: string) => Effect.fail(new PeerValidationError({ reason }))

// The rules of proof and policy as plain functions over values read once: a relayed peer's claims are validated
// hundreds of thousands of times in a large network's join (peer sync answers, joins), where an Effect step per rule
// cost more than the rules.

// SPEC §2.6's structure and key check: the reason the set fails, or undefined
const structureError = (
  publicKey: Uint8Array,
  claims: ReadonlyArray<PeerClaim>,
  config: DhtConfig.Config,
  keyChecked: boolean
): string | undefined => {
  if (claims.length === 0) return "no claim"
  if (claims.length > config.maxPermittedPeerClaims) {
    return `${claims.length} claims, at most ${config.maxPermittedPeerClaims} permitted`
  }
  for (const claim of claims) {
    if (claim.addresses.length > config.peerValidator.maxAddressesPerClaim) {
      return `claim of ${claim.addresses.length} addresses, at most ${config.peerValidator.maxAddressesPerClaim}`
    }
  }
  if (!keyChecked && !Ed25519.checkPublicKeyMemo(publicKey)) return "public key fails the key check"
  return undefined
}

// every claim's signature in turn, failing at the first that does not verify
const signaturesFrom = (
  crypto: Crypto.CryptoService,
  publicKey: Uint8Array,
  claims: ReadonlyArray<PeerClaim>,
  i: number
): Effect.Effect<void, PeerValidationError> =>
  i === claims.length
    ? Effect.void
    : Effect.flatMap(
      MessageCrypto.verifyClaimWith(crypto, publicKey, claims[i]!),
      (ok) => ok ? signaturesFrom(crypto, publicKey, claims, i + 1) : fail(`claim ${i}: invalid signature`)
    )

// SPEC §2.6's policy for one proven claim: the addresses kept (none: the claim is dropped); the reasons of any drops
// are pushed onto `drops`
const policyOf = (
  claim: PeerClaim,
  config: DhtConfig.Config,
  nowSeconds: bigint,
  storedUpdatedAt: bigint | undefined,
  drops: Array<PolicyReason>
): Option.Option<AcceptedClaim> => {
  const updatedAt = claim.identitySignature.updatedAt
  const claimReason: PolicyReason | undefined = updatedAt < 0n
    ? "UpdatedAtNegative"
    : updatedAt > nowSeconds + FUTURE_ALLOWANCE_SECONDS
    ? "UpdatedAtInFuture"
    : storedUpdatedAt !== undefined && updatedAt < storedUpdatedAt
    ? "OlderThanStored"
    : undefined
  if (claimReason !== undefined) {
    drops.push(claimReason)
    return Option.none()
  }
  const kept: Array<string> = []
  for (const address of claim.addresses) {
    const reason = addressPolicy(address, config.peerValidator)
    if (reason === undefined) kept.push(address)
    else drops.push(reason)
  }
  if (kept.length === 0) {
    drops.push("NoAddresses")
    return Option.none()
  }
  return Option.some({ claim, addresses: kept })
}

// structure, then every signature: SPEC §2.6's proof, which fails the whole set
const proofWith = (
  crypto: Crypto.CryptoService,
  config: DhtConfig.Config,
  publicKey: Uint8Array,
  claims: ReadonlyArray<PeerClaim>,
  keyChecked: boolean
): Effect.Effect<void, PeerValidationError> => {
  const problem = structureError(publicKey, claims, config, keyChecked)
  if (problem !== undefined) return fail(problem)
  return signaturesFrom(crypto, publicKey, claims, 0)
}

const countDrops = (drops: ReadonlyArray<PolicyReason>): Effect.Effect<void> =>
  drops.length === 0 ? Effect.void : Effect.forEach(drops, filtered, { discard: true })

const secondsOf = (ms: number): bigint => BigInt(Math.floor(ms / 1000))

/**
 * Structure and proof of SPEC §2.6: at least one claim, at most `maxPermittedPeerClaims`, at most
 * `peerValidator.maxAddressesPerClaim` addresses each, the key passes the key check, every signature verifies.
 *
 * @since 0.1.0
 * @category validation
 */
export const checkProof = (
  publicKey: Uint8Array,
  claims: ReadonlyArray<PeerClaim>,
  options?: { readonly keyChecked?: boolean | undefined }
): Effect.Effect<void, PeerValidationError, Crypto.Crypto> =>
  Effect.flatMap(DhtConfig.DhtConfig, (config) =>
    Effect.flatMap(
      Crypto.Crypto,
      (crypto) => proofWith(crypto, config, publicKey, claims, options?.keyChecked === true)
    ))

/**
 * Policy of SPEC §2.6 for one proven claim: `None` if the whole claim is dropped, else the addresses kept. Every drop
 * is counted. `storedUpdatedAt` is the `claimUpdatedAt` of the peer record, if any.
 *
 * @since 0.1.0
 * @category validation
 */
export const applyPolicy = (
  claim: PeerClaim,
  storedUpdatedAt?: bigint
): Effect.Effect<Option.Option<AcceptedClaim>> =>
  Effect.flatMap(DhtConfig.DhtConfig, (config) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const drops: Array<PolicyReason> = []
      const result = policyOf(claim, config, secondsOf(now), storedUpdatedAt, drops)
      return Effect.as(countDrops(drops), result)
    }))

/**
 * The policy verdict on one address: `undefined` when it is acceptable.
 *
 * @since 0.1.0
 * @category validation
 */
export const addressPolicy = (
  address: string,
  policy: { readonly maxAddressLength: number; readonly allowTestAddresses: boolean }
): PolicyReason | undefined => {
  if (Wire.utf8Length(address) > policy.maxAddressLength) return "AddressTooLong"
  const [parsed, failure] = parseAddressOrFailure(address)
  if (parsed === undefined) return failure
  if (!policy.allowTestAddresses && isTestAddress(parsed)) return "TestAddress"
  return undefined
}

// stable: claims with the same updatedAt keep their order
const oldestFirst = (accepted: ReadonlyArray<AcceptedClaim>): Array<AcceptedClaim> =>
  accepted.length < 2 ? accepted.slice() : accepted
    .map((a, i) => [a, i] as const)
    .sort(([a, i], [b, j]) =>
      a.claim.identitySignature.updatedAt < b.claim.identitySignature.updatedAt
        ? -1
        : a.claim.identitySignature.updatedAt > b.claim.identitySignature.updatedAt
        ? 1
        : i - j
    )
    .map(([a]) => a)

/**
 * Validates a peer's claims (SPEC §2.6): proof first (any failure invalidates the set), then policy (drops, counted).
 * The result holds the claims that survive, oldest first, so the last one's features win; it may be empty.
 * `keyChecked`: the caller has already applied the key check to `publicKey` (a transport, before anything else).
 *
 * @since 0.1.0
 * @category validation
 */
export const validateClaims = (
  publicKey: Uint8Array,
  claims: ReadonlyArray<PeerClaim>,
  options?: { readonly storedUpdatedAt?: bigint | undefined; readonly keyChecked?: boolean | undefined }
): Effect.Effect<ReadonlyArray<AcceptedClaim>, PeerValidationError, Crypto.Crypto> =>
  Effect.flatMap(
    DhtConfig.DhtConfig,
    (config) =>
      Effect.flatMap(Crypto.Crypto, (crypto) => validateClaimsWith(crypto, config, publicKey, claims, options))
  )

/**
 * `validateClaims` with its services at hand: what a transport's handshake check runs, once per connection side
 * (providing the two services cost more steps of Effect's run loop than the checks).
 *
 * @since 0.1.0
 * @category validation
 */
export const validateClaimsWith = (
  crypto: Crypto.CryptoService,
  config: DhtConfig.Config,
  publicKey: Uint8Array,
  claims: ReadonlyArray<PeerClaim>,
  options?: { readonly storedUpdatedAt?: bigint | undefined; readonly keyChecked?: boolean | undefined }
): Effect.Effect<ReadonlyArray<AcceptedClaim>, PeerValidationError> => {
  // the policy, with the clock read in the same step as the rules
  const policies = (
    fiber: Fiber.RuntimeFiber<ReadonlyArray<AcceptedClaim>, PeerValidationError>
  ): Effect.Effect<ReadonlyArray<AcceptedClaim>> => {
    const now = FiberClock.nowOf(fiber)
    const nowSeconds = secondsOf(now)
    const drops: Array<PolicyReason> = []
    const accepted: Array<AcceptedClaim> = []
    for (const claim of claims) {
      const result = policyOf(claim, config, nowSeconds, options?.storedUpdatedAt, drops)
      if (Option.isSome(result)) accepted.push(result.value)
    }
    const ordered = oldestFirst(accepted)
    return drops.length === 0 ? Effect.succeed(ordered) : Effect.as(countDrops(drops), ordered)
  }
  const keyChecked = options?.keyChecked === true
  if (crypto.unsafeVerify === undefined) {
    return Effect.flatMap(proofWith(crypto, config, publicKey, claims, keyChecked), () =>
      Effect.withFiberRuntime<ReadonlyArray<AcceptedClaim>, PeerValidationError>(policies))
  }
  // The whole of it in one step when the service verifies in the caller's step: a relayed peer's claims are
  // validated each time the peer is relayed (about 470,000 times in a 1000-node join, nearly all answered by the
  // verification memo), and the steps between the rules were most of their cost.
  return Effect.withFiberRuntime<ReadonlyArray<AcceptedClaim>, PeerValidationError>((fiber) => {
    const problem = structureError(publicKey, claims, config, keyChecked)
    if (problem !== undefined) return fail(problem)
    const labels = fiber.getFiberRef(FiberRef.currentMetricLabels)
    for (let i = 0; i < claims.length; i++) {
      if (MessageCrypto.unsafeVerifyClaimWith(crypto, publicKey, claims[i]!, labels) !== true) {
        return fail(`claim ${i}: invalid signature`)
      }
    }
    return policies(fiber)
  })
}

// --- applying accepted claims to a peer record (§2.5, §2.6) ---

/** Sources whose addresses a newer claim replaces; `Config` and `Inbound` addresses stay. */
const isClaimSourced = (source: AddressSource): boolean => source !== "Config" && source !== "Inbound"

/**
 * Caps an address list at `max` (SPEC §2.5): beyond it, drop those with most connection failures, then the least
 * recently seen; the kept ones stay in their order.
 *
 * @since 0.1.0
 * @category utils
 */
export const capAddresses = (addresses: ReadonlyArray<PeerAddress>, max: number): ReadonlyArray<PeerAddress> => {
  if (addresses.length <= max) return addresses
  const ranked = addresses
    .map((a, i) => ({ a, i }))
    .sort((x, y) =>
      x.a.connectionFailures !== y.a.connectionFailures
        ? x.a.connectionFailures - y.a.connectionFailures
        : (y.a.lastSeen ?? -1) - (x.a.lastSeen ?? -1) || x.i - y.i
    )
  const keep = new Set(ranked.slice(0, max).map(({ i }) => i))
  return addresses.filter((_, i) => keep.has(i))
}

/**
 * The peer record with accepted claims applied (SPEC §2.6): the claim-sourced addresses are replaced by the accepted
 * ones (tagged `source`; an address already known keeps its statistics and, for `Config`/`Inbound`, its source),
 * `claimUpdatedAt`, `identitySignature` and `features` come from the newest claim, and the list is capped at
 * `peerValidator.maxAddressesPerPeer`. With nothing accepted the peer is returned unchanged.
 *
 * @since 0.1.0
 * @category utils
 */
export const applyClaims = (
  peer: Peer,
  accepted: ReadonlyArray<AcceptedClaim>,
  options: { readonly source: AddressSource; readonly maxAddressesPerPeer: number }
): Peer => {
  const newest = accepted[accepted.length - 1]
  if (newest === undefined) return peer
  const existing = new Map(peer.addresses.map((a) => [a.address, a]))
  const claimed = new Map<string, PeerClaim>()
  for (const { addresses, claim } of accepted) for (const a of addresses) claimed.set(a, claim)
  const kept = peer.addresses
    .filter((a) => !isClaimSourced(a.source) || claimed.has(a.address))
    .map((a) => {
      const claim = claimed.get(a.address)
      return claim === undefined ? a : unsafePeerAddress({ ...a, claim })
    })
  const added = [...claimed]
    .filter(([address]) => !existing.has(address))
    .map(([address, claim]) =>
      unsafePeerAddress({ address, connectionFailures: 0, source: options.source, claim })
    )
  const addresses = capAddresses([...kept, ...added], options.maxAddressesPerPeer)
  // every part comes from a stored record or a proven claim
  return unsafePeer({
    ...peer,
    addresses,
    features: newest.claim.features,
    identitySignature: newest.claim.identitySignature,
    claimUpdatedAt: newest.claim.identitySignature.updatedAt
  })
}

/**
 * `claim` is, field for field, the newest claim `peer` holds: accepting it again (SPEC §2.6) would find the same
 * proof and the same policy answer, and applying it would leave the record as it is. An older claim is not "held",
 * so its `OlderThanStored` filtering still happens. Once a network has settled, nearly every claim a node is told
 * of (in a peer-sync answer, a join) is one it holds.
 *
 * @since 0.1.0
 * @category utils
 */
export const holdsClaim = (peer: Peer, claim: PeerClaim): boolean =>
  peer.claimUpdatedAt !== undefined && claim.identitySignature.updatedAt === peer.claimUpdatedAt &&
  peer.addresses.some((address) => address.claim !== undefined && sameClaim(address.claim, claim))

// --- a completed handshake (SPEC §2.5, §4.8) ---

/**
 * The remote end of a completed transport handshake: who it proved to be and the claims it proved.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectedRemote {
  readonly publicKey: PublicKey
  readonly nodeId: NodeId
  readonly features: number
  readonly accepted: ReadonlyArray<AcceptedClaim>
}

/**
 * What a transport has to check a handshake payload with (SPEC §4.8).
 *
 * @since 0.1.0
 * @category models
 */
export interface HandshakeCheck {
  readonly config: DhtConfig.Config
  readonly crypto: Crypto.CryptoService
  readonly peers: PeerManagerService
  /** this node */
  readonly self: NodeId
  /** the key the dialler meant to reach; undefined on the responder */
  readonly expected: PublicKey | undefined
  /** the identity key check (a transport may remember its answers) */
  readonly checkKey: (key: Uint8Array) => Effect.Effect<boolean>
  /**
   * The transport's own binding of the payload to its channel, checked after the identity and before the table
   * (TCP: the Noise static key signed by the identity); a failure is its reason and detail.
   */
  readonly bind?: (
    payload: HandshakePayload.NoiseHandshakePayload,
    publicKey: PublicKey
  ) => Effect.Effect<Option.Option<readonly [string, string]>>
  /** counts, logs and fails with the reason (`Decode`, `UnsupportedVersion`, `InvalidKey`, …) */
  readonly fail: (reason: string, detail: string) => Effect.Effect<never, HandshakeFailed>
}

/**
 * A remote that passed `validateHandshake`: its identity and the claims it proved.
 *
 * @since 0.1.0
 * @category models
 */
export interface HandshakeRemote extends ConnectedRemote {
  readonly hex: string
}

/**
 * SPEC §4.8's checks of the payload a remote sent in its handshake, in order: it decodes, its protocol version is
 * supported, its identity key passes the key check, it is the key that was dialled, it is not this node, the
 * transport's binding holds, its NodeId is not known with another key, and its claim is valid (and not older than
 * the stored one). Every transport authenticates its peers with this one function.
 *
 * @since 0.1.0
 * @category utils
 */
export const validateHandshake = (
  bytes: Uint8Array,
  check: HandshakeCheck
): Effect.Effect<HandshakeRemote, HandshakeFailed> => {
  // plain checks and a chain of the few that are effects: a connection runs this on both sides, and as a generator
  // it cost three times the steps of Effect's run loop its claim check costs
  const { fail } = check
  const decoded = HandshakePayload.decodeEither(bytes)
  if (Either.isLeft(decoded)) return fail("Decode", decoded.left.reason)
  const payload = decoded.right
  if (!check.config.supportedVersions.includes(payload.protocolVersion)) {
    return fail("UnsupportedVersion", `protocol version ${payload.protocolVersion}`)
  }
  const publicKey = payload.identityPublicKey
  const nodeId = fromPublicKey(publicKey)
  // most handshakes in a growing network are with strangers: looked up, not caught as `PeerNotFound` (its stack
  // trace)
  const claims = Effect.flatMap(
    getOption(check.peers, nodeId).pipe(Effect.orElseSucceed(() => Option.none<Peer>())),
    (stored) => {
      if (Option.isSome(stored) && !equals(stored.value.publicKey, publicKey)) {
        return fail("IdentityMismatch", "NodeId known with another key")
      }
      return validateClaimsWith(check.crypto, check.config, publicKey, [payload.claim], {
        storedUpdatedAt: Option.isSome(stored) ? stored.value.claimUpdatedAt : undefined,
        keyChecked: true
      }).pipe(Effect.matchEffect({
        onFailure: (e) => fail("InvalidClaim", e.reason),
        onSuccess: (accepted) =>
          Effect.succeed({ publicKey, nodeId, hex: toHex(nodeId), features: payload.peerFeatures, accepted })
      }))
    }
  )
  return Effect.flatMap(check.checkKey(publicKey), (keyOk) => {
    if (!keyOk) return fail("InvalidKey", "identity key check failed")
    if (check.expected !== undefined && !equals(publicKey, check.expected)) {
      return fail("IdentityMismatch", "not the key that was dialled")
    }
    if (equals(nodeId, check.self)) return fail("IdentityMismatch", "connection to ourselves")
    if (check.bind === undefined) return claims
    return Effect.flatMap(
      check.bind(payload, publicKey),
      (unbound) => Option.isSome(unbound) ? fail(unbound.value[0], unbound.value[1]) : claims
    )
  })
}

/**
 * The local record of a peer a handshake just authenticated: its proven claims applied, the dialled address kept
 * and marked seen, online, verified (SPEC §2.5, §4.8). Every transport records its peers this way.
 *
 * @since 0.1.0
 * @category utils
 */
export const connectedPeer = (
  existing: Peer | undefined,
  remote: ConnectedRemote,
  now: number,
  maxAddressesPerPeer: number,
  dialledAddress: string | undefined
): Peer => {
  const base = existing ?? unsafePeer({
    publicKey: remote.publicKey,
    nodeId: remote.nodeId,
    addresses: [],
    features: remote.features,
    flags: 0,
    bannedReason: "",
    addedAt: now
  })
  const claimed = applyClaims(base, remote.accepted, { source: "Inbound", maxAddressesPerPeer })
  let addresses = claimed.addresses
  if (dialledAddress !== undefined) {
    // the address we reached stays even if the peer's newest claim no longer lists it
    const dialled = addresses.find((a) => a.address === dialledAddress) ??
      base.addresses.find((a) => a.address === dialledAddress)
    const seen = unsafePeerAddress({
      ...(dialled ?? { address: dialledAddress, source: "Config" as const }),
      lastSeen: now,
      connectionFailures: 0
    })
    addresses = addresses.some((a) => a.address === dialledAddress)
      ? addresses.map((a) => a.address === dialledAddress ? seen : a)
      : [...addresses, seen]
  }
  const { offlineAt: _offlineAt, ...rest } = claimed
  // built from a stored record and validated handshake fields: nothing left to check
  return unsafePeer({
    ...rest,
    addresses,
    features: remote.features,
    lastSeen: now,
    verifiedAt: claimed.verifiedAt ?? now
  })
}

/**
 * Writes `connectedPeer` into the table (updating the peer's record, or adding it); a storage failure is logged
 * and the connection goes on with the record unsaved.
 *
 * @since 0.1.0
 * @category utils
 */
export const recordConnected = (
  peers: PeerManagerService,
  remote: ConnectedRemote,
  options: { readonly maxAddressesPerPeer: number; readonly dialledAddress: string | undefined }
): Effect.Effect<Peer> =>
  FiberClock.withNow((now) => {
    const make = (existing: Peer | undefined) =>
      connectedPeer(existing, remote, now, options.maxAddressesPerPeer, options.dialledAddress)
    const addNew = Effect.suspend(() => {
      const peer = make(undefined)
      return Effect.as(peers.add(peer), peer)
    })
    // a stranger is looked up first rather than caught as `PeerNotFound` (an error's stack trace costs more than
    // the lookup); the update still falls back to adding if the peer is removed in between
    return getOption(peers, remote.nodeId).pipe(
      Effect.flatMap((known) => Option.isSome(known) ? peers.update(remote.nodeId, (p) => make(p)) : addNew),
      Effect.catchTag("PeerNotFound", () => addNew),
      Effect.catchTag("StoreError", (e) =>
        Effect.as(Effect.logWarning("could not record a connected peer", e), make(undefined)))
    )
  })

// --- dial bookkeeping (SPEC §6.5, §11) ---

/**
 * How a dial went, as every transport records it in the peer's table entry: an `Attempt` on an address is about to
 * start, it `Failed`, or every address failed and the peer is `Offline`.
 *
 * @since 0.1.0
 * @category models
 */
export type DialRecord =
  | { readonly _tag: "Attempt"; readonly address: string; readonly now: number }
  | { readonly _tag: "Failed"; readonly address: string }
  | { readonly _tag: "Offline"; readonly now: number }

const withAddress = (peer: Peer, address: string, f: (a: PeerAddress) => PeerAddress): Peer =>
  unsafePeer({ ...peer, addresses: peer.addresses.map((a) => a.address === address ? f(a) : a) })

/**
 * Writes a `DialRecord` into the table. A peer that is gone is left alone and a storage failure is logged: either
 * way the dial goes on.
 *
 * @since 0.1.0
 * @category utils
 */
export const recordDial = (peers: PeerManagerService, nodeId: NodeId, record: DialRecord): Effect.Effect<void> =>
  peers.update(nodeId, (peer) => {
    switch (record._tag) {
      case "Attempt":
        return withAddress(peer, record.address, (a) => unsafePeerAddress({ ...a, lastAttempt: record.now }))
      case "Failed":
        return withAddress(
          peer,
          record.address,
          (a) => unsafePeerAddress({ ...a, connectionFailures: a.connectionFailures + 1 })
        )
      case "Offline":
        return unsafePeer({ ...peer, offlineAt: record.now })
    }
  }).pipe(
    Effect.catchTag("PeerNotFound", () => Effect.void),
    Effect.catchTag("StoreError", (e) => Effect.logWarning("peer update failed", e)),
    Effect.asVoid
  )
