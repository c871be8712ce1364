import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { identity } from "effect/Function"
import * as FastCheck from "effect/FastCheck"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as Crypto from "../src/Crypto.js"
import * as DhtConfig from "../src/DhtConfig.js"
import * as DhtMetrics from "../src/DhtMetrics.js"
import * as NodeId from "../src/NodeId.js"
import * as Peer from "../src/Peer.js"
import * as PeerValidator from "../src/PeerValidator.js"

const filtered = (reason: PeerValidator.PolicyReason) =>
  Effect.map(Metric.value(Metric.tagged(DhtMetrics.claimsFiltered, "reason", reason)), (s) => s.count)

const signer = Effect.gen(function*() {
  const crypto = yield* Crypto.Crypto
  const secretKey = yield* crypto.generateSecretKey
  return { secretKey, publicKey: crypto.publicKeyOf(secretKey) }
})

const withConfig = (overrides: DhtConfig.Overrides = {}) =>
  Effect.provideService(DhtConfig.DhtConfig, DhtConfig.unsafeMake(overrides))

const withCrypto = Effect.provide(Crypto.layerNoble())

const claimOf = (
  keys: { readonly secretKey: NodeId.SecretKey; readonly publicKey: NodeId.PublicKey },
  addresses: ReadonlyArray<string>,
  updatedAt?: bigint
) =>
  PeerValidator.signClaim({
    ...keys,
    addresses,
    features: Peer.PeerFeatures.COMMUNICATION_NODE,
    ...(updatedAt === undefined ? {} : { updatedAt })
  })

const DAY = 24 * 60 * 60 * 1000

describe("PeerValidator: structure and proof fail the claim set", () => {
  it.effect("a signed claim is accepted whole, with its addresses", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust(DAY)
      const keys = yield* signer
      const claim = yield* claimOf(keys, ["tcp://203.0.113.7:18189", "mem://7"])
      expect(claim.identitySignature.updatedAt).toBe(86_400n)
      const accepted = yield* PeerValidator.validateClaims(keys.publicKey, [claim])
      expect(accepted).toEqual([{ claim, addresses: ["tcp://203.0.113.7:18189", "mem://7"] }])
    }).pipe(withCrypto))

  // the service as a hand-made one may be: without `unsafeVerify`, so the proof goes through `verify`
  type Via = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R | Crypto.Crypto>
  const withoutUnsafeVerify: Via = (effect) =>
    Effect.flatMap(Crypto.Crypto, (crypto) => {
      const { unsafeVerify: _, ...service } = crypto
      return Effect.provideService(effect, Crypto.Crypto, service)
    })
  const vias: ReadonlyArray<readonly [string, Via]> = [
    ["verify in the caller's step", identity],
    ["verify as an Effect", withoutUnsafeVerify]
  ]

  it.effect.each(vias)(
    "every proof failure is a PeerValidationError naming it (%s)",
    ([, via]) =>
      Effect.gen(function*() {
        const keys = yield* signer
        const good = yield* claimOf(keys, ["mem://1"])
        const reasonOf = (publicKey: Uint8Array, claims: ReadonlyArray<Peer.PeerClaim>) =>
          Effect.map(Effect.flip(PeerValidator.validateClaims(publicKey, claims)), (e) => [e._tag, e.reason] as const)

        expect(yield* reasonOf(keys.publicKey, [])).toEqual(["PeerValidationError", "no claim"])
        expect((yield* reasonOf(keys.publicKey, Array(6).fill(good)))[1]).toMatch(/6 claims, at most 5/)
        const wide = yield* claimOf(keys, ["mem://1", "mem://2", "mem://3", "mem://4", "mem://5", "mem://6"])
        expect((yield* reasonOf(keys.publicKey, [wide]))[1]).toMatch(/6 addresses, at most 5/)
        // a small-order key fails the key check before any signature is looked at
        expect((yield* reasonOf(new Uint8Array(32), [good]))[1]).toMatch(/key check/)

        const otherFeatures = new Peer.PeerClaim({ ...good, features: Peer.PeerFeatures.COMMUNICATION_CLIENT })
        expect((yield* reasonOf(keys.publicKey, [good, otherFeatures]))[1]).toBe("claim 1: invalid signature")
        const otherAddress = new Peer.PeerClaim({ ...good, addresses: ["mem://2"] })
        expect((yield* reasonOf(keys.publicKey, [otherAddress]))[1]).toBe("claim 0: invalid signature")
        const flipped = good.identitySignature.signature.slice()
        flipped[5] = flipped[5]! ^ 1
        const badSignature = new Peer.PeerClaim({
          ...good,
          identitySignature: new Peer.IdentitySignature({ ...good.identitySignature, signature: flipped })
        })
        expect((yield* reasonOf(keys.publicKey, [badSignature]))[1]).toBe("claim 0: invalid signature")
        const versionOne = new Peer.PeerClaim({
          ...good,
          identitySignature: new Peer.IdentitySignature({ ...good.identitySignature, version: 1 })
        })
        expect((yield* reasonOf(keys.publicKey, [versionOne]))[1]).toBe("claim 0: invalid signature")
        const stranger = yield* signer
        expect((yield* reasonOf(stranger.publicKey, [good]))[1]).toBe("claim 0: invalid signature")
      }).pipe(via, withCrypto))

  it.effect("the count limits come from the configuration", () =>
    Effect.gen(function*() {
      const keys = yield* signer
      const claim = yield* claimOf(keys, ["mem://1", "mem://2"])
      const error = yield* Effect.flip(
        PeerValidator.validateClaims(keys.publicKey, [claim]).pipe(
          withConfig({ peerValidator: { maxAddressesPerClaim: 1 } })
        )
      )
      expect(error.reason).toMatch(/2 addresses, at most 1/)
    }).pipe(withCrypto))
})

describe("PeerValidator: policy drops silently and counts", () => {
  it.effect("private and loopback addresses are dropped unless allowTestAddresses", () =>
    Effect.gen(function*() {
      const keys = yield* signer
      const claim = yield* claimOf(keys, ["tcp://192.168.1.4:18189", "tcp://198.51.100.1:18189", "tcp://[::1]:1"])
      const before = yield* filtered("TestAddress")
      const strict = yield* PeerValidator.validateClaims(keys.publicKey, [claim])
      expect(strict.map((a) => a.addresses)).toEqual([["tcp://198.51.100.1:18189"]])
      expect((yield* filtered("TestAddress")) - before).toBe(2)
      // the claim kept is the signed one, so it can be relayed and verified again
      expect(strict[0]!.claim).toEqual(claim)

      const lenient = yield* PeerValidator.validateClaims(keys.publicKey, [claim]).pipe(withConfig(DhtConfig.localTest))
      expect(lenient[0]!.addresses).toEqual(claim.addresses)
      expect((yield* filtered("TestAddress")) - before).toBe(2)
    }).pipe(withCrypto))

  it.effect("long, unparseable and foreign-scheme addresses are dropped; a claim left empty is ignored", () =>
    Effect.gen(function*() {
      const keys = yield* signer
      const long = `mem://${"a".repeat(251)}` // 257 bytes
      const claim = yield* claimOf(keys, [long, "tcp://example.com", "udp://example.com:1", "mem://"])
      const counts = () =>
        Effect.forEach(
          ["AddressTooLong", "AddressUnparseable", "UnknownScheme", "NoAddresses"] as const,
          filtered
        )
      const before = yield* counts()
      expect(yield* PeerValidator.validateClaims(keys.publicKey, [claim])).toEqual([])
      const after = yield* counts()
      expect(after.map((n, i) => n - before[i]!)).toEqual([1, 2, 1, 1])
      const policy = { maxAddressLength: 256, allowTestAddresses: false }
      expect(PeerValidator.addressPolicy(`mem://${"a".repeat(250)}`, policy)).toBeUndefined()
    }).pipe(withCrypto))

  it.effect("updatedAt below 0 or over a day ahead drops the claim, not the set", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust(DAY)
      const keys = yield* signer
      const past = yield* claimOf(keys, ["mem://past"], -1n)
      const edge = yield* claimOf(keys, ["mem://edge"], 2n * 86_400n)
      const future = yield* claimOf(keys, ["mem://future"], 2n * 86_400n + 1n)
      const [negative, ahead] = [yield* filtered("UpdatedAtNegative"), yield* filtered("UpdatedAtInFuture")]
      const accepted = yield* PeerValidator.validateClaims(keys.publicKey, [past, edge, future])
      expect(accepted.map((a) => a.addresses)).toEqual([["mem://edge"]])
      expect((yield* filtered("UpdatedAtNegative")) - negative).toBe(1)
      expect((yield* filtered("UpdatedAtInFuture")) - ahead).toBe(1)
    }).pipe(withCrypto))

  it.effect("a claim older than the stored one is ignored; the newest claim's features win", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust(DAY)
      const keys = yield* signer
      const old = yield* claimOf(keys, ["mem://old"], 100n)
      const same = yield* claimOf(keys, ["mem://same"], 200n)
      const before = yield* filtered("OlderThanStored")
      const accepted = yield* PeerValidator.validateClaims(keys.publicKey, [same, old], { storedUpdatedAt: 200n })
      expect(accepted.map((a) => a.addresses)).toEqual([["mem://same"]])
      expect((yield* filtered("OlderThanStored")) - before).toBe(1)

      const client = yield* PeerValidator.signClaim({
        ...keys,
        addresses: ["mem://new"],
        features: Peer.PeerFeatures.COMMUNICATION_CLIENT,
        updatedAt: 300n
      })
      const both = yield* PeerValidator.validateClaims(keys.publicKey, [client, old])
      expect(both.map((a) => a.claim.identitySignature.updatedAt)).toEqual([100n, 300n])
      const peer = Peer.make({ publicKey: keys.publicKey, addresses: [], features: 3, source: "Join", nowMs: 0 })
      const applied = PeerValidator.applyClaims(peer, both, { source: "Join", maxAddressesPerPeer: 25 })
      expect(applied.features).toBe(Peer.PeerFeatures.COMMUNICATION_CLIENT)
      expect(applied.claimUpdatedAt).toBe(300n)
      expect(applied.addresses.map((a) => a.address)).toEqual(["mem://old", "mem://new"])
    }).pipe(withCrypto))

  it.effect.prop(
    "proof never depends on policy: any signed address list validates, keeping exactly what policy accepts",
    [FastCheck.array(
      FastCheck.oneof(
        FastCheck.string({ maxLength: 30 }),
        FastCheck.constantFrom(
          "tcp://10.1.2.3:80",
          "tcp://8.8.8.8:53",
          "mem://x",
          "tcp://[fe80::1]:9",
          "tcp://localhost:1"
        )
      ),
      { maxLength: 5 }
    )],
    ([addresses]) =>
      Effect.gen(function*() {
        const keys = yield* signer
        const claim = yield* claimOf(keys, addresses)
        const accepted = yield* PeerValidator.validateClaims(keys.publicKey, [claim])
        const policy = { maxAddressLength: 256, allowTestAddresses: false }
        const expected = addresses.filter((a) => PeerValidator.addressPolicy(a, policy) === undefined)
        expect(accepted.flatMap((a) => a.addresses)).toEqual(expected)
      }).pipe(withCrypto),
    { fastCheck: { numRuns: 200 } }
  )
})

describe("PeerValidator: addresses", () => {
  const parsed = (s: string) => Option.getOrUndefined(PeerValidator.parseAddress(s))

  it("parses tcp://HOST:PORT and mem://ID", () => {
    expect(parsed("tcp://203.0.113.7:18189")).toMatchObject({ hostKind: "ipv4", port: 18189 })
    expect(parsed("tcp://[2001:db8::1]:443")).toMatchObject({ hostKind: "ipv6", host: "2001:db8::1", port: 443 })
    expect(parsed("tcp://seed.example.com:18189")).toMatchObject({ hostKind: "dns", host: "seed.example.com" })
    expect(parsed("mem://42")).toEqual({ scheme: "mem", id: "42" })
    for (
      const bad of [
        "tcp://1.2.3.4",
        "tcp://1.2.3.4:0",
        "tcp://1.2.3.4:65536",
        "tcp://256.1.1.1:80",
        "tcp://01.2.3.4:80",
        "tcp://2001:db8::1:443",
        "tcp://[2001:db8::1::2]:443",
        "tcp://-bad.example:1",
        "mem://",
        "mem://a/b",
        "1.2.3.4:80",
        "udp://1.2.3.4:80"
      ]
    ) expect(parsed(bad), bad).toBeUndefined()
  })

  it("test addresses are loopback, private and link-local ranges, and localhost", () => {
    const isTest = (s: string) => PeerValidator.isTestAddress(parsed(s)!)
    for (
      const test of [
        "tcp://127.0.0.1:1",
        "tcp://10.9.8.7:1",
        "tcp://172.16.0.1:1",
        "tcp://172.31.255.255:1",
        "tcp://192.168.0.1:1",
        "tcp://169.254.1.1:1",
        "tcp://0.0.0.0:1",
        "tcp://[::1]:1",
        "tcp://[::]:1",
        "tcp://[fe80::1]:1",
        "tcp://[febf::1]:1",
        "tcp://[fd00::1]:1",
        "tcp://[::ffff:10.0.0.1]:1",
        "tcp://localhost:1",
        "tcp://LOCALHOST.:1",
        "tcp://a.localhost:1"
      ]
    ) expect(isTest(test), test).toBe(true)
    for (
      const real of [
        "tcp://172.32.0.1:1",
        "tcp://172.15.0.1:1",
        "tcp://8.8.8.8:1",
        "tcp://[2001:db8::1]:1",
        "tcp://[fec0::1]:1",
        "tcp://[::ffff:8.8.8.8]:1",
        "tcp://localhost.example.com:1",
        "mem://1"
      ]
    ) expect(isTest(real), real).toBe(false)
  })

  it("applying a claim replaces claim-sourced addresses and keeps Config and Inbound ones, within the cap", () => {
    const key = NodeId.PublicKey.make(new Uint8Array(32).fill(9))
    const claimFor = (addresses: ReadonlyArray<string>, updatedAt: bigint) =>
      new Peer.PeerClaim({
        addresses,
        features: 3,
        identitySignature: new Peer.IdentitySignature({ version: 0, signature: new Uint8Array(64), updatedAt })
      })
    const base = Peer.make({ publicKey: key, addresses: ["mem://config"], features: 3, source: "Config", nowMs: 0 })
    const withJoin = new Peer.Peer({
      ...base,
      addresses: [
        ...base.addresses,
        new Peer.PeerAddress({ address: "mem://joined", connectionFailures: 2, source: "Join" }),
        new Peer.PeerAddress({ address: "mem://inbound", connectionFailures: 0, source: "Inbound" }),
        new Peer.PeerAddress({ address: "mem://kept", connectionFailures: 1, lastSeen: 5, source: "Discovery" })
      ]
    })
    const claim = claimFor(["mem://kept", "mem://fresh"], 10n)
    const applied = PeerValidator.applyClaims(withJoin, [{ claim, addresses: claim.addresses }], {
      source: "PeerSync",
      maxAddressesPerPeer: 25
    })
    expect(applied.addresses.map((a) => [a.address, a.source, a.connectionFailures])).toEqual([
      ["mem://config", "Config", 0],
      ["mem://inbound", "Inbound", 0],
      ["mem://kept", "Discovery", 1],
      ["mem://fresh", "PeerSync", 0]
    ])
    expect(applied.addresses[3]!.claim).toEqual(claim)
    expect(applied.claimUpdatedAt).toBe(10n)

    const many = Array.from({ length: 30 }, (_, i) =>
      new Peer.PeerAddress({ address: `mem://${i}`, connectionFailures: i % 3, lastSeen: i, source: "Inbound" }))
    const capped = PeerValidator.capAddresses(many, 25)
    expect(capped).toHaveLength(25)
    // the five dropped have the most failures (2), the least recently seen among them
    expect(many.filter((a) => !capped.includes(a)).map((a) => a.address)).toEqual(
      ["mem://2", "mem://5", "mem://8", "mem://11", "mem://14"]
    )
  })
})
