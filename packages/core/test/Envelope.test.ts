import { create, toBinary } from "@bufbuild/protobuf"
import { describe, expect, it } from "@effect/vitest"
import { ed25519 } from "@noble/curves/ed25519.js"
import { Arbitrary, Cause, Effect, Exit, FastCheck, Option, Schema } from "effect"
import { InvalidMessageType } from "../src/DhtError.js"
import * as Envelope from "../src/Envelope.js"
import * as Pb from "../src/internal/proto/envelope_pb.js"
import * as NodeId from "../src/NodeId.js"

const U64_MAX = (1n << 64n) - 1n
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")
const unhex = (s: string) => Uint8Array.from(Buffer.from(s, "hex"))

/** Runs a decoder and returns its exit; a synchronous throw would show up as a Die. */
const exitOf = <A, E>(run: () => Effect.Effect<A, E>): Exit.Exit<A, E> => Effect.runSyncExit(Effect.suspend(run))

/** The failure's tag, or "success"; a defect or an interruption fails the test. */
const outcome = <A, E extends { readonly _tag: string }>(exit: Exit.Exit<A, E>): string => {
  if (Exit.isSuccess(exit)) return "success"
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure) || Cause.isDie(exit.cause)) {
    throw new Error(`decoder died: ${Cause.pretty(exit.cause)}`)
  }
  return failure.value._tag
}

const envelopeDecodeTags = new Set([
  "success",
  "DecodeError",
  "HeaderOmitted",
  "InvalidDestination",
  "InvalidEphemeralPublicKey",
  "InvalidMessageType",
  "InvalidMessageFlags"
])

const validKey = NodeId.PublicKey.make(ed25519.getPublicKey(new Uint8Array(32).fill(7)))

/** A valid cleartext header as generated protobuf, to be broken one field at a time. */
const baseHeader = (overrides: {
  readonly major?: number
  readonly destination?: Pb.DhtHeader["destination"]
  readonly ephemeralPublicKey?: Uint8Array
  readonly messageType?: number // any int32: the enum is open on the wire
  readonly flags?: number
  readonly messageTag?: bigint
  readonly expires?: bigint
} = {}): Pb.DhtHeader =>
  create(Pb.DhtHeaderSchema, {
    major: overrides.major ?? 1,
    destination: overrides.destination ?? { case: "publicKey", value: validKey },
    ephemeralPublicKey: overrides.ephemeralPublicKey ?? new Uint8Array(0),
    messageType: overrides.messageType ?? Pb.DhtMessageType.DhtMessageTypeNone,
    flags: overrides.flags ?? 0,
    messageTag: overrides.messageTag ?? 42n,
    expires: overrides.expires ?? 1_800_000_000n
  })

const rawEnvelope = (header: Pb.DhtHeader | undefined, body = Uint8Array.of(1, 2, 3)): Uint8Array =>
  toBinary(Pb.DhtEnvelopeSchema, create(Pb.DhtEnvelopeSchema, header === undefined ? { body } : { header, body }))

const decodeTag = (bytes: Uint8Array) => outcome(exitOf(() => Envelope.decodeEnvelope(bytes)))

describe("Envelope model", () => {
  it("message type values and names are the proto enum's", () => {
    expect(Envelope.DhtMessageType).toEqual({
      None: Pb.DhtMessageType.DhtMessageTypeNone,
      Join: Pb.DhtMessageType.DhtMessageTypeJoin,
      Discovery: Pb.DhtMessageType.DhtMessageTypeDiscovery,
      DiscoveryResponse: Pb.DhtMessageType.DhtMessageTypeDiscoveryResponse,
      SafRequestMessages: Pb.DhtMessageType.DhtMessageTypeSafRequestMessages,
      SafStoredMessages: Pb.DhtMessageType.DhtMessageTypeSafStoredMessages,
      PeerSyncRequest: Pb.DhtMessageType.DhtMessageTypePeerSyncRequest,
      PeerSyncResponse: Pb.DhtMessageType.DhtMessageTypePeerSyncResponse,
      Receipt: Pb.DhtMessageType.DhtMessageTypeReceipt
    })
    expect(Envelope.messageTypeName(Envelope.DhtMessageType.SafStoredMessages)).toBe("SafStoredMessages")
    expect(Envelope.isDhtMessageType(4)).toBe(false)
    expect(Envelope.isDhtMessage(Envelope.DhtMessageType.DiscoveryResponse)).toBe(true)
    expect(Envelope.isDhtMessage(Envelope.DhtMessageType.None)).toBe(false)
    expect(Envelope.isSafMessage(Envelope.DhtMessageType.SafRequestMessages)).toBe(true)
    expect(Envelope.isPeerSyncMessage(Envelope.DhtMessageType.PeerSyncResponse)).toBe(true)
  })

  it("flag helpers", () => {
    expect(Envelope.isEncrypted(Envelope.DhtMessageFlags.ENCRYPTED)).toBe(true)
    expect(Envelope.isEncrypted(Envelope.DhtMessageFlags.NONE)).toBe(false)
    expect(Envelope.hasUnknownFlags(0x04)).toBe(true)
    expect(Envelope.hasUnknownFlags(Envelope.DhtMessageFlags.RECEIPT_REQUESTED)).toBe(false)
    expect(Envelope.isReceiptRequested(0x03)).toBe(true)
    expect(Envelope.hasUnknownFlags(0x80000000)).toBe(true)
    expect(Envelope.hasUnknownFlags(0x01)).toBe(false)
    expect(Envelope.withFlags(Envelope.DhtMessageFlags.NONE, Envelope.DhtMessageFlags.ENCRYPTED)).toBe(1)
  })

  it("a key destination derives its NodeId from the key", () => {
    const destination = Envelope.destinationPublicKey(validKey)
    expect(destination._tag).toBe("PublicKey")
    expect(Option.getOrThrow(Envelope.destinationNodeId(destination))).toEqual(NodeId.fromPublicKey(validKey))
    expect(Option.isNone(Envelope.destinationNodeId(Envelope.destinationUnknown()))).toBe(true)
    expect(Envelope.isDestinedTo(destination, validKey)).toBe(true)
    expect(Envelope.isDestinedTo(Envelope.destinationUnknown(), validKey)).toBe(false)
  })

  it("nextHop counts hops and saturates at 2^32 − 1", () => {
    const header = (hopCount: number) =>
      new Envelope.DhtMessageHeader({
        version: 1,
        destination: Envelope.destinationUnknown(),
        messageSignature: new Uint8Array(0),
        ephemeralPublicKey: Option.none(),
        messageType: 0,
        flags: 0,
        messageTag: 0n,
        expires: 0n,
        hopCount
      })
    expect(Envelope.nextHop(header(0)).hopCount).toBe(1)
    expect(Envelope.nextHop(header(4_000_000_000)).hopCount).toBe(4_000_000_001)
    expect(Envelope.nextHop(header(0xffffffff)).hopCount).toBe(0xffffffff)
    const bytes = Envelope.encodeHeader(Envelope.nextHop(header(0xfffffffe)))
    expect(Effect.runSync(Envelope.decodeHeader(bytes)).hopCount).toBe(0xffffffff)
  })

  it("a cleartext header cannot carry an ephemeral key", () => {
    const make = (flags: number) =>
      Schema.decodeUnknownEither(Envelope.DhtMessageHeader)({
        version: 1,
        destination: Envelope.destinationUnknown(),
        messageSignature: new Uint8Array(0),
        ephemeralPublicKey: Option.some(new Uint8Array(32)),
        messageType: 0,
        flags,
        messageTag: 0n,
        expires: 0n,
        hopCount: 0
      })
    expect(make(Envelope.DhtMessageFlags.NONE)._tag).toBe("Left")
    expect(make(Envelope.DhtMessageFlags.ENCRYPTED)._tag).toBe("Right")
  })
})

describe("Envelope round trips (model → bytes → model)", () => {
  const runs = { fastCheck: { numRuns: 1000 } }

  it.prop("DhtEnvelope", [Envelope.DhtEnvelope], ([envelope]) => {
    const decoded = Effect.runSync(Envelope.decodeEnvelope(Envelope.encodeEnvelope(envelope)))
    expect(decoded).toEqual(envelope)
  }, runs)

  it.prop("DhtEnvelope through the Schema", [Envelope.DhtEnvelope], ([envelope]) => {
    const bytes = Schema.encodeSync(Envelope.DhtEnvelopeFromBytes)(envelope)
    expect(Schema.decodeSync(Envelope.DhtEnvelopeFromBytes)(bytes)).toEqual(envelope)
  }, runs)

  it.prop("DhtMessageHeader standalone", [Envelope.DhtMessageHeader], ([header]) => {
    expect(Effect.runSync(Envelope.decodeHeader(Envelope.encodeHeader(header)))).toEqual(header)
  }, runs)

  it.prop("MessageSignature", [Envelope.MessageSignature], ([sig]) => {
    expect(Effect.runSync(Envelope.decodeMessageSignature(Envelope.encodeMessageSignature(sig)))).toEqual(sig)
    expect(Schema.decodeSync(Envelope.MessageSignatureFromBytes)(Envelope.encodeMessageSignature(sig))).toEqual(sig)
  }, runs)

  it.prop("EnvelopeBody", [Envelope.EnvelopeBody], ([body]) => {
    expect(Effect.runSync(Envelope.decodeEnvelopeBody(Envelope.encodeEnvelopeBody(body)))).toEqual(body)
    expect(Schema.decodeSync(Envelope.EnvelopeBodyFromBytes)(Envelope.encodeEnvelopeBody(body))).toEqual(body)
  }, runs)

  it.prop("MessageHeader", [Envelope.MessageHeader], ([header]) => {
    expect(Effect.runSync(Envelope.decodeMessageHeader(Envelope.encodeMessageHeader(header)))).toEqual(header)
    expect(Schema.decodeSync(Envelope.MessageHeaderFromBytes)(Envelope.encodeMessageHeader(header))).toEqual(header)
  }, runs)

  it("equal models are equal after a round trip, different ones are not", () => {
    const [a, b] = FastCheck.sample(Arbitrary.make(Envelope.DhtEnvelope), { numRuns: 2, seed: 1 })
    const decodedA = Effect.runSync(Envelope.decodeEnvelope(Envelope.encodeEnvelope(a!)))
    expect(decodedA).toEqual(a)
    expect(decodedA).not.toEqual(b)
  })
})

describe("Envelope encoding", () => {
  // the writer of internal/envelopeWriter.ts against protobuf-es: the bytes on the wire are the .proto's
  const reference = (envelope: Envelope.DhtEnvelope): Uint8Array =>
    toBinary(
      Pb.DhtEnvelopeSchema,
      create(Pb.DhtEnvelopeSchema, { header: Envelope.headerToProtoMessage(envelope.header), body: envelope.body })
    )

  it.prop("writes exactly the bytes protobuf-es writes", [Envelope.DhtEnvelope], ([envelope]) => {
    expect(hex(Envelope.encodeEnvelope(envelope))).toBe(hex(reference(envelope)))
  }, { fastCheck: { numRuns: 2_000 } })

  it.prop("writes the same bytes from a header's plain values as from the classes", [Envelope.DhtEnvelope], ([e]) => {
    const h = e.header
    const values: Envelope.HeaderValues = {
      version: h.version,
      destination: h.destination,
      messageSignature: h.messageSignature,
      ephemeralPublicKey: h.ephemeralPublicKey,
      messageType: h.messageType,
      flags: h.flags,
      messageTag: h.messageTag,
      expires: h.expires,
      hopCount: h.hopCount
    }
    expect(hex(Envelope.encodeEnvelopeFrom(values, e.body))).toBe(hex(Envelope.encodeEnvelope(e)))
  }, { fastCheck: { numRuns: 500 } })

  it.prop(
    "writes a body's parts exactly as protobuf-es does, empty and multi-byte lengths included",
    [FastCheck.array(
      FastCheck.oneof(
        FastCheck.uint8Array({ maxLength: 200 }),
        FastCheck.integer({ min: 0, max: 20_000 }).map((n) => new Uint8Array(n).fill(n & 0xff))
      ),
      { minLength: 1, maxLength: 6 }
    )],
    ([parts]) => {
      const written = Envelope.encodeEnvelopeBody(new Envelope.EnvelopeBody({ parts }))
      const expected = toBinary(Pb.EnvelopeBodySchema, create(Pb.EnvelopeBodySchema, { parts }))
      // compared as bytes: hex strings of bodies this long make the comparison the test's cost
      expect(Buffer.from(written).equals(Buffer.from(expected))).toBe(true)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("writes protobuf-es's bytes at the limits of every numeric field", () => {
    for (const [version, flags, tag, expires, hopCount] of [
      [0, 0, 0n, 0n, 0],
      [1, 0xffffffff, (1n << 64n) - 1n, (1n << 63n) + 1n, 0xffffffff],
      [0x7f, 0x80, 0x7fn, 0x80n, 0x3fff],
      [0x4000, 0x1fffff, 1n << 35n, 1n << 56n, 0x200000]
    ] as const) {
      const envelope = new Envelope.DhtEnvelope({
        header: new Envelope.DhtMessageHeader({
          version,
          destination: Envelope.destinationPublicKey(validKey),
          messageSignature: new Uint8Array(130).fill(1),
          ephemeralPublicKey: Option.some(new Uint8Array(32).fill(2)),
          messageType: Envelope.DhtMessageType.SafStoredMessages,
          flags,
          messageTag: tag,
          expires,
          hopCount
        }, true),
        body: new Uint8Array(300).fill(3)
      })
      expect(hex(Envelope.encodeEnvelope(envelope))).toBe(hex(reference(envelope)))
    }
  })

  it("is canonical protobuf with the field numbers of SPEC §3.1", () => {
    const envelope = new Envelope.DhtEnvelope({
      header: new Envelope.DhtMessageHeader({
        version: 1,
        destination: Envelope.destinationUnknown(),
        messageSignature: new Uint8Array(0),
        ephemeralPublicKey: Option.none(),
        messageType: Envelope.DhtMessageType.Join,
        flags: Envelope.DhtMessageFlags.NONE,
        messageTag: 5n,
        expires: 100n,
        hopCount: 0
      }),
      body: Uint8Array.of(1, 2)
    })
    // header (1): major (1) = 1, unknown (3) = true, message_type (8) = 1, message_tag (11) = 5, expires (12) = 100
    expect(hex(Envelope.encodeEnvelope(envelope))).toBe("0a0a0801180140015805606412020102")
  })

  it("puts every header field at its number", () => {
    const e = new Uint8Array(32).fill(0xee)
    const header = new Envelope.DhtMessageHeader({
      version: 7,
      destination: Envelope.destinationPublicKey(validKey),
      messageSignature: Uint8Array.of(0xaa),
      ephemeralPublicKey: Option.some(e),
      messageType: Envelope.DhtMessageType.PeerSyncResponse,
      flags: Envelope.DhtMessageFlags.ENCRYPTED,
      messageTag: 1n,
      expires: 2n,
      hopCount: 3
    })
    expect(hex(Envelope.encodeHeader(header))).toBe(
      "0807" + "2220" + hex(validKey) + "3201aa" + "3a20" + hex(e) + "401f" + "5001" + "5801" + "6002" + "6803"
    )
  })
})

describe("Envelope decoding rules (SPEC §3.7)", () => {
  it("accepts a valid envelope and keeps its fields", () => {
    const envelope = Effect.runSync(Envelope.decodeEnvelope(rawEnvelope(baseHeader())))
    expect(envelope.header.destination).toEqual(Envelope.destinationPublicKey(validKey))
    expect(envelope.header.messageTag).toBe(42n)
    expect(Array.from(envelope.body)).toEqual([1, 2, 3])
  })

  it("empty input and non-protobuf bytes are DecodeError", () => {
    expect(decodeTag(new Uint8Array(0))).toBe("DecodeError")
    expect(decodeTag(unhex("0aff"))).toBe("DecodeError") // header field whose length runs past the end
    expect(decodeTag(unhex("ffffffffffffffffffffff"))).toBe("DecodeError") // overlong varint tag
    expect(decodeTag(unhex("0f"))).toBe("DecodeError") // wire type 7 does not exist
  })

  it("no header is HeaderOmitted", () => {
    expect(decodeTag(rawEnvelope(undefined))).toBe("HeaderOmitted")
  })

  it("destination absent, unknown = false, wrong length or failing the key check is InvalidDestination", () => {
    const withDestination = (destination: Pb.DhtHeader["destination"]) =>
      decodeTag(rawEnvelope(baseHeader({ destination })))
    expect(withDestination({ case: undefined })).toBe("InvalidDestination")
    expect(withDestination({ case: "unknown", value: false })).toBe("InvalidDestination")
    expect(withDestination({ case: "unknown", value: true })).toBe("success")
    expect(withDestination({ case: "publicKey", value: validKey.subarray(0, 31) })).toBe("InvalidDestination")
    expect(withDestination({ case: "publicKey", value: new Uint8Array(33) })).toBe("InvalidDestination")
    expect(withDestination({ case: "publicKey", value: new Uint8Array(0) })).toBe("InvalidDestination")
    // small order: the order-8 point 26e8…, the identity 01 00…, and the identity with bit 255 set
    const smallOrder = unhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
    expect(withDestination({ case: "publicKey", value: smallOrder })).toBe("InvalidDestination")
    const identity = new Uint8Array(32)
    identity[0] = 1
    expect(withDestination({ case: "publicKey", value: identity })).toBe("InvalidDestination")
    identity[31] = 0x80
    expect(withDestination({ case: "publicKey", value: identity })).toBe("InvalidDestination")
    // non-canonical y = p
    expect(withDestination({ case: "publicKey", value: unhex("ed" + "ff".repeat(30) + "7f") }))
      .toBe("InvalidDestination")
    // y = 2 is not on the curve
    const offCurve = new Uint8Array(32)
    offCurve[0] = 2
    expect(withDestination({ case: "publicKey", value: offCurve })).toBe("InvalidDestination")
  })

  it("an ephemeral key on cleartext or of the wrong length is InvalidEphemeralPublicKey", () => {
    const e32 = new Uint8Array(32).fill(9)
    expect(decodeTag(rawEnvelope(baseHeader({ ephemeralPublicKey: e32 })))).toBe("InvalidEphemeralPublicKey")
    expect(decodeTag(rawEnvelope(baseHeader({ ephemeralPublicKey: new Uint8Array(33), flags: 1 }))))
      .toBe("InvalidEphemeralPublicKey")
    expect(decodeTag(rawEnvelope(baseHeader({ ephemeralPublicKey: new Uint8Array(31), flags: 1 }))))
      .toBe("InvalidEphemeralPublicKey")
    const encrypted = Effect.runSync(
      Envelope.decodeEnvelope(rawEnvelope(baseHeader({ ephemeralPublicKey: e32, flags: 1 })))
    )
    expect(Option.map(encrypted.header.ephemeralPublicKey, hex)).toEqual(Option.some(hex(e32)))
    expect(encrypted.header.isEncrypted).toBe(true)
  })

  it("an encrypted header without an ephemeral key decodes: that is the validation stage's rule", () => {
    const decoded = Effect.runSync(Envelope.decodeEnvelope(rawEnvelope(baseHeader({ flags: 1 }))))
    expect(Option.isNone(decoded.header.ephemeralPublicKey)).toBe(true)
  })

  it("a message type outside the enum is InvalidMessageType", () => {
    const bytes = rawEnvelope(baseHeader({ messageType: 99 }))
    expect(decodeTag(bytes)).toBe("InvalidMessageType")
    const error = Effect.runSync(Effect.flip(Envelope.decodeEnvelope(bytes)))
    expect(error).toEqual(new InvalidMessageType({ value: 99 }))
  })

  it("a flag bit other than ENCRYPTED and RECEIPT_REQUESTED is InvalidMessageFlags", () => {
    expect(decodeTag(rawEnvelope(baseHeader({ flags: 0x04 })))).toBe("InvalidMessageFlags")
    expect(decodeTag(rawEnvelope(baseHeader({ flags: 0x80000000 })))).toBe("InvalidMessageFlags")
    expect(decodeTag(rawEnvelope(baseHeader({ flags: 0x07 })))).toBe("InvalidMessageFlags")
    expect(decodeTag(rawEnvelope(baseHeader({ flags: 0x02 })))).toBe("success")
  })

  it("an unsupported version is not a decode error (SPEC §7.2 rejects it)", () => {
    const decoded = Effect.runSync(Envelope.decodeEnvelope(rawEnvelope(baseHeader({ major: 2 }))))
    expect(decoded.header.version).toBe(2)
  })

  it("rules apply in the table's order", () => {
    // bad destination and bad flags: the destination rule comes first
    expect(decodeTag(rawEnvelope(baseHeader({ destination: { case: undefined }, flags: 2 }))))
      .toBe("InvalidDestination")
    // bad message type and bad flags: the message type rule comes first
    expect(decodeTag(rawEnvelope(baseHeader({ messageType: 99, flags: 2 })))).toBe("InvalidMessageType")
  })

  it("unknown fields are ignored", () => {
    // field 15, varint 1, appended to a valid header and to the envelope
    const header = toBinary(Pb.DhtHeaderSchema, baseHeader())
    const withUnknown = Uint8Array.from([...header, 0x78, 0x01])
    const envelope = Uint8Array.from([0x0a, withUnknown.length, ...withUnknown, 0x12, 0x01, 0x05, 0x78, 0x01])
    expect(decodeTag(envelope)).toBe("success")
  })
})

describe("uint64 values (SPEC §3.7, scenario 53)", () => {
  it("message_tag and expires near 2^64 − 1 decode as exact bigints", () => {
    for (const value of [U64_MAX, U64_MAX - 1n, 1n << 63n, (1n << 63n) - 1n, (1n << 53n) + 1n]) {
      const decoded = Effect.runSync(
        Envelope.decodeEnvelope(rawEnvelope(baseHeader({ messageTag: value, expires: value })))
      )
      expect(typeof decoded.header.expires).toBe("bigint")
      expect(decoded.header.expires).toBe(value)
      expect(decoded.header.messageTag).toBe(value)
    }
  })

  it("the ten-byte varint of 2^64 − 1 decodes to exactly 2^64 − 1", () => {
    // header: unknown = true, expires (12) = ff ff ff ff ff ff ff ff ff 01
    const header = unhex("1801" + "60ffffffffffffffffff01")
    const bytes = Uint8Array.from([0x0a, header.length, ...header])
    expect(Effect.runSync(Envelope.decodeEnvelope(bytes)).header.expires).toBe(U64_MAX)
  })

  it("MessageHeader nonce 2^64 − 1 survives, 0 is InvalidApplicationBody", () => {
    const max = new Envelope.MessageHeader({ messageType: -1, nonce: U64_MAX })
    expect(Effect.runSync(Envelope.decodeMessageHeader(Envelope.encodeMessageHeader(max))).nonce).toBe(U64_MAX)
    const zero = toBinary(Pb.MessageHeaderSchema, create(Pb.MessageHeaderSchema, { messageType: 1, nonce: 0n }))
    expect(outcome(exitOf(() => Envelope.decodeMessageHeader(zero)))).toBe("InvalidApplicationBody")
  })
})

const concat = (...parts: ReadonlyArray<Uint8Array>) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}
const pbBytes = (field: number, value: Uint8Array) => concat(Uint8Array.of((field << 3) | 2, value.length), value)

describe("MessageSignature, EnvelopeBody and MessageHeader decoding", () => {
  const sig = (signerPublicKey: Uint8Array, signature: Uint8Array) =>
    toBinary(Pb.MessageSignatureSchema, create(Pb.MessageSignatureSchema, { signerPublicKey, signature }))

  it("MessageSignature needs a 32-byte key and a 64-byte signature", () => {
    const tag = (bytes: Uint8Array) => outcome(exitOf(() => Envelope.decodeMessageSignature(bytes)))
    expect(tag(sig(new Uint8Array(32), new Uint8Array(64)))).toBe("success")
    expect(tag(sig(new Uint8Array(31), new Uint8Array(64)))).toBe("DecodeError")
    expect(tag(sig(new Uint8Array(32), new Uint8Array(63)))).toBe("DecodeError")
    expect(tag(sig(new Uint8Array(32), new Uint8Array(0)))).toBe("DecodeError")
    expect(tag(new Uint8Array(0))).toBe("DecodeError")
    expect(tag(unhex("0aff"))).toBe("DecodeError")
  })

  it.prop("only the canonical encoding of a signature decodes: a re-encoding would replay its message past dedup", [
    Envelope.MessageSignature,
    FastCheck.constantFrom("unknown field", "reordered", "group wire type", "repeated field")
  ], ([signature, how]) => {
    const canonical = Envelope.encodeMessageSignature(signature)
    const key = pbBytes(1, signature.signerPublicKey)
    const sig64 = pbBytes(3, signature.signature)
    const variant = how === "unknown field"
      ? concat(canonical, Uint8Array.of(0x18, 0x01))
      : how === "reordered"
      ? concat(sig64, key)
      : how === "group wire type"
      ? Uint8Array.from(canonical, (b, i) => i === 0 ? b ^ 1 : b)
      : concat(key, key, sig64)
    expect(outcome(exitOf(() => Envelope.decodeMessageSignature(canonical)))).toBe("success")
    expect(outcome(exitOf(() => Envelope.decodeMessageSignature(variant)))).toBe("DecodeError")
  })

  it("EnvelopeBody needs 1 to 16 parts", () => {
    const body = (n: number) =>
      toBinary(
        Pb.EnvelopeBodySchema,
        create(Pb.EnvelopeBodySchema, { parts: Array.from({ length: n }, (_, i) => Uint8Array.of(i)) })
      )
    const tag = (bytes: Uint8Array) => outcome(exitOf(() => Envelope.decodeEnvelopeBody(bytes)))
    expect(tag(body(0))).toBe("EnvelopeBodyDecodeFailed")
    expect(tag(body(1))).toBe("success")
    expect(tag(body(16))).toBe("success")
    expect(tag(body(17))).toBe("EnvelopeBodyDecodeFailed")
    expect(tag(unhex("0a05"))).toBe("EnvelopeBodyDecodeFailed")
    // an empty part is still a part
    expect(tag(unhex("0a00"))).toBe("success")
  })

  it("MessageHeader that is not protobuf is InvalidApplicationBody", () => {
    expect(outcome(exitOf(() => Envelope.decodeMessageHeader(unhex("08"))))).toBe("InvalidApplicationBody")
  })
})

describe("decoding is total (SPEC §20 scenario 2)", () => {
  const anyBytes = FastCheck.uint8Array({ minLength: 0, maxLength: 512 })

  it.prop("arbitrary bytes give an envelope or a DecodeError-family error", [anyBytes], ([bytes]) => {
    expect(envelopeDecodeTags.has(decodeTag(bytes))).toBe(true)
  }, { fastCheck: { numRuns: 10_000 } })

  it.prop("arbitrary bytes never break the other decoders", [anyBytes], ([bytes]) => {
    expect(["success", "DecodeError"]).toContain(outcome(exitOf(() => Envelope.decodeMessageSignature(bytes))))
    expect(["success", "EnvelopeBodyDecodeFailed"]).toContain(outcome(exitOf(() => Envelope.decodeEnvelopeBody(bytes))))
    expect(["success", "InvalidApplicationBody"]).toContain(outcome(exitOf(() => Envelope.decodeMessageHeader(bytes))))
    expect(envelopeDecodeTags.has(outcome(exitOf(() => Envelope.decodeHeader(bytes))))).toBe(true)
  }, { fastCheck: { numRuns: 2_000 } })

  // A pool of valid envelopes (valid keys are slow to draw); mutations pick one and damage its bytes.
  const pool = FastCheck.sample(Arbitrary.make(Envelope.DhtEnvelope), { numRuns: 200, seed: 53 }).map(
    Envelope.encodeEnvelope
  )
  const mutation = FastCheck.oneof(
    FastCheck.record({ kind: FastCheck.constant("flip" as const), at: FastCheck.nat(), bit: FastCheck.nat(7) }),
    FastCheck.record({ kind: FastCheck.constant("truncate" as const), at: FastCheck.nat() }),
    FastCheck.record({
      kind: FastCheck.constant("insert" as const),
      at: FastCheck.nat(),
      bytes: FastCheck.uint8Array({ minLength: 1, maxLength: 12 })
    }),
    FastCheck.record({ kind: FastCheck.constant("delete" as const), at: FastCheck.nat(), length: FastCheck.nat(16) })
  )
  const mutate = (bytes: Uint8Array, m: typeof mutation extends FastCheck.Arbitrary<infer T> ? T : never) => {
    const at = m.at % (bytes.length + 1)
    switch (m.kind) {
      case "flip": {
        const out = Uint8Array.from(bytes)
        const i = m.at % bytes.length
        out[i] = out[i]! ^ (1 << m.bit)
        return out
      }
      case "truncate":
        return bytes.subarray(0, at)
      case "insert":
        return Uint8Array.from([...bytes.subarray(0, at), ...m.bytes, ...bytes.subarray(at)])
      case "delete":
        return Uint8Array.from([...bytes.subarray(0, at), ...bytes.subarray(at + m.length)])
    }
  }

  it.prop(
    "mutated valid envelopes give an envelope or a DecodeError-family error",
    [FastCheck.nat(pool.length - 1), FastCheck.array(mutation, { minLength: 1, maxLength: 3 })],
    ([index, mutations]) => {
      const bytes = mutations.reduce(mutate, pool[index]!)
      expect(envelopeDecodeTags.has(decodeTag(bytes))).toBe(true)
    },
    { fastCheck: { numRuns: 10_000 } }
  )

  it("the mutation test reaches more than one rule", () => {
    const seen = new Set<string>()
    const samples = FastCheck.sample(
      FastCheck.tuple(FastCheck.nat(pool.length - 1), FastCheck.array(mutation, { minLength: 1, maxLength: 3 })),
      { numRuns: 3_000, seed: 2 }
    )
    for (const [index, mutations] of samples) seen.add(decodeTag(mutations.reduce(mutate, pool[index]!)))
    expect(seen.has("success")).toBe(true)
    expect(seen.has("DecodeError")).toBe(true)
    expect(seen.has("InvalidDestination")).toBe(true)
    expect(seen.size).toBeGreaterThanOrEqual(4)
  })
})
