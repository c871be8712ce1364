/**
 * Writes `crypto.json`, the test vectors of SPEC §4 that every `Crypto` backend must reproduce bit for bit.
 *
 *   npx vite-node packages/core/test/vectors/generate.ts          (from the repository root)
 *
 * It runs on core's sources (vite-node compiles them on the fly) with `Crypto.makeNoble`, fixed seeds, a fixed
 * ephemeral secret and fixed nonces. The file is committed: regenerate it only when a construction of SPEC §4
 * changes (and then bump DOMAIN_VERSION), never to make a failing backend pass. Sanity checks against published
 * values (RFC 8032 public keys, RFC 7748 X25519 public key, BLAKE2b-512("abc")) guard the inputs.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Crypto from "../../src/Crypto.js"
import * as Drbg from "../../src/Drbg.js"
import * as Envelope from "../../src/Envelope.js"
import * as MessageCrypto from "../../src/MessageCrypto.js"
import * as NodeId from "../../src/NodeId.js"

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")
const unhex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, "hex"))
const ascii = (s: string): string => Buffer.from(s, "utf8").toString("hex")

const fixed = {
  // RFC 8032 §7.1 tests 1 and 2
  senderSeed: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
  rfc8032PublicKey1: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
  rfc8032Signature1: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155" +
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
  recipientSeed: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
  rfc8032PublicKey2: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
  // RFC 7748 §6.1 Alice
  ephemeralSecret: "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
  rfc7748PublicKey: "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
  blake2bAbc: "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1" +
    "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923",
  bodyNonce: "000102030405060708090a0b0c0d0e0f1011121314151617",
  signatureNonce: "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7",
  expires: 1_735_700_400n,
  messageTag: 0x0123_4567_89ab_cdefn,
  envelopeBody: () =>
    new Envelope.EnvelopeBody({
      parts: [
        Envelope.encodeMessageHeader(new Envelope.MessageHeader({ messageType: 7, nonce: 42n })),
        unhex(ascii("hello comms-dht"))
      ]
    }),
  cleartextPart: ascii("a join message"),
  claim: { addresses: ["tcp://127.0.0.1:18141", "mem://7"], features: 3, updatedAt: 1_735_689_600n },
  simIdentities: [[1, 0], [1, 1], [1, 2], [7, 999]] as ReadonlyArray<readonly [number, number]>,
  // every label of SPEC §4.1 at its length; two more cases exercise outLen in the tag and a large field
  dshCases: [
    ...(["challenge", "key_message", "key_signature", "dedup", "identity_signature", "noise_static", "verify_memo",
      "sim_identity", "sim_drbg"] as const).map((label) => ({
        label,
        outLen: 32,
        fields: ["010203", "", "ab".repeat(32)]
      })),
    { label: "dedup" as const, outLen: 64, fields: ["010203"] },
    { label: "challenge" as const, outLen: 32, fields: ["00".repeat(1500), "ff", "5a".repeat(3000)] }
  ]
}

const program = Effect.gen(function*() {
  const crypto = yield* Crypto.Crypto
  const identity = (seedHex: string) => {
    const secretKey = NodeId.SecretKey.make(unhex(seedHex))
    const publicKey = crypto.publicKeyOf(secretKey)
    return { secretKey, publicKey }
  }
  const sender = identity(fixed.senderSeed)
  const recipient = identity(fixed.recipientSeed)
  const check = (what: string, actual: string, expected: string) => {
    if (actual !== expected) throw new Error(`${what}: ${actual} != ${expected}`)
  }
  check("RFC 8032 test 1 public key", hex(sender.publicKey), fixed.rfc8032PublicKey1)
  check("RFC 8032 test 2 public key", hex(recipient.publicKey), fixed.rfc8032PublicKey2)
  check("RFC 8032 test 1 signature", hex(crypto.sign(sender.secretKey, new Uint8Array(0))), fixed.rfc8032Signature1)
  check("BLAKE2b-512(abc)", hex(crypto.blake2b512(new TextEncoder().encode("abc"))), fixed.blake2bAbc)

  const describeIdentity = (id: { secretKey: Uint8Array; publicKey: NodeId.PublicKey }) => ({
    seed: hex(id.secretKey),
    publicKey: hex(id.publicKey),
    nodeId: hex(NodeId.fromPublicKey(id.publicKey))
  })

  const dsh = fixed.dshCases.map((c) => ({
    label: c.label,
    outLen: c.outLen,
    fields: c.fields,
    output: hex(crypto.dsh(c.label, c.outLen, c.fields.map(unhex)))
  }))

  // --- an encrypted application message from sender to recipient ---
  const ephemeralSecret = unhex(fixed.ephemeralSecret)
  const ephemeral = { secret: ephemeralSecret, publicKey: crypto.x25519PublicKey(ephemeralSecret) }
  check("RFC 7748 public key", hex(ephemeral.publicKey), fixed.rfc7748PublicKey)
  const plaintext = Envelope.encodeEnvelopeBody(fixed.envelopeBody())
  const fields: MessageCrypto.EncryptFields = {
    version: 1,
    destination: Envelope.destinationPublicKey(recipient.publicKey),
    messageType: Envelope.DhtMessageType.None,
    flags: Envelope.DhtMessageFlags.NONE,
    expires: fixed.expires
  }
  const sharedSecret = yield* crypto.sharedSecretToRecipient(ephemeralSecret, recipient.publicKey)
  const sharedSecretRecipient = yield* crypto.sharedSecretFromEphemeral(recipient.secretKey, ephemeral.publicKey)
  check("both sides' shared secret", hex(sharedSecretRecipient), hex(sharedSecret))
  const keys = yield* MessageCrypto.deriveKeys(sharedSecret, ephemeral.publicKey, recipient.publicKey)
  const padded = yield* MessageCrypto.pad(plaintext)
  const encrypted = yield* MessageCrypto.encryptWith(sender, recipient.publicKey, fields, plaintext, {
    ephemeral,
    bodyNonce: unhex(fixed.bodyNonce),
    signatureNonce: unhex(fixed.signatureNonce)
  })
  const signedFields = { ...fields, flags: encrypted.flags, ephemeralPublicKey: Option.some(ephemeral.publicKey) }
  const challenge = yield* MessageCrypto.challenge(signedFields, encrypted.body)
  const messageSignature = yield* MessageCrypto.sign(sender, signedFields, encrypted.body)
  const header = new Envelope.DhtMessageHeader({
    ...signedFields,
    messageType: Envelope.DhtMessageType.None,
    messageSignature: encrypted.messageSignature,
    messageTag: fixed.messageTag,
    hopCount: 0
  })
  const envelope = Envelope.encodeEnvelope(new Envelope.DhtEnvelope({ header, body: encrypted.body }))

  // --- a signed cleartext message with an undisclosed destination ---
  const clearBody = Envelope.encodeEnvelopeBody(new Envelope.EnvelopeBody({ parts: [unhex(fixed.cleartextPart)] }))
  const clearFields: MessageCrypto.SignedFields = {
    version: 1,
    destination: Envelope.destinationUnknown(),
    messageType: Envelope.DhtMessageType.Join,
    flags: Envelope.DhtMessageFlags.NONE,
    expires: fixed.expires,
    ephemeralPublicKey: Option.none()
  }
  const clearSignature = yield* MessageCrypto.sign(sender, clearFields, clearBody)
  const clearEnvelope = Envelope.encodeEnvelope(
    new Envelope.DhtEnvelope({
      header: new Envelope.DhtMessageHeader({
        ...clearFields,
        messageType: Envelope.DhtMessageType.Join,
        messageSignature: clearSignature,
        messageTag: 0n,
        hopCount: 3
      }),
      body: clearBody
    })
  )

  // --- an identity claim ---
  const claim = fixed.claim
  const claimSignature = yield* MessageCrypto.signClaim(sender, claim)

  const drbg = yield* Drbg.make(1)
  const drbgBytes = yield* drbg.bytes(256)

  return {
    description: "SPEC.md §4 test vectors (generated by generate.ts from Crypto.makeNoble; all byte strings hex)",
    blake2b512: { input: hex(new TextEncoder().encode("abc")), output: hex(crypto.blake2b512(unhex("616263"))) },
    sender: describeIdentity(sender),
    recipient: describeIdentity(recipient),
    dsh,
    encrypted: {
      header: {
        version: 1,
        destination: hex(recipient.publicKey),
        messageType: fields.messageType,
        flags: encrypted.flags,
        expires: fixed.expires.toString(),
        messageTag: fixed.messageTag.toString()
      },
      plaintext: hex(plaintext),
      ephemeralSecret: fixed.ephemeralSecret,
      ephemeralPublicKey: hex(ephemeral.publicKey),
      sharedSecret: hex(sharedSecret),
      kBody: hex(keys.kBody),
      kSig: hex(keys.kSig),
      paddedPlaintext: hex(padded),
      bodyNonce: fixed.bodyNonce,
      bodyCiphertext: hex(encrypted.body),
      challenge: hex(challenge),
      signature: hex(crypto.sign(sender.secretKey, challenge)),
      messageSignature: hex(messageSignature),
      signatureNonce: fixed.signatureNonce,
      signatureCiphertext: hex(encrypted.messageSignature),
      envelope: hex(envelope)
    },
    cleartext: {
      header: {
        version: 1,
        destination: "unknown",
        messageType: clearFields.messageType,
        flags: clearFields.flags,
        expires: fixed.expires.toString(),
        messageTag: "0",
        hopCount: 3
      },
      body: hex(clearBody),
      challenge: hex(yield* MessageCrypto.challenge(clearFields, clearBody)),
      messageSignature: hex(clearSignature),
      envelope: hex(clearEnvelope)
    },
    claim: {
      publicKey: hex(sender.publicKey),
      version: claimSignature.version,
      updatedAt: claim.updatedAt.toString(),
      features: claim.features,
      addresses: claim.addresses,
      challenge: hex(yield* MessageCrypto.claimChallenge(sender.publicKey, 0, claim)),
      signature: hex(claimSignature.signature)
    },
    drbg: { seed: 1, key: hex(Drbg.keyFor(1)), first256: hex(drbgBytes) },
    simIdentities: fixed.simIdentities.map(([seed, index]) => {
      const secretKey = Drbg.simIdentitySeed(seed, index)
      return { seed, index, secretKey: hex(secretKey), publicKey: hex(crypto.publicKeyOf(secretKey)) }
    })
  }
})

const vectors = await Effect.runPromise(program.pipe(Effect.provide(Crypto.layerNoble())))
const out = path.join(import.meta.dirname, "crypto.json")
fs.writeFileSync(out, JSON.stringify(vectors, null, 2) + "\n")
process.stdout.write(`wrote ${out}\n`)
