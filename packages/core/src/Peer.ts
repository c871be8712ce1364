/**
 * The peer record (SPEC §2.4–§2.6): who a peer is, where it can be reached, what it does, and what we know of its
 * behaviour (bans, offline marks, verification). Records are immutable values; `PeerManager` stores them.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { equals, fromPublicKey, NodeId, PublicKey } from "./NodeId.js"

/**
 * Peer feature bit flags (SPEC §2.4).
 *
 * @since 0.1.0
 * @category models
 */
export const PeerFeatures = {
  NONE: 0x00,
  COMMUNICATION_CLIENT: 0x00,
  MESSAGE_PROPAGATION: 0x01,
  DHT_STORE_FORWARD: 0x02,
  COMMUNICATION_NODE: 0x03
} as const

/**
 * @since 0.1.0
 * @category models
 */
export const PeerFlags = {
  NONE: 0x00,
  SEED: 0x01
} as const

/**
 * `features` has every bit of `wanted`.
 *
 * @since 0.1.0
 * @category utils
 */
export const hasFeatures = (features: number, wanted: number): boolean => (features & wanted) === wanted

/**
 * A claim signature (`common.proto` `IdentitySignature`, SPEC §4.7).
 *
 * @since 0.1.0
 * @category models
 */
export class IdentitySignature extends Schema.Class<IdentitySignature>("@comms-dht/core/IdentitySignature")({
  version: Schema.Number,
  signature: Schema.Uint8ArrayFromSelf,
  /** unix seconds used in the challenge */
  updatedAt: Schema.BigIntFromSelf
}) {}

/**
 * A signed statement by a peer of its addresses and features (SPEC §2.6).
 *
 * @since 0.1.0
 * @category models
 */
export class PeerClaim extends Schema.Class<PeerClaim>("@comms-dht/core/PeerClaim")({
  addresses: Schema.Array(Schema.String),
  features: Schema.Number,
  identitySignature: IdentitySignature
}) {}

/**
 * The same signature, field for field (two decodings of one signature are two objects).
 *
 * @since 0.1.0
 * @category utils
 */
export const sameIdentitySignature = (
  a: IdentitySignature | undefined,
  b: IdentitySignature | undefined
): boolean =>
  a === b || (a !== undefined && b !== undefined && a.version === b.version && a.updatedAt === b.updatedAt &&
    equals(a.signature, b.signature))

/**
 * The same claim, field for field.
 *
 * @since 0.1.0
 * @category utils
 */
export const sameClaim = (a: PeerClaim | undefined, b: PeerClaim | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && a.features === b.features &&
    sameIdentitySignature(a.identitySignature, b.identitySignature) && a.addresses.length === b.addresses.length &&
    a.addresses.every((address, i) => address === b.addresses[i]))

/**
 * Where an address was learnt.
 *
 * @since 0.1.0
 * @category models
 */
export const AddressSource = Schema.Literal("Config", "Join", "Discovery", "PeerSync", "Inbound")

/**
 * @since 0.1.0
 * @category models
 */
export type AddressSource = typeof AddressSource.Type

/**
 * @since 0.1.0
 * @category models
 */
export class PeerAddress extends Schema.Class<PeerAddress>("@comms-dht/core/PeerAddress")({
  address: Schema.String,
  lastSeen: Schema.optional(Schema.Number),
  lastAttempt: Schema.optional(Schema.Number),
  connectionFailures: Schema.Number,
  source: AddressSource,
  claim: Schema.optional(PeerClaim)
}) {}

/**
 * A peer record. Times are unix milliseconds from `Clock`, except `claimUpdatedAt` (unix seconds, as signed).
 *
 * @since 0.1.0
 * @category models
 */
export class Peer extends Schema.Class<Peer>("@comms-dht/core/Peer")({
  publicKey: PublicKey,
  nodeId: NodeId,
  addresses: Schema.Array(PeerAddress),
  features: Schema.Number,
  flags: Schema.Number,
  bannedUntil: Schema.optional(Schema.Number),
  bannedReason: Schema.String,
  offlineAt: Schema.optional(Schema.Number),
  lastSeen: Schema.optional(Schema.Number),
  addedAt: Schema.Number,
  identitySignature: Schema.optional(IdentitySignature),
  claimUpdatedAt: Schema.optional(Schema.BigIntFromSelf),
  verifiedAt: Schema.optional(Schema.Number)
}) {
  /** banned ⇔ `bannedUntil > now` */
  isBanned(nowMs: number): boolean {
    return this.bannedUntil !== undefined && this.bannedUntil > nowMs
  }
  get isOffline(): boolean {
    return this.offlineAt !== undefined
  }
  get isVerified(): boolean {
    return this.verifiedAt !== undefined
  }
  get isSeed(): boolean {
    return (this.flags & PeerFlags.SEED) !== 0
  }
  /** Every address attempted and none ever seen. */
  get allAddressesFailed(): boolean {
    return this.addresses.length > 0 &&
      this.addresses.every((a) => a.lastAttempt !== undefined && a.lastSeen === undefined)
  }
  /** Not banned and seen within 7 days (Tari's peer-sync activity window). */
  isActive(nowMs: number): boolean {
    return !this.isBanned(nowMs) && this.lastSeen !== undefined && nowMs - this.lastSeen <= ACTIVE_WINDOW_MS
  }
  get isCommunicationNode(): boolean {
    return this.features === PeerFeatures.COMMUNICATION_NODE
  }
}

const ACTIVE_WINDOW_MS = 7 * 24 * 60 * 60 * 1000

/**
 * `new PeerAddress(fields, true)` for fields known valid (a stored address changed, a proven claim's address): the
 * same record — its prototype and own fields, equal by `Equal` and encoded alike — without the Schema class
 * constructor's copy of the fields and its scan for defaults (this class has none). The peer table changes its
 * records on every connection, dial and claim: hundreds of thousands of times in a large simulation.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unsafePeerAddress = (fields: ConstructorParameters<typeof PeerAddress>[0]): PeerAddress =>
  Object.assign(Object.create(PeerAddress.prototype) as PeerAddress, fields)

/**
 * `new Peer(fields, true)` for fields known valid, as `unsafePeerAddress`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unsafePeer = (fields: ConstructorParameters<typeof Peer>[0]): Peer =>
  Object.assign(Object.create(Peer.prototype) as Peer, fields)

/**
 * A new, unverified peer record: NodeId derived from the key, `addedAt = nowMs`, every address fresh (no attempts,
 * no failures) and tagged with `source`, not banned, not offline. `flags` defaults to `PeerFlags.NONE`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly publicKey: PublicKey
  readonly addresses: ReadonlyArray<string>
  readonly features: number
  readonly source: AddressSource
  readonly nowMs: number
  readonly flags?: number
}): Peer =>
  // typed inputs (a branded key, strings, numbers): re-validating them cost more than the rest of a peer-sync round
  unsafePeer({
    publicKey: options.publicKey,
    nodeId: fromPublicKey(options.publicKey),
    addresses: options.addresses.map((address) =>
      unsafePeerAddress({ address, connectionFailures: 0, source: options.source })
    ),
    features: options.features,
    flags: options.flags ?? PeerFlags.NONE,
    bannedReason: "",
    addedAt: options.nowMs
  })
