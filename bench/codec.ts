/**
 * Envelope codec benchmarks: a 1 KiB encrypted-style envelope (key destination, ephemeral key, an encrypted
 * signature's worth of bytes, 1 KiB of body) encoded and decoded as the pipelines do, once per message.
 */
import * as Envelope from "@comms-dht/core/Envelope"
import * as NodeId from "@comms-dht/core/NodeId"
import { ed25519 } from "@noble/curves/ed25519.js"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

const filled = (length: number, seed: number) => Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff)

const sampleEnvelope = (): Envelope.DhtEnvelope =>
  new Envelope.DhtEnvelope({
    header: new Envelope.DhtMessageHeader({
      version: 1,
      destination: Envelope.destinationPublicKey(NodeId.PublicKey.make(ed25519.getPublicKey(filled(32, 1)))),
      // nonce (24) + an encoded MessageSignature (100) + tag (16)
      messageSignature: filled(140, 2),
      ephemeralPublicKey: Option.some(filled(32, 3)),
      messageType: Envelope.DhtMessageType.None,
      flags: Envelope.DhtMessageFlags.ENCRYPTED,
      messageTag: 0x1234_5678_9abc_def0n,
      expires: 1_735_700_000n,
      hopCount: 2
    }),
    body: filled(1024, 4)
  })

/**
 * @since 0.1.0
 */
export const codecBenches = (): ReadonlyArray<{ readonly name: string; readonly fn: () => void }> => {
  const envelope = sampleEnvelope()
  const bytes = Envelope.encodeEnvelope(envelope)
  const body = new Envelope.EnvelopeBody({
    parts: [
      Envelope.encodeMessageHeader(new Envelope.MessageHeader({ messageType: 7, nonce: 0xfeed_beefn })),
      filled(1024, 5)
    ]
  })
  const bodyBytes = Envelope.encodeEnvelopeBody(body)
  let sink = 0
  return [
    { name: "codec/envelope encode 1KiB", fn: () => void (sink ^= Envelope.encodeEnvelope(envelope).length) },
    {
      name: "codec/envelope decode 1KiB",
      fn: () => void (sink ^= Effect.runSync(Envelope.decodeEnvelope(bytes)).header.hopCount)
    },
    { name: "codec/envelope body encode 1KiB", fn: () => void (sink ^= Envelope.encodeEnvelopeBody(body).length) },
    {
      name: "codec/envelope body decode 1KiB",
      fn: () => void (sink ^= Effect.runSync(Envelope.decodeEnvelopeBody(bodyBytes)).parts.length)
    }
  ]
}
