/**
 * The DHT's configuration (SPEC §17): every tunable with Tari's defaults, as a `Schema.Class` that decodes from
 * JSON or CLI values, plus the `DhtConfig` reference through which code reads it.
 *
 * Names: the record is the class `Config` (a `Schema.Class` cannot share its module-level name with the tag); the
 * tag is `DhtConfig` (`"@comms-dht/core/DhtConfig"`), a `Context.Reference` whose default is `defaultConfig`, so code
 * that never provides one runs with Tari's mainnet values. `defaultConfig` stands for the SPEC's `DhtConfig.default`
 * (`default` is a reserved word and cannot be an export name); `localTest` is Tari's local-test preset.
 *
 * Durations decode from a number of milliseconds (`120000`), an Effect duration string (`"2 minutes"`), or the tagged
 * form of `Schema.Duration` (`{ "_tag": "Millis", "millis": 120000 }`); they encode to milliseconds (an infinite
 * duration to the tagged `{ "_tag": "Infinity" }`), so an encoded config is plain JSON that decodes back to itself.
 * A field left out of the input takes its default, at every level.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { ConfigError } from "./DhtError.js"

const DurationEncodedTagged = Schema.encodedSchema(Schema.Duration)
const infinityEncoded: Schema.DurationEncoded = { _tag: "Infinity" }

/**
 * A duration read from JSON or a command line: milliseconds (`120000`), an Effect duration string (`"2 minutes"`,
 * `"1.5 hours"`) or `Schema.Duration`'s tagged form. Encodes to milliseconds (infinite: `{ "_tag": "Infinity" }`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const DurationInput = Schema.transformOrFail(
  Schema.Union(Schema.Number, Schema.String, DurationEncodedTagged),
  Schema.DurationFromSelf,
  {
    strict: true,
    decode: (input, options, ast) => {
      if (typeof input === "number") {
        return Number.isNaN(input) || input < 0
          ? ParseResult.fail(new ParseResult.Type(ast, input, `expected a non-negative number of millis, got ${input}`))
          : ParseResult.succeed(Duration.millis(input))
      }
      if (typeof input === "string") {
        return Option.match(Duration.decodeUnknown(input), {
          onNone: () =>
            ParseResult.fail(
              new ParseResult.Type(ast, input, `expected a duration such as "2 minutes" or 120000, got "${input}"`)
            ),
          onSome: (d) =>
            input.trim().startsWith("-")
              ? ParseResult.fail(new ParseResult.Type(ast, input, `expected a non-negative duration, got "${input}"`))
              : ParseResult.succeed(d)
        })
      }
      return ParseResult.decodeUnknown(Schema.Duration)(input, options)
    },
    encode: (d) =>
      Duration.isFinite(d)
        ? ParseResult.succeed(Duration.toMillis(d))
        : ParseResult.succeed(infinityEncoded)
  }
).annotations({ identifier: "DurationInput" })

const Count = Schema.NonNegativeInt
const AtLeastOne = Schema.Int.pipe(Schema.greaterThanOrEqualTo(1, {
  message: (issue) => `must be ≥ 1, got ${String(issue.actual)}`
}))
const Ratio = Schema.Number.pipe(Schema.between(0, 1))

const withDefault = <S extends Schema.Schema.AnyNoContext>(schema: S, value: () => Schema.Schema.Type<S>) =>
  Schema.optionalWith(schema, { default: value, exact: true })

const duration = (input: Duration.DurationInput) => withDefault(DurationInput, () => Duration.decode(input))

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

/**
 * Headroom kept between `saf.maxMessageSize` and `maxMessageSize`, so that one stored message always fits a SAF
 * response with its envelope and framing (SPEC §9.3, §17).
 *
 * @since 0.1.0
 * @category constants
 */
export const SAF_RESPONSE_HEADROOM = 64 * KiB

/**
 * Claim validation policy (SPEC §17.2, §2.6).
 *
 * @since 0.1.0
 * @category models
 */
export class PeerValidatorConfig extends Schema.Class<PeerValidatorConfig>("@comms-dht/core/PeerValidatorConfig")({
  maxAddressesPerClaim: withDefault(Count, () => 5),
  /** bytes */
  maxAddressLength: withDefault(Count, () => 256),
  maxAddressesPerPeer: withDefault(Count, () => 25),
  allowTestAddresses: withDefault(Schema.Boolean, () => false)
}) {}

/**
 * Store-and-forward (SPEC §17.3, §9).
 *
 * @since 0.1.0
 * @category models
 */
export class SafConfig extends Schema.Class<SafConfig>("@comms-dht/core/SafConfig")({
  msgValidity: duration("3 hours"),
  msgStorageCapacity: withDefault(Count, () => 100_000),
  maxStoredBytes: withDefault(Count, () => 256 * MiB),
  maxRowsPerDestination: withDefault(Count, () => 1_000),
  maxRowsPerSourcePeerPerHour: withDefault(Count, () => 1_000),
  /** kept for Tari compatibility; unused, as in Tari */
  numClosestNodes: withDefault(Count, () => 10),
  maxReturnedMessages: withDefault(AtLeastOne, () => 50),
  lowPriorityMsgStorageTtl: duration("6 hours"),
  highPriorityMsgStorageTtl: duration("3 days"),
  /** bytes; must be ≤ `maxMessageSize − 64 KiB` */
  maxMessageSize: withDefault(Count, () => 512 * KiB),
  autoRequest: withDefault(Schema.Boolean, () => true),
  maxInflightRequestAge: duration("120 seconds"),
  numNeighbouringNodes: withDefault(Count, () => 8),
  cleanupInterval: duration("10 minutes"),
  minRequestInterval: duration("30 seconds"),
  /**
   * ours: how long §9.3's new-connection trigger waits before asking the peers connected meanwhile, those of them
   * still among the closest; 0 asks at once (docs/spec-departures.md)
   */
  connectionRequestDelay: duration("2 seconds")
}) {}

/**
 * Neighbour and random pools (SPEC §17.4, §11).
 *
 * @since 0.1.0
 * @category models
 */
export class ConnectivityConfig extends Schema.Class<ConnectivityConfig>("@comms-dht/core/ConnectivityConfig")({
  updateInterval: duration("2 minutes"),
  randomPoolRefreshInterval: duration("2 hours"),
  highFailureRateCooldown: duration("45 seconds"),
  minimumDesiredTcpv4NodeRatio: withDefault(Ratio, () => 0.1),
  minConnectivity: withDefault(Count, () => 1),
  offlineRefreshDelay: duration("15 seconds"),
  maxFailuresMarkOffline: withDefault(Count, () => 1)
}) {}

/**
 * Network discovery (SPEC §17.5, §12). `initialPeerSyncDelay` is `Option.none()` by default: no delayed refresh.
 * `maxPeersToSyncPerRound` (32; also the most a responder returns) and `onConnectFetchPeers` (16) are smaller than
 * the spec's 500 and 100: answers are the requester's closest peers (docs/spec-departures.md §6).
 *
 * @since 0.1.0
 * @category models
 */
export class NetworkDiscoveryConfig
  extends Schema.Class<NetworkDiscoveryConfig>("@comms-dht/core/NetworkDiscoveryConfig")({
    enabled: withDefault(Schema.Boolean, () => true),
    minDesiredPeers: withDefault(Count, () => 50),
    idlePeriod: duration("30 minutes"),
    idleAfterNumRounds: withDefault(Count, () => 10),
    onFailureIdlePeriod: duration("5 seconds"),
    maxSyncPeers: withDefault(Count, () => 5),
    maxPeersToSyncPerRound: withDefault(Count, () => 32),
    initialPeerSyncDelay: Schema.optionalWith(DurationInput, { as: "Option", exact: true }).pipe(
      Schema.withConstructorDefault(() => Option.none<Duration.Duration>())
    ),
    onConnectFetchPeers: withDefault(Count, () => 16),
    connectivityPollInterval: duration("10 seconds"),
    peerSyncTimeout: duration("30 seconds")
  })
{}

const fields = {
  protocolVersion: withDefault(Count, () => 1),
  supportedVersions: withDefault(Schema.Array(Count), () => [1]),
  outboundBufferSize: withDefault(AtLeastOne, () => 20),
  numNeighbouringNodes: withDefault(AtLeastOne, () => 8),
  // 12, not the spec's 4: a node that learns its neighbourhood rather than the whole network routes through its
  // random pool's long links (docs/spec-departures.md §6)
  numRandomNodes: withDefault(Count, () => 12),
  minimizeConnections: withDefault(Schema.Boolean, () => false),
  broadcastFactor: withDefault(Count, () => 8),
  propagationFactor: withDefault(AtLeastOne, () => 3),
  // 1, not `propagationFactor`: a join already starts on the joiner's 8 closest known peers, and 3 a hop made it
  // reach 71 nodes of 1000 and 118 of 3000 (docs/spec-departures.md §14)
  joinPropagationFactor: withDefault(AtLeastOne, () => 1),
  // 8, not the spec's 6: a node misses a gossiped message with probability about e^-gossipFactor, and 6 missed
  // more than 0.1 % in the simulation (docs/spec-departures.md §5)
  gossipFactor: withDefault(AtLeastOne, () => 8),
  /** F3 messages per origin per minute */
  gossipBudgetPerOrigin: withDefault(Count, () => 100),
  dedupCacheCapacity: withDefault(Count, () => 100_000),
  dedupCacheTrimInterval: duration("5 minutes"),
  dedupAllowedMessageOccurrences: withDefault(AtLeastOne, () => 1),
  discoveryRequestTimeout: duration("2 minutes"),
  autoJoin: withDefault(Schema.Boolean, () => false),
  joinCooldownInterval: duration("10 minutes"),
  /** High severity */
  banDuration: duration("2 hours"),
  /** Low and Medium severity */
  banDurationShort: duration("10 minutes"),
  floodBanMaxMsgCount: withDefault(Count, () => 100_000),
  /** bytes */
  floodBanMaxBytes: withDefault(Count, () => GiB),
  floodBanTimespan: duration("100 seconds"),
  offlinePeerCooldown: duration("24 hours"),
  maxPermittedPeerClaims: withDefault(Count, () => 5),
  /** `tcp://HOST:PORT` patterns with `*` wildcards */
  excludedDialAddresses: withDefault(Schema.Array(Schema.String), () => []),
  /** bytes */
  maxMessageSize: withDefault(Count, () => 8 * MiB),
  maxMessageExpiry: duration("3 days"),
  clockSkewAllowance: duration("10 minutes"),
  maxKnownPeers: withDefault(Count, () => 10_000),
  maxPeersAddedPerSourcePerHour: withDefault(Count, () => 500),
  verifyMemoCapacity: withDefault(Count, () => 65_536),
  actorQueueCapacity: withDefault(AtLeastOne, () => 100),
  discoveryQueueCapacity: withDefault(AtLeastOne, () => 100),
  eventBufferSize: withDefault(AtLeastOne, () => 100),
  inboundQueueCapacity: withDefault(AtLeastOne, () => 1_000),
  peerValidator: withDefault(PeerValidatorConfig, () => new PeerValidatorConfig({})),
  saf: withDefault(SafConfig, () => new SafConfig({})),
  connectivity: withDefault(ConnectivityConfig, () => new ConnectivityConfig({})),
  networkDiscovery: withDefault(NetworkDiscoveryConfig, () => new NetworkDiscoveryConfig({}))
}

interface Fields {
  readonly protocolVersion: number
  readonly supportedVersions: ReadonlyArray<number>
  readonly maxMessageSize: number
  readonly maxMessageExpiry: Duration.Duration
  readonly saf: SafConfig
}

// Cross-field rules of SPEC §17; each issue carries the path of the field to change.
const crossField = (c: Fields): ReadonlyArray<Schema.FilterIssue> => {
  const issues: Array<Schema.FilterIssue> = []
  if (c.saf.maxMessageSize > c.maxMessageSize - SAF_RESPONSE_HEADROOM) {
    issues.push({
      path: ["saf", "maxMessageSize"],
      message: `saf.maxMessageSize (${c.saf.maxMessageSize}) must be ≤ maxMessageSize − 64 KiB (${
        c.maxMessageSize - SAF_RESPONSE_HEADROOM
      }) so one stored message fits a SAF response`
    })
  }
  if (Duration.greaterThan(c.saf.msgValidity, c.maxMessageExpiry)) {
    issues.push({
      path: ["saf", "msgValidity"],
      message: `saf.msgValidity (${Duration.format(c.saf.msgValidity)}) must be ≤ maxMessageExpiry (${
        Duration.format(c.maxMessageExpiry)
      })`
    })
  }
  if (!c.supportedVersions.includes(c.protocolVersion)) {
    issues.push({
      path: ["protocolVersion"],
      message: `protocolVersion (${c.protocolVersion}) must be one of supportedVersions [${
        c.supportedVersions.join(", ")
      }]`
    })
  }
  return issues
}

/**
 * The whole configuration (SPEC §17.1, with the nested sections of §17.2–§17.5). Decoding `{}` gives
 * `defaultConfig`; invalid combinations fail with a message naming the field.
 *
 * @since 0.1.0
 * @category models
 */
export class Config extends Schema.Class<Config>("@comms-dht/core/DhtConfig")(
  Schema.Struct(fields).pipe(Schema.filter(crossField))
) {}

/**
 * The JSON form of a `Config` (durations as millis).
 *
 * @since 0.1.0
 * @category models
 */
export type ConfigEncoded = typeof Config.Encoded

/**
 * Tari's default (mainnet) values: SPEC's `DhtConfig.default`.
 *
 * @since 0.1.0
 * @category presets
 */
export const defaultConfig: Config = new Config({})

/**
 * Tari's local-test preset: no automatic SAF requests, joins or network discovery, no initial sync delay, test
 * (loopback, private) addresses allowed and no excluded dial addresses.
 *
 * @since 0.1.0
 * @category presets
 */
export const localTest: Config = new Config({
  autoJoin: false,
  excludedDialAddresses: [],
  peerValidator: new PeerValidatorConfig({ allowTestAddresses: true }),
  saf: new SafConfig({ autoRequest: false }),
  networkDiscovery: new NetworkDiscoveryConfig({ enabled: false, initialPeerSyncDelay: Option.none() })
})

/**
 * The configuration every part of the DHT reads. Its default is `defaultConfig`; override with
 * `Effect.provideService(DhtConfig, config)` or `layer(config)`.
 *
 * @since 0.1.0
 * @category tags
 */
export class DhtConfig extends Context.Reference<DhtConfig>()("@comms-dht/core/DhtConfig", {
  defaultValue: () => defaultConfig
}) {}

/**
 * Provides `config` as the `DhtConfig` reference.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (config: Config): Layer.Layer<DhtConfig> => Layer.succeed(DhtConfig, config)

const toConfigError = (error: ParseResult.ParseError) => new ConfigError({ reason: error.message })

/**
 * Decodes an untrusted value (parsed JSON, CLI options): missing fields take their defaults, every constraint of
 * SPEC §17 is checked, and a failure names the offending field.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decode = (input: unknown): Effect.Effect<Config, ConfigError> =>
  Schema.decodeUnknown(Config)(input, { onExcessProperty: "error", errors: "all" }).pipe(
    Effect.mapError(toConfigError)
  )

/**
 * Encodes a config as plain JSON-compatible data; `decode` of the result gives the same config.
 *
 * @since 0.1.0
 * @category utils
 */
export const encode = (config: Config): Effect.Effect<ConfigEncoded, ConfigError> =>
  Schema.encode(Config)(config).pipe(Effect.mapError(toConfigError))

type Sections = "peerValidator" | "saf" | "connectivity" | "networkDiscovery"

type ConstructorFields<C> = { -readonly [K in keyof C]?: C[K] }

/**
 * Field overrides for `make`: top-level values, and for each nested section only the fields to change.
 *
 * @since 0.1.0
 * @category models
 */
export type Overrides =
  & { readonly [K in Exclude<keyof typeof Config.Type, Sections>]?: typeof Config.Type[K] }
  & {
    readonly peerValidator?: ConstructorFields<PeerValidatorConfig>
    readonly saf?: ConstructorFields<SafConfig>
    readonly connectivity?: ConstructorFields<ConnectivityConfig>
    readonly networkDiscovery?: ConstructorFields<NetworkDiscoveryConfig>
  }

/**
 * `base` (default: `defaultConfig`) with `overrides` applied deeply (nested sections field by field), checked
 * against every constraint.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (overrides: Overrides, base: Config = defaultConfig): Effect.Effect<Config, ConfigError> =>
  Effect.try({
    try: () => unsafeMake(overrides, base),
    catch: (error) => new ConfigError({ reason: error instanceof Error ? error.message : String(error) })
  })

/**
 * `make` for literals in tests and presets: an invalid combination throws the Schema constructor's `ParseError`
 * (as `new Config(…)` does). Untrusted input goes through `decode`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unsafeMake = (overrides: Overrides, base: Config = defaultConfig): Config =>
  new Config({
    ...base,
    ...overrides,
    peerValidator: new PeerValidatorConfig({ ...base.peerValidator, ...overrides.peerValidator }),
    saf: new SafConfig({ ...base.saf, ...overrides.saf }),
    connectivity: new ConnectivityConfig({ ...base.connectivity, ...overrides.connectivity }),
    networkDiscovery: new NetworkDiscoveryConfig({ ...base.networkDiscovery, ...overrides.networkDiscovery })
  })

/**
 * A duration as whole milliseconds (`Infinity` for an infinite one), for code that works on `Clock` millis.
 *
 * @since 0.1.0
 * @category utils
 */
export const millis = (d: Duration.Duration): number => Duration.toMillis(d)
