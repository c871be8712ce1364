/**
 * The attack suite of issue #8 against a live node (a full `Dht` on sqlite, on MemoryNetwork): for each attack the
 * typed error the pipeline reports, whom it blamed, the ban of SPEC §14.1 (or none), that a good message from an
 * honest peer is still delivered afterwards, and that nothing the node had stored is lost. The lying SAF responder
 * is in packages/node/test/StoreAndForward.test.ts, the mismatched Noise identity in TcpTransport.test.ts.
 */
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Envelope from "@comms-dht/core/Envelope"
import type * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import * as Inbound from "../../packages/inbound/test/harness.js"
import * as H from "./harness.js"

const START = Date.UTC(2026, 10, 25)

/** `run` an attack, then check the common outcome: the node survives, delivers, keeps its rows. */
const attack = <A>(run: (s: H.Scene) => Effect.Effect<A>, cfg?: DhtConfig.Config) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(START)
    const s = yield* H.scene(cfg)
    // something stored first, so that "nothing is lost" means something
    yield* s.goodMessageArrives("before")
    const before = yield* s.rows
    const from = (yield* H.rejectionsSince(s.victim, 0)).length
    const result = yield* run(s)
    yield* s.goodMessageArrives("after")
    const after = yield* s.rows
    expect(after.peers).toBeGreaterThanOrEqual(before.peers)
    expect(after.stored).toBeGreaterThanOrEqual(before.stored)
    expect(after.dedup).toBeGreaterThanOrEqual(before.dedup)
    return { s, result, rejected: yield* H.rejectionsSince(s.victim, from) }
  })

const tagsOf = (rejected: ReadonlyArray<H.Rejection>) => rejected.map((r) => r.error._tag)

const crafted = (attacker: H.Attacker, options: Inbound.Craft) => attacker.run(Inbound.craft(options))

const app = (body: string) => Inbound.applicationParts(H.MESSAGE_TYPE, H.text(body))

const sendAndSettle = (s: H.Scene, bytes: Uint8Array) =>
  Effect.zipRight(Effect.orDie(s.attacker.send(bytes)), Effect.repeatN(Effect.yieldNow(), 200))

const signerOf = (s: H.Scene): NodeIdentity.Identity => s.attacker.id

describe("attacks on a live node (issue #8, SPEC §14.1)", () => {
  it.scoped("a forged cleartext signature: InvalidSignature, the source banned High, nothing delivered", () =>
    Effect.gen(function*() {
      const { rejected, s } = yield* attack((s) =>
        Effect.gen(function*() {
          const genuine = yield* crafted(s.attacker, {
            signer: signerOf(s),
            destination: Envelope.destinationPublicKey(s.victim.id.publicKey),
            parts: app("forged")
          })
          const forged = yield* Effect.orDie(s.attacker.run(Inbound.corruptSignature(genuine)))
          yield* sendAndSettle(s, forged.bytes)
          yield* H.eventually(Effect.map(H.rejectionsSince(s.victim, 0), (all) => all.length > 0))
        })
      )
      expect(tagsOf(rejected)).toEqual(["InvalidSignature"])
      expect(yield* H.isBanned(s.victim, s.attacker.id)).toBe(true)
      expect((yield* Ref.get(s.victim.delivered))).not.toContain("forged")
    }))

  it.scoped("tampered ciphertext, signature nonce and tag: rejected, nobody banned (a forwarder cannot tell)", () =>
    Effect.gen(function*() {
      const { rejected, s } = yield* attack((s) =>
        Effect.gen(function*() {
          const genuine = yield* crafted(s.attacker, {
            signer: signerOf(s),
            encryptFor: s.victim.id.publicKey,
            parts: app("tampered")
          })
          const flip = (bytes: Uint8Array, at: number) => Uint8Array.from(bytes, (b, i) => i === at ? b ^ 1 : b)
          const variants = [
            Inbound.encode(genuine.header, flip(genuine.body, Math.floor(genuine.body.length / 2))),
            Inbound.withHeader(genuine, { messageSignature: flip(genuine.header.messageSignature, 0) }),
            Inbound.encode(genuine.header, flip(genuine.body, genuine.body.length - 1))
          ]
          for (const v of variants) yield* sendAndSettle(s, v.bytes)
          yield* H.eventually(Effect.map(H.rejectionsSince(s.victim, 0), (all) => all.length >= 3))
        })
      )
      expect(tagsOf(rejected).every((t) => t === "DecryptionFailed" || t === "InvalidEncryptedSignature")).toBe(true)
      expect(rejected).toHaveLength(3)
      expect(yield* H.isBanned(s.victim, s.attacker.id)).toBe(false)
      expect((yield* Ref.get(s.victim.delivered))).not.toContain("tampered")
    }))

  it.scoped("a replayed message, and one whose signature was re-encoded, is delivered once", () =>
    Effect.gen(function*() {
      const duplicatesBefore = yield* H.counter(DhtMetrics.inboundDuplicates)
      const { rejected, s } = yield* attack((s) =>
        Effect.gen(function*() {
          const valid = yield* crafted(s.attacker, {
            signer: signerOf(s),
            encryptFor: s.victim.id.publicKey,
            parts: app("once")
          })
          yield* sendAndSettle(s, valid.bytes)
          yield* sendAndSettle(s, valid.bytes)
          // signed gossip for anyone, replayed as is, then with the MessageSignature's fields reordered
          const gossip = yield* crafted(s.attacker, { signer: signerOf(s), parts: app("gossip once") })
          const sig = gossip.header.messageSignature
          const reordered = Uint8Array.from([...sig.subarray(34), ...sig.subarray(0, 34)])
          yield* sendAndSettle(s, gossip.bytes)
          yield* sendAndSettle(s, gossip.bytes)
          yield* sendAndSettle(s, Inbound.withHeader(gossip, { messageSignature: reordered }).bytes)
          yield* H.eventually(Effect.map(H.rejectionsSince(s.victim, 0), (all) => all.length >= 3))
        })
      )
      const bodies = yield* Ref.get(s.victim.delivered)
      expect(bodies.filter((b) => b === "once")).toHaveLength(1)
      expect(bodies.filter((b) => b === "gossip once")).toHaveLength(1)
      expect(tagsOf(rejected).filter((t) => t === "Duplicate")).toHaveLength(2)
      // the re-encoded signature does not decode: its sender forged a signature field (§14.1 InvalidSignature)
      expect(tagsOf(rejected)).toContain("InvalidSignature")
      expect((yield* H.counter(DhtMetrics.inboundDuplicates)) - duplicatesBefore).toBe(2)
    }))

  it.scoped("expired and far-future messages are dropped without a ban", () =>
    Effect.gen(function*() {
      const { rejected, s } = yield* attack((s) =>
        Effect.gen(function*() {
          const nowS = BigInt(Math.floor(START / 1000))
          const expired = yield* crafted(s.attacker, {
            signer: signerOf(s),
            encryptFor: s.victim.id.publicKey,
            expires: nowS - 60n,
            parts: app("expired")
          })
          const farFuture = yield* crafted(s.attacker, {
            signer: signerOf(s),
            encryptFor: s.victim.id.publicKey,
            expires: nowS + 30n * 24n * 3600n,
            parts: app("far future")
          })
          yield* sendAndSettle(s, expired.bytes)
          yield* sendAndSettle(s, farFuture.bytes)
          yield* H.eventually(Effect.map(H.rejectionsSince(s.victim, 0), (all) => all.length >= 2))
        })
      )
      expect(tagsOf(rejected)).toEqual(["MessageExpired", "ExpiryTooFar"])
      expect(yield* H.isBanned(s.victim, s.attacker.id)).toBe(false)
    }))

  it.scoped("an oversized frame is refused by the transport (FrameTooLarge): closed, the source banned Low", () =>
    Effect.gen(function*() {
      // the frame limit is `maxMessageSize` (8 MiB by default; smaller here to keep the test light)
      const cfg = DhtConfig.unsafeMake({ maxMessageSize: 200_000, saf: { maxMessageSize: 100_000 } }, H.config)
      const { rejected, s } = yield* attack((s) =>
        Effect.gen(function*() {
          const big = yield* crafted(s.attacker, {
            signer: signerOf(s),
            encryptFor: s.victim.id.publicKey,
            parts: app("x".repeat(210_000))
          })
          yield* Effect.either(s.attacker.send(big.bytes))
          yield* Effect.repeatN(Effect.yieldNow(), 200)
        }), cfg)
      // refused before the pipeline: nothing for it to reject
      expect(rejected).toEqual([])
      expect(yield* H.isBanned(s.victim, s.attacker.id)).toBe(true)
      expect((yield* Ref.get(s.victim.delivered)).some((b) => b.startsWith("xxx"))).toBe(false)
    }))

  it.scoped("10,000 truncated and random frames: every one rejected with a §14.1 tag, the node unharmed", () =>
    Effect.gen(function*() {
      const knownTags = new Set([
        "DecodeError",
        "HeaderOmitted",
        "InvalidDestination",
        "InvalidEphemeralPublicKey",
        "InvalidMessageType",
        "InvalidMessageFlags",
        "MessageTooLarge",
        "UnsupportedVersion",
        "MissingExpiry",
        "MessageExpired",
        "ExpiryTooFar",
        "BadEncryptedMessageSemantics",
        "SafNotSupported",
        "Duplicate",
        "InvalidSignature",
        "EnvelopeBodyDecodeFailed",
        "DecryptionFailed",
        "InvalidEncryptedSignature",
        "InvalidApplicationBody",
        "InvalidMessageBody",
        "OriginRequired",
        "UnexpectedDiscoveryResponse",
        "UnrequestedSafResponse",
        // frames already on their way when a ban closed the connection
        "PeerBanned"
      ])
      const { rejected, result: sent } = yield* attack((s) =>
        Effect.gen(function*() {
          const valid = yield* crafted(s.attacker, {
            signer: signerOf(s),
            encryptFor: s.victim.id.publicKey,
            parts: app("valid")
          })
          const frames = FastCheck.sample(
            FastCheck.oneof(
              FastCheck.uint8Array({ minLength: 0, maxLength: 300 }),
              FastCheck.integer({ min: 0, max: valid.bytes.length - 1 }).map((n) => valid.bytes.subarray(0, n)),
              FastCheck.tuple(
                FastCheck.integer({ min: 0, max: valid.bytes.length - 1 }),
                FastCheck.integer({ min: 1, max: 255 })
              ).map(([at, x]) => Uint8Array.from(valid.bytes, (b, i) => i === at ? b ^ x : b))
            ),
            { numRuns: 10_000, seed: 8 }
          )
          let written = 0
          for (const frame of frames) {
            // a ban closes the connection: the rest of the frames then cannot be written, which is the point
            const ok = yield* Effect.either(s.attacker.send(frame))
            if (ok._tag === "Left") break
            written++
          }
          yield* Effect.repeatN(Effect.yieldNow(), 500)
          return written
        })
      )
      expect(sent).toBeGreaterThan(0)
      for (const r of rejected) expect(knownTags, r.error._tag).toContain(r.error._tag)
    }), 120_000)

  it.scoped("a flood over the frame rate limit bans its source for a short while (§11.5)", () =>
    Effect.gen(function*() {
      const floodsBefore = yield* H.counter(DhtMetrics.inboundRejected, "Flooding")
      const cfg = DhtConfig.unsafeMake({ floodBanMaxMsgCount: 100 }, H.config)
      const { result: written, s } = yield* attack((s) =>
        Effect.gen(function*() {
          const gossip = yield* crafted(s.attacker, { signer: signerOf(s), parts: app("flood") })
          let written = 0
          for (let i = 0; i < 300; i++) {
            const ok = yield* Effect.either(s.attacker.send(gossip.bytes))
            if (ok._tag === "Left") break
            written++
          }
          yield* Effect.repeatN(Effect.yieldNow(), 200)
          return written
        }), cfg)
      // the connection was closed at the limit: the rest could not be written
      expect(written).toBeLessThan(300)
      expect(yield* H.isBanned(s.victim, s.attacker.id)).toBe(true)
      expect((yield* H.counter(DhtMetrics.inboundRejected, "Flooding")) - floodsBefore).toBeGreaterThanOrEqual(0)
      // a short ban: gone after the flood ban duration
      yield* TestClock.adjust("11 minutes")
      expect(yield* H.isBanned(s.victim, s.attacker.id)).toBe(false)
    }))

  it.scoped("a Sybil flood of join messages adds at most the per-source hourly budget of peers", () =>
    Effect.gen(function*() {
      const cfg = DhtConfig.unsafeMake({ maxPeersAddedPerSourcePerHour: 20 }, H.config)
      const { s } = yield* attack((s) =>
        Effect.gen(function*() {
          for (let i = 0; i < 60; i++) {
            const sybil = yield* H.identity(100 + i)
            const join = yield* crafted(s.attacker, {
              signer: sybil,
              destination: Envelope.destinationPublicKey(sybil.publicKey),
              messageType: Envelope.DhtMessageType.Join,
              parts: yield* s.attacker.run(Inbound.joinParts(sybil))
            })
            yield* sendAndSettle(s, join.bytes)
          }
        }), cfg)
      const { peers } = yield* s.rows
      // the honest peer and the attacker, plus at most 20 joins relayed by the attacker in this hour
      expect(peers).toBeLessThanOrEqual(2 + 20)
      expect(peers).toBeGreaterThan(2)
    }))

  it.scoped("a discovery response nobody asked for is dropped without a ban", () =>
    Effect.gen(function*() {
      const { rejected, s } = yield* attack((s) =>
        Effect.gen(function*() {
          // it claims the honest peer's address for the attacker's key
          const response = yield* crafted(s.attacker, {
            signer: signerOf(s),
            encryptFor: s.victim.id.publicKey,
            messageType: Envelope.DhtMessageType.DiscoveryResponse,
            parts: yield* s.attacker.run(
              Inbound.discoveryResponseParts(s.attacker.id, { addresses: [H.addressOf(s.honest.id)] })
            )
          })
          yield* sendAndSettle(s, response.bytes)
          yield* H.eventually(Effect.map(H.rejectionsSince(s.victim, 0), (all) => all.length >= 1))
        })
      )
      expect(tagsOf(rejected)).toEqual(["UnexpectedDiscoveryResponse"])
      expect(yield* H.isBanned(s.victim, s.attacker.id)).toBe(false)
    }))
})
