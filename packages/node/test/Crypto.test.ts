import { describe, expect, it } from "@effect/vitest"
import * as Crypto from "@comms-dht/node/Crypto"
import * as Testing from "@comms-dht/node/testing"
import * as CoreCrypto from "@comms-dht/core/Crypto"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as CoreTesting from "@comms-dht/core/testing"
import * as Envelope from "@comms-dht/core/Envelope"
import * as NodeId from "@comms-dht/core/NodeId"
import { Effect, FastCheck as fc, Option } from "effect"
import { cryptoSuite, hex } from "../../core/test/cryptoSuite.js"

cryptoSuite({ name: "node", make: Crypto.makeNode, makeSeeded: Testing.makeNodeSeeded })

describe("entry points", () => {
  it("the seeded layer is only in @comms-dht/node/testing (SPEC §20.50)", () => {
    expect(Object.keys(Crypto)).not.toContain("layerNodeSeeded")
    expect(Object.keys(Crypto)).toEqual(expect.arrayContaining(["layerNode", "makeNode"]))
    expect(Object.keys(Testing)).toEqual(expect.arrayContaining(["layerNodeSeeded", "makeNodeSeeded"]))
  })
})

describe("node and noble agree", () => {
  it.effect.prop(
    "on every primitive for random keys, nonces and messages",
    [fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 300 }), fc.integer()],
    ([seed, message, s]) =>
      Effect.gen(function*() {
        const node = yield* Crypto.makeNode()
        const noble = yield* CoreCrypto.makeNoble()
        const secret = NodeId.SecretKey.make(seed)
        expect(hex(node.publicKeyOf(secret))).toBe(hex(noble.publicKeyOf(secret)))
        expect(hex(node.sign(secret, message))).toBe(hex(noble.sign(secret, message)))
        expect(hex(node.x25519PublicKey(seed))).toBe(hex(noble.x25519PublicKey(seed)))
        expect(hex(node.blake2b512(message))).toBe(hex(noble.blake2b512(message)))
        expect(hex(node.dsh("dedup", 32, [message, seed]))).toBe(hex(noble.dsh("dedup", 32, [message, seed])))
        const nonce = fc.sample(fc.uint8Array({ minLength: 24, maxLength: 24 }), { seed: s, numRuns: 1 })[0]!
        const sealed = node.sealWithNonce(seed, nonce, message)
        expect(hex(sealed)).toBe(hex(noble.sealWithNonce(seed, nonce, message)))
        expect(hex(yield* noble.open(seed, sealed))).toBe(hex(message))
      }),
    { fastCheck: { numRuns: 300 } }
  )

  it.effect.prop(
    "on DSH over a field too large to copy into the framing (the digest of several chunks)",
    [fc.uint8Array({ minLength: 1025, maxLength: 5000 }), fc.uint8Array({ maxLength: 64 })],
    ([large, small]) =>
      Effect.gen(function*() {
        const node = yield* Crypto.makeNode()
        const noble = yield* CoreCrypto.makeNoble()
        expect(hex(node.dsh("challenge", 32, [small, large, small]))).toBe(
          hex(noble.dsh("challenge", 32, [small, large, small]))
        )
        expect(hex(node.blake2b512(large))).toBe(hex(noble.blake2b512(large)))
      }),
    { fastCheck: { numRuns: 100 } }
  )

  it.effect("a message encrypted by one backend decrypts on the other, both seeded alike", () =>
    Effect.gen(function*() {
      const run = (make: (seed: number) => Effect.Effect<CoreCrypto.CryptoService>) =>
        Effect.gen(function*() {
          const crypto = yield* CoreCrypto.Crypto
          const secretKey = yield* crypto.generateSecretKey
          const sender = { secretKey, publicKey: crypto.publicKeyOf(secretKey) }
          const recipientKey = yield* crypto.generateSecretKey
          const recipient = { secretKey: recipientKey, publicKey: crypto.publicKeyOf(recipientKey) }
          const fields: MessageCrypto.EncryptFields = {
            version: 1,
            destination: Envelope.destinationPublicKey(recipient.publicKey),
            messageType: 0,
            flags: 0,
            expires: 1n
          }
          const encrypted = yield* MessageCrypto.encrypt(sender, recipient.publicKey, fields, Uint8Array.of(1, 2, 3))
          return { sender, recipient, fields, encrypted }
        }).pipe(Effect.provideServiceEffect(CoreCrypto.Crypto, make(5)))
      const fromNode = yield* run(Testing.makeNodeSeeded)
      const fromNoble = yield* run(CoreTesting.makeNobleSeeded)
      expect(hex(fromNode.encrypted.body)).toBe(hex(fromNoble.encrypted.body))
      expect(hex(fromNode.encrypted.messageSignature)).toBe(hex(fromNoble.encrypted.messageSignature))
      const { encrypted, fields, recipient, sender } = fromNode
      const opened = yield* MessageCrypto.decryptBytes(recipient, {
        ...fields,
        flags: encrypted.flags,
        ephemeralPublicKey: Option.some(encrypted.ephemeralPublicKey),
        messageSignature: encrypted.messageSignature
      }, encrypted.body).pipe(Effect.provideServiceEffect(CoreCrypto.Crypto, CoreCrypto.makeNoble()))
      expect(hex(opened.origin)).toBe(hex(sender.publicKey))
      expect(hex(opened.plaintext)).toBe("010203")
    }))
})
