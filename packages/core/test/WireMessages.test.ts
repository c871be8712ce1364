import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf"
import { describe, expect, it } from "@effect/vitest"
import { ed25519 } from "@noble/curves/ed25519.js"
import { Arbitrary, Cause, Effect, Either, Exit, FastCheck, Option, Schema } from "effect"
import * as DhtMessages from "../src/DhtMessages.js"
import * as Envelope from "../src/Envelope.js"
import * as HandshakePayload from "../src/HandshakePayload.js"
import * as PbCommon from "../src/internal/proto/common_pb.js"
import * as PbDht from "../src/internal/proto/dht_pb.js"
import * as PbEnvelope from "../src/internal/proto/envelope_pb.js"
import * as PbPeerSync from "../src/internal/proto/peer_sync_pb.js"
import * as PbSaf from "../src/internal/proto/store_forward_pb.js"
import * as PbTransport from "../src/internal/proto/transport_pb.js"
import * as NodeId from "../src/NodeId.js"
import { IdentitySignature, PeerClaim } from "../src/Peer.js"
import * as PeerSyncMessages from "../src/PeerSyncMessages.js"
import * as StoreForwardMessages from "../src/StoreForwardMessages.js"

const U64_MAX = (1n << 64n) - 1n
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")
const unhex = (s: string) => Uint8Array.from(Buffer.from(s, "hex"))

const exitOf = <A, E>(run: () => Effect.Effect<A, E>): Exit.Exit<A, E> => Effect.runSyncExit(Effect.suspend(run))

/** The failure's tag, or "success"; a defect fails the test. */
const outcome = <A, E extends { readonly _tag: string }>(exit: Exit.Exit<A, E>): string => {
  if (Exit.isSuccess(exit)) return "success"
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure) || Cause.isDie(exit.cause)) throw new Error(`decoder died: ${Cause.pretty(exit.cause)}`)
  return failure.value._tag
}

/** Fields of a generated message, to override in a valid one. */
type Init<Desc extends Parameters<typeof create>[0]> = Exclude<MessageInitShape<Desc>, { readonly $typeName: string }>

const runs = { fastCheck: { numRuns: 1000 } }
const key = NodeId.PublicKey.make(ed25519.getPublicKey(new Uint8Array(32).fill(3)))
const sig64 = new Uint8Array(64).fill(0x5a)
const pbIdentitySignature = (signature = sig64) =>
  create(PbCommon.IdentitySignatureSchema, { version: 0, signature, updatedAt: 1_700_000_000n })
const notUtf8 = Uint8Array.of(0xc3, 0x28)

describe("round trips (model → bytes → model)", () => {
  it.prop("JoinMessage", [DhtMessages.JoinMessage], ([m]) => {
    expect(Effect.runSync(DhtMessages.decodeJoin(DhtMessages.encodeJoin(m)))).toEqual(m)
    expect(Schema.decodeSync(DhtMessages.JoinMessageFromBytes)(DhtMessages.encodeJoin(m))).toEqual(m)
  }, runs)

  it.prop("DiscoveryMessage", [DhtMessages.DiscoveryMessage], ([m]) => {
    expect(Effect.runSync(DhtMessages.decodeDiscovery(DhtMessages.encodeDiscovery(m)))).toEqual(m)
  }, runs)

  it.prop("DiscoveryResponseMessage", [DhtMessages.DiscoveryResponseMessage], ([m]) => {
    expect(Effect.runSync(DhtMessages.decodeDiscoveryResponse(DhtMessages.encodeDiscoveryResponse(m)))).toEqual(m)
  }, runs)

  it.prop("StoredMessagesRequest", [StoreForwardMessages.StoredMessagesRequest], ([m]) => {
    const bytes = StoreForwardMessages.encodeStoredMessagesRequest(m)
    expect(Effect.runSync(StoreForwardMessages.decodeStoredMessagesRequest(bytes))).toEqual(m)
  }, runs)

  it.prop("StoredMessagesResponse", [StoreForwardMessages.StoredMessagesResponse], ([m]) => {
    const bytes = StoreForwardMessages.encodeStoredMessagesResponse(m)
    expect(Effect.runSync(StoreForwardMessages.decodeStoredMessagesResponse(bytes))).toEqual(m)
    expect(Schema.decodeSync(StoreForwardMessages.StoredMessagesResponseFromBytes)(bytes)).toEqual(m)
  }, runs)

  it.prop("GetPeersRequest", [PeerSyncMessages.GetPeersRequest], ([m]) => {
    const bytes = PeerSyncMessages.encodeGetPeersRequest(m)
    expect(Effect.runSync(PeerSyncMessages.decodeGetPeersRequest(bytes))).toEqual(m)
  }, runs)

  it.prop("PeerSyncResponse assembled from encoded PeerInfos is the encoding of the response", [
    PeerSyncMessages.PeerSyncResponse
  ], ([m]) => {
    const assembled = PeerSyncMessages.encodePeerSyncResponseOf(m.peers.map(PeerSyncMessages.encodePeerInfo), m.requestId)
    expect(assembled).toEqual(PeerSyncMessages.encodePeerSyncResponse(m))
  })

  it.prop("a PeerSyncResponse's body written in one piece is the body of its encoding", [
    PeerSyncMessages.PeerSyncResponse
  ], ([m]) => {
    const body = PeerSyncMessages.encodePeerSyncResponseBodyOf(m.peers.map(PeerSyncMessages.encodePeerInfo), m.requestId)
    const encoded = PeerSyncMessages.encodePeerSyncResponse(m)
    expect(body).toEqual(Envelope.encodeEnvelopeBody(new Envelope.EnvelopeBody({ parts: [encoded] })))
    expect(Effect.runSync(Envelope.decodeEnvelopeBody(body)).parts).toEqual([encoded])
  })

  it.prop("PeerSyncResponse", [PeerSyncMessages.PeerSyncResponse], ([m]) => {
    const bytes = PeerSyncMessages.encodePeerSyncResponse(m)
    expect(Effect.runSync(PeerSyncMessages.decodePeerSyncResponse(bytes))).toEqual(m)
  }, runs)

  it.prop("NoiseHandshakePayload", [HandshakePayload.NoiseHandshakePayload], ([m]) => {
    expect(Effect.runSync(HandshakePayload.decode(HandshakePayload.encode(m)))).toEqual(m)
    expect(Schema.decodeSync(HandshakePayload.NoiseHandshakePayloadFromBytes)(HandshakePayload.encode(m))).toEqual(m)
  }, runs)

  // a node presents one payload array to every peer: it is decoded once, and a copy of it decodes alike
  it.prop("NoiseHandshakePayload bytes decoded again give the first decoding", [
    HandshakePayload.NoiseHandshakePayload
  ], ([m]) => {
    const bytes = HandshakePayload.encode(m)
    const first = HandshakePayload.decodeEither(bytes)
    expect(HandshakePayload.decodeEither(bytes)).toBe(first)
    const copy = HandshakePayload.decodeEither(bytes.slice())
    expect(copy).not.toBe(first)
    expect(copy).toEqual(first)
  }, runs)
})

describe("field numbers (SPEC §3.2–§3.5, §4.8)", () => {
  it("StoredMessagesRequest keeps field 1 reserved", () => {
    const request = new StoreForwardMessages.StoredMessagesRequest({ requestId: 1, limit: 2, sinceMs: 3n, afterId: 4n })
    expect(hex(StoreForwardMessages.encodeStoredMessagesRequest(request))).toBe("1001180220032804")
  })

  it("IdentitySignature is version (1), signature (2), updated_at (4)", () => {
    const join = new DhtMessages.JoinMessage({
      publicKey: key,
      addresses: ["mem://1"],
      peerFeatures: 3,
      nonce: 9n,
      identitySignature: new IdentitySignature({ version: 1, signature: sig64, updatedAt: 5n })
    })
    expect(hex(DhtMessages.encodeJoin(join))).toBe(
      "0a20" + hex(key) + "1207" + hex(new TextEncoder().encode("mem://1")) + "1803" + "2009" +
        "2a46" + "0801" + "1240" + hex(sig64) + "2005"
    )
  })

  it("NoiseHandshakePayload fields 1–6", () => {
    const payload = new HandshakePayload.NoiseHandshakePayload({
      identityPublicKey: key,
      staticSignature: sig64,
      peerFeatures: 1,
      addresses: [],
      identitySignature: new IdentitySignature({ version: 0, signature: sig64, updatedAt: 0n }),
      protocolVersion: 1
    })
    expect(hex(HandshakePayload.encode(payload))).toBe(
      "0a20" + hex(key) + "1240" + hex(sig64) + "1801" + "2a42" + "1240" + hex(sig64) + "3001"
    )
  })
})

describe("DHT messages (SPEC §3.3)", () => {
  const join = (fields: Init<typeof PbDht.JoinMessageSchema>) =>
    toBinary(
      PbDht.JoinMessageSchema,
      create(PbDht.JoinMessageSchema, {
        publicKey: key,
        addresses: [new TextEncoder().encode("tcp://1.2.3.4:18000")],
        peerFeatures: 3,
        nonce: 7n,
        identitySignature: pbIdentitySignature(),
        ...fields
      })
    )
  const tag = (bytes: Uint8Array) => outcome(exitOf(() => DhtMessages.decodeJoin(bytes)))

  it("decodes a well-formed join and exposes its claim", () => {
    const m = Effect.runSync(DhtMessages.decodeJoin(join({})))
    expect(m.addresses).toEqual(["tcp://1.2.3.4:18000"])
    expect(m.claim).toEqual(
      new PeerClaim({
        addresses: ["tcp://1.2.3.4:18000"],
        features: 3,
        identitySignature: new IdentitySignature({ version: 0, signature: sig64, updatedAt: 1_700_000_000n })
      })
    )
  })

  it("a key that is not 32 bytes is InvalidMessageBody", () => {
    expect(tag(join({ publicKey: key.subarray(0, 31) }))).toBe("InvalidMessageBody")
    expect(tag(join({ publicKey: new Uint8Array(0) }))).toBe("InvalidMessageBody")
  })

  it("a claim signature that is not 64 bytes, or none, is InvalidMessageBody", () => {
    expect(tag(join({ identitySignature: pbIdentitySignature(new Uint8Array(63)) }))).toBe("InvalidMessageBody")
    const noSignature = toBinary(
      PbDht.JoinMessageSchema,
      create(PbDht.JoinMessageSchema, { publicKey: key, nonce: 1n })
    )
    expect(tag(noSignature)).toBe("InvalidMessageBody")
  })

  it("an address that is not UTF-8 is InvalidMessageBody", () => {
    expect(tag(join({ addresses: [notUtf8] }))).toBe("InvalidMessageBody")
  })

  it("the key is not checked here: a small-order key decodes (the handler's key check rejects it)", () => {
    const smallOrder = new Uint8Array(32)
    smallOrder[0] = 1
    expect(tag(join({ publicKey: smallOrder }))).toBe("success")
  })
})

describe("store and forward messages (SPEC §3.4)", () => {
  const header = create(PbEnvelope.DhtHeaderSchema, {
    major: 1,
    destination: { case: "publicKey", value: key },
    flags: 1,
    ephemeralPublicKey: new Uint8Array(32).fill(1),
    expires: 10n
  })
  const response = (
    messages: ReadonlyArray<Init<typeof PbSaf.StoredMessageSchema>>,
    responseType: number = PbSaf.StoredMessagesResponse_SafResponseType.ForMe
  ) =>
    toBinary(
      PbSaf.StoredMessagesResponseSchema,
      create(PbSaf.StoredMessagesResponseSchema, {
        messages: messages.map((m) =>
          create(PbSaf.StoredMessageSchema, { version: 1, dhtHeader: header, body: Uint8Array.of(1), ...m })
        ),
        requestId: 5,
        responseType,
        more: true
      })
    )
  const tag = (bytes: Uint8Array) => outcome(exitOf(() => StoreForwardMessages.decodeStoredMessagesResponse(bytes)))

  it("decodes stored headers by the §3.7 rules", () => {
    const decoded = Effect.runSync(StoreForwardMessages.decodeStoredMessagesResponse(response([{ id: 3n }])))
    const stored = decoded.messages[0]!
    expect(Option.map(stored.dhtHeader, (h) => h.destination)).toEqual(
      Option.some(Envelope.destinationPublicKey(key))
    )
    expect(decoded.more).toBe(true)
    expect(decoded.responseType).toBe(StoreForwardMessages.SafResponseType.ForMe)
  })

  it("an absent header or an empty body decodes, for the requester to reject in §9.4's order", () => {
    const bytes = toBinary(
      PbSaf.StoredMessagesResponseSchema,
      create(PbSaf.StoredMessagesResponseSchema, {
        messages: [create(PbSaf.StoredMessageSchema, { version: 1, id: 1n })]
      })
    )
    const decoded = Effect.runSync(StoreForwardMessages.decodeStoredMessagesResponse(bytes))
    expect(Option.isNone(decoded.messages[0]!.dhtHeader)).toBe(true)
    expect(decoded.messages[0]!.body.length).toBe(0)
  })

  it("a stored header failing §3.7 makes the response InvalidSafMessage{Malformed}", () => {
    const bad = create(PbEnvelope.DhtHeaderSchema, { ...header, flags: 4 })
    const exit = exitOf(() => StoreForwardMessages.decodeStoredMessagesResponse(response([{}, { dhtHeader: bad }])))
    expect(outcome(exit)).toBe("InvalidSafMessage")
    expect(Exit.isFailure(exit) && Option.getOrThrow(Cause.failureOption(exit.cause)).reason).toBe("Malformed")
    const unknownFalse = create(PbEnvelope.DhtHeaderSchema, {
      ...header,
      destination: { case: "unknown", value: false }
    })
    expect(tag(response([{ dhtHeader: unknownFalse }]))).toBe("InvalidSafMessage")
  })

  it("a stored header of another version still decodes (skipped, not malformed, §9.4)", () => {
    const v2 = create(PbEnvelope.DhtHeaderSchema, { ...header, major: 2 })
    expect(tag(response([{ dhtHeader: v2, version: 2 }]))).toBe("success")
  })

  it("a response type outside the enum is Malformed; the reserved ones decode", () => {
    expect(tag(response([], 4))).toBe("InvalidSafMessage")
    expect(tag(response([], PbSaf.StoredMessagesResponse_SafResponseType.Anonymous))).toBe("success")
  })

  it("an undecodable request is InvalidMessageBody", () => {
    expect(outcome(exitOf(() => StoreForwardMessages.decodeStoredMessagesRequest(unhex("10"))))).toBe(
      "InvalidMessageBody"
    )
  })

  it.prop(
    "responseEntrySize adds up to the encoded response's length",
    [Schema.Array(StoreForwardMessages.StoredMessage)],
    ([messages]) => {
      const bytes = StoreForwardMessages.encodeStoredMessagesResponse(
        new StoreForwardMessages.StoredMessagesResponse({
          messages,
          requestId: 0,
          responseType: StoreForwardMessages.SafResponseType.ForMe,
          more: false
        })
      )
      const sum = messages.reduce(
        (n, m) => n + StoreForwardMessages.responseEntrySize(StoreForwardMessages.encodeStoredMessage(m).length),
        0
      )
      expect(bytes.length).toBe(sum)
    },
    { fastCheck: { numRuns: 200 } }
  )

  it("responseEntrySize counts multi-byte length prefixes", () => {
    expect(StoreForwardMessages.responseEntrySize(127)).toBe(1 + 1 + 127)
    expect(StoreForwardMessages.responseEntrySize(128)).toBe(1 + 2 + 128)
    expect(StoreForwardMessages.responseEntrySize(524_288)).toBe(1 + 3 + 524_288)
    const m = new StoreForwardMessages.StoredMessage({
      version: 1,
      dhtHeader: Option.none(),
      body: new Uint8Array(300),
      storedAtMs: 1n,
      id: 1n
    })
    const encoded = StoreForwardMessages.encodeStoredMessagesResponse(
      new StoreForwardMessages.StoredMessagesResponse({ messages: [m], requestId: 0, responseType: 0, more: false })
    )
    const entry = StoreForwardMessages.responseEntrySize(StoreForwardMessages.encodeStoredMessage(m).length)
    expect(encoded.length).toBe(entry)
  })
})

describe("peer sync messages (SPEC §3.5, §12.4)", () => {
  const claim = (fields: Init<typeof PbPeerSync.PeerIdentityClaimSchema> = {}) =>
    create(PbPeerSync.PeerIdentityClaimSchema, {
      addresses: [new TextEncoder().encode("tcp://5.6.7.8:1")],
      peerFeatures: 3,
      identitySignature: pbIdentitySignature(),
      ...fields
    })
  const responseOf = (peers: ReadonlyArray<PbPeerSync.PeerInfo>) =>
    Effect.runSync(
      PeerSyncMessages.decodePeerSyncResponse(
        toBinary(PbPeerSync.PeerSyncResponseSchema, create(PbPeerSync.PeerSyncResponseSchema, { peers: [...peers] }))
      )
    )
  const info = (publicKey: Uint8Array, claims: Array<PbPeerSync.PeerIdentityClaim>) =>
    create(PbPeerSync.PeerInfoSchema, { publicKey, claims })

  it("relayed entries decode whatever their keys and signatures, and are judged one by one", () => {
    const smallOrder = new Uint8Array(32)
    smallOrder[0] = 1
    const decoded = responseOf([
      info(key, [claim()]),
      info(new Uint8Array(0), [claim()]),
      info(key, []),
      info(key.subarray(0, 31), [claim()]),
      info(smallOrder, [claim()]),
      info(key, [claim({ identitySignature: pbIdentitySignature(new Uint8Array(63)) })]),
      info(key, [claim({ addresses: [notUtf8] })]),
      info(key, [create(PbPeerSync.PeerIdentityClaimSchema, { peerFeatures: 1 })])
    ])
    const [good, noKey, noClaims, shortKey, smallKey, shortSig, badAddress, unsigned] = decoded.peers
    expect(good!.isEmpty).toBe(false)
    expect(Option.getOrThrow(good!.publicKeyChecked)).toEqual(key)
    expect(Option.map(PeerSyncMessages.toPeerClaim(good!.claims[0]!), (c) => c.addresses)).toEqual(
      Option.some(["tcp://5.6.7.8:1"])
    )
    expect(noKey!.isEmpty).toBe(true)
    expect(noClaims!.isEmpty).toBe(true)
    expect(Option.isNone(shortKey!.publicKeyChecked)).toBe(true)
    expect(Option.isNone(smallKey!.publicKeyChecked)).toBe(true)
    expect(Option.isNone(PeerSyncMessages.toPeerClaim(shortSig!.claims[0]!))).toBe(true)
    expect(Option.isNone(PeerSyncMessages.toPeerClaim(badAddress!.claims[0]!))).toBe(true)
    expect(Option.isNone(PeerSyncMessages.toPeerClaim(unsigned!.claims[0]!))).toBe(true)
  })

  it("a stored claim relays as the bytes it was signed over", () => {
    const peerClaim = new PeerClaim({
      addresses: ["tcp://[::1]:9", "mem://ü"],
      features: 1,
      identitySignature: new IdentitySignature({ version: 0, signature: sig64, updatedAt: 1n })
    })
    const relayed = PeerSyncMessages.fromPeerClaim(peerClaim)
    expect(relayed.addresses.map((a) => new TextDecoder().decode(a))).toEqual(peerClaim.addresses)
    expect(PeerSyncMessages.toPeerClaim(relayed)).toEqual(Option.some(peerClaim))
  })

  // the memoised entry-by-entry decoder against the plain one behind the Schema, on valid encodings, encodings with
  // a repeated request id or an unknown field (which the entry-by-entry reader leaves to the plain one) and junk
  const responseBytes = FastCheck.oneof(
    PeerSyncMessages.PeerSyncResponse.pipe(Arbitrary.make).map(PeerSyncMessages.encodePeerSyncResponse),
    FastCheck.tuple(
      PeerSyncMessages.PeerSyncResponse.pipe(Arbitrary.make).map(PeerSyncMessages.encodePeerSyncResponse),
      FastCheck.constantFrom(unhex("1005"), unhex("1801"), unhex("2203616263"), unhex("0a00"), unhex("0a"))
    ).map(([bytes, tail]) => Uint8Array.from([...bytes, ...tail])),
    FastCheck.uint8Array({ maxLength: 300 })
  )
  it.prop("the memoised decoder gives what the plain decoder gives, twice over", [responseBytes], ([bytes]) => {
    const plain = Schema.decodeUnknownEither(PeerSyncMessages.PeerSyncResponseFromBytes)(bytes)
    for (let round = 0; round < 2; round++) {
      const memoised = Effect.runSync(Effect.either(PeerSyncMessages.decodePeerSyncResponse(bytes)))
      expect(Either.isRight(memoised)).toBe(Either.isRight(plain))
      if (Either.isRight(memoised) && Either.isRight(plain)) expect(memoised.right).toEqual(plain.right)
    }
  }, { fastCheck: { numRuns: 300 } })

  it("bytes that are not a response are InvalidMessageBody", () => {
    expect(outcome(exitOf(() => PeerSyncMessages.decodePeerSyncResponse(unhex("0a05"))))).toBe("InvalidMessageBody")
    expect(outcome(exitOf(() => PeerSyncMessages.decodeGetPeersRequest(unhex("08"))))).toBe("InvalidMessageBody")
  })
})

describe("handshake payload (SPEC §4.8)", () => {
  const payload = (fields: Init<typeof PbTransport.NoiseHandshakePayloadSchema>) =>
    toBinary(
      PbTransport.NoiseHandshakePayloadSchema,
      create(PbTransport.NoiseHandshakePayloadSchema, {
        identityPublicKey: key,
        staticSignature: sig64,
        peerFeatures: 3,
        addresses: [new TextEncoder().encode("tcp://127.0.0.1:1")],
        identitySignature: pbIdentitySignature(),
        protocolVersion: 1,
        ...fields
      })
    )
  const tag = (bytes: Uint8Array) => outcome(exitOf(() => HandshakePayload.decode(bytes)))

  it("decodes a well-formed payload", () => {
    const decoded = Effect.runSync(HandshakePayload.decode(payload({})))
    expect(decoded.identityPublicKey).toEqual(key)
    expect(decoded.claim.addresses).toEqual(["tcp://127.0.0.1:1"])
  })

  it("wrong lengths, a missing claim signature or a non-UTF-8 address are DecodeError", () => {
    expect(tag(payload({ identityPublicKey: new Uint8Array(33) }))).toBe("DecodeError")
    expect(tag(payload({ staticSignature: new Uint8Array(0) }))).toBe("DecodeError")
    expect(tag(payload({ identitySignature: pbIdentitySignature(new Uint8Array(65)) }))).toBe("DecodeError")
    expect(tag(payload({ addresses: [notUtf8] }))).toBe("DecodeError")
    const unsigned = toBinary(
      PbTransport.NoiseHandshakePayloadSchema,
      create(PbTransport.NoiseHandshakePayloadSchema, { identityPublicKey: key, staticSignature: sig64 })
    )
    expect(tag(unsigned)).toBe("DecodeError")
  })
})

describe("uint64 values (SPEC §3.7, scenario 53)", () => {
  it("cursor, stored_at_ms and id near 2^64 − 1 decode as exact bigints", () => {
    for (const v of [U64_MAX, U64_MAX - 1n, 1n << 63n, (1n << 63n) - 1n]) {
      const request = Effect.runSync(
        StoreForwardMessages.decodeStoredMessagesRequest(
          toBinary(
            PbSaf.StoredMessagesRequestSchema,
            create(PbSaf.StoredMessagesRequestSchema, { requestId: 1, sinceMs: v, afterId: v })
          )
        )
      )
      expect(request.sinceMs).toBe(v)
      expect(request.afterId).toBe(v)
      const response = Effect.runSync(
        StoreForwardMessages.decodeStoredMessagesResponse(
          toBinary(
            PbSaf.StoredMessagesResponseSchema,
            create(PbSaf.StoredMessagesResponseSchema, {
              messages: [create(PbSaf.StoredMessageSchema, { storedAtMs: v, id: v })]
            })
          )
        )
      )
      expect(typeof response.messages[0]!.storedAtMs).toBe("bigint")
      expect(response.messages[0]!.storedAtMs).toBe(v)
      expect(response.messages[0]!.id).toBe(v)
    }
  })

  it("the ten-byte varint of 2^64 − 1 as since_ms decodes exactly", () => {
    // since_ms (4) = 2^64 − 1
    const bytes = unhex("20ffffffffffffffffff01")
    expect(Effect.runSync(StoreForwardMessages.decodeStoredMessagesRequest(bytes)).sinceMs).toBe(U64_MAX)
  })

  it("nonces near 2^64 − 1 survive a join", () => {
    const m = new DhtMessages.JoinMessage({
      publicKey: key,
      addresses: [],
      peerFeatures: 0,
      nonce: U64_MAX,
      identitySignature: new IdentitySignature({ version: 0, signature: sig64, updatedAt: -(1n << 63n) })
    })
    const decoded = Effect.runSync(DhtMessages.decodeJoin(DhtMessages.encodeJoin(m)))
    expect(decoded.nonce).toBe(U64_MAX)
    expect(decoded.identitySignature.updatedAt).toBe(-(1n << 63n))
  })
})

describe("decoding is total for every message", () => {
  const anyBytes = FastCheck.uint8Array({ minLength: 0, maxLength: 256 })
  const decoders: ReadonlyArray<readonly [string, (bytes: Uint8Array) => Effect.Effect<unknown, { _tag: string }>,
    ReadonlyArray<string>]> = [
      ["join", DhtMessages.decodeJoin, ["InvalidMessageBody"]],
      ["discovery", DhtMessages.decodeDiscovery, ["InvalidMessageBody"]],
      ["discovery response", DhtMessages.decodeDiscoveryResponse, ["InvalidMessageBody"]],
      ["SAF request", StoreForwardMessages.decodeStoredMessagesRequest, ["InvalidMessageBody"]],
      ["SAF response", StoreForwardMessages.decodeStoredMessagesResponse, ["InvalidSafMessage"]],
      ["peer sync request", PeerSyncMessages.decodeGetPeersRequest, ["InvalidMessageBody"]],
      ["peer sync response", PeerSyncMessages.decodePeerSyncResponse, ["InvalidMessageBody"]],
      ["handshake payload", HandshakePayload.decode, ["DecodeError"]]
    ]

  it.prop("arbitrary bytes give a model or the decoder's error", [anyBytes], ([bytes]) => {
    for (const [, decode, tags] of decoders) {
      expect(["success", ...tags]).toContain(outcome(exitOf(() => decode(bytes))))
    }
  }, { fastCheck: { numRuns: 5_000 } })
})
