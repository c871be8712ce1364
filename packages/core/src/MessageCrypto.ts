/**
 * The constructions of SPEC §4 built from the `Crypto` primitives, written once for every backend: the signature
 * challenge (§4.3), key derivation (§4.4), padding and what is sealed (§4.5), the inbound verification order of
 * encrypted messages (§4.6), cleartext signatures, and identity claim signatures (§4.7).
 *
 * Everything randomised draws from the layer's randomness in a fixed order — ephemeral secret (32 bytes), body
 * nonce (24), signature nonce (24) — so every backend seeded alike produces the same envelopes.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import type { CryptoService, X25519KeyPair } from "./Crypto.js"
import { Crypto } from "./Crypto.js"
import {
  DecryptionFailed,
  EncryptionFailed,
  type EnvelopeBodyDecodeFailed,
  InvalidEncryptedSignature,
  InvalidSignature
} from "./DhtError.js"
import * as Envelope from "./Envelope.js"
import { i32le, u32le, u64le } from "./internal/bytes.js"
import * as Wire from "./internal/wire.js"
import type { PublicKey, SecretKey } from "./NodeId.js"
import { IdentitySignature } from "./Peer.js"

/**
 * Padded plaintexts are a multiple of this many bytes (Tari's `MESSAGE_BASE_LENGTH`, SPEC §4.5).
 *
 * @since 0.1.0
 * @category constants
 */
export const MESSAGE_BASE_LENGTH = 6000

/**
 * The version of `IdentitySignature` this module signs and accepts (SPEC §3.2, §4.7).
 *
 * @since 0.1.0
 * @category constants
 */
export const CLAIM_SIGNATURE_VERSION = 0

/**
 * The header fields a message signature covers (SPEC §4.3). A decoded `Envelope.DhtMessageHeader` is one.
 *
 * @since 0.1.0
 * @category models
 */
export interface SignedFields {
  /** `DhtHeader.major` (u32) */
  readonly version: number
  readonly destination: Envelope.NodeDestination
  /** `DhtMessageType` value (i32) */
  readonly messageType: number
  /** `DhtMessageFlags` (u32) */
  readonly flags: number
  /** unix seconds, `0n` for none (u64) */
  readonly expires: bigint
  /** 32-byte X25519 key, present iff encrypted */
  readonly ephemeralPublicKey: Option.Option<Uint8Array>
}

/**
 * Who signs: an identity's key pair (`NodeIdentity.Identity` is one).
 *
 * @since 0.1.0
 * @category models
 */
export interface Signer {
  readonly secretKey: SecretKey
  readonly publicKey: PublicKey
}

const ZERO_32 = new Uint8Array(32)

const destinationField = (destination: Envelope.NodeDestination): Uint8Array => {
  const out = new Uint8Array(33)
  if (destination._tag === "PublicKey") {
    out[0] = 0x01
    out.set(destination.publicKey, 1)
  }
  return out
}

/**
 * `f1..f7` of SPEC §4.3, encoded, in order: version, destination, message type, flags, expiry, ephemeral key,
 * body (exactly as sent: the ciphertext when encrypted).
 *
 * @since 0.1.0
 * @category utils
 */
export const challengeFields = (fields: SignedFields, body: Uint8Array): ReadonlyArray<Uint8Array> => [
  u32le(fields.version),
  destinationField(fields.destination),
  i32le(fields.messageType),
  u32le(fields.flags),
  u64le(fields.expires),
  Option.getOrElse(fields.ephemeralPublicKey, () => ZERO_32),
  body
]

/**
 * `challenge = DSH("challenge", 32, f1..f7)`: what a message signature signs.
 *
 * @since 0.1.0
 * @category utils
 */
export const challenge = (fields: SignedFields, body: Uint8Array): Effect.Effect<Uint8Array, never, Crypto> =>
  Effect.map(Crypto, (crypto) => challengeWith(crypto, fields, body))

/**
 * `challenge` with a crypto service already at hand, for a stage that resolved it once per frame.
 *
 * @since 0.1.0
 * @category utils
 */
export const challengeWith = (crypto: CryptoService, fields: SignedFields, body: Uint8Array): Uint8Array =>
  crypto.dsh("challenge", 32, challengeFields(fields, body))

/**
 * `dedupHashOf` with a crypto service already at hand, for a stage that resolved it once per frame.
 *
 * @since 0.1.0
 * @category utils
 */
export const dedupHashWith = (crypto: CryptoService, challenge: Uint8Array, messageSignature: Uint8Array): Uint8Array =>
  crypto.dsh("dedup", 32, [challenge, messageSignature])

/**
 * The dedup hash of SPEC §8.1: `DSH("dedup", 32, challenge, message_signature)`, over the header and body as sent or
 * received. It covers every signed field and the signature field, and neither `hop_count` nor `message_tag`: copies
 * over different paths share it, and a copy with a tampered header can never pre-empt the genuine one. The outbound
 * pipeline pre-inserts it for its own broadcasts and the inbound pipeline dedups on it, so both must use this one.
 *
 * @since 0.1.0
 * @category hashing
 */
export const dedupHash = (
  fields: SignedFields,
  body: Uint8Array,
  messageSignature: Uint8Array
): Effect.Effect<Uint8Array, never, Crypto> =>
  Effect.map(Crypto, (crypto) => dedupHashWith(crypto, challengeWith(crypto, fields, body), messageSignature))

/**
 * `dedupHash` from the message's `challenge`, for a caller that needs the challenge anyway: the inbound pipeline
 * hashes the body once for both the dedup hash and the signature check (`verify`, `decryptBytes` take it too).
 *
 * @since 0.1.0
 * @category hashing
 */
export const dedupHashOf = (
  challenge: Uint8Array,
  messageSignature: Uint8Array
): Effect.Effect<Uint8Array, never, Crypto> =>
  Effect.map(Crypto, (crypto) => dedupHashWith(crypto, challenge, messageSignature))

/**
 * Signs the challenge of `fields` and `body`; returns the encoded `MessageSignature` that goes (in clear, or sealed
 * when encrypted) into `DhtHeader.message_signature`.
 *
 * @since 0.1.0
 * @category signing
 */
export const sign = (
  signer: Signer,
  fields: SignedFields,
  body: Uint8Array
): Effect.Effect<Uint8Array, never, Crypto> => Effect.map(Crypto, (crypto) => signWith(crypto, signer, fields, body))

/**
 * `sign` with a crypto service already at hand.
 *
 * @since 0.1.0
 * @category signing
 */
export const signWith = (crypto: CryptoService, signer: Signer, fields: SignedFields, body: Uint8Array): Uint8Array =>
  Envelope.encodeMessageSignature(
    new Envelope.MessageSignature({
      signerPublicKey: signer.publicKey,
      signature: crypto.sign(signer.secretKey, crypto.dsh("challenge", 32, challengeFields(fields, body)))
    }, true)
  )

const signatureFailed = (reason: string): Either.Either<PublicKey, string> => Either.left(reason)

/** the signer on success, else why not; `known` is the challenge of `fields` and `body` if the caller has it */
const checkSignatureWith = (
  crypto: CryptoService,
  fields: SignedFields,
  body: Uint8Array,
  messageSignature: Uint8Array,
  known: Uint8Array | undefined
): Effect.Effect<Either.Either<PublicKey, string>> => {
  const decoded = Envelope.decodeMessageSignatureEither(messageSignature)
  if (Either.isLeft(decoded)) return Effect.succeed(signatureFailed(decoded.left.reason))
  const { signature, signerPublicKey } = decoded.right
  const message = known ?? crypto.dsh("challenge", 32, challengeFields(fields, body))
  // the predicate includes the key check (§4.3), so an accepted signer is a valid identity key
  return Effect.map(
    crypto.verify(signerPublicKey, signature, message),
    (ok) => ok ? Either.right(signerPublicKey) : signatureFailed("signature does not verify")
  )
}

/**
 * Verifies a cleartext message's encoded `MessageSignature` over `fields` and `body` (SPEC §4.3, through the
 * memo); the authenticated origin on success. `challenge`, if given, must be `challenge(fields, body)`: a caller
 * that computed it already (for the dedup hash) saves hashing the body again.
 *
 * @since 0.1.0
 * @category signing
 */
export const verify = (
  fields: SignedFields,
  body: Uint8Array,
  messageSignature: Uint8Array,
  challenge?: Uint8Array
): Effect.Effect<PublicKey, InvalidSignature, Crypto> =>
  Effect.flatMap(Crypto, (crypto) => verifyWith(crypto, fields, body, messageSignature, challenge))

/**
 * `verify` with a crypto service at hand.
 *
 * @since 0.1.0
 * @category signing
 */
export const verifyWith = (
  crypto: CryptoService,
  fields: SignedFields,
  body: Uint8Array,
  messageSignature: Uint8Array,
  challenge?: Uint8Array
): Effect.Effect<PublicKey, InvalidSignature> =>
  Effect.flatMap(
    checkSignatureWith(crypto, fields, body, messageSignature, challenge),
    Either.mapLeft((reason) => new InvalidSignature({ reason }))
  )

// --- keys (§4.4) ---

/**
 * The two message keys of SPEC §4.4.
 *
 * @since 0.1.0
 * @category models
 */
export interface MessageKeys {
  readonly kBody: Uint8Array
  readonly kSig: Uint8Array
}

/**
 * `kBody = DSH("key_message", 32, ss, E, recipient)`, `kSig = DSH("key_signature", 32, ss, E, recipient)`.
 *
 * @since 0.1.0
 * @category utils
 */
export const deriveKeys = (
  sharedSecret: Uint8Array,
  ephemeralPublicKey: Uint8Array,
  recipient: Uint8Array
): Effect.Effect<MessageKeys, never, Crypto> =>
  Effect.map(Crypto, (crypto) => keysWith(crypto, sharedSecret, ephemeralPublicKey, recipient))

const keysWith = (
  crypto: CryptoService,
  sharedSecret: Uint8Array,
  ephemeralPublicKey: Uint8Array,
  recipient: Uint8Array
): MessageKeys => ({
  kBody: crypto.dsh("key_message", 32, [sharedSecret, ephemeralPublicKey, recipient]),
  kSig: crypto.dsh("key_signature", 32, [sharedSecret, ephemeralPublicKey, recipient])
})

// --- padding (§4.5) ---

/**
 * The padded length of a message of `n` bytes: `4 + n` rounded up to a multiple of 6000.
 *
 * @since 0.1.0
 * @category utils
 */
export const paddedLength = (n: number): number =>
  Math.ceil((4 + n) / MESSAGE_BASE_LENGTH) * MESSAGE_BASE_LENGTH

/**
 * `u32le(len(m)) || m`, then zeros up to a multiple of 6000 (SPEC §4.5). A message whose length does not fit a
 * u32 cannot be sent.
 *
 * @since 0.1.0
 * @category utils
 */
export const pad = (message: Uint8Array): Either.Either<Uint8Array, EncryptionFailed> => {
  if (message.length > 0xffff_ffff) {
    return Either.left(new EncryptionFailed({ reason: `message of ${message.length} bytes` }))
  }
  const out = new Uint8Array(paddedLength(message.length))
  out.set(u32le(message.length), 0)
  out.set(message, 4)
  return Either.right(out)
}

/**
 * Inverse of `pad`: a length not a multiple of 6000 (or under 4) or a claimed length beyond the bytes is
 * `DecryptionFailed`. Padding bytes are not checked: the AEAD tag already covers them. Returns a view.
 *
 * @since 0.1.0
 * @category utils
 */
export const unpad = (padded: Uint8Array): Either.Either<Uint8Array, DecryptionFailed> => {
  if (padded.length < 4 || padded.length % MESSAGE_BASE_LENGTH !== 0) {
    return Either.left(new DecryptionFailed({ reason: `padded plaintext of ${padded.length} bytes` }))
  }
  const view = new DataView(padded.buffer, padded.byteOffset, padded.byteLength)
  const length = view.getUint32(0, true)
  if (length > padded.length - 4) {
    return Either.left(new DecryptionFailed({ reason: `claimed length ${length} exceeds the plaintext` }))
  }
  return Either.right(padded.subarray(4, 4 + length))
}

// --- encryption (§4.4–§4.5) ---

/**
 * What an encrypted message puts on the wire: `flags` (the input's, with `ENCRYPTED` set), `ephemeral_public_key`,
 * the sealed body and the sealed `MessageSignature`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Encrypted {
  readonly flags: number
  readonly ephemeralPublicKey: Uint8Array
  readonly body: Uint8Array
  readonly messageSignature: Uint8Array
}

/**
 * The randomness one encryption consumes.
 *
 * @since 0.1.0
 * @category models
 */
export interface EncryptionRandomness {
  readonly ephemeral: X25519KeyPair
  /** 24 bytes */
  readonly bodyNonce: Uint8Array
  /** 24 bytes */
  readonly signatureNonce: Uint8Array
}

/**
 * Fields of the header being built; the ephemeral key is the encryption's.
 *
 * @since 0.1.0
 * @category models
 */
export type EncryptFields = Omit<SignedFields, "ephemeralPublicKey">

/**
 * `encrypt` with given randomness (test vectors, benchmarks). Seals the padded body with `kBody`, signs the
 * challenge over the ciphertext and `E` (sign-after-encrypt), and seals the encoded `MessageSignature` with `kSig`.
 *
 * @since 0.1.0
 * @category encryption
 */
export const encryptWith = (
  signer: Signer,
  recipient: PublicKey,
  fields: EncryptFields,
  plaintext: Uint8Array,
  randomness: EncryptionRandomness
): Effect.Effect<Encrypted, EncryptionFailed, Crypto> =>
  Effect.flatMap(Crypto, (crypto) => sealMessage(crypto, signer, recipient, fields, plaintext, randomness))

/**
 * `encryptWith` with a crypto service at hand, as a plain function: the outbound pipeline draws the randomness
 * (`drawRandomness`) and seals without a step of its fiber per primitive.
 *
 * @since 0.1.0
 * @category encryption
 */
export const sealMessage = (
  crypto: CryptoService,
  signer: Signer,
  recipient: PublicKey,
  fields: EncryptFields,
  plaintext: Uint8Array,
  randomness: EncryptionRandomness
): Either.Either<Encrypted, EncryptionFailed> => {
  const e = randomness.ephemeral
  const ss = crypto.sharedSecretToRecipient(e.secret, recipient)
  if (Either.isLeft(ss)) return Either.left(ss.left)
  const padded = pad(plaintext)
  if (Either.isLeft(padded)) return Either.left(padded.left)
  const { kBody, kSig } = keysWith(crypto, ss.right, e.publicKey, recipient)
  const body = crypto.sealWithNonce(kBody, randomness.bodyNonce, padded.right)
  const flags = Envelope.withFlags(fields.flags, Envelope.DhtMessageFlags.ENCRYPTED)
  // the signed fields spelled out: `{ ...fields, flags }` costs microseconds on Node 20 (V8's object spread)
  const signed: SignedFields = {
    version: fields.version,
    destination: fields.destination,
    messageType: fields.messageType,
    flags,
    expires: fields.expires,
    ephemeralPublicKey: Option.some(e.publicKey)
  }
  return Either.right({
    flags,
    ephemeralPublicKey: e.publicKey,
    body,
    messageSignature: crypto.sealWithNonce(kSig, randomness.signatureNonce, signWith(crypto, signer, signed, body))
  })
}

/**
 * The randomness of one encryption, in the order of the module's note: the ephemeral key, then both nonces in one
 * draw (the same bytes as two draws of 24).
 *
 * @since 0.1.0
 * @category encryption
 */
export const drawRandomness = (crypto: CryptoService): Effect.Effect<EncryptionRandomness> =>
  Effect.flatMap(crypto.ephemeralKeyPair, (ephemeral) =>
    Effect.map(crypto.randomBytes(48), (nonces) => ({
      ephemeral,
      bodyNonce: nonces.subarray(0, 24),
      signatureNonce: nonces.subarray(24, 48)
    })))

/**
 * Encrypts an encoded `EnvelopeBody` for `recipient` and signs it as `signer` (SPEC §4.4–§4.5), drawing a fresh
 * ephemeral key and two nonces from the layer's randomness. Fails `EncryptionFailed` if the key exchange does.
 *
 * @since 0.1.0
 * @category encryption
 */
export const encrypt = (
  signer: Signer,
  recipient: PublicKey,
  fields: EncryptFields,
  plaintext: Uint8Array
): Effect.Effect<Encrypted, EncryptionFailed, Crypto> =>
  Effect.flatMap(Crypto, (crypto) =>
    Effect.flatMap(
      drawRandomness(crypto),
      (randomness) => sealMessage(crypto, signer, recipient, fields, plaintext, randomness)
    ))

/**
 * A received header: the signed fields and the (sealed) `message_signature`. `Envelope.DhtMessageHeader` is one.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReceivedHeader extends SignedFields {
  readonly messageSignature: Uint8Array
}

/**
 * Steps 2–5 of SPEC §4.6 without decoding: the padded-off plaintext (encoded `EnvelopeBody`) and the
 * authenticated origin.
 *
 * @since 0.1.0
 * @category models
 */
export interface DecryptedBytes {
  readonly plaintext: Uint8Array
  readonly origin: PublicKey
}

/**
 * Steps 2–5 of SPEC §4.6, in order: key exchange and both keys, open the signature (`DecryptionFailed`), decode and
 * verify it over the received fields and ciphertext (`InvalidEncryptedSignature`), open and unpad the body
 * (`DecryptionFailed`). A header without an ephemeral key is `DecryptionFailed` (validation rejects it earlier).
 * `challenge`, if given, must be `challenge(header, body)` (as for `verify`).
 *
 * @since 0.1.0
 * @category encryption
 */
export const decryptBytes = (
  recipient: Signer,
  header: ReceivedHeader,
  body: Uint8Array,
  challenge?: Uint8Array
): Effect.Effect<DecryptedBytes, DecryptionFailed | InvalidEncryptedSignature, Crypto> =>
  Effect.flatMap(Crypto, (crypto) => decryptBytesWith(crypto, recipient, header, body, challenge))

/**
 * `decryptBytes` with a crypto service at hand: plain functions around the one effect, the memoised verification.
 *
 * @since 0.1.0
 * @category encryption
 */
export const decryptBytesWith = (
  crypto: CryptoService,
  recipient: Signer,
  header: ReceivedHeader,
  body: Uint8Array,
  challenge?: Uint8Array
): Effect.Effect<DecryptedBytes, DecryptionFailed | InvalidEncryptedSignature> => {
  const opened = openSignature(crypto, recipient, header)
  if (Either.isLeft(opened)) return Either.left(opened.left)
  const { kBody, signature } = opened.right
  return Effect.flatMap(
    checkSignatureWith(crypto, header, body, signature, challenge),
    (checked): Either.Either<DecryptedBytes, DecryptionFailed | InvalidEncryptedSignature> => {
      if (Either.isLeft(checked)) return Either.left(new InvalidEncryptedSignature({ reason: checked.left }))
      const sealed = crypto.open(kBody, body)
      if (Either.isLeft(sealed)) return Either.left(sealed.left)
      return Either.map(unpad(sealed.right), (plaintext) => ({ plaintext, origin: checked.right }))
    }
  )
}

// steps 2–3 of §4.6: the key exchange, both keys and the opened `MessageSignature`
const openSignature = (
  crypto: CryptoService,
  recipient: Signer,
  header: ReceivedHeader
): Either.Either<{ readonly kBody: Uint8Array; readonly signature: Uint8Array }, DecryptionFailed> => {
  if (Option.isNone(header.ephemeralPublicKey)) {
    return Either.left(new DecryptionFailed({ reason: "no ephemeral public key" }))
  }
  const e = header.ephemeralPublicKey.value
  const ss = crypto.sharedSecretFromEphemeral(recipient.secretKey, e)
  if (Either.isLeft(ss)) return Either.left(ss.left)
  const { kBody, kSig } = keysWith(crypto, ss.right, e, recipient.publicKey)
  return Either.map(crypto.open(kSig, header.messageSignature), (signature) => ({ kBody, signature }))
}

/**
 * A decrypted message: its `EnvelopeBody` and authenticated origin (SPEC §4.6 step 7).
 *
 * @since 0.1.0
 * @category models
 */
export interface Decrypted {
  readonly body: Envelope.EnvelopeBody
  readonly origin: PublicKey
}

/**
 * SPEC §4.6 steps 2–7: `decryptBytes`, then the plaintext decoded as an `EnvelopeBody` with at least one part
 * (`EnvelopeBodyDecodeFailed`). `challenge` as for `decryptBytes`.
 *
 * @since 0.1.0
 * @category encryption
 */
export const decrypt = (
  recipient: Signer,
  header: ReceivedHeader,
  body: Uint8Array,
  challenge?: Uint8Array
): Effect.Effect<Decrypted, DecryptionFailed | InvalidEncryptedSignature | EnvelopeBodyDecodeFailed, Crypto> =>
  Effect.flatMap(Crypto, (crypto) => decryptWith(crypto, recipient, header, body, challenge))

/**
 * `decrypt` with a crypto service at hand.
 *
 * @since 0.1.0
 * @category encryption
 */
export const decryptWith = (
  crypto: CryptoService,
  recipient: Signer,
  header: ReceivedHeader,
  body: Uint8Array,
  challenge?: Uint8Array
): Effect.Effect<Decrypted, DecryptionFailed | InvalidEncryptedSignature | EnvelopeBodyDecodeFailed> =>
  Effect.flatMap(
    decryptBytesWith(crypto, recipient, header, body, challenge),
    ({ origin, plaintext }) =>
      Effect.map(Envelope.decodeEnvelopeBody(plaintext), (decoded) => ({ body: decoded, origin }))
  )

// --- identity claims (§4.7) ---

/**
 * What a claim signature covers besides the key and version.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClaimFields {
  /** in claim order; signed as their UTF-8 bytes */
  readonly addresses: ReadonlyArray<string>
  /** u32 */
  readonly features: number
  /** unix seconds (int64, signed as its u64 two's complement) */
  readonly updatedAt: bigint
}

/**
 * `publicKey, u8(version), u64le(updatedAt), u32le(features), addr1 … addrN`: the fields of the claim challenge.
 *
 * @since 0.1.0
 * @category utils
 */
export const claimChallengeFields = (
  publicKey: Uint8Array,
  version: number,
  claim: ClaimFields
): ReadonlyArray<Uint8Array> => [
  publicKey,
  Uint8Array.of(version & 0xff),
  u64le(claim.updatedAt),
  u32le(claim.features),
  ...claim.addresses.map(Wire.encodeUtf8)
]

/**
 * `claimChallenge = DSH("identity_signature", 32, …)` (SPEC §4.7).
 *
 * @since 0.1.0
 * @category utils
 */
export const claimChallenge = (
  publicKey: Uint8Array,
  version: number,
  claim: ClaimFields
): Effect.Effect<Uint8Array, never, Crypto> =>
  Effect.map(Crypto, (crypto) => crypto.dsh("identity_signature", 32, claimChallengeFields(publicKey, version, claim)))

/**
 * Signs a claim over `addresses`, `features` and `updatedAt` (version 0).
 *
 * @since 0.1.0
 * @category signing
 */
export const signClaim = (signer: Signer, claim: ClaimFields): Effect.Effect<IdentitySignature, never, Crypto> =>
  Effect.map(Crypto, (crypto) => {
    const message = crypto.dsh(
      "identity_signature",
      32,
      claimChallengeFields(signer.publicKey, CLAIM_SIGNATURE_VERSION, claim)
    )
    return new IdentitySignature({
      version: CLAIM_SIGNATURE_VERSION,
      signature: crypto.sign(signer.secretKey, message),
      updatedAt: claim.updatedAt
    })
  })

/**
 * The claim's signature verifies for `publicKey` (SPEC §4.3 predicate, key check included, through the memo). A
 * version other than 0 is not a scheme this node knows: `false`.
 *
 * @since 0.1.0
 * @category signing
 */
export const verifyClaim = (
  publicKey: Uint8Array,
  claim: SignedClaim
): Effect.Effect<boolean, never, Crypto> =>
  Effect.flatMap(Crypto, (crypto) => verifyClaimWith(crypto, publicKey, claim))

/**
 * @since 0.1.0
 * @category models
 */
export interface SignedClaim {
  readonly addresses: ReadonlyArray<string>
  readonly features: number
  readonly identitySignature: IdentitySignature
}

/**
 * `verifyClaim` with a `Crypto` service at hand.
 *
 * @since 0.1.0
 * @category signing
 */
export const verifyClaimWith = (
  crypto: CryptoService,
  publicKey: Uint8Array,
  claim: SignedClaim
): Effect.Effect<boolean> => {
  const challenge = claimChallengeOf(crypto, publicKey, claim)
  return challenge === undefined
    ? Effect.succeed(false)
    : crypto.verify(publicKey, claim.identitySignature.signature, challenge)
}

// what a claim's signature signs, or undefined for a signature version this code does not know (never valid)
const claimChallengeOf = (
  crypto: CryptoService,
  publicKey: Uint8Array,
  claim: SignedClaim
): Uint8Array | undefined => {
  const { updatedAt, version } = claim.identitySignature
  if (version !== CLAIM_SIGNATURE_VERSION) return undefined
  const fields = claimChallengeFields(publicKey, version, {
    addresses: claim.addresses,
    features: claim.features,
    updatedAt
  })
  return crypto.dsh("identity_signature", 32, fields)
}

/**
 * `verifyClaimWith` in the caller's step, counted under `labels`, where the service answers that way
 * (`CryptoService.unsafeVerify`); `undefined` where it does not.
 *
 * @since 0.1.0
 * @category signing
 */
export const unsafeVerifyClaimWith = (
  crypto: CryptoService,
  publicKey: Uint8Array,
  claim: SignedClaim,
  labels: ReadonlyArray<MetricLabel.MetricLabel>
): boolean | undefined => {
  if (crypto.unsafeVerify === undefined) return undefined
  const challenge = claimChallengeOf(crypto, publicKey, claim)
  return challenge !== undefined &&
    crypto.unsafeVerify(publicKey, claim.identitySignature.signature, challenge, labels)
}

// --- transport binding (§4.8) ---

/**
 * `DSH("noise_static", 32, noiseStaticPublicKey)`: what an identity signs to bind its Noise static key.
 *
 * @since 0.1.0
 * @category utils
 */
export const noiseStaticChallenge = (noiseStaticPublicKey: Uint8Array): Effect.Effect<Uint8Array, never, Crypto> =>
  Effect.map(Crypto, (crypto) => crypto.dsh("noise_static", 32, [noiseStaticPublicKey]))
