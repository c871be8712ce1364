import { describe, expect, it } from "@effect/vitest"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as NodeId from "@comms-dht/core/NodeId"
import { Either, FastCheck as fc, Option } from "effect"
import { hex } from "./cryptoSuite.js"

const lengths = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 13_000 }), weight: 10 },
  { arbitrary: fc.integer({ min: 0, max: 1 << 20 }), weight: 1 }
)

describe("MessageCrypto padding", () => {
  it.prop("a padded length is a positive multiple of 6000 holding the prefix and message", [lengths], ([n]) => {
    const padded = Either.getOrThrow(MessageCrypto.pad(new Uint8Array(n)))
    expect(padded.length).toBe(MessageCrypto.paddedLength(n))
    expect(padded.length % 6000).toBe(0)
    expect(padded.length).toBeGreaterThanOrEqual(n + 4)
    expect(padded.length).toBeLessThan(n + 4 + 6000)
  }, { fastCheck: { numRuns: 1000 } })

  it.prop("unpad inverts pad", [fc.uint8Array({ maxLength: 13_000 })], ([m]) => {
    const padded = Either.getOrThrow(MessageCrypto.pad(m))
    expect(new DataView(padded.buffer).getUint32(0, true)).toBe(m.length)
    expect(hex(Either.getOrThrow(MessageCrypto.unpad(padded)))).toBe(hex(m))
  }, { fastCheck: { numRuns: 1000 } })

  it("pads at the boundaries of SPEC §4.5", () => {
    const cases = [[0, 6000], [5995, 6000], [5996, 6000], [5997, 12_000], [6000, 12_000], [12_000, 18_000]] as const
    for (const [n, padded] of cases) {
      expect(Either.getOrThrow(MessageCrypto.pad(new Uint8Array(n))).length, `${n}`).toBe(padded)
    }
  })

  it("unpad refuses a wrong length or a claimed length beyond the bytes", () => {
    const tag = (bytes: Uint8Array) =>
      Either.match(MessageCrypto.unpad(bytes), { onLeft: (e) => e._tag, onRight: () => "ok" })
    expect(tag(new Uint8Array(0))).toBe("DecryptionFailed")
    expect(tag(new Uint8Array(3))).toBe("DecryptionFailed")
    expect(tag(new Uint8Array(5999))).toBe("DecryptionFailed")
    expect(tag(new Uint8Array(6001))).toBe("DecryptionFailed")
    const claimed = (n: number) => {
      const bytes = new Uint8Array(6000)
      new DataView(bytes.buffer).setUint32(0, n, true)
      return bytes
    }
    expect(tag(claimed(5996))).toBe("ok")
    expect(tag(claimed(5997))).toBe("DecryptionFailed")
    expect(tag(claimed(0xffff_ffff))).toBe("DecryptionFailed")
  })
})

describe("MessageCrypto challenge fields", () => {
  it("encodes f1..f7 as SPEC §4.3 states", () => {
    const key = NodeId.PublicKey.make(new Uint8Array(32).fill(0xab))
    const e = new Uint8Array(32).fill(0xcd)
    const body = Uint8Array.of(9, 8, 7)
    const fields = MessageCrypto.challengeFields({
      version: 1,
      destination: Envelope.destinationPublicKey(key),
      messageType: -2,
      flags: 0x8000_0001,
      expires: (1n << 64n) - 2n,
      ephemeralPublicKey: Option.some(e)
    }, body).map(hex)
    expect(fields).toEqual([
      "01000000",
      "01" + "ab".repeat(32),
      "feffffff",
      "01000080",
      "feffffffffffffff",
      "cd".repeat(32),
      "090807"
    ])
    const unknown = MessageCrypto.challengeFields({
      version: 1,
      destination: Envelope.destinationUnknown(),
      messageType: 0,
      flags: 0,
      expires: 0n,
      ephemeralPublicKey: Option.none()
    }, new Uint8Array(0)).map(hex)
    expect(unknown).toEqual(["01000000", "00".repeat(33), "00000000", "00000000", "00".repeat(8), "00".repeat(32), ""])
  })

  it("encodes the claim fields of SPEC §4.7, addresses as UTF-8", () => {
    const fields = MessageCrypto.claimChallengeFields(new Uint8Array(32).fill(1), 0, {
      addresses: ["tcp://[::1]:1", "mem://é"],
      features: 3,
      updatedAt: -1n
    }).map(hex)
    expect(fields).toEqual([
      "01".repeat(32),
      "00",
      "ffffffffffffffff",
      "03000000",
      Buffer.from("tcp://[::1]:1").toString("hex"),
      Buffer.from("mem://é", "utf8").toString("hex")
    ])
  })
})
