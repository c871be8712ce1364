import { describe, expect, it } from "@effect/vitest"
import * as Crypto from "@comms-dht/core/Crypto"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as NodeId from "@comms-dht/core/NodeId"
import * as Receipts from "@comms-dht/core/Receipts"
import { blake2b } from "@noble/hashes/blake2.js"
import { Effect, Option } from "effect"

const signerOf = (crypto: Crypto.CryptoService, fill: number): MessageCrypto.Signer => {
  const secretKey = NodeId.SecretKey.make(new Uint8Array(32).fill(fill))
  return { secretKey, publicKey: crypto.publicKeyOf(secretKey) }
}

const u64le = (n: number) => {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true)
  return out
}

describe("Receipts", () => {
  it.effect("the destination's receipt verifies with its key only, and only for the hash it signed", () =>
    Effect.gen(function*() {
      const crypto = yield* Crypto.makeNoble()
      const destination = signerOf(crypto, 1)
      const stranger = signerOf(crypto, 2)
      const hash = new Uint8Array(32).fill(9)
      const receipt = yield* Receipts.sign(destination, hash).pipe(Effect.provideService(Crypto.Crypto, crypto))
      const verify = (key: NodeId.PublicKey, r: Receipts.Receipt) =>
        Receipts.verify(key, r).pipe(Effect.provideService(Crypto.Crypto, crypto))
      expect(yield* verify(destination.publicKey, receipt)).toBe(true)
      expect(yield* verify(stranger.publicKey, receipt)).toBe(false)
      // the same signature claimed for another message
      const replayed = new Receipts.Receipt({ messageHash: new Uint8Array(32).fill(8), signature: receipt.signature })
      expect(yield* verify(destination.publicKey, replayed)).toBe(false)
    }))

  it.effect("signs DSH(\"receipt\", 32, hash) as SPEC §4.1 frames it", () =>
    Effect.gen(function*() {
      const crypto = yield* Crypto.makeNoble()
      const hash = new Uint8Array(32).fill(3)
      const tag = new TextEncoder().encode("comms-dht.v1.receipt.32")
      const framed = new Uint8Array([...u64le(tag.length), ...tag, ...u64le(32), ...hash])
      const challenge = yield* Receipts.challenge(hash).pipe(Effect.provideService(Crypto.Crypto, crypto))
      expect(Array.from(challenge)).toEqual(Array.from(blake2b(framed).subarray(0, 32)))
    }))

  it.effect("round-trips through bytes and a message body; anything else is InvalidReceipt{Malformed}", () =>
    Effect.gen(function*() {
      const receipt = new Receipts.Receipt({ messageHash: new Uint8Array(32).fill(1), signature: new Uint8Array(64) })
      expect(yield* Receipts.decode(Receipts.encode(receipt))).toEqual(receipt)
      expect(yield* Receipts.fromBody(Receipts.toBody(receipt))).toEqual(receipt)
      for (const bytes of [Uint8Array.of(0xff, 0xff), Receipts.encode(receipt).subarray(0, 40), new Uint8Array(0)]) {
        const error = yield* Effect.flip(Receipts.decode(bytes))
        expect(error).toMatchObject({ _tag: "InvalidReceipt", reason: "Malformed" })
      }
    }))

  it.effect("a sent envelope's hash is the dedup hash a receiver computes (SPEC §8.1), whatever its hop count", () =>
    Effect.gen(function*() {
      const crypto = yield* Crypto.makeNoble()
      const sender = signerOf(crypto, 4)
      const recipient = signerOf(crypto, 5)
      const fields = {
        version: 1,
        destination: Envelope.destinationPublicKey(recipient.publicKey),
        messageType: Envelope.DhtMessageType.None,
        flags: Envelope.DhtMessageFlags.RECEIPT_REQUESTED,
        expires: 1_800_000_000n
      }
      const sealed = yield* MessageCrypto.encrypt(sender, recipient.publicKey, fields, Uint8Array.of(1, 2, 3)).pipe(
        Effect.provideService(Crypto.Crypto, crypto)
      )
      const header = new Envelope.DhtMessageHeader({
        ...fields,
        flags: sealed.flags,
        messageSignature: sealed.messageSignature,
        ephemeralPublicKey: Option.some(sealed.ephemeralPublicKey),
        messageTag: 7n,
        hopCount: 0
      })
      const envelope = new Envelope.DhtEnvelope({ header, body: sealed.body })
      const later = new Envelope.DhtEnvelope({ header: Envelope.nextHop(header), body: sealed.body })
      const hash = yield* Receipts.messageHash(envelope).pipe(Effect.provideService(Crypto.Crypto, crypto))
      const received = yield* MessageCrypto.dedupHash(later.header, later.body, later.header.messageSignature).pipe(
        Effect.provideService(Crypto.Crypto, crypto)
      )
      expect(Array.from(hash)).toEqual(Array.from(received))
    }))
})
