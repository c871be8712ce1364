/**
 * The store-and-forward messages of `store_forward.proto` (SPEC §3.4, §9.3–§9.4): the cursor-based request, the
 * stored messages a responder returns, and the response that carries them. Cursor and timestamp fields are u64
 * `bigint`s (§3.7): `sinceMs` and `storedAtMs` are unix milliseconds.
 *
 * @since 0.1.0
 */
import { create, toBinary } from "@bufbuild/protobuf"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { InvalidMessageBody, InvalidSafMessage } from "./DhtError.js"
import * as Envelope from "./Envelope.js"
import * as EnvelopePb from "./internal/proto/envelope_pb.js"
import * as Pb from "./internal/proto/store_forward_pb.js"
import * as Wire from "./internal/wire.js"

// --- request ---

/**
 * `StoredMessagesRequest` (SPEC §9.3): "rows strictly after `(sinceMs, afterId)`, at most `limit` of them".
 * `(0n, 0n)` is "from the beginning"; `limit` 0 is "the responder's maximum".
 *
 * @since 0.1.0
 * @category models
 */
export class StoredMessagesRequest extends Schema.Class<StoredMessagesRequest>(
  "@comms-dht/core/StoredMessagesRequest"
)({
  /** random and non-zero when sent; a zero is decoded as is and simply never matches an in-flight request */
  requestId: Wire.Uint32,
  limit: Wire.Uint32,
  sinceMs: Wire.Uint64,
  afterId: Wire.Uint64
}) {}

const decodeRequestEither = (bytes: Uint8Array): Either.Either<StoredMessagesRequest, InvalidMessageBody> =>
  Either.map(
    Either.mapLeft(Wire.parse(Pb.StoredMessagesRequestSchema, bytes), (reason) => new InvalidMessageBody({ reason })),
    (m) =>
      new StoredMessagesRequest({
        requestId: m.requestId,
        limit: m.limit,
        sinceMs: m.sinceMs,
        afterId: m.afterId
      }, true)
  )

/**
 * Bytes → request; undecodable is `InvalidMessageBody` (§9.3 step 1: the source is banned High).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeStoredMessagesRequest = (
  bytes: Uint8Array
): Effect.Effect<StoredMessagesRequest, InvalidMessageBody> => decodeRequestEither(bytes)

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodeStoredMessagesRequest = (request: StoredMessagesRequest): Uint8Array =>
  toBinary(
    Pb.StoredMessagesRequestSchema,
    create(Pb.StoredMessagesRequestSchema, {
      requestId: request.requestId,
      limit: request.limit,
      sinceMs: request.sinceMs,
      afterId: request.afterId
    })
  )

/**
 * @since 0.1.0
 * @category schemas
 */
export const StoredMessagesRequestFromBytes: Schema.Schema<StoredMessagesRequest, Uint8Array> = Wire.fromBytes(
  StoredMessagesRequest,
  decodeRequestEither,
  encodeStoredMessagesRequest
)

// --- stored message ---

/**
 * One stored message as a responder returns it (SPEC §3.4). `dhtHeader` may be absent on the wire, which the
 * requester rejects as `Malformed` in its §9.4 order; a header that is present was decoded by the §3.7 rules.
 *
 * @since 0.1.0
 * @category models
 */
export class StoredMessage extends Schema.Class<StoredMessage>("@comms-dht/core/StoredMessage")({
  /** `DhtHeader.major` of the stored message */
  version: Wire.Uint32,
  dhtHeader: Schema.OptionFromSelf(Envelope.DhtMessageHeader),
  /** the body exactly as received (ciphertext) */
  body: Schema.Uint8ArrayFromSelf,
  /** unix ms, the responder's clock */
  storedAtMs: Wire.Uint64,
  /** the responder's row id, the cursor's tie-break */
  id: Wire.Uint64
}) {}

const storedMessageToProto = (m: StoredMessage): Pb.StoredMessage =>
  create(Pb.StoredMessageSchema, {
    version: m.version,
    ...(Option.isSome(m.dhtHeader) ? { dhtHeader: Envelope.headerToProtoMessage(m.dhtHeader.value) } : {}),
    body: m.body,
    storedAtMs: m.storedAtMs,
    id: m.id
  })

/**
 * The encoded bytes of one `StoredMessage`.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeStoredMessage = (message: StoredMessage): Uint8Array =>
  toBinary(Pb.StoredMessageSchema, storedMessageToProto(message))

const varintLength = (n: number): number => {
  let length = 1
  while (n >= 0x80) {
    n = Math.floor(n / 0x80)
    length++
  }
  return length
}

/**
 * How many bytes a message of `encodedLength` (the length of `encodeStoredMessage`) adds to an encoded
 * `StoredMessagesResponse`: its field tag, its length prefix and itself. Responders pack by it (§9.3 step 4).
 *
 * @since 0.1.0
 * @category utils
 */
export const responseEntrySize = (encodedLength: number): number => 1 + varintLength(encodedLength) + encodedLength

// --- response ---

/**
 * `StoredMessagesResponse.SafResponseType` (SPEC §3.4). Only `ForMe` is produced and accepted; the others are kept
 * for compatibility.
 *
 * @since 0.1.0
 * @category models
 */
export const SafResponseType = {
  ForMe: 0,
  Discovery: 1,
  Join: 2,
  Anonymous: 3
} as const

/**
 * @since 0.1.0
 * @category models
 */
export type SafResponseType = (typeof SafResponseType)[keyof typeof SafResponseType]

/**
 * @since 0.1.0
 * @category schemas
 */
export const SafResponseTypeSchema: Schema.Enums<typeof SafResponseType> = Schema.Enums(SafResponseType)

const isSafResponseType = Schema.is(SafResponseTypeSchema)

/**
 * `StoredMessagesResponse` (SPEC §9.3): messages ascending by `(storedAtMs, id)`; `more` when qualifying rows were
 * left out.
 *
 * @since 0.1.0
 * @category models
 */
export class StoredMessagesResponse extends Schema.Class<StoredMessagesResponse>(
  "@comms-dht/core/StoredMessagesResponse"
)({
  messages: Schema.Array(StoredMessage),
  requestId: Wire.Uint32,
  responseType: SafResponseTypeSchema,
  more: Schema.Boolean
}) {}

const malformed = () => new InvalidSafMessage({ reason: "Malformed" })

const decodeResponseEither = (bytes: Uint8Array): Either.Either<StoredMessagesResponse, InvalidSafMessage> => {
  const parsed = Wire.parse(Pb.StoredMessagesResponseSchema, bytes)
  if (Either.isLeft(parsed)) return Either.left(malformed())
  const r = parsed.right
  const responseType: number = r.responseType
  if (!isSafResponseType(responseType)) return Either.left(malformed())
  const messages: Array<StoredMessage> = []
  for (const m of r.messages) {
    let dhtHeader: Option.Option<Envelope.DhtMessageHeader> = Option.none()
    if (m.dhtHeader !== undefined) {
      const header = Envelope.headerFromProtoEither(m.dhtHeader)
      if (Either.isLeft(header)) return Either.left(malformed())
      dhtHeader = Option.some(header.right)
    }
    messages.push(
      new StoredMessage({ version: m.version, dhtHeader, body: m.body, storedAtMs: m.storedAtMs, id: m.id }, true)
    )
  }
  return Either.right(
    new StoredMessagesResponse({ messages, requestId: r.requestId, responseType, more: r.more }, true)
  )
}

/**
 * Bytes → response. Anything undecodable — the protobuf, a `SafResponseType` outside the enum, a stored header that
 * fails §3.7 (the version aside) — is `InvalidSafMessage{Malformed}` (§9.4: the responder is banned High). An
 * absent header or an empty body decodes, for the requester to reject in §9.4's order.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeStoredMessagesResponse = (
  bytes: Uint8Array
): Effect.Effect<StoredMessagesResponse, InvalidSafMessage> => decodeResponseEither(bytes)

/**
 * @since 0.1.0
 * @category encoding
 */
export const encodeStoredMessagesResponse = (response: StoredMessagesResponse): Uint8Array =>
  toBinary(
    Pb.StoredMessagesResponseSchema,
    create(Pb.StoredMessagesResponseSchema, {
      messages: response.messages.map(storedMessageToProto),
      requestId: response.requestId,
      responseType: response.responseType,
      more: response.more
    })
  )

/**
 * @since 0.1.0
 * @category schemas
 */
export const StoredMessagesResponseFromBytes: Schema.Schema<StoredMessagesResponse, Uint8Array> = Wire.fromBytes(
  StoredMessagesResponse,
  decodeResponseEither,
  encodeStoredMessagesResponse
)

// --- responder side: stored rows as they are in the store ---

/**
 * A stored row as the responder sends it (SPEC §9.3 step 4): the header as stored (an encoded `DhtHeader`), not
 * decoded again, so packing a response costs no key checks.
 *
 * @since 0.1.0
 * @category models
 */
export interface StoredRow {
  readonly version: number
  /** an encoded `DhtHeader` */
  readonly header: Uint8Array
  readonly body: Uint8Array
  readonly storedAtMs: bigint
  readonly id: bigint
}

/**
 * One row ready to pack: its wire form and the bytes it adds to a response (`responseEntrySize`).
 *
 * @since 0.1.0
 * @category models
 */
export interface PackedRow {
  readonly size: number
  /** @internal */
  readonly message: Pb.StoredMessage
}

/**
 * Prepares a row for a response; `undefined` when its stored header does not parse (a damaged row is left out
 * rather than sent to be rejected by the requester, who would ban us for it).
 *
 * @since 0.1.0
 * @category encoding
 */
export const packRow = (row: StoredRow): PackedRow | undefined => {
  const header = Wire.parse(EnvelopePb.DhtHeaderSchema, row.header)
  if (Either.isLeft(header)) return undefined
  const message = create(Pb.StoredMessageSchema, {
    version: row.version,
    dhtHeader: header.right,
    body: row.body,
    storedAtMs: row.storedAtMs,
    id: row.id
  })
  return { size: responseEntrySize(toBinary(Pb.StoredMessageSchema, message).length), message }
}

/**
 * A `StoredMessagesResponse` (`ForMe`) of packed rows, in the order given.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodePackedResponse = (
  rows: ReadonlyArray<PackedRow>,
  requestId: number,
  more: boolean
): Uint8Array =>
  toBinary(
    Pb.StoredMessagesResponseSchema,
    create(Pb.StoredMessagesResponseSchema, {
      messages: rows.map((row) => row.message),
      requestId,
      responseType: SafResponseType.ForMe,
      more
    })
  )

/**
 * The response's bytes besides its rows: `request_id`, `response_type` and `more` at their largest.
 *
 * @since 0.1.0
 * @category encoding
 */
export const RESPONSE_OVERHEAD = 1 + 5 + 1 + 1 + 1 + 1
