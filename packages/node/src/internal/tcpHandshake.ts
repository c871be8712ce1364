/** @internal */
import type * as Crypto from "@comms-dht/core/Crypto"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import { HandshakeFailed } from "@comms-dht/core/DhtError"
import * as DhtLog from "@comms-dht/core/DhtLog"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as HandshakePayload from "@comms-dht/core/HandshakePayload"
import * as Noise from "@comms-dht/core/Noise"
import type { NodeId, PublicKey, SecretKey } from "@comms-dht/core/NodeId"
import type { Peer, PeerClaim } from "@comms-dht/core/Peer"
import type { PeerManagerService } from "@comms-dht/core/PeerManager"
import * as PeerValidator from "@comms-dht/core/PeerValidator"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as NodeCrypto from "node:crypto"
import type { ByteReader, Eof } from "./tcpFraming.js"
import { record } from "./tcpFraming.js"
import type { SocketFailure, TcpSocket } from "./tcpSocket.js"

/** @internal SPEC §4.8 */
export const PROLOGUE = new TextEncoder().encode("comms-dht.v1.noise")

// --- Noise on node:crypto: OpenSSL's X25519 and ChaCha20-Poly1305, ~20× noble's speed, same bytes (the vectors) ---

const b64 = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64url")

const x25519Private = (secret: Uint8Array): NodeCrypto.KeyObject =>
  // `x` is required by the JWK parser and ignored for a private key: OpenSSL derives it from `d`
  NodeCrypto.createPrivateKey({ key: { kty: "OKP", crv: "X25519", d: b64(secret), x: "" }, format: "jwk" })

const x25519Public = (u: Uint8Array): NodeCrypto.KeyObject =>
  NodeCrypto.createPublicKey({ key: { kty: "OKP", crv: "X25519", x: b64(u) }, format: "jwk" })

const copy = (b: Uint8Array): Uint8Array => Uint8Array.from(b)

/** @internal */
export const nodeBackend: Noise.Backend = {
  x25519PublicKey: (secret) => {
    const x = NodeCrypto.createPublicKey(x25519Private(secret)).export({ format: "jwk" }).x
    return Uint8Array.from(Buffer.from(x ?? "", "base64url"))
  },
  x25519: (secret, u) =>
    copy(NodeCrypto.diffieHellman({ privateKey: x25519Private(secret), publicKey: x25519Public(u) })),
  seal: (key, nonce, ad, plaintext) => {
    const cipher = NodeCrypto.createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 })
    cipher.setAAD(ad, { plaintextLength: plaintext.length })
    const out = new Uint8Array(plaintext.length + 16)
    const head = cipher.update(plaintext)
    out.set(head, 0)
    out.set(cipher.final(), head.length)
    out.set(cipher.getAuthTag(), plaintext.length)
    return out
  },
  open: (key, nonce, ad, ciphertext) => {
    const decipher = NodeCrypto.createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 })
    const body = ciphertext.subarray(0, ciphertext.length - 16)
    decipher.setAAD(ad, { plaintextLength: body.length })
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16))
    const out = new Uint8Array(body.length)
    const head = decipher.update(body)
    out.set(head, 0)
    // throws when the tag does not verify: Noise turns that into DecryptionFailed
    out.set(decipher.final(), head.length)
    return out
  }
}

// --- this node's side ---

/** @internal what a node presents in every handshake */
export interface LocalIdentity {
  readonly nodeId: NodeId
  readonly hex: string
  readonly publicKey: PublicKey
  readonly staticKey: Noise.KeyPair
  /** the encoded `NoiseHandshakePayload` (messages 2 and 3) */
  readonly payload: Uint8Array
  readonly config: DhtConfig.Config
  readonly crypto: Crypto.CryptoService
  readonly peers: PeerManagerService
}

/**
 * @internal
 * The payload binding `staticPublicKey` to the identity: `Ed25519.sign(identity, DSH("noise_static", 32, static))`
 * (SPEC §4.8), unless a test forges `staticSignature`.
 */
export const encodePayload = (options: {
  readonly crypto: Crypto.CryptoService
  readonly secretKey: SecretKey
  readonly publicKey: PublicKey
  readonly staticPublicKey: Uint8Array
  readonly claim: PeerClaim
  readonly protocolVersion: number
  readonly staticSignature?: Uint8Array | undefined
}): Uint8Array =>
  HandshakePayload.encode(
    new HandshakePayload.NoiseHandshakePayload({
      identityPublicKey: options.publicKey,
      staticSignature: options.staticSignature ??
        options.crypto.sign(options.secretKey, options.crypto.dsh("noise_static", 32, [options.staticPublicKey])),
      peerFeatures: options.claim.features,
      addresses: options.claim.addresses,
      identitySignature: options.claim.identitySignature,
      protocolVersion: options.protocolVersion
    }, true)
  )

// --- the other side ---

/** @internal what the handshake proved about the other side */
export type RemoteIdentity = PeerValidator.HandshakeRemote

/** @internal counts and logs a handshake failure, then fails with it */
export const handshakeFailed = (reason: string, detail: string): Effect.Effect<never, HandshakeFailed> =>
  Metric.increment(DhtMetrics.tagged(DhtMetrics.handshakeFailures, "reason", reason)).pipe(
    Effect.zipRight(DhtLog.debug("tcp handshake failed", { reason, detail })),
    Effect.zipRight(Effect.fail(new HandshakeFailed({ reason: `${reason}: ${detail}` })))
  )

/** SPEC §4.8's payload checks, with TCP's own: the Noise static key the payload came over, signed by the identity */
const validatePayload = (
  local: LocalIdentity,
  bytes: Uint8Array,
  remoteStatic: Uint8Array,
  expected: PublicKey | undefined
): Effect.Effect<RemoteIdentity, HandshakeFailed> =>
  PeerValidator.validateHandshake(bytes, {
    config: local.config,
    crypto: local.crypto,
    peers: local.peers,
    self: local.nodeId,
    expected,
    checkKey: (key) => Effect.sync(() => local.crypto.checkPublicKey(key)),
    bind: (payload, publicKey) =>
      Effect.map(
        local.crypto.verify(publicKey, payload.staticSignature, local.crypto.dsh("noise_static", 32, [remoteStatic])),
        (bound) =>
          bound ? Option.none() : Option.some(["StaticKeyNotBound", "static key not signed by the identity"] as const)
      ),
    fail: handshakeFailed
  })

/** @internal a completed handshake: the transport cipher states and who is on the other end */
export interface Handshaked {
  readonly transport: Noise.TransportState
  readonly remote: RemoteIdentity
}

const ioFailure = (e: SocketFailure | Eof) =>
  e._tag === "Eof" ? handshakeFailed("Eof", "connection closed") : handshakeFailed("Io", e.reason)

const noise = <A>(result: Either.Either<A, HandshakeFailed>): Effect.Effect<A, HandshakeFailed> =>
  Either.isRight(result) ? Effect.succeed(result.right) : handshakeFailed("Noise", result.left.reason)

/** exactly `e` (32 bytes) and an empty payload (SPEC §4.8): anything else is refused before any work */
const MESSAGE_1_LENGTH = Noise.DHLEN

/**
 * @internal
 * The XX handshake over a socket: `-> e`, `<- e, ee, s, es` + payload, `-> s, se` + payload. The dialler passes
 * the key it meant to reach. Time limits are the caller's.
 */
export const handshake = (
  local: LocalIdentity,
  socket: TcpSocket,
  reader: ByteReader<SocketFailure>,
  role: Noise.Role,
  expected: PublicKey | undefined
): Effect.Effect<Handshaked, HandshakeFailed> =>
  Effect.gen(function*() {
    const ephemeralSecret = yield* local.crypto.randomBytes(Noise.DHLEN)
    const state = yield* noise(Noise.initialize({
      role,
      prologue: PROLOGUE,
      staticSecret: local.staticKey.secretKey,
      ephemeralSecret,
      backend: nodeBackend
    }))
    const send = (payload: Uint8Array) =>
      Effect.flatMap(noise(Noise.writeMessage(state, payload)), (message) =>
        socket.write(record(message)).pipe(Effect.catchAll(ioFailure)))
    const receive = (exactLength?: number) =>
      Effect.gen(function*() {
        const header = yield* reader.readExact(2).pipe(Effect.catchAll(ioFailure))
        const length = (header[0]! << 8) | header[1]!
        if (exactLength !== undefined && length !== exactLength) {
          return yield* handshakeFailed("Noise", `first message of ${length} bytes`)
        }
        const message = yield* reader.readExact(length).pipe(Effect.catchAll(ioFailure))
        return yield* noise(Noise.readMessage(state, message))
      })
    const remoteStatic = () =>
      Option.match(Noise.remoteStatic(state), {
        onNone: () => handshakeFailed("Noise", "no remote static key"),
        onSome: Effect.succeed
      })

    let remote: RemoteIdentity
    if (role === "initiator") {
      yield* send(new Uint8Array(0))
      const payload = yield* receive()
      remote = yield* validatePayload(local, payload, yield* remoteStatic(), expected)
      yield* send(local.payload)
    } else {
      yield* receive(MESSAGE_1_LENGTH)
      yield* send(local.payload)
      const payload = yield* receive()
      remote = yield* validatePayload(local, payload, yield* remoteStatic(), undefined)
    }
    const transport = yield* noise(Noise.split(state))
    return { transport, remote }
  })

/** @internal verifiedAt, lastSeen, addresses and claim of the remote in the local table, as MemoryNetwork does */
export const recordConnected = (
  local: LocalIdentity,
  remote: RemoteIdentity,
  dialledAddress: string | undefined
): Effect.Effect<Peer> =>
  PeerValidator.recordConnected(local.peers, remote, {
    maxAddressesPerPeer: local.config.peerValidator.maxAddressesPerPeer,
    dialledAddress
  })
