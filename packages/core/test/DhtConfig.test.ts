import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as DhtConfig from "../src/DhtConfig.js"

const KiB = 1024
const MiB = 1024 * KiB

const ms = (d: Duration.Duration) => Duration.toMillis(d)
const MIN = 60_000
const HOUR = 60 * MIN
const DAY = 24 * HOUR

describe("DhtConfig", () => {
  it("defaults are the values of SPEC §17.1–§17.5", () => {
    const c = DhtConfig.defaultConfig
    expect({
      protocolVersion: c.protocolVersion,
      supportedVersions: [...c.supportedVersions],
      outboundBufferSize: c.outboundBufferSize,
      numNeighbouringNodes: c.numNeighbouringNodes,
      numRandomNodes: c.numRandomNodes,
      minimizeConnections: c.minimizeConnections,
      broadcastFactor: c.broadcastFactor,
      propagationFactor: c.propagationFactor,
      joinPropagationFactor: c.joinPropagationFactor,
      gossipFactor: c.gossipFactor,
      gossipBudgetPerOrigin: c.gossipBudgetPerOrigin,
      dedupCacheCapacity: c.dedupCacheCapacity,
      dedupCacheTrimInterval: ms(c.dedupCacheTrimInterval),
      dedupAllowedMessageOccurrences: c.dedupAllowedMessageOccurrences,
      discoveryRequestTimeout: ms(c.discoveryRequestTimeout),
      autoJoin: c.autoJoin,
      joinCooldownInterval: ms(c.joinCooldownInterval),
      banDuration: ms(c.banDuration),
      banDurationShort: ms(c.banDurationShort),
      floodBanMaxMsgCount: c.floodBanMaxMsgCount,
      floodBanMaxBytes: c.floodBanMaxBytes,
      floodBanTimespan: ms(c.floodBanTimespan),
      offlinePeerCooldown: ms(c.offlinePeerCooldown),
      maxPermittedPeerClaims: c.maxPermittedPeerClaims,
      excludedDialAddresses: [...c.excludedDialAddresses],
      maxMessageSize: c.maxMessageSize,
      maxMessageExpiry: ms(c.maxMessageExpiry),
      clockSkewAllowance: ms(c.clockSkewAllowance),
      maxKnownPeers: c.maxKnownPeers,
      maxPeersAddedPerSourcePerHour: c.maxPeersAddedPerSourcePerHour,
      verifyMemoCapacity: c.verifyMemoCapacity,
      actorQueueCapacity: c.actorQueueCapacity,
      discoveryQueueCapacity: c.discoveryQueueCapacity,
      eventBufferSize: c.eventBufferSize,
      inboundQueueCapacity: c.inboundQueueCapacity
    }).toStrictEqual({
      protocolVersion: 1,
      supportedVersions: [1],
      outboundBufferSize: 20,
      numNeighbouringNodes: 8,
      // SPEC §17.1 says 4: docs/spec-departures.md §6
      numRandomNodes: 12,
      minimizeConnections: false,
      broadcastFactor: 8,
      propagationFactor: 3,
      // not in SPEC §17.1 (a join re-propagated as any message, by 3): docs/spec-departures.md §14
      joinPropagationFactor: 1,
      gossipFactor: 8,
      gossipBudgetPerOrigin: 100,
      dedupCacheCapacity: 100_000,
      dedupCacheTrimInterval: 5 * MIN,
      dedupAllowedMessageOccurrences: 1,
      discoveryRequestTimeout: 2 * MIN,
      autoJoin: false,
      joinCooldownInterval: 10 * MIN,
      banDuration: 2 * HOUR,
      banDurationShort: 10 * MIN,
      floodBanMaxMsgCount: 100_000,
      floodBanMaxBytes: 1024 * MiB,
      floodBanTimespan: 100_000,
      offlinePeerCooldown: 24 * HOUR,
      maxPermittedPeerClaims: 5,
      excludedDialAddresses: [],
      maxMessageSize: 8 * MiB,
      maxMessageExpiry: 3 * DAY,
      clockSkewAllowance: 10 * MIN,
      maxKnownPeers: 10_000,
      maxPeersAddedPerSourcePerHour: 500,
      verifyMemoCapacity: 65_536,
      actorQueueCapacity: 100,
      discoveryQueueCapacity: 100,
      eventBufferSize: 100,
      inboundQueueCapacity: 1_000
    })

    const v = c.peerValidator
    expect([v.maxAddressesPerClaim, v.maxAddressLength, v.maxAddressesPerPeer, v.allowTestAddresses])
      .toStrictEqual([5, 256, 25, false])

    const s = c.saf
    expect({
      msgValidity: ms(s.msgValidity),
      msgStorageCapacity: s.msgStorageCapacity,
      maxStoredBytes: s.maxStoredBytes,
      maxRowsPerDestination: s.maxRowsPerDestination,
      maxRowsPerSourcePeerPerHour: s.maxRowsPerSourcePeerPerHour,
      numClosestNodes: s.numClosestNodes,
      maxReturnedMessages: s.maxReturnedMessages,
      lowPriorityMsgStorageTtl: ms(s.lowPriorityMsgStorageTtl),
      highPriorityMsgStorageTtl: ms(s.highPriorityMsgStorageTtl),
      maxMessageSize: s.maxMessageSize,
      autoRequest: s.autoRequest,
      maxInflightRequestAge: ms(s.maxInflightRequestAge),
      numNeighbouringNodes: s.numNeighbouringNodes,
      cleanupInterval: ms(s.cleanupInterval),
      minRequestInterval: ms(s.minRequestInterval),
      connectionRequestDelay: ms(s.connectionRequestDelay)
    }).toStrictEqual({
      msgValidity: 3 * HOUR,
      msgStorageCapacity: 100_000,
      maxStoredBytes: 256 * MiB,
      maxRowsPerDestination: 1_000,
      maxRowsPerSourcePeerPerHour: 1_000,
      numClosestNodes: 10,
      maxReturnedMessages: 50,
      lowPriorityMsgStorageTtl: 6 * HOUR,
      highPriorityMsgStorageTtl: 3 * DAY,
      maxMessageSize: 512 * KiB,
      autoRequest: true,
      maxInflightRequestAge: 120_000,
      numNeighbouringNodes: 8,
      cleanupInterval: 10 * MIN,
      minRequestInterval: 30_000,
      connectionRequestDelay: 2_000
    })

    const k = c.connectivity
    expect({
      updateInterval: ms(k.updateInterval),
      randomPoolRefreshInterval: ms(k.randomPoolRefreshInterval),
      highFailureRateCooldown: ms(k.highFailureRateCooldown),
      minimumDesiredTcpv4NodeRatio: k.minimumDesiredTcpv4NodeRatio,
      minConnectivity: k.minConnectivity,
      offlineRefreshDelay: ms(k.offlineRefreshDelay),
      maxFailuresMarkOffline: k.maxFailuresMarkOffline
    }).toStrictEqual({
      updateInterval: 2 * MIN,
      randomPoolRefreshInterval: 2 * HOUR,
      highFailureRateCooldown: 45_000,
      minimumDesiredTcpv4NodeRatio: 0.1,
      minConnectivity: 1,
      offlineRefreshDelay: 15_000,
      maxFailuresMarkOffline: 1
    })

    const n = c.networkDiscovery
    expect({
      enabled: n.enabled,
      minDesiredPeers: n.minDesiredPeers,
      idlePeriod: ms(n.idlePeriod),
      idleAfterNumRounds: n.idleAfterNumRounds,
      onFailureIdlePeriod: ms(n.onFailureIdlePeriod),
      maxSyncPeers: n.maxSyncPeers,
      maxPeersToSyncPerRound: n.maxPeersToSyncPerRound,
      initialPeerSyncDelay: Option.isNone(n.initialPeerSyncDelay),
      onConnectFetchPeers: n.onConnectFetchPeers,
      connectivityPollInterval: ms(n.connectivityPollInterval),
      peerSyncTimeout: ms(n.peerSyncTimeout)
    }).toStrictEqual({
      enabled: true,
      minDesiredPeers: 50,
      idlePeriod: 30 * MIN,
      idleAfterNumRounds: 10,
      onFailureIdlePeriod: 5_000,
      maxSyncPeers: 5,
      // SPEC §17.5 says 500 and 100: docs/spec-departures.md §6
      maxPeersToSyncPerRound: 32,
      initialPeerSyncDelay: true,
      onConnectFetchPeers: 16,
      connectivityPollInterval: 10_000,
      peerSyncTimeout: 30_000
    })
  })

  it("localTest differs from the default exactly by Tari's local-test deltas", () => {
    const t = DhtConfig.localTest
    expect(t.saf.autoRequest).toBe(false)
    expect(t.autoJoin).toBe(false)
    expect(t.networkDiscovery.enabled).toBe(false)
    expect(Option.isNone(t.networkDiscovery.initialPeerSyncDelay)).toBe(true)
    expect(t.peerValidator.allowTestAddresses).toBe(true)
    expect(t.excludedDialAddresses).toEqual([])
    // everything else is the default
    const back = DhtConfig.unsafeMake({
      saf: { autoRequest: true },
      networkDiscovery: { enabled: true },
      peerValidator: { allowTestAddresses: false }
    }, t)
    expect(back).toEqual(DhtConfig.defaultConfig)
  })

  it.effect("decoding {} gives the default; the Reference defaults to it; layer overrides it", () =>
    Effect.gen(function*() {
      expect(yield* DhtConfig.decode({})).toEqual(DhtConfig.defaultConfig)
      expect(yield* DhtConfig.DhtConfig).toBe(DhtConfig.defaultConfig)
      const provided = yield* DhtConfig.DhtConfig.pipe(Effect.provide(DhtConfig.layer(DhtConfig.localTest)))
      expect(provided).toBe(DhtConfig.localTest)
    }))

  it.effect("durations decode from millis, duration strings and Schema.Duration's tagged form", () =>
    Effect.gen(function*() {
      const c = yield* DhtConfig.decode({
        banDuration: 90_000,
        banDurationShort: "2 minutes",
        joinCooldownInterval: { _tag: "Millis", millis: 1_500 },
        saf: { msgValidity: "1.5 hours" },
        networkDiscovery: { initialPeerSyncDelay: "5 seconds" }
      })
      expect(ms(c.banDuration)).toBe(90_000)
      expect(ms(c.banDurationShort)).toBe(120_000)
      expect(ms(c.joinCooldownInterval)).toBe(1_500)
      expect(ms(c.saf.msgValidity)).toBe(90 * MIN)
      expect(Option.map(c.networkDiscovery.initialPeerSyncDelay, ms)).toEqual(Option.some(5_000))
      // nested sections keep their other defaults
      expect(c.saf.maxReturnedMessages).toBe(50)

      const bad = yield* Effect.flip(DhtConfig.decode({ banDuration: "soon" }))
      expect(bad._tag).toBe("ConfigError")
      expect(bad.reason).toContain("banDuration")
      const negative = yield* Effect.flip(DhtConfig.decode({ banDuration: -1 }))
      expect(negative.reason).toContain("banDuration")
    }))

  describe("constraints fail at decode with a ConfigError naming the field", () => {
    const cases: ReadonlyArray<readonly [string, unknown, string]> = [
      ["numNeighbouringNodes ≥ 1", { numNeighbouringNodes: 0 }, "numNeighbouringNodes"],
      ["propagationFactor ≥ 1", { propagationFactor: 0 }, "propagationFactor"],
      ["joinPropagationFactor ≥ 1", { joinPropagationFactor: 0 }, "joinPropagationFactor"],
      ["gossipFactor ≥ 1", { gossipFactor: 0 }, "gossipFactor"],
      ["saf.maxReturnedMessages ≥ 1", { saf: { maxReturnedMessages: 0 } }, "maxReturnedMessages"],
      [
        "saf.maxMessageSize ≤ maxMessageSize − 64 KiB",
        { maxMessageSize: 1 * MiB, saf: { maxMessageSize: 1 * MiB - 64 * KiB + 1 } },
        "saf.maxMessageSize"
      ],
      ["saf.msgValidity ≤ maxMessageExpiry", { saf: { msgValidity: "4 days" } }, "saf.msgValidity"],
      ["protocolVersion ∈ supportedVersions", { protocolVersion: 2 }, "protocolVersion"],
      ["unknown fields are rejected", { numNeighbouringNode: 8 }, "numNeighbouringNode"]
    ]
    for (const [name, input, field] of cases) {
      it.effect(name, () =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(DhtConfig.decode(input))
          expect(error._tag).toBe("ConfigError")
          expect(error.reason).toContain(field)
        }))
    }

    it.effect("the limits themselves are accepted", () =>
      Effect.gen(function*() {
        const c = yield* DhtConfig.decode({
          numNeighbouringNodes: 1,
          propagationFactor: 1,
          gossipFactor: 1,
          maxMessageSize: 1 * MiB,
          maxMessageExpiry: "3 hours",
          protocolVersion: 2,
          supportedVersions: [1, 2],
          saf: { maxReturnedMessages: 1, maxMessageSize: 1 * MiB - 64 * KiB, msgValidity: "3 hours" }
        })
        expect(c.saf.maxMessageSize).toBe(1 * MiB - 64 * KiB)
        expect(c.protocolVersion).toBe(2)
      }))

    it.effect("make checks the same constraints", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(DhtConfig.make({ saf: { maxMessageSize: 8 * MiB } }))
        expect(error._tag).toBe("ConfigError")
        expect(error.reason).toContain("saf.maxMessageSize")
      }))
  })

  it.effect("make overrides deeply and keeps the rest", () =>
    Effect.gen(function*() {
      const c = yield* DhtConfig.make({ maxKnownPeers: 3, saf: { autoRequest: false } })
      expect(c.maxKnownPeers).toBe(3)
      expect(c.saf.autoRequest).toBe(false)
      expect(c.saf.maxReturnedMessages).toBe(50)
      expect(c.broadcastFactor).toBe(8)
      expect(DhtConfig.defaultConfig.maxKnownPeers).toBe(10_000)
    }))

  it.effect("JSON round trip: encode, stringify, parse, decode gives the same config", () =>
    Effect.gen(function*() {
      for (
        const config of [
          DhtConfig.defaultConfig,
          DhtConfig.localTest,
          DhtConfig.unsafeMake({
            banDuration: Duration.infinity,
            excludedDialAddresses: ["tcp://127.*:*"],
            connectivity: { minimumDesiredTcpv4NodeRatio: 0.25 },
            networkDiscovery: { initialPeerSyncDelay: Option.some(Duration.seconds(7)) }
          })
        ]
      ) {
        const json = JSON.stringify(yield* DhtConfig.encode(config))
        const decoded = yield* DhtConfig.decode(JSON.parse(json))
        expect(decoded).toEqual(config)
        expect(JSON.stringify(yield* DhtConfig.encode(decoded))).toBe(json)
      }
      const encoded = yield* DhtConfig.encode(DhtConfig.defaultConfig)
      expect(encoded.banDuration).toBe(2 * HOUR)
    }))
})
