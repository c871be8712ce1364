/**
 * The test suite every `Crypto` backend must pass (SPEC §4, §20 scenarios 3–7 and 37): `crypto.json` bit for bit,
 * libsodium's answers on `ed25519-speccheck.json`, the key check, and the round-trip, tampering and signature
 * properties of `MessageCrypto`. Core runs it on the noble layers, `@comms-dht/node` on its `node:crypto` ones.
 *
 * It imports core by package name so that both packages' tests resolve the same modules.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import type { CryptoService, LayerOptions } from "@comms-dht/core/Crypto"
import { Crypto } from "@comms-dht/core/Crypto"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Ed25519 from "@comms-dht/core/Ed25519"
import * as Drbg from "@comms-dht/core/Drbg"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as NodeId from "@comms-dht/core/NodeId"
import { IdentitySignature } from "@comms-dht/core/Peer"
import { Effect, Either, FastCheck as fc, Layer, Metric, Option } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))

/** The committed vectors of SPEC §4. */
export const vectorsPath = path.join(here, "vectors", "crypto.json")
/** Read from the shared folder beside the repository, never copied (SPEC §4). */
export const speccheckPath = path.resolve(here, "../../..", "../shared/vectors/ed25519-speccheck.json")

export const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")
export const unhex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, "hex"))

interface DshCase {
  readonly label: "challenge" | "key_message" | "key_signature" | "dedup" | "identity_signature" | "noise_static"
    | "verify_memo" | "sim_identity" | "sim_drbg"
  readonly outLen: number
  readonly fields: ReadonlyArray<string>
  readonly output: string
}

interface Vectors {
  readonly blake2b512: { readonly input: string; readonly output: string }
  readonly sender: { readonly seed: string; readonly publicKey: string; readonly nodeId: string }
  readonly recipient: { readonly seed: string; readonly publicKey: string; readonly nodeId: string }
  readonly dsh: ReadonlyArray<DshCase>
  readonly encrypted: {
    readonly header: {
      readonly version: number
      readonly destination: string
      readonly messageType: number
      readonly flags: number
      readonly expires: string
      readonly messageTag: string
    }
    readonly plaintext: string
    readonly ephemeralSecret: string
    readonly ephemeralPublicKey: string
    readonly sharedSecret: string
    readonly kBody: string
    readonly kSig: string
    readonly paddedPlaintext: string
    readonly bodyNonce: string
    readonly bodyCiphertext: string
    readonly challenge: string
    readonly signature: string
    readonly messageSignature: string
    readonly signatureNonce: string
    readonly signatureCiphertext: string
    readonly envelope: string
  }
  readonly cleartext: {
    readonly header: { readonly messageType: number; readonly expires: string; readonly hopCount: number }
    readonly body: string
    readonly challenge: string
    readonly messageSignature: string
    readonly envelope: string
  }
  readonly claim: {
    readonly publicKey: string
    readonly version: number
    readonly updatedAt: string
    readonly features: number
    readonly addresses: ReadonlyArray<string>
    readonly challenge: string
    readonly signature: string
  }
  readonly drbg: { readonly seed: number; readonly key: string; readonly first256: string }
  readonly simIdentities: ReadonlyArray<{
    readonly seed: number
    readonly index: number
    readonly secretKey: string
    readonly publicKey: string
  }>
}

interface SpeccheckCase {
  readonly index: number
  readonly message: string
  readonly pub_key: string
  readonly signature: string
  readonly expected: boolean
}

const vectors: Vectors = JSON.parse(fs.readFileSync(vectorsPath, "utf8"))

const identityOf = (crypto: CryptoService, seedHex: string): MessageCrypto.Signer => {
  const secretKey = NodeId.SecretKey.make(unhex(seedHex))
  return { secretKey, publicKey: crypto.publicKeyOf(secretKey) }
}

/** Two fixed identities: `crypto.json`'s sender and recipient. */
const parties = (crypto: CryptoService) => ({
  sender: identityOf(crypto, vectors.sender.seed),
  recipient: identityOf(crypto, vectors.recipient.seed)
})

const failureTag = <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.either(effect), Either.match({ onLeft: (e) => e._tag, onRight: () => "success" }))

const verifyCount = (result: "memo" | "valid" | "invalid") =>
  Effect.map(Metric.value(Metric.tagged(DhtMetrics.cryptoVerify, "result", result)), (state) => state.count)

/** Deterministic filler, so that large bodies do not cost fast-check element-by-element generation. */
const filled = (length: number, seed: number): Uint8Array => {
  const out = new Uint8Array(length)
  let x = (seed | 0) || 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

const flipBit = (bytes: Uint8Array, bit: number): Uint8Array => {
  const out = Uint8Array.from(bytes)
  const i = Math.floor(bit / 8) % out.length
  out[i] = out[i]! ^ (1 << (bit % 8))
  return out
}

const encryptedFields = (recipient: NodeId.PublicKey): MessageCrypto.EncryptFields => ({
  version: 1,
  destination: Envelope.destinationPublicKey(recipient),
  messageType: Envelope.DhtMessageType.None,
  flags: Envelope.DhtMessageFlags.NONE,
  expires: 1_735_700_400n
})

const receivedHeader = (
  fields: MessageCrypto.EncryptFields,
  encrypted: MessageCrypto.Encrypted
): MessageCrypto.ReceivedHeader => ({
  ...fields,
  flags: encrypted.flags,
  ephemeralPublicKey: Option.some(encrypted.ephemeralPublicKey),
  messageSignature: encrypted.messageSignature
})

/** Encodings libsodium rejects as keys (SPEC §4.3): small order, non-canonical, off the curve, wrong length. */
export const rejectedKeys: ReadonlyArray<readonly [string, string]> = [
  ["identity (order 1)", "0100000000000000000000000000000000000000000000000000000000000000"],
  ["zero (order 4)", "0000000000000000000000000000000000000000000000000000000000000000"],
  ["order 8", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"],
  ["order 8, other", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"],
  ["order 2 (p - 1)", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"],
  ["y = p", "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"],
  ["y = p + 1", "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"],
  ["identity with the sign bit", "0100000000000000000000000000000000000000000000000000000000000080"],
  ["order 8 with the sign bit", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"],
  ["order 8, other, sign bit cleared", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"],
  ["y = p + 3 (non-canonical)", "f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"],
  ["y = 2^255 - 1 (non-canonical)", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"],
  ["not on the curve", "0200000000000000000000000000000000000000000000000000000000000000"],
  ["31 bytes", "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f70751"],
  ["33 bytes", "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a00"]
]

/**
 * Registers the whole suite for one backend. `make` builds a CSPRNG service, `makeSeeded` the DRBG one; each test
 * block builds its own service, so memo and randomness are never shared between blocks.
 */
export const cryptoSuite = (backend: {
  readonly name: string
  readonly make: (options?: LayerOptions) => Effect.Effect<CryptoService>
  readonly makeSeeded: (seed: Drbg.Seed, options?: LayerOptions) => Effect.Effect<CryptoService>
}) => {
  const live = Layer.effect(Crypto, backend.make())

  describe(`${backend.name}: identity`, () => {
    it.effect("is this backend, with CSPRNG randomness", () =>
      Effect.gen(function*() {
        const crypto = yield* backend.make()
        expect(crypto.backend).toBe(backend.name)
        expect(crypto.deterministic).toBe(false)
        expect(hex(yield* crypto.randomBytes(32))).not.toBe(hex(yield* crypto.randomBytes(32)))
        const seeded = yield* backend.makeSeeded(1)
        expect(seeded.deterministic).toBe(true)
      }))
  })

  layer(live)(`${backend.name}: crypto.json`, (it) => {
    it.effect("BLAKE2b-512, public keys and NodeIds", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        expect(hex(crypto.blake2b512(unhex(vectors.blake2b512.input)))).toBe(vectors.blake2b512.output)
        for (const party of [vectors.sender, vectors.recipient]) {
          const publicKey = crypto.publicKeyOf(NodeId.SecretKey.make(unhex(party.seed)))
          expect(hex(publicKey)).toBe(party.publicKey)
          expect(crypto.checkPublicKey(publicKey)).toBe(true)
          // the NodeId is BLAKE2b-512 without a tag (SPEC §2.2), whichever backend computes it
          expect(hex(crypto.blake2b512(publicKey).subarray(0, 13))).toBe(party.nodeId)
          expect(hex(NodeId.fromPublicKey(publicKey))).toBe(party.nodeId)
        }
      }))

    it.effect("every DSH label", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        const labels = new Set(vectors.dsh.map((c) => c.label))
        expect(labels.size).toBe(9)
        for (const c of vectors.dsh) {
          expect(hex(crypto.dsh(c.label, c.outLen, c.fields.map(unhex))), `${c.label}/${c.outLen}`).toBe(c.output)
        }
      }))

    it.effect("shared secret, both keys, padding, both ciphertexts, challenge and signature", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        const v = vectors.encrypted
        const { recipient, sender } = parties(crypto)
        const e = unhex(v.ephemeralSecret)
        const ephemeral = { secret: e, publicKey: crypto.x25519PublicKey(e) }
        expect(hex(ephemeral.publicKey)).toBe(v.ephemeralPublicKey)
        const ss = yield* crypto.sharedSecretToRecipient(e, recipient.publicKey)
        expect(hex(ss)).toBe(v.sharedSecret)
        expect(hex(yield* crypto.sharedSecretFromEphemeral(recipient.secretKey, ephemeral.publicKey))).toBe(
          v.sharedSecret
        )
        const keys = yield* MessageCrypto.deriveKeys(ss, ephemeral.publicKey, recipient.publicKey)
        expect(hex(keys.kBody)).toBe(v.kBody)
        expect(hex(keys.kSig)).toBe(v.kSig)
        const padded = yield* MessageCrypto.pad(unhex(v.plaintext))
        expect(hex(padded)).toBe(v.paddedPlaintext)
        expect(hex(crypto.sealWithNonce(keys.kBody, unhex(v.bodyNonce), padded))).toBe(v.bodyCiphertext)

        const fields = encryptedFields(recipient.publicKey)
        const encrypted = yield* MessageCrypto.encryptWith(sender, recipient.publicKey, fields, unhex(v.plaintext), {
          ephemeral,
          bodyNonce: unhex(v.bodyNonce),
          signatureNonce: unhex(v.signatureNonce)
        })
        expect(encrypted.flags).toBe(v.header.flags)
        expect(hex(encrypted.body)).toBe(v.bodyCiphertext)
        expect(hex(encrypted.messageSignature)).toBe(v.signatureCiphertext)
        const header = receivedHeader(fields, encrypted)
        expect(hex(yield* MessageCrypto.challenge(header, encrypted.body))).toBe(v.challenge)
        expect(hex(crypto.sign(sender.secretKey, unhex(v.challenge)))).toBe(v.signature)
        expect(hex(yield* MessageCrypto.sign(sender, header, encrypted.body))).toBe(v.messageSignature)
        expect(hex(yield* crypto.open(keys.kSig, encrypted.messageSignature))).toBe(v.messageSignature)

        const envelope = Envelope.encodeEnvelope(
          new Envelope.DhtEnvelope({
            header: new Envelope.DhtMessageHeader({
              ...header,
              messageType: Envelope.DhtMessageType.None,
              messageTag: BigInt(v.header.messageTag),
              hopCount: 0
            }),
            body: encrypted.body
          })
        )
        expect(hex(envelope)).toBe(v.envelope)
      }))

    it.effect("the vector envelope decrypts to its plaintext, authenticated as the sender", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        const { recipient, sender } = parties(crypto)
        const envelope = yield* Envelope.decodeEnvelope(unhex(vectors.encrypted.envelope))
        const opened = yield* MessageCrypto.decrypt(recipient, envelope.header, envelope.body)
        expect(hex(opened.origin)).toBe(hex(sender.publicKey))
        expect(hex(Envelope.encodeEnvelopeBody(opened.body))).toBe(vectors.encrypted.plaintext)
      }))

    it.effect("cleartext signature and envelope", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        const { sender } = parties(crypto)
        const c = vectors.cleartext
        const fields: MessageCrypto.SignedFields = {
          version: 1,
          destination: Envelope.destinationUnknown(),
          messageType: c.header.messageType,
          flags: 0,
          expires: BigInt(c.header.expires),
          ephemeralPublicKey: Option.none()
        }
        const body = unhex(c.body)
        expect(hex(yield* MessageCrypto.challenge(fields, body))).toBe(c.challenge)
        const signature = yield* MessageCrypto.sign(sender, fields, body)
        expect(hex(signature)).toBe(c.messageSignature)
        const envelope = yield* Envelope.decodeEnvelope(unhex(c.envelope))
        expect(envelope.header.hopCount).toBe(c.header.hopCount)
        const origin = yield* MessageCrypto.verify(envelope.header, envelope.body, envelope.header.messageSignature)
        expect(hex(origin)).toBe(hex(sender.publicKey))
      }))

    it.effect("claim challenge and signature", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        const { sender } = parties(crypto)
        const c = vectors.claim
        const claim = { addresses: c.addresses, features: c.features, updatedAt: BigInt(c.updatedAt) }
        expect(hex(yield* MessageCrypto.claimChallenge(sender.publicKey, c.version, claim))).toBe(c.challenge)
        const signed = yield* MessageCrypto.signClaim(sender, claim)
        expect(signed.version).toBe(c.version)
        expect(hex(signed.signature)).toBe(c.signature)
        expect(yield* MessageCrypto.verifyClaim(sender.publicKey, { ...claim, identitySignature: signed })).toBe(true)
      }))

    it.effect("simulation identities", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        for (const s of vectors.simIdentities) {
          const secretKey = Drbg.simIdentitySeed(s.seed, s.index)
          expect(hex(secretKey)).toBe(s.secretKey)
          expect(hex(crypto.publicKeyOf(secretKey))).toBe(s.publicKey)
        }
      }))
  })

  describe(`${backend.name}: seeded randomness`, () => {
    it.effect("is the DRBG of S: its first 256 bytes, however they are drawn", () =>
      Effect.gen(function*() {
        expect(hex(Drbg.keyFor(vectors.drbg.seed))).toBe(vectors.drbg.key)
        const whole = yield* backend.makeSeeded(vectors.drbg.seed)
        expect(hex(yield* whole.randomBytes(256))).toBe(vectors.drbg.first256)
        const pieces = yield* backend.makeSeeded(vectors.drbg.seed)
        const drawn: Array<Uint8Array> = []
        for (const n of [1, 31, 0, 24, 100, 100]) drawn.push(yield* pieces.randomBytes(n))
        expect(drawn.map(hex).join("")).toBe(vectors.drbg.first256)
      }))

    it.effect("two layers of one seed encrypt identically; another seed differs", () =>
      Effect.gen(function*() {
        const run = (seed: number) =>
          Effect.gen(function*() {
            const crypto = yield* Crypto
            const { recipient, sender } = parties(crypto)
            const plaintext = filled(100, 7)
            const fields = encryptedFields(recipient.publicKey)
            const a = yield* MessageCrypto.encrypt(sender, recipient.publicKey, fields, plaintext)
            const b = yield* MessageCrypto.encrypt(sender, recipient.publicKey, fields, plaintext)
            return [a, b].map((x) => hex(x.ephemeralPublicKey) + hex(x.body) + hex(x.messageSignature))
          }).pipe(Effect.provideServiceEffect(Crypto, backend.makeSeeded(seed)))
        const first = yield* run(42)
        expect(yield* run(42)).toEqual(first)
        expect(first[0]).not.toBe(first[1]) // fresh ephemeral keys and nonces per message
        expect((yield* run(43))[0]).not.toBe(first[0])
      }))
  })

  layer(live)(`${backend.name}: ed25519-speccheck.json`, (it) => {
    if (!fs.existsSync(speccheckPath)) {
      it.effect.skip(`skipped: ${speccheckPath} is missing`, () => Effect.void)
      return
    }
    const cases: ReadonlyArray<SpeccheckCase> = JSON.parse(fs.readFileSync(speccheckPath, "utf8")).cases
    it.effect("answers libsodium's `expected` on all 12 cases (only case 3 verifies), twice (memo)", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        expect(cases.length).toBe(12)
        expect(cases.filter((c) => c.expected).map((c) => c.index)).toEqual([3])
        for (const round of [1, 2]) {
          for (const c of cases) {
            const ok = yield* crypto.verify(unhex(c.pub_key), unhex(c.signature), unhex(c.message))
            expect(ok, `case ${c.index}, round ${round}`).toBe(c.expected)
          }
        }
      }))
  })

  layer(live)(`${backend.name}: key check`, (it) => {
    it.effect("refuses small-order, non-canonical, off-curve and wrong-length keys", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        for (const [what, key] of rejectedKeys) expect(crypto.checkPublicKey(unhex(key)), what).toBe(false)
      }))

    it.effect("the memoised key check answers as the key check, asked once or again", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        for (const [what, key] of rejectedKeys) {
          expect(Ed25519.checkPublicKeyMemo(unhex(key)), what).toBe(false)
          expect(Ed25519.checkPublicKeyMemo(unhex(key)), what).toBe(false)
        }
        const good = crypto.publicKeyOf(yield* crypto.generateSecretKey)
        expect([Ed25519.checkPublicKeyMemo(good), Ed25519.checkPublicKeyMemo(good)]).toEqual([true, true])
        fc.assert(
          fc.property(fc.uint8Array({ minLength: 0, maxLength: 40 }), (bytes) => {
            const expected = Ed25519.checkPublicKey(bytes)
            expect(Ed25519.checkPublicKeyMemo(bytes)).toBe(expected)
            expect(Ed25519.checkPublicKeyMemo(bytes)).toBe(expected)
          }),
          { numRuns: 1000 }
        )
      }))

    it.effect("accepts generated keys", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        for (let i = 0; i < 50; i++) {
          expect(crypto.checkPublicKey(crypto.publicKeyOf(yield* crypto.generateSecretKey))).toBe(true)
        }
      }))

    it.effect("a signer or claim key failing the key check never verifies", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        const { sender } = parties(crypto)
        const fields: MessageCrypto.SignedFields = {
          ...encryptedFields(sender.publicKey),
          ephemeralPublicKey: Option.none()
        }
        const body = filled(10, 1)
        const genuine = Envelope.decodeMessageSignature(yield* MessageCrypto.sign(sender, fields, body))
        const signature = (yield* genuine).signature
        for (const [what, key] of rejectedKeys.filter(([, k]) => k.length === 64)) {
          const forged = Envelope.encodeMessageSignature(
            new Envelope.MessageSignature({ signerPublicKey: NodeId.PublicKey.make(unhex(key)), signature })
          )
          expect(yield* failureTag(MessageCrypto.verify(fields, body, forged)), what).toBe("InvalidSignature")
          const claim = { addresses: ["mem://1"], features: 3, updatedAt: 1n }
          const identitySignature = new IdentitySignature({ version: 0, signature, updatedAt: 1n })
          expect(yield* MessageCrypto.verifyClaim(unhex(key), { ...claim, identitySignature }), what).toBe(false)
        }
      }))
  })

  layer(live)(`${backend.name}: key exchange and AEAD failures`, (it) => {
    it.effect("a low-order ephemeral key is DecryptionFailed, not a defect", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        const { recipient } = parties(crypto)
        const lowOrder = [
          "0000000000000000000000000000000000000000000000000000000000000000",
          "0100000000000000000000000000000000000000000000000000000000000000",
          "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
          "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"
        ]
        for (const u of lowOrder) {
          expect(yield* failureTag(crypto.sharedSecretFromEphemeral(recipient.secretKey, unhex(u))), u).toBe(
            "DecryptionFailed"
          )
        }
        expect(yield* failureTag(crypto.sharedSecretFromEphemeral(recipient.secretKey, new Uint8Array(31)))).toBe(
          "DecryptionFailed"
        )
      }))

    it.effect("opening fails on short input, a wrong key or a flipped bit", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        const key = filled(32, 3)
        const sealed = yield* crypto.seal(key, filled(50, 4))
        expect(sealed.length).toBe(24 + 50 + 16)
        expect(hex(yield* crypto.open(key, sealed))).toBe(hex(filled(50, 4)))
        expect(yield* failureTag(crypto.open(key, sealed.subarray(0, 39)))).toBe("DecryptionFailed")
        expect(yield* failureTag(crypto.open(filled(32, 5), sealed))).toBe("DecryptionFailed")
        expect(yield* failureTag(crypto.open(key, flipBit(sealed, 8 * 30)))).toBe("DecryptionFailed")
        const empty = yield* crypto.seal(key, new Uint8Array(0))
        expect((yield* crypto.open(key, empty)).length).toBe(0)
      }))
  })

  layer(live)(`${backend.name}: encrypt → decrypt`, (it) => {
    const roundTrip = (length: number, seed: number) =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        const { recipient, sender } = parties(crypto)
        const plaintext = filled(length, seed)
        const fields = encryptedFields(recipient.publicKey)
        const encrypted = yield* MessageCrypto.encrypt(sender, recipient.publicKey, fields, plaintext)
        expect(encrypted.body.length).toBe(24 + MessageCrypto.paddedLength(length) + 16)
        expect((encrypted.body.length - 40) % MessageCrypto.MESSAGE_BASE_LENGTH).toBe(0)
        const opened = yield* MessageCrypto.decryptBytes(recipient, receivedHeader(fields, encrypted), encrypted.body)
        expect(hex(opened.origin)).toBe(hex(sender.publicKey))
        expect(opened.plaintext.length).toBe(length)
        expect(hex(opened.plaintext) === hex(plaintext)).toBe(true)
      })

    for (const length of [0, 1, 5995, 5996, 6000, 12_000]) {
      it.effect(`round-trips a body of ${length} bytes`, () => roundTrip(length, length + 1))
    }

    const length = fc.oneof(
      { arbitrary: fc.integer({ min: 0, max: 13_000 }), weight: 80 },
      { arbitrary: fc.integer({ min: 0, max: 1 << 20 }), weight: 1 }
    )
    it.effect.prop("round-trips random bodies up to 1 MiB", [length, fc.integer()], ([n, seed]) => roundTrip(n, seed), {
      fastCheck: { numRuns: 1000 }
    })

    it.effect("decrypt decodes the EnvelopeBody; an empty one is EnvelopeBodyDecodeFailed", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        const { recipient, sender } = parties(crypto)
        const fields = encryptedFields(recipient.publicKey)
        const body = new Envelope.EnvelopeBody({ parts: [filled(3, 1), filled(700, 2)] })
        const encrypted = yield* MessageCrypto.encrypt(
          sender,
          recipient.publicKey,
          fields,
          Envelope.encodeEnvelopeBody(body)
        )
        const opened = yield* MessageCrypto.decrypt(recipient, receivedHeader(fields, encrypted), encrypted.body)
        expect(opened.body.parts.map(hex)).toEqual(body.parts.map(hex))
        const empty = yield* MessageCrypto.encrypt(sender, recipient.publicKey, fields, new Uint8Array(0))
        expect(yield* failureTag(MessageCrypto.decrypt(recipient, receivedHeader(fields, empty), empty.body))).toBe(
          "EnvelopeBodyDecodeFailed"
        )
      }))

    it.effect("only the recipient can decrypt", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        const { recipient, sender } = parties(crypto)
        const fields = encryptedFields(recipient.publicKey)
        const encrypted = yield* MessageCrypto.encrypt(sender, recipient.publicKey, fields, filled(64, 9))
        const header = receivedHeader(fields, encrypted)
        // the sender itself holds neither the ephemeral secret's partner nor the recipient's key
        expect(yield* failureTag(MessageCrypto.decryptBytes(sender, header, encrypted.body))).toBe("DecryptionFailed")
        const noKey = { ...header, ephemeralPublicKey: Option.none() }
        expect(yield* failureTag(MessageCrypto.decryptBytes(recipient, noKey, encrypted.body))).toBe(
          "DecryptionFailed"
        )
      }))
  })

  layer(live)(`${backend.name}: tampering`, (it) => {
    type Part =
      | "bodyNonce"
      | "bodyCiphertext"
      | "bodyTag"
      | "ephemeralPublicKey"
      | "signatureNonce"
      | "signatureCiphertext"
      | "signatureTag"
      | "innerSignature"
      | "signedHeaderField"
    const parts: ReadonlyArray<Part> = [
      "bodyNonce",
      "bodyCiphertext",
      "bodyTag",
      "ephemeralPublicKey",
      "signatureNonce",
      "signatureCiphertext",
      "signatureTag",
      "innerSignature",
      "signedHeaderField"
    ]
    // the body is signed (sign-after-encrypt), so any change to it is caught by the signature before opening
    const expected: Record<Part, string> = {
      bodyNonce: "InvalidEncryptedSignature",
      bodyCiphertext: "InvalidEncryptedSignature",
      bodyTag: "InvalidEncryptedSignature",
      ephemeralPublicKey: "DecryptionFailed",
      signatureNonce: "DecryptionFailed",
      signatureCiphertext: "DecryptionFailed",
      signatureTag: "DecryptionFailed",
      innerSignature: "InvalidEncryptedSignature",
      signedHeaderField: "InvalidEncryptedSignature"
    }
    /** flips `bit` inside bytes [from, to) of `bytes` */
    const flipIn = (bytes: Uint8Array, from: number, to: number, bit: number) =>
      flipBit(bytes, 8 * from + (bit % (8 * (to - from))))

    it.effect.prop(
      "any single bit flip is rejected with the right error",
      [fc.constantFrom(...parts), fc.nat()],
      ([part, bit]) =>
        Effect.gen(function*() {
          const crypto = yield* Crypto
          const { recipient, sender } = parties(crypto)
          const fields = encryptedFields(recipient.publicKey)
          const encrypted = yield* MessageCrypto.encrypt(sender, recipient.publicKey, fields, filled(100, bit))
          let header = receivedHeader(fields, encrypted)
          let body = encrypted.body
          const sig = header.messageSignature
          switch (part) {
            case "bodyNonce":
              body = flipIn(body, 0, 24, bit)
              break
            case "bodyCiphertext":
              body = flipIn(body, 24, body.length - 16, bit)
              break
            case "bodyTag":
              body = flipIn(body, body.length - 16, body.length, bit)
              break
            case "ephemeralPublicKey":
              header = { ...header, ephemeralPublicKey: Option.some(flipBit(encrypted.ephemeralPublicKey, bit % 256)) }
              break
            case "signatureNonce":
              header = { ...header, messageSignature: flipIn(sig, 0, 24, bit) }
              break
            case "signatureCiphertext":
              header = { ...header, messageSignature: flipIn(sig, 24, sig.length - 16, bit) }
              break
            case "signatureTag":
              header = { ...header, messageSignature: flipIn(sig, sig.length - 16, sig.length, bit) }
              break
            case "innerSignature": {
              // re-sealed under the right key: the AEAD passes and the signature itself must fail
              const ss = yield* crypto.sharedSecretFromEphemeral(recipient.secretKey, encrypted.ephemeralPublicKey)
              const keys = yield* MessageCrypto.deriveKeys(ss, encrypted.ephemeralPublicKey, recipient.publicKey)
              // the protobuf framing is not what is authenticated (bufbuild reads a field whatever its wire type),
              // the key and signature inside it are
              const inner = yield* Envelope.decodeMessageSignature(yield* crypto.open(keys.kSig, sig))
              const both = flipBit(new Uint8Array([...inner.signerPublicKey, ...inner.signature]), bit % 768)
              const tampered = Envelope.encodeMessageSignature(
                new Envelope.MessageSignature({
                  signerPublicKey: NodeId.PublicKey.make(both.subarray(0, 32)),
                  signature: both.subarray(32)
                })
              )
              header = { ...header, messageSignature: crypto.sealWithNonce(keys.kSig, sig.subarray(0, 24), tampered) }
              break
            }
            case "signedHeaderField": {
              const which = bit % 4
              header = which === 0
                ? { ...header, version: (header.version ^ (1 << (bit % 32))) >>> 0 }
                : which === 1
                ? { ...header, flags: (header.flags ^ (1 << (bit % 32))) >>> 0 }
                : which === 2
                ? { ...header, expires: header.expires ^ (1n << BigInt(bit % 64)) }
                : { ...header, messageType: header.messageType ^ (1 << (bit % 32)) }
              break
            }
          }
          expect(yield* failureTag(MessageCrypto.decryptBytes(recipient, header, body)), part).toBe(expected[part])
        }),
      { fastCheck: { numRuns: 1000 } }
    )
  })

  layer(live)(`${backend.name}: signatures`, (it) => {
    type Field =
      | "version"
      | "destination"
      | "destinationKind"
      | "messageType"
      | "flags"
      | "expires"
      | "ephemeralPublicKey"
      | "body"
      | "signature"
      | "signer"
    const fieldNames: ReadonlyArray<Field> = [
      "version",
      "destination",
      "destinationKind",
      "messageType",
      "flags",
      "expires",
      "ephemeralPublicKey",
      "body",
      "signature",
      "signer"
    ]

    it.effect.prop(
      "a signature fails after flipping any bit of any signed field, the body or the signature",
      [fc.constantFrom(...fieldNames), fc.nat(), fc.integer({ min: 1, max: 300 })],
      ([field, bit, length]) =>
        Effect.gen(function*() {
          const crypto = yield* Crypto
          const { recipient, sender } = parties(crypto)
          const fields: MessageCrypto.SignedFields = {
            ...encryptedFields(recipient.publicKey),
            flags: Envelope.DhtMessageFlags.ENCRYPTED,
            ephemeralPublicKey: Option.some(filled(32, length))
          }
          const body = filled(length, bit)
          const signed = yield* MessageCrypto.sign(sender, fields, body)
          expect(hex(yield* MessageCrypto.verify(fields, body, signed))).toBe(hex(sender.publicKey))
          const { signature, signerPublicKey } = yield* Envelope.decodeMessageSignature(signed)
          const resigned = (sig: Uint8Array, key: Uint8Array) =>
            Envelope.encodeMessageSignature(
              new Envelope.MessageSignature({ signerPublicKey: NodeId.PublicKey.make(key), signature: sig })
            )
          let f = fields
          let b = body
          let s = signed
          switch (field) {
            case "version":
              f = { ...f, version: (f.version ^ (1 << (bit % 32))) >>> 0 }
              break
            case "destination":
              f = {
                ...f,
                destination: new Envelope.DestinationPublicKey({
                  publicKey: NodeId.PublicKey.make(flipBit(recipient.publicKey, bit % 256))
                }, true)
              }
              break
            case "destinationKind":
              f = { ...f, destination: Envelope.destinationUnknown() }
              break
            case "messageType":
              f = { ...f, messageType: f.messageType ^ (1 << (bit % 32)) }
              break
            case "flags":
              f = { ...f, flags: (f.flags ^ (1 << (bit % 32))) >>> 0 }
              break
            case "expires":
              f = { ...f, expires: f.expires ^ (1n << BigInt(bit % 64)) }
              break
            case "ephemeralPublicKey":
              f = {
                ...f,
                ephemeralPublicKey: Option.map(f.ephemeralPublicKey, (e) => flipBit(e, bit % 256))
              }
              break
            case "body":
              b = flipBit(body, bit % (8 * body.length))
              break
            case "signature":
              s = resigned(flipBit(signature, bit % 512), signerPublicKey)
              break
            case "signer":
              s = resigned(signature, flipBit(signerPublicKey, bit % 256))
              break
          }
          expect(yield* failureTag(MessageCrypto.verify(f, b, s)), field).toBe("InvalidSignature")
        }),
      { fastCheck: { numRuns: 1000 } }
    )

    it.effect("a claim signature fails after any change to what it covers", () =>
      Effect.gen(function*() {
        const crypto = yield* Crypto
        const { recipient, sender } = parties(crypto)
        const claim = { addresses: ["tcp://10.0.0.1:18141", "mem://3"], features: 3, updatedAt: 1_735_689_600n }
        const identitySignature = yield* MessageCrypto.signClaim(sender, claim)
        const ok = (key: Uint8Array, c: typeof claim, sig: IdentitySignature = identitySignature) =>
          MessageCrypto.verifyClaim(key, { ...c, identitySignature: sig })
        expect(yield* ok(sender.publicKey, claim)).toBe(true)
        expect(yield* ok(recipient.publicKey, claim)).toBe(false)
        expect(yield* ok(sender.publicKey, { ...claim, features: 1 })).toBe(false)
        expect(yield* ok(sender.publicKey, { ...claim, addresses: ["tcp://10.0.0.1:18142", "mem://3"] })).toBe(false)
        expect(yield* ok(sender.publicKey, { ...claim, addresses: ["mem://3", "tcp://10.0.0.1:18141"] })).toBe(false)
        expect(yield* ok(sender.publicKey, { ...claim, addresses: [claim.addresses[0]!] })).toBe(false)
        const later = new IdentitySignature({ ...identitySignature, updatedAt: claim.updatedAt + 1n })
        expect(yield* ok(sender.publicKey, { ...claim, updatedAt: claim.updatedAt + 1n }, later)).toBe(false)
        const v1 = new IdentitySignature({ ...identitySignature, version: 1 })
        expect(yield* ok(sender.publicKey, claim, v1)).toBe(false)
      }))
  })

  describe(`${backend.name}: verification memo`, () => {
    it.effect("a repeated verification is a memo hit; capacity 0 verifies every time", () =>
      Effect.gen(function*() {
        const crypto = yield* backend.make()
        const { sender } = parties(crypto)
        const message = filled(32, 11)
        const signature = crypto.sign(sender.secretKey, message)
        const before = { memo: yield* verifyCount("memo"), valid: yield* verifyCount("valid") }
        expect(yield* crypto.verify(sender.publicKey, signature, message)).toBe(true)
        expect(yield* crypto.verify(sender.publicKey, signature, message)).toBe(true)
        expect(yield* crypto.verify(sender.publicKey, signature, message)).toBe(true)
        expect((yield* verifyCount("valid")) - before.valid).toBe(1)
        expect((yield* verifyCount("memo")) - before.memo).toBe(2)

        const uncached = yield* backend.make({ verifyMemoCapacity: 0 })
        const memo = yield* verifyCount("memo")
        const invalid = yield* verifyCount("invalid")
        const bad = flipBit(signature, 3)
        expect(yield* uncached.verify(sender.publicKey, bad, message)).toBe(false)
        expect(yield* uncached.verify(sender.publicKey, bad, message)).toBe(false)
        expect((yield* verifyCount("invalid")) - invalid).toBe(2)
        expect((yield* verifyCount("memo")) - memo).toBe(0)
      }))

    it.effect("a memo of capacity 2 forgets the least recently used entry", () =>
      Effect.gen(function*() {
        const crypto = yield* backend.make({ verifyMemoCapacity: 2 })
        const { sender } = parties(crypto)
        const messages = [1, 2, 3].map((i) => filled(16, i))
        const sigs = messages.map((m) => crypto.sign(sender.secretKey, m))
        const check = (i: number) => crypto.verify(sender.publicKey, sigs[i]!, messages[i]!)
        yield* check(0)
        yield* check(1)
        yield* check(0) // 0 is now the most recent
        yield* check(2) // evicts 1
        const memo = yield* verifyCount("memo")
        yield* check(0)
        yield* check(2)
        expect((yield* verifyCount("memo")) - memo).toBe(2)
        yield* check(1)
        expect((yield* verifyCount("memo")) - memo).toBe(2)
      }))
  })
}
