/**
 * `TcpTransport`: core's `Transport` over TCP (SPEC §4.8, §11.5, §11.6, §17.6). Every connection is authenticated
 * by a `Noise_XX_25519_ChaChaPoly_BLAKE2b` handshake whose payloads bind each side's Noise static key to its Ed25519
 * identity; a dialler refuses any identity but the one it meant. After the handshake the stream carries Noise
 * records (`u16be` length, ≤ 65,535 bytes) holding our frames (`u32be` length, ≤ `maxFrameSize`).
 *
 * It behaves as `MemoryNetwork` does where a user could tell: one connection per peer (reused; when both sides dial
 * at once the connection dialled by the smaller NodeId is kept and the other drained and closed, its queued messages
 * moved over), a completed handshake records the peer as verified, oversize frames and floods ban the sender and
 * close that connection only, bounded queues with the policies of SPEC §13.1, and `ConnectionEvent`s on `events`.
 *
 * Closing the Layer's scope closes the server and every socket; nothing is left to keep the process alive.
 *
 * @since 0.1.0
 */
import * as Crypto from "@comms-dht/core/Crypto"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import { ConfigError } from "@comms-dht/core/DhtError"
import * as DhtLog from "@comms-dht/core/DhtLog"
import * as LightQueue from "@comms-dht/core/LightQueue"
import * as Noise from "@comms-dht/core/Noise"
import { toHex } from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import type { PeerClaim } from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as PeerValidator from "@comms-dht/core/PeerValidator"
import type { ConnectionEvent, InboundMessage } from "@comms-dht/core/Transport"
import type { TransportService } from "@comms-dht/core/Transport"
import { makeScreens, Transport } from "@comms-dht/core/Transport"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberSet from "effect/FiberSet"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as Handshake from "./internal/tcpHandshake.js"
import * as Socket from "./internal/tcpSocket.js"
import * as Internal from "./internal/tcpTransport.js"

/**
 * Options of `TcpTransport.layer`. Only `listen` is required; the limits default to SPEC §17.6.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `HOST:PORT` or `tcp://HOST:PORT`; port 0 picks a free port (see `listenAddresses` for the one bound) */
  readonly listen: string
  /** the addresses to claim (default: the bound listen address) */
  readonly announce?: ReadonlyArray<string>
  /** default 8 MiB */
  readonly maxFrameSize?: number
  /** default 6 s */
  readonly handshakeTimeout?: Duration.DurationInput
  /** default 20 min */
  readonly idleTimeout?: Duration.DurationInput
  /** default 100 */
  readonly maxInboundHandshakes?: number
  /** per address; default 5 s */
  readonly dialTimeout?: Duration.DurationInput
  /** per peer; default 100 (a full queue fails the new message with `QueueFull`) */
  readonly outboundQueue?: number
  /** per connection; default 1,000 (dropping, counted `where="connection"`) */
  readonly inboundQueue?: number
  /** retries of an address after a connection error, with jittered exponential backoff; default 2 */
  readonly dialRetries?: number
  /** the claim to present (default: one signed now over `announce` and the identity's features) */
  readonly claim?: PeerClaim
  /** tests only: present this instead of the signature binding the Noise static key (SPEC §20 scenario 34) */
  readonly staticSignature?: Uint8Array
}

/**
 * The resolved limits.
 *
 * @since 0.1.0
 * @category models
 */
export type Settings = Internal.Settings

/**
 * The defaults of SPEC §17.6.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults: Settings = {
  maxFrameSize: 8 * 1024 * 1024,
  handshakeTimeout: Duration.seconds(6),
  idleTimeout: Duration.minutes(20),
  maxInboundHandshakes: 100,
  dialTimeout: Duration.seconds(5),
  outboundQueue: 100,
  inboundQueue: 1_000,
  dialRetries: 2
}

const settingsOf = (options: Options): Settings => ({
  maxFrameSize: options.maxFrameSize ?? defaults.maxFrameSize,
  handshakeTimeout: Duration.decode(options.handshakeTimeout ?? defaults.handshakeTimeout),
  idleTimeout: Duration.decode(options.idleTimeout ?? defaults.idleTimeout),
  maxInboundHandshakes: options.maxInboundHandshakes ?? defaults.maxInboundHandshakes,
  dialTimeout: Duration.decode(options.dialTimeout ?? defaults.dialTimeout),
  outboundQueue: options.outboundQueue ?? defaults.outboundQueue,
  inboundQueue: options.inboundQueue ?? defaults.inboundQueue,
  dialRetries: options.dialRetries ?? defaults.dialRetries
})

/**
 * The transport with what only TCP has: the bound address (for a CLI to print) and a connection count.
 *
 * @since 0.1.0
 * @category models
 */
export interface TcpTransportService extends TransportService {
  /** the bound host and port (the real port when listening on port 0) */
  readonly address: { readonly host: string; readonly port: number }
  /** open connections, a duplicate being drained included */
  readonly connectionCount: Effect.Effect<number>
}

/**
 * The TCP side of a node, for code that needs more than `Transport` (the CLI printing its port, tests).
 *
 * @since 0.1.0
 * @category tags
 */
export class TcpTransport extends Context.Tag("@comms-dht/node/TcpTransport")<TcpTransport, TcpTransportService>() {}

/**
 * Listens, and returns the transport. Closing the scope closes the server and every connection.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<
  TcpTransportService,
  ConfigError,
  NodeIdentity.NodeIdentity | PeerManager.PeerManager | Crypto.Crypto | Scope.Scope
> =>
  Effect.gen(function*() {
    const settings = settingsOf(options)
    const bind = Option.getOrUndefined(Internal.parseHostPort(options.listen))
    if (bind === undefined) {
      return yield* new ConfigError({ reason: `listen address ${options.listen} is not HOST:PORT` })
    }
    const identity = yield* NodeIdentity.NodeIdentity
    const peers = yield* PeerManager.PeerManager
    const crypto = yield* Crypto.Crypto
    const config = yield* DhtConfig.DhtConfig
    // a fresh static key per start (SPEC §4.8), from the layer's randomness
    const staticKey = Noise.keyPairFromSecret(yield* crypto.randomBytes(Noise.DHLEN), Handshake.nodeBackend)
    if (Either.isLeft(staticKey)) return yield* new ConfigError({ reason: staticKey.left.reason })

    const fibers = yield* FiberSet.make()
    const spawn = yield* FiberSet.runtime(fibers)()
    const registry = Socket.makeRegistry()
    const accepted: Array<Socket.TcpSocket> = []
    let onAccept = (socket: Socket.TcpSocket) => {
      // until the endpoint exists: the listener is up before the claim over its real port can be signed
      accepted.push(socket)
    }
    const listener = yield* Effect.acquireRelease(
      Socket.listen(registry, bind.host, bind.port, (socket) => onAccept(socket)).pipe(
        Effect.mapError((e) => new ConfigError({ reason: `cannot listen on ${options.listen}: ${e.reason}` }))
      ),
      (l) => Effect.zipRight(Socket.destroyAll(registry), l.close)
    )
    const address = Internal.formatAddress(listener.host, listener.port)
    const claim = options.claim ?? (yield* PeerValidator.signClaim({
      secretKey: identity.secretKey,
      publicKey: identity.publicKey,
      addresses: options.announce ?? [address],
      features: identity.features
    }).pipe(Effect.provideService(Crypto.Crypto, crypto)))

    const endpoint: Internal.Endpoint = {
      local: {
        nodeId: identity.nodeId,
        hex: toHex(identity.nodeId),
        publicKey: identity.publicKey,
        staticKey: staticKey.right,
        payload: Handshake.encodePayload({
          crypto,
          secretKey: identity.secretKey,
          publicKey: identity.publicKey,
          staticPublicKey: staticKey.right.publicKey,
          claim,
          protocolVersion: config.protocolVersion,
          staticSignature: options.staticSignature
        }),
        config,
        crypto,
        peers
      },
      settings,
      registry,
      spawn: (effect) => spawn(effect, { immediate: false }),
      slots: yield* Ref.make(HashMap.empty<string, Internal.Slot>()),
      lock: yield* Effect.makeSemaphore(1),
      inbox: yield* LightQueue.bounded<InboundMessage>(config.inboundQueueCapacity),
      screens: makeScreens(),
      events: yield* LightQueue.slidingFanout<ConnectionEvent>(Internal.EVENT_BUFFER),
      closing: yield* Ref.make(false),
      handshakes: yield* Effect.makeSemaphore(settings.maxInboundHandshakes),
      nextId: yield* Ref.make(0)
    }
    // runs before the listener's release and the FiberSet's: connections fail over to `TransportShutdown` first
    yield* Effect.addFinalizer(() => Internal.shutdown(endpoint))
    yield* Effect.sync(() => {
      onAccept = (socket) => endpoint.spawn(Internal.supervised(Internal.accept(endpoint, socket)))
      for (const socket of accepted.splice(0)) onAccept(socket)
    })
    yield* DhtLog.debug("tcp transport listening", { address })

    return {
      send: (message) => Internal.send(endpoint, message),
      inbound: endpoint.inbox,
      dial: (peer) => Internal.dial(endpoint, peer),
      disconnect: (peer) => Internal.disconnect(endpoint, peer),
      isConnected: (peer) => Internal.isConnected(endpoint, peer),
      connectedPeers: Internal.connectedPeers(endpoint),
      events: endpoint.events.stream,
      subscribe: endpoint.events.subscribe,
      listen: endpoint.events.listen,
      listenAddresses: [address],
      screen: endpoint.screens.install,
      address: { host: listener.host, port: listener.port },
      connectionCount: Internal.connectionCount(endpoint)
    }
  })

/**
 * Core's `Transport` over TCP, and the `TcpTransport` tag with the bound address.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<
  Transport | TcpTransport,
  ConfigError,
  NodeIdentity.NodeIdentity | PeerManager.PeerManager | Crypto.Crypto
> =>
  Layer.scopedContext(
    Effect.map(make(options), (service) => Context.make(TcpTransport, service).pipe(Context.add(Transport, service)))
  )

/**
 * The Noise primitives the transport uses: `node:crypto`'s X25519 and ChaCha20-Poly1305, bit-identical to
 * `Noise.nobleBackend` on the published vectors (for benchmarks and tests of the handshake alone).
 *
 * @since 0.1.0
 * @category constructors
 */
export const noiseBackend: Noise.Backend = Handshake.nodeBackend
