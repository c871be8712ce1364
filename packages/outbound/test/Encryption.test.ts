/**
 * The encrypt stage (SPEC §4.3–§4.5, §6.3, §8.1) seen from the receiving end: what an encrypted envelope reveals to
 * whom, that a signed cleartext envelope verifies, that a request is signed and encrypted once however many peers
 * it goes to, that a forward is sent on unchanged, and that a broadcast pre-inserts its own dedup hash.
 */
import * as BroadcastStrategy from "@comms-dht/core/BroadcastStrategy"
import * as Crypto from "@comms-dht/core/Crypto"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as Transport from "@comms-dht/core/Transport"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as OutboundPipeline from "../src/OutboundPipeline.js"
import {
  COMMUNICATION_NODE as N,
  type EndpointServices,
  identityOf,
  type Node,
  peerRecord,
  received,
  type SenderServices,
  startPeer,
  startSender
} from "./harness.js"

interface Counts {
  sign: number
  ephemeral: number
  ecdh: number
  seal: number
}

// layerNoble, counting the operations that must happen once per request
const countingCrypto = (counts: Counts) =>
  Layer.effect(
    Crypto.Crypto,
    Effect.map(Crypto.makeNoble(), (base) =>
      Crypto.Crypto.of({
        ...base,
        sign: (secret, message) => {
          counts.sign++
          return base.sign(secret, message)
        },
        ephemeralKeyPair: Effect.suspend(() => {
          counts.ephemeral++
          return base.ephemeralKeyPair
        }),
        sharedSecretToRecipient: (secret, recipient) => {
          counts.ecdh++
          return base.sharedSecretToRecipient(secret, recipient)
        },
        seal: (k, plaintext) =>
          Effect.suspend(() => {
            counts.seal++
            return base.seal(k, plaintext)
          }),
        sealWithNonce: (k, nonce, plaintext) => {
          counts.seal++
          return base.sealWithNonce(k, nonce, plaintext)
        }
      }))
  )

interface Net {
  readonly sender: Node<SenderServices>
  readonly recipient: Node<EndpointServices>
  readonly observer: Node<EndpointServices>
  /** ten more connected peers */
  readonly others: ReadonlyArray<Node<EndpointServices>>
}

const network = Effect.gen(function*() {
  const sender = yield* startSender(yield* identityOf(0, N))
  const nodes = yield* Effect.forEach(Array.from({ length: 12 }, (_, i) => i + 1), (i) =>
    Effect.flatMap(identityOf(i, N), startPeer))
  yield* sender.run(Effect.gen(function*() {
    const table = yield* PeerManager.PeerManager
    const transport = yield* Transport.Transport
    for (const node of nodes) {
      yield* table.add(peerRecord(node.identity))
      yield* transport.dial(node.identity.nodeId)
    }
  }).pipe(Effect.orDie))
  const net: Net = { sender, recipient: nodes[0]!, observer: nodes[1]!, others: nodes.slice(2) }
  return net
})

const withNetwork = <A, E>(f: (net: Net, counts: Counts) => Effect.Effect<A, E, Crypto.Crypto>) => {
  const counts: Counts = { sign: 0, ephemeral: 0, ecdh: 0, seal: 0 }
  return Effect.scoped(Effect.flatMap(network, (net) => f(net, counts))).pipe(
    Effect.provide(Layer.mergeAll(MemoryNetwork.layerHub(), countingCrypto(counts)))
  )
}

const send = (net: Net, params: OutboundRequester.SendMessageParams, body: OutboundRequester.OutboundBody) =>
  net.sender.run(
    OutboundRequester.OutboundRequester.pipe(
      Effect.flatMap((requester) => requester.send(params, body)),
      Effect.flatMap(OutboundRequester.resolve),
      Effect.tap((states) => states.waitAll)
    )
  )

/** The one frame a node received, decoded. */
const envelopeAt = (node: Node<EndpointServices>) =>
  Effect.gen(function*() {
    const frames = Chunk.toReadonlyArray(yield* received(node))
    expect(frames.length).toBe(1)
    const bytes = frames[0]!.bytes
    return { bytes, envelope: yield* Envelope.decodeEnvelope(bytes) }
  })

const contains = (haystack: Uint8Array, needle: Uint8Array) => {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer
    return true
  }
  return false
}

const text = (s: string) => new TextEncoder().encode(s)

const directTo = (
  net: Net,
  peers: ReadonlyArray<Node<EndpointServices>>,
  encryption: OutboundRequester.OutboundEncryption
) =>
  OutboundRequester.makeParams({
    strategy: BroadcastStrategy.SelectedPeers({ ids: peers.map((p) => p.identity.nodeId) }),
    destination: Envelope.destinationPublicKey(net.recipient.identity.publicKey),
    encryption
  })

describe("OutboundPipeline encryption", () => {
  it.effect("an encrypted message opens only with the recipient's key, and names its origin only to it", () =>
    withNetwork((net) =>
      Effect.gen(function*() {
        const recipient = net.recipient.identity
        yield* net.sender.run(OutboundRequester.sendDirectEncrypted(recipient.publicKey, 7, text("for your eyes only")))
          .pipe(Effect.flatMap(OutboundRequester.resolve), Effect.flatMap((states) => states.waitAll))
        const { bytes, envelope } = yield* envelopeAt(net.recipient)
        const header = envelope.header
        expect(header.isEncrypted).toBe(true)
        expect(Envelope.isDestinedTo(header.destination, recipient.publicKey)).toBe(true)
        expect(Option.isSome(header.ephemeralPublicKey)).toBe(true)

        const opened = yield* MessageCrypto.decrypt(recipient, header, envelope.body)
        expect(opened.origin).toEqual(net.sender.identity.publicKey)
        const appHeader = yield* Envelope.decodeMessageHeader(opened.body.parts[0]!)
        expect(appHeader.messageType).toBe(7)
        expect(opened.body.parts[1]).toEqual(text("for your eyes only"))

        // anyone else: the keys do not open it, and the origin's key is nowhere on the wire
        const other = yield* Effect.either(MessageCrypto.decrypt(net.observer.identity, header, envelope.body))
        expect(Either.isLeft(other) && other.left._tag).toBe("DecryptionFailed")
        expect(contains(bytes, net.sender.identity.publicKey)).toBe(false)
        expect(Either.isLeft(yield* Effect.either(Envelope.decodeMessageSignature(header.messageSignature)))).toBe(true)
      })
    ))

  it.effect("a forwarder of an encrypted message sees ciphertext and no origin", () =>
    withNetwork((net) =>
      Effect.gen(function*() {
        const recipientKey = net.recipient.identity.publicKey
        yield* send(
          net,
          directTo(net, [net.observer], OutboundRequester.encryptFor(recipientKey)),
          yield* OutboundRequester.applicationBody(3, text("relay me"))
        )
        const { bytes, envelope } = yield* envelopeAt(net.observer)
        expect(contains(bytes, net.sender.identity.publicKey)).toBe(false)
        expect(contains(bytes, text("relay me"))).toBe(false)
        const attempt = yield* Effect.either(
          MessageCrypto.decrypt(net.observer.identity, envelope.header, envelope.body)
        )
        expect(Either.isLeft(attempt)).toBe(true)
        // padded to a multiple of 6000, sealed with a 24-byte nonce and a 16-byte tag
        expect(envelope.body.length).toBe(6000 + 24 + 16)
      })
    ))

  it.effect("a flood is cleartext with a plain signature that verifies to the sender", () =>
    withNetwork((net) =>
      Effect.gen(function*() {
        yield* net.sender.run(OutboundRequester.flood(Envelope.destinationUnknown(), [], 9, text("hello all")))
          .pipe(Effect.flatMap(OutboundRequester.resolve), Effect.flatMap((states) => states.waitAll))
        for (const node of [net.recipient, net.observer, ...net.others]) {
          const { envelope } = yield* envelopeAt(node)
          expect(envelope.header.isEncrypted).toBe(false)
          expect(Option.isNone(envelope.header.ephemeralPublicKey)).toBe(true)
          const signer = yield* MessageCrypto.verify(envelope.header, envelope.body, envelope.header.messageSignature)
          expect(signer).toEqual(net.sender.identity.publicKey)
          const body = yield* Envelope.decodeEnvelopeBody(envelope.body)
          expect(body.parts[1]).toEqual(text("hello all"))
          // the signature covers the body: one changed byte and it no longer verifies
          const tampered = envelope.body.slice()
          tampered[tampered.length - 1] ^= 1
          const bad = yield* Effect.either(
            MessageCrypto.verify(envelope.header, tampered, envelope.header.messageSignature)
          )
          expect(Either.isLeft(bad)).toBe(true)
        }
      })
    ))

  it.effect("cleartext without forceOrigin carries no signature", () =>
    withNetwork((net, counts) =>
      Effect.gen(function*() {
        const signs = counts.sign
        yield* net.sender.run(OutboundRequester.sendDirectNodeId(net.recipient.identity.nodeId, 1, text("anon")))
          .pipe(Effect.flatMap(OutboundRequester.resolve), Effect.flatMap((states) => states.waitAll))
        const { envelope } = yield* envelopeAt(net.recipient)
        expect(envelope.header.messageSignature.length).toBe(0)
        expect(envelope.header.flags).toBe(Envelope.DhtMessageFlags.NONE)
        expect(counts.sign).toBe(signs)
      })
    ))

  it.effect("one request to 10 peers signs and encrypts once, and every peer gets the same bytes", () =>
    withNetwork((net, counts) =>
      Effect.gen(function*() {
        const before = { ...counts }
        const states = yield* send(
          net,
          directTo(net, net.others, OutboundRequester.encryptFor(net.recipient.identity.publicKey)),
          yield* OutboundRequester.applicationBody(5, text("ten copies"))
        )
        expect(states.size).toBe(10)
        expect(counts.sign - before.sign).toBe(1)
        expect(counts.ephemeral - before.ephemeral).toBe(1)
        expect(counts.ecdh - before.ecdh).toBe(1)
        // the body and the signature: two sealings for the whole request
        expect(counts.seal - before.seal).toBe(2)
        const copies = yield* Effect.forEach(net.others, envelopeAt)
        for (const copy of copies) expect(copy.bytes).toEqual(copies[0]!.bytes)

        const signs = counts.sign
        yield* send(
          net,
          OutboundRequester.makeParams({
            strategy: BroadcastStrategy.Flood({ excluded: [] }),
            forceOrigin: true
          }),
          yield* OutboundRequester.applicationBody(5, text("twelve copies"))
        )
        expect(counts.sign - signs).toBe(1)
      })
    ))

  it.effect("a forward sends the received envelope on unchanged but for hop_count, without any crypto", () =>
    withNetwork((net, counts) =>
      Effect.gen(function*() {
        yield* net.sender.run(OutboundRequester.flood(Envelope.destinationUnknown(), [], 9, text("pass it on")))
          .pipe(Effect.flatMap(OutboundRequester.resolve), Effect.flatMap((states) => states.waitAll))
        const original = (yield* envelopeAt(net.recipient)).envelope
        for (const node of [net.observer, ...net.others]) yield* received(node)
        const before = { ...counts }
        const forwardTo = net.others[0]!
        yield* send(
          net,
          OutboundRequester.makeParams({
            strategy: BroadcastStrategy.SelectedPeers({ ids: [forwardTo.identity.nodeId] }),
            customHeader: Option.some(original.header)
          }),
          original.body
        )
        expect(counts).toEqual(before)
        const forwarded = (yield* envelopeAt(forwardTo)).envelope
        expect(forwarded.header.hopCount).toBe(original.header.hopCount + 1)
        expect(forwarded.header.messageTag).toBe(original.header.messageTag)
        expect(forwarded.header.expires).toBe(original.header.expires)
        expect(forwarded.header.messageSignature).toEqual(original.header.messageSignature)
        expect(forwarded.body).toEqual(original.body)
        expect(yield* MessageCrypto.verify(forwarded.header, forwarded.body, forwarded.header.messageSignature))
          .toEqual(net.sender.identity.publicKey)
      })
    ))

  it.effect("a broadcast pre-inserts its own dedup hash until expiry + clock skew; a direct send does not", () =>
    withNetwork((net) =>
      Effect.gen(function*() {
        const cache = yield* net.sender.run(DedupCache.DedupCache)
        yield* send(
          net,
          directTo(net, [net.recipient], OutboundRequester.encryptFor(net.recipient.identity.publicKey)),
          yield* OutboundRequester.applicationBody(1, text("direct"))
        )
        yield* envelopeAt(net.recipient)
        expect(yield* cache.size).toBe(0)

        yield* net.sender.run(OutboundRequester.flood(Envelope.destinationUnknown(), [], 9, text("echo")))
          .pipe(Effect.flatMap(OutboundRequester.resolve), Effect.flatMap((states) => states.waitAll))
        const { envelope } = yield* envelopeAt(net.recipient)
        const hash = yield* OutboundPipeline.dedupHash(envelope.header, envelope.body, envelope.header.messageSignature)
        const entry = yield* cache.get(hash)
        expect(Option.isSome(entry)).toBe(true)
        if (Option.isSome(entry)) {
          expect(entry.value.hits).toBe(1)
          expect(entry.value.sender).toEqual(net.sender.identity.publicKey)
          expect(entry.value.keepUntil).toBe(Number(envelope.header.expires) * 1000 + 10 * 60 * 1000)
        }
        expect(yield* cache.size).toBe(1)

        // an encrypted closest-nodes broadcast too (its hash covers the sealed signature)
        yield* net.sender.run(
          OutboundRequester.closestBroadcast(
            net.recipient.identity.publicKey,
            OutboundRequester.encryptFor(net.recipient.identity.publicKey),
            [],
            2,
            text("stored for you")
          )
        ).pipe(Effect.flatMap(OutboundRequester.resolve), Effect.flatMap((states) => states.waitAll))
        const sealed = (yield* envelopeAt(net.recipient)).envelope
        const sealedHash = yield* OutboundPipeline.dedupHash(sealed.header, sealed.body, sealed.header.messageSignature)
        expect(yield* cache.hitCount(sealedHash)).toBe(1)
      })
    ))
})
