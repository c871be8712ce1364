/**
 * The stages on their own, without a network: decoding is total over arbitrary bytes, `handle` never fails nor
 * dies whatever arrives, the dedup hash covers exactly the signed fields and the signature (SPEC §8.1), validation
 * applies §7.2's rules in order, the forwarding rules F1–F3, the gossip budget's buckets, and the ban table of
 * §14.1.
 */
import * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtActor from "@comms-dht/core/DhtActor"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtError from "@comms-dht/core/DhtError"
import * as DhtEvents from "@comms-dht/core/DhtEvents"
import * as Envelope from "@comms-dht/core/Envelope"
import * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as GossipBudget from "../src/GossipBudget.js"
import * as InboundPipeline from "../src/InboundPipeline.js"
import * as Rejections from "../src/Rejections.js"
import {
  applicationParts,
  config,
  craft,
  type Crafted,
  identityOf,
  type Offer,
  peerRecord,
  recordingRequester,
  text,
  withHeader
} from "./harness.js"

const T0 = 1_700_000_000_000
const nowS = BigInt(T0 / 1000)

const cryptoService = Effect.runSync(Crypto.makeNoble())
const cryptoLayer = Layer.succeed(Crypto.Crypto, cryptoService)

const identities = Effect.runSync(
  Effect.all([identityOf(1), identityOf(2), identityOf(3, Peer.PeerFeatures.COMMUNICATION_NODE)]).pipe(
    Effect.provide(cryptoLayer)
  )
)
const [self, source, origin] = identities

interface Bans {
  readonly bans: Ref.Ref<ReadonlyArray<readonly [string, PeerManager.Severity, string]>>
  readonly offers: Ref.Ref<ReadonlyArray<Offer>>
}

/** One node's services without a transport: a peer table holding `source`, a recording actor and requester. */
const stageLayer = (recorded: Bans) => {
  const transport = Layer.succeed(Transport.Transport, Transport.Transport.of({
    send: () => Effect.void,
    inbound: Effect.runSync(Queue.bounded<Transport.InboundMessage>(1)),
    dial: () => Effect.void,
    disconnect: () => Effect.void,
    isConnected: () => Effect.succeed(false),
    connectedPeers: Effect.succeed([]),
    events: Stream.empty,
    subscribe: Queue.unbounded<Transport.ConnectionEvent>(),
    listenAddresses: ["mem://self"]
  }))
  const actor = Layer.succeed(DhtActor.DhtActor, DhtActor.DhtActor.of({
    insertDedup: () => Effect.dieMessage("the pipeline inserts into the DedupCache directly"),
    hitCount: () => Effect.succeed(0),
    selectPeers: () => Effect.succeed([]),
    getMetadata: () => Effect.succeedNone,
    setMetadata: () => Effect.void,
    dialDiscoverPeer: () => Effect.void,
    banPeer: (publicKey, severity, reason) =>
      Ref.update(recorded.bans, (all) => [...all, [NodeId.toHex(publicKey), severity, reason] as const]),
    sendJoin: Effect.void,
    trimDedupCache: Effect.void
  }))
  const peers = Layer.effect(
    PeerManager.PeerManager,
    Effect.tap(PeerManager.makeMemory, (table) => Effect.orDie(table.add(peerRecord(source!))))
  )
  return Layer.mergeAll(
    transport,
    actor,
    peers,
    DedupCache.layerMemory,
    DhtEvents.layer,
    GossipBudget.layer,
    NodeIdentity.layer(self!),
    recordingRequester(recorded.offers),
    cryptoLayer
  )
}

const withStages = <A, E>(
  test: (recorded: Bans) => Effect.Effect<A, E, InboundPipeline.Requirements>
) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(T0)
    const recorded: Bans = {
      bans: yield* Ref.make<ReadonlyArray<readonly [string, PeerManager.Severity, string]>>([]),
      offers: yield* Ref.make<ReadonlyArray<Offer>>([])
    }
    return yield* test(recorded).pipe(Effect.provide(stageLayer(recorded)))
  })

// built once: property tests run thousands of samples against one node's services
const sharedRecorded: Bans = {
  bans: Effect.runSync(Ref.make<ReadonlyArray<readonly [string, PeerManager.Severity, string]>>([])),
  offers: Effect.runSync(Ref.make<ReadonlyArray<Offer>>([]))
}
const sharedContext = Effect.runSync(
  Effect.flatMap(Scope.make(), (scope) => Layer.buildWithScope(stageLayer(sharedRecorded), scope))
)
const withSharedStages = <A, E>(test: Effect.Effect<A, E, InboundPipeline.Requirements>) =>
  Effect.zipRight(TestClock.setTime(T0), Effect.provide(test, sharedContext))

const raw = (bytes: Uint8Array): Transport.InboundMessage => ({
  sourcePeer: source!.nodeId,
  tag: 1n,
  bytes,
  receivedAt: T0
})

const decodeTags = new Set([
  "DecodeError",
  "HeaderOmitted",
  "InvalidDestination",
  "InvalidEphemeralPublicKey",
  "InvalidMessageType",
  "InvalidMessageFlags"
])

const signedFlood = Effect.runSync(
  craft({ signer: origin!, expires: nowS + 3n * 3600n, parts: applicationParts(1, text("flood")) }).pipe(
    Effect.provide(cryptoLayer)
  )
)

describe("stages", () => {
  // fast-check inside one test: @effect/vitest's `it.effect.prop` builds the test services anew for every sample
  const forAll = <A>(
    arbitrary: FastCheck.Arbitrary<A>,
    property: (a: A) => Effect.Effect<void, never, InboundPipeline.Requirements>,
    numRuns: number
  ) =>
    withSharedStages(Effect.flatMap(Effect.runtime<InboundPipeline.Requirements>(), (runtime) =>
      Effect.promise(() =>
        FastCheck.assert(
          FastCheck.asyncProperty(arbitrary, (a) => Runtime.runPromise(runtime)(property(a))),
          { numRuns }
        )
      )))

  it.effect("deserialize is total over arbitrary bytes: a model or a §3.7 tag, never a defect (1,000 runs)", () =>
    forAll(
      FastCheck.uint8Array({ maxLength: 256 }),
      (bytes) =>
        Effect.map(Effect.either(InboundPipeline.deserialize(raw(bytes))), (result) => {
          if (Either.isLeft(result)) expect(decodeTags.has(result.left._tag)).toBe(true)
          else expect(Option.isSome(result.right)).toBe(true)
        }),
      1_000
    ))

  // arbitrary bytes, or a signed flood with one byte changed
  it.effect("handle never fails nor dies, whatever the bytes (1,000 runs)", () =>
    Effect.gen(function*() {
      const errors = yield* Ref.make(0)
      const logger = Logger.make(({ logLevel }) => {
        if (logLevel._tag === "Error" || logLevel._tag === "Fatal") Effect.runSync(Ref.update(errors, (n) => n + 1))
      })
      const mutatedFlood = FastCheck.tuple(
        FastCheck.nat(signedFlood.bytes.length - 1),
        FastCheck.integer({ min: 1, max: 255 })
      ).map(([at, xor]) => {
        const bytes = signedFlood.bytes.slice()
        bytes[at] = bytes[at]! ^ xor
        return bytes
      })
      yield* forAll(
        FastCheck.oneof(FastCheck.uint8Array({ maxLength: 200 }), mutatedFlood),
        (bytes) =>
          Effect.map(InboundPipeline.handle()(raw(bytes)), (delivered) => {
            // a changed byte may land in hop_count or message_tag, which nothing checks: delivered as sent
            for (const m of delivered) expect(m.body).toEqual(text("flood"))
          }),
        1_000
      ).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      expect(yield* Ref.get(errors)).toBe(0)
    }))

  describe("dedup hash (SPEC §8.1)", () => {
    const hashOf = (c: Crafted) => Effect.provide(InboundPipeline.dedupHash(c.header, c.body), cryptoLayer)

    it.effect("hop_count and message_tag are not covered: copies over different paths share one hash", () =>
      Effect.gen(function*() {
        const base = yield* hashOf(signedFlood)
        expect(yield* hashOf(withHeader(signedFlood, { hopCount: 4_000_000_000 }))).toEqual(base)
        expect(yield* hashOf(withHeader(signedFlood, { messageTag: 99n }))).toEqual(base)
      }))

    it.effect.prop(
      "every signed field, the body and the signature are covered: changing any one changes the hash",
      [
        FastCheck.constantFrom(
          "version",
          "destination",
          "messageType",
          "flags",
          "expires",
          "ephemeral",
          "signature",
          "body"
        ),
        FastCheck.nat(1000)
      ],
      ([field, n]) =>
        Effect.gen(function*() {
          const base = yield* hashOf(signedFlood)
          const h = signedFlood.header
          const flip = (b: Uint8Array) => {
            const out = b.slice()
            const i = n % out.length
            out[i] = out[i]! ^ 1
            return out
          }
          const changed: Crafted = field === "body"
            ? { ...signedFlood, body: flip(signedFlood.body) }
            : withHeader(signedFlood, field === "version"
              ? { version: h.version + 1 + (n % 5) }
              : field === "destination"
              ? { destination: Envelope.destinationPublicKey(source!.publicKey) }
              : field === "messageType"
              ? { messageType: Envelope.DhtMessageType.Join }
              : field === "flags"
              ? { flags: Envelope.DhtMessageFlags.ENCRYPTED }
              : field === "expires"
              ? { expires: h.expires + 1n + BigInt(n) }
              : field === "ephemeral"
              // not all zeros: that is how "no key" is signed (§4.3 f6), and such a key fails ECDH anyway
              ? { ephemeralPublicKey: Option.some(new Uint8Array(32).fill((n % 255) + 1)) }
              : { messageSignature: flip(h.messageSignature) })
          expect(yield* hashOf(changed)).not.toEqual(base)
        })
    )
  })

  describe("validate (SPEC §7.2)", () => {
    const message = (change: Partial<Envelope.DhtMessageHeader>, size = 100): InboundMessages.DhtInboundMessage => ({
      tag: 1n,
      sourcePeer: peerRecord(source!),
      header: new Envelope.DhtMessageHeader({ ...signedFlood.header, ...change }, true),
      body: signedFlood.body,
      isSafMessage: false,
      dedupHitCount: 0,
      dedupHash: new Uint8Array(0),
      mayForward: true,
      size
    })
    const failure = (m: InboundMessages.DhtInboundMessage, cfg: DhtConfig.Config = config) =>
      Effect.gen(function*() {
        yield* TestClock.setTime(T0)
        const result = yield* Effect.either(InboundPipeline.validate(m)).pipe(
          Effect.provideService(DhtConfig.DhtConfig, cfg),
          Effect.provide(NodeIdentity.layer(self!))
        )
        return Either.isLeft(result) ? result.left._tag : "ok"
      })

    it.effect("the first failing rule wins, in the order of §7.2", () =>
      Effect.gen(function*() {
        const small = DhtConfig.unsafeMake({ maxMessageSize: 70_000, saf: { maxMessageSize: 1_000 } }, config)
        const everythingWrong = message({ version: 9, expires: 0n, flags: Envelope.DhtMessageFlags.ENCRYPTED }, 80_000)
        expect(yield* failure(everythingWrong, small)).toBe("MessageTooLarge")
        expect(yield* failure(everythingWrong)).toBe("UnsupportedVersion")
        expect(yield* failure(message({ expires: 0n, flags: 1 }))).toBe("MissingExpiry")
        expect(yield* failure(message({ expires: nowS - 1n, flags: 1 }))).toBe("MessageExpired")
        expect(yield* failure(message({ expires: nowS + 3n * 86_400n + 601n, flags: 1 }))).toBe("ExpiryTooFar")
        expect(yield* failure(message({ flags: 1 }))).toBe("BadEncryptedMessageSemantics")
        expect(yield* failure(message({ messageType: Envelope.DhtMessageType.SafRequestMessages }))).toBe("ok")
        expect(yield* failure(message({}))).toBe("ok")
        expect(yield* failure(message({ expires: nowS }))).toBe("ok")
        expect(yield* failure(message({ expires: nowS + 3n * 86_400n + 600n }))).toBe("ok")
      }))

    it.effect("encrypted semantics: a destination, an ephemeral key, a signature and a body", () =>
      Effect.gen(function*() {
        const encrypted = {
          flags: Envelope.DhtMessageFlags.ENCRYPTED,
          destination: Envelope.destinationPublicKey(self!.publicKey),
          ephemeralPublicKey: Option.some(new Uint8Array(32).fill(1))
        }
        expect(yield* failure(message(encrypted))).toBe("ok")
        expect(yield* failure(message({ ...encrypted, destination: Envelope.destinationUnknown() }))).toBe(
          "BadEncryptedMessageSemantics"
        )
        expect(yield* failure(message({ ...encrypted, ephemeralPublicKey: Option.none() }))).toBe(
          "BadEncryptedMessageSemantics"
        )
        expect(yield* failure(message({ ...encrypted, messageSignature: new Uint8Array(0) }))).toBe(
          "BadEncryptedMessageSemantics"
        )
        expect(yield* failure({ ...message(encrypted), body: new Uint8Array(0) })).toBe("BadEncryptedMessageSemantics")
      }))
  })

  describe("forwarding rules (SPEC §7.5)", () => {
    const decrypted = (
      header: Partial<Envelope.DhtMessageHeader>,
      decryption: InboundMessages.DecryptionResult
    ): InboundMessages.DecryptedDhtMessage => ({
      tag: 1n,
      sourcePeer: peerRecord(source!),
      header: new Envelope.DhtMessageHeader({ ...signedFlood.header, ...header }, true),
      body: signedFlood.body,
      isSafMessage: false,
      dedupHitCount: 1,
      dedupHash: new Uint8Array(32),
      mayForward: true,
      size: 100,
      decryption,
      isForThisNode: false,
      isSafStored: Option.none(),
      isAlreadyForwarded: false
    })
    const body = new Envelope.EnvelopeBody({ parts: [new Uint8Array(1)] })
    const signed = InboundMessages.DecryptionResult.Succeeded({
      body,
      authenticatedOrigin: Option.some(origin!.publicKey)
    })
    const unsigned = InboundMessages.DecryptionResult.Succeeded({ body, authenticatedOrigin: Option.none() })
    const notForUs = InboundMessages.DecryptionResult.NotForUs({ ciphertext: new Uint8Array(1) })
    const other = Envelope.destinationPublicKey(source!.publicKey)
    const mine = Envelope.destinationPublicKey(self!.publicKey)
    const rule = (m: InboundMessages.DecryptedDhtMessage) => InboundPipeline.forwardRule(m, self!.publicKey)
    const { Discovery, DiscoveryResponse, Join, None, SafStoredMessages } = Envelope.DhtMessageType

    it("F1: not for us, of type None, Join or Discovery; never a response, SAF or peer-sync message", () => {
      for (const type of [None, Join, Discovery]) {
        expect(rule(decrypted({ messageType: type, flags: 1, destination: other }, notForUs))).toBe("F1")
      }
      for (const type of [DiscoveryResponse, SafStoredMessages, Envelope.DhtMessageType.PeerSyncRequest]) {
        expect(rule(decrypted({ messageType: type, flags: 1, destination: other }, notForUs))).toBeUndefined()
      }
    })

    it("F2 and F3 need cleartext of type None with an authenticated origin; nothing for this node is forwarded", () => {
      expect(rule(decrypted({ destination: other }, signed))).toBe("F2")
      expect(rule(decrypted({ destination: Envelope.destinationUnknown() }, signed))).toBe("F3")
      expect(rule(decrypted({ destination: other }, unsigned))).toBeUndefined()
      expect(rule(decrypted({ destination: Envelope.destinationUnknown() }, unsigned))).toBeUndefined()
      expect(rule(decrypted({ destination: mine }, signed))).toBeUndefined()
      expect(rule(decrypted({ destination: other, messageType: Join }, signed))).toBeUndefined()
      expect(rule(decrypted({ destination: mine, flags: 1 }, signed))).toBeUndefined()
    })
  })

  describe("gossip budget (SPEC §7.5)", () => {
    const key = (n: number) => {
      const bytes = new Uint8Array(32)
      new DataView(bytes.buffer).setUint32(0, n)
      return NodeId.PublicKey.make(bytes)
    }

    it.effect("a bucket holds the budget, refills at the budget per minute, and is full again after idling", () =>
      Effect.gen(function*() {
        const budget = yield* GossipBudget.make
        const takes = (n: number) => Effect.forEach(Array.from({ length: n }, () => 0), () => budget.take(key(1), 4))
        expect(yield* takes(5)).toEqual([true, true, true, true, false])
        yield* TestClock.adjust(30_000)
        expect(yield* takes(3)).toEqual([true, true, false])
        expect(yield* budget.take(key(2), 4)).toBe(true)
        yield* TestClock.adjust(GossipBudget.IDLE_MS)
        expect(yield* takes(5)).toEqual([true, true, true, true, false])
        expect(yield* budget.take(key(3), 0)).toBe(false)
      }))

    it.effect("at most MAX_BUCKETS buckets are kept, the least recently used going first", () =>
      Effect.gen(function*() {
        const budget = yield* GossipBudget.make
        expect(yield* budget.take(key(0), 1)).toBe(true)
        for (let i = 1; i <= GossipBudget.MAX_BUCKETS + 50; i++) yield* budget.take(key(i), 1)
        expect(yield* budget.size).toBeLessThanOrEqual(GossipBudget.MAX_BUCKETS)
        // key 0's spent bucket was discarded: it starts full again
        expect(yield* budget.take(key(0), 1)).toBe(true)
        // a recent one was kept, still spent
        expect(yield* budget.take(key(GossipBudget.MAX_BUCKETS + 50), 1)).toBe(false)
      }))
  })

  it("the ban table of SPEC §14.1", () => {
    const none = Option.none()
    const type = (t: Envelope.DhtMessageType) => Option.some(t)
    const { DiscoveryResponse, Join, PeerSyncResponse, SafRequestMessages } = Envelope.DhtMessageType
    const cases: ReadonlyArray<readonly [DhtError.StageError, Option.Option<Envelope.DhtMessageType>, string]> = [
      [new DhtError.PeerNotFound({ nodeId: source!.nodeId }), none, "none"],
      [new DhtError.DecodeError({ reason: "" }), none, "none"],
      [new DhtError.UnsupportedVersion({ version: 2 }), none, "none"],
      [new DhtError.MessageExpired({ expires: 0n, now: 1n }), none, "none"],
      [new DhtError.BadEncryptedMessageSemantics({ reason: "" }), none, "source High"],
      [new DhtError.SafNotSupported(), none, "none"],
      [new DhtError.Duplicate({ hits: 2 }), none, "none"],
      [new DhtError.DedupFull(), none, "none"],
      [new DhtError.InvalidSignature({ reason: "" }), none, "source High"],
      [new DhtError.EnvelopeBodyDecodeFailed({ reason: "" }), none, "none"],
      [new DhtError.DecryptionFailed({ reason: "" }), none, "none"],
      [new DhtError.InvalidEncryptedSignature({ reason: "" }), none, "none"],
      [new DhtError.DestinationIsSource(), none, "source Medium"],
      [new DhtError.RateLimited({ what: "gossip" }), none, "none"],
      [new DhtError.InvalidApplicationBody({ reason: "" }), none, "none"],
      [new DhtError.InvalidMessageBody({ reason: "" }), type(SafRequestMessages), "source High"],
      [new DhtError.InvalidMessageBody({ reason: "" }), type(Join), "origin High"],
      [new DhtError.OriginRequired(), type(Join), "source Low"],
      [new DhtError.OriginMismatch(), type(DiscoveryResponse), "origin High"],
      [new DhtError.DiscoveryResponseRelayed(), type(DiscoveryResponse), "source Medium"],
      [new DhtError.UnexpectedDiscoveryResponse({ reason: "" }), type(DiscoveryResponse), "none"],
      [new DhtError.DiscoveryKeyMismatch(), type(DiscoveryResponse), "origin Medium"],
      [new DhtError.PeerValidationError({ reason: "" }), type(Join), "origin Medium"],
      [new DhtError.PeerValidationError({ reason: "" }), type(DiscoveryResponse), "origin High"],
      [new DhtError.PeerValidationError({ reason: "" }), type(PeerSyncResponse), "source High"],
      [new DhtError.NewAndExistingMismatch(), type(Join), "none"],
      [new DhtError.UnrequestedSafResponse(), none, "none"],
      [new DhtError.SafResponseTooLate(), none, "none"],
      [new DhtError.TooManySafMessages({ received: 2, limit: 1 }), none, "source High"],
      [new DhtError.InvalidSafMessage({ reason: "OutOfOrder" }), none, "source High"],
      [new DhtError.InvalidSafMessage({ reason: "DhtMessageViaSaf" }), none, "source Medium"],
      [new DhtError.TooManyPeersReceived({ received: 2, limit: 1 }), none, "source High"],
      [new DhtError.DuplicatePeerReceived(), none, "source High"],
      [new DhtError.EmptyPeerMessageReceived(), none, "source High"]
    ]
    for (const [error, messageType, expected] of cases) {
      const ban = Rejections.banOf(error, messageType)
      expect([error._tag, Option.match(ban, { onNone: () => "none", onSome: (b) => `${b.target} ${b.severity}` })])
        .toEqual([error._tag, expected])
    }
  })

  it.effect("a ban is asked of the actor for the party §14.1 blames", () =>
    withStages((recorded) =>
      Effect.gen(function*() {
        const blame: Rejections.Blame = {
          source: source!.nodeId,
          sourceKey: Option.some(source!.publicKey),
          origin: Option.some(origin!.publicKey),
          messageType: Option.some(Envelope.DhtMessageType.Join)
        }
        yield* Rejections.report(new DhtError.OriginMismatch(), blame)
        yield* Rejections.report(new DhtError.OriginRequired(), blame)
        yield* Rejections.report(new DhtError.DecryptionFailed({ reason: "x" }), blame)
        expect(yield* Ref.get(recorded.bans)).toEqual([
          [NodeId.toHex(origin!.publicKey), "High", "OriginMismatch"],
          [NodeId.toHex(source!.publicKey), "Low", "OriginRequired"]
        ])
      })
    ))
})
