/**
 * End-to-end delivery receipts (ours, docs/spec-departures.md §2). A message sent with `RECEIPT_REQUESTED` names,
 * by its dedup hash (SPEC §8.1), the receipt its destination returns: `Receipt{message_hash, signature}`, the
 * signature by the destination's identity over `DSH("receipt", 32, message_hash)`. The origin checks it against the
 * key it addressed; a store-and-forward node checks it against the destination of the row it holds, so only the
 * destination can have a stored copy removed.
 *
 * The hash is the dedup hash on both sides because the destination knows it without any extra field (its pipeline
 * computed it), the origin knows it from the envelope it built (`messageHash`), and SAF rows are keyed by it
 * (`MessageStore.removeByBodyHash`).
 *
 * @since 0.1.0
 */
import { create, toBinary } from "@bufbuild/protobuf"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { Crypto } from "./Crypto.js"
import { InvalidReceipt } from "./DhtError.js"
import * as Envelope from "./Envelope.js"
import * as Pb from "./internal/proto/receipt_pb.js"
import * as Wire from "./internal/wire.js"
import * as MessageCrypto from "./MessageCrypto.js"
import type { PublicKey } from "./NodeId.js"

/**
 * A receipt: the hash of the message it acknowledges and the destination's signature over it.
 *
 * @since 0.1.0
 * @category models
 */
export class Receipt extends Schema.Class<Receipt>("@comms-dht/core/Receipt")({
  messageHash: Wire.bytes(32, "message_hash"),
  signature: Wire.bytes(64, "signature")
}) {}

const malformed = new InvalidReceipt({ reason: "Malformed" })

const decodeEither = (bytes: Uint8Array): Either.Either<Receipt, InvalidReceipt> =>
  Either.flatMap(
    Either.mapLeft(Wire.parse(Pb.ReceiptSchema, bytes), () => malformed),
    (m) =>
      m.messageHash.length === 32 && m.signature.length === 64
        ? Either.right(new Receipt({ messageHash: Wire.copy(m.messageHash), signature: Wire.copy(m.signature) }, true))
        : Either.left(malformed)
  )

/**
 * Bytes → receipt; anything but a 32-byte hash and a 64-byte signature is `InvalidReceipt{Malformed}`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (bytes: Uint8Array): Effect.Effect<Receipt, InvalidReceipt> => decodeEither(bytes)

/**
 * @since 0.1.0
 * @category encoding
 */
export const encode = (receipt: Receipt): Uint8Array =>
  toBinary(Pb.ReceiptSchema, create(Pb.ReceiptSchema, receipt))

/**
 * The body of a `Receipt` message: `parts = [receipt]`, as DHT messages carry theirs (SPEC §3.1).
 *
 * @since 0.1.0
 * @category encoding
 */
export const toBody = (receipt: Receipt): Envelope.EnvelopeBody =>
  new Envelope.EnvelopeBody({ parts: [encode(receipt)] }, true)

/**
 * The receipt in a `Receipt` message's body (its first part).
 *
 * @since 0.1.0
 * @category decoding
 */
export const fromBody = (body: Envelope.EnvelopeBody): Effect.Effect<Receipt, InvalidReceipt> =>
  decode(body.parts[0] ?? new Uint8Array(0))

/**
 * What the destination signs: `DSH("receipt", 32, message_hash)`.
 *
 * @since 0.1.0
 * @category utils
 */
export const challenge = (messageHash: Uint8Array): Effect.Effect<Uint8Array, never, Crypto> =>
  Effect.map(Crypto, (crypto) => crypto.dsh("receipt", 32, [messageHash]))

/**
 * The receipt `signer` (the destination) gives for the message of `messageHash`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const sign = (
  signer: MessageCrypto.Signer,
  messageHash: Uint8Array
): Effect.Effect<Receipt, never, Crypto> =>
  Effect.map(Crypto, (crypto) =>
    new Receipt({
      messageHash: Wire.copy(messageHash),
      signature: crypto.sign(signer.secretKey, crypto.dsh("receipt", 32, [messageHash]))
    }, true))

/**
 * The receipt's signature verifies with `destination` (SPEC §4.3's predicate, through the memo).
 *
 * @since 0.1.0
 * @category utils
 */
export const verify = (destination: PublicKey, receipt: Receipt): Effect.Effect<boolean, never, Crypto> =>
  Effect.flatMap(
    Crypto,
    (crypto) => crypto.verify(destination, receipt.signature, crypto.dsh("receipt", 32, [receipt.messageHash]))
  )

/**
 * The hash a receipt for this envelope carries: its dedup hash (SPEC §8.1), the same on every path and hop.
 *
 * @since 0.1.0
 * @category utils
 */
export const messageHash = (envelope: Envelope.DhtEnvelope): Effect.Effect<Uint8Array, never, Crypto> =>
  MessageCrypto.dedupHash(envelope.header, envelope.body, envelope.header.messageSignature)
