/** @internal */
import * as Crypto from "@comms-dht/core/Crypto"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import { ConfigError, StoreError } from "@comms-dht/core/DhtError"
import type * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as Envelope from "@comms-dht/core/Envelope"
import type * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import type * as Transport from "@comms-dht/core/Transport"
import * as SqliteStore from "@comms-dht/store/SqliteStore"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as NodeBuffer from "node:buffer"
import * as Dht from "../Dht.js"
import * as Reliable from "../Reliable.js"
import type * as Simulation from "../Simulation.js"
import * as TcpTransport from "../TcpTransport.js"
import { formatAddress, parseHostPort } from "./tcpTransport.js"

/** Bad arguments or files: reported on stderr, exit code 2. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/** The node could not start or stopped on an error (cannot listen, storage): stderr, exit code 1. */
export class RunFailed extends Data.TaggedError("RunFailed")<{ readonly message: string }> {}

/** A command line that cannot be carried out: answered with an error line, the node keeps running. */
class CommandError extends Data.TaggedError("CommandError")<{ readonly error: string; readonly message: string }> {}

export interface RunArgs {
  readonly identity: string
  readonly listen: string
  readonly peers: ReadonlyArray<string>
  readonly db: Option.Option<string>
  readonly config: Option.Option<string>
}

export interface RunEnvironment {
  /** the node's Crypto layer; a deterministic one is refused (SPEC §4) */
  readonly crypto: Layer.Layer<Crypto.Crypto>
  /** where the JSON-line commands come from (stdin in the binary) */
  readonly input: Stream.Stream<Uint8Array>
}

// --- the identity file (SPEC §2.1, as `keygen` writes it) ---

const IdentityFile = Schema.parseJson(Schema.Struct({
  secretKey: Schema.compose(Schema.Uint8ArrayFromHex, NodeId.SecretKey),
  publicKey: NodeId.PublicKeyFromHex,
  nodeId: NodeId.NodeIdFromHex,
  features: Schema.Int.pipe(Schema.between(0, 0xffff_ffff))
}))

const loadIdentity = (file: string, crypto: Crypto.CryptoService) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(file).pipe(
      Effect.mapError((error) => new UsageError({ message: `cannot read the identity ${file}: ${error.message}` }))
    )
    const decoded = yield* Schema.decodeUnknown(IdentityFile)(text, { onExcessProperty: "error" }).pipe(
      Effect.mapError((error) =>
        new UsageError({ message: `${file} is not an identity written by comms-dht keygen: ${error.message}` })
      )
    )
    // the file is trusted for nothing: the three values must agree, or messages would be signed by the wrong key
    if (!crypto.checkPublicKey(decoded.publicKey)) {
      return yield* new UsageError({ message: `${file}: publicKey fails the key check (SPEC §4.3)` })
    }
    if (!NodeId.equals(crypto.publicKeyOf(decoded.secretKey), decoded.publicKey)) {
      return yield* new UsageError({ message: `${file}: publicKey is not the public key of secretKey` })
    }
    if (!NodeId.equals(NodeId.fromPublicKey(decoded.publicKey), decoded.nodeId)) {
      return yield* new UsageError({ message: `${file}: nodeId is not the NodeId of publicKey` })
    }
    return NodeIdentity.make({
      secretKey: decoded.secretKey,
      publicKey: decoded.publicKey,
      features: decoded.features
    })
  })

// --- arguments ---

interface Seed {
  readonly publicKey: NodeId.PublicKey
  readonly address: string
}

const checkedKey = (hex: string, crypto: Crypto.CryptoService): Option.Option<NodeId.PublicKey> =>
  Either.match(Encoding.decodeHex(hex), {
    onLeft: () => Option.none(),
    onRight: (bytes) => crypto.checkPublicKey(bytes) ? Option.some(bytes) : Option.none()
  })

const parseSeed = (text: string, crypto: Crypto.CryptoService): Effect.Effect<Seed, UsageError> => {
  const at = text.indexOf("@")
  const key = checkedKey(text.slice(0, Math.max(at, 0)), crypto)
  const hostPort = at < 0 ? Option.none() : parseHostPort(text.slice(at + 1))
  if (Option.isNone(key)) {
    return Effect.fail(
      new UsageError({ message: `--peer ${text}: expected PUBLICKEY@HOST:PORT with a valid 64-hex-digit public key` })
    )
  }
  if (Option.isNone(hostPort)) {
    return Effect.fail(new UsageError({ message: `--peer ${text}: expected PUBLICKEY@HOST:PORT` }))
  }
  return Effect.succeed({ publicKey: key.value, address: formatAddress(hostPort.value.host, hostPort.value.port) })
}

const isLoopback = (host: string) => host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host)

const loadConfig = (file: Option.Option<string>, listenHost: string) =>
  Effect.gen(function*() {
    const base = yield* Option.match(file, {
      onNone: () => Effect.succeed(DhtConfig.defaultConfig),
      onSome: (path) =>
        Effect.gen(function*() {
          const fs = yield* FileSystem.FileSystem
          const text = yield* fs.readFileString(path).pipe(
            Effect.mapError((error) => new UsageError({ message: `cannot read --config ${path}: ${error.message}` }))
          )
          const json = yield* Schema.decodeUnknown(Schema.parseJson())(text).pipe(
            Effect.mapError((error) => new UsageError({ message: `--config ${path}: ${error.message}` }))
          )
          return yield* DhtConfig.decode(json).pipe(
            Effect.mapError((error) => new UsageError({ message: `--config ${path}: ${error.reason}` }))
          )
        })
    })
    // a node on loopback can only ever meet other loopback nodes, whose claims the defaults would drop (SPEC §17.7)
    return isLoopback(listenHost)
      ? yield* DhtConfig.make({ peerValidator: { allowTestAddresses: true } }, base).pipe(
        Effect.mapError((error) => new UsageError({ message: error.reason }))
      )
      : base
  })

// --- output: one JSON object per stdout line ---

type Json = string | number | boolean | null | ReadonlyArray<Json> | { readonly [key: string]: Json }

const emit = (line: { readonly type: string; readonly [key: string]: Json | undefined }) =>
  Console.log(JSON.stringify(line))

const hex = NodeId.toHex

/** Bytes as hex and bigints as decimal strings, so an event's payload is JSON whatever it holds. */
const toJson = (value: unknown): Json => {
  if (value instanceof Uint8Array) return hex(value)
  if (typeof value === "bigint") return value.toString()
  if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") return value
  if (Array.isArray(value)) return value.map((item: unknown) => toJson(item))
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, toJson(item)]))
  }
  return null
}

/** Valid UTF-8 is shown as text; anything else as base64, so no byte is lost or invented. */
const bodyFields = (body: Uint8Array): { readonly body: string; readonly encoding: "utf8" | "base64" } =>
  NodeBuffer.isUtf8(body)
    ? { body: new TextDecoder().decode(body), encoding: "utf8" }
    : { body: Encoding.encodeBase64(body), encoding: "base64" }

const messageLine = (message: InboundMessages.DomainMessage) =>
  emit({
    type: "message",
    origin: Option.match(message.origin, { onNone: () => null, onSome: hex }),
    tag: message.tag.toString(),
    messageType: message.messageType,
    ...bodyFields(message.body),
    viaSaf: message.isSafMessage,
    encrypted: message.wasEncrypted,
    sourcePeer: hex(message.sourcePeer)
  })

const eventLine = (event: DhtEvent.DhtEvent) =>
  event._tag === "PeerAdded"
    ? emit({
      type: "peer",
      event: "added",
      publicKey: hex(event.publicKey),
      nodeId: hex(NodeId.fromPublicKey(event.publicKey)),
      source: event.source
    })
    : emit({ type: "event", event: event._tag, ...toObject(event) })

/** An event's fields but its tag, as JSON. */
const toObject = (event: DhtEvent.DhtEvent): { readonly [key: string]: Json } =>
  Object.fromEntries(Object.entries(event).filter(([key]) => key !== "_tag").map(([key, item]) => [key, toJson(item)]))

const connectionLine = (event: Transport.ConnectionEvent) => {
  switch (event._tag) {
    case "PeerConnected":
      return emit({
        type: "peer",
        event: "connected",
        publicKey: hex(event.peer.publicKey),
        nodeId: hex(event.peer.nodeId),
        outbound: event.outbound
      })
    case "PeerDisconnected":
      return emit({ type: "peer", event: "disconnected", nodeId: hex(event.nodeId) })
    case "DialFailed":
      return emit({ type: "peer", event: "dialFailed", nodeId: hex(event.nodeId) })
  }
}

// --- input: JSON-line commands ---

const Id = Schema.optional(Schema.Union(Schema.String, Schema.Number))

const Strategy = Schema.Literal("direct", "closest", "flood", "random", "propagate")

const SendCommand = Schema.Struct({
  send: Schema.Struct({
    to: Schema.String,
    body: Schema.String,
    encoding: Schema.optionalWith(Schema.Literal("utf8", "base64"), { default: () => "utf8" as const }),
    strategy: Schema.optionalWith(Strategy, { default: () => "direct" as const }),
    /** default: true, except for `flood`, which is cleartext by definition */
    encrypt: Schema.optional(Schema.Boolean),
    messageType: Schema.optionalWith(Schema.Int.pipe(Schema.between(-0x8000_0000, 0x7fff_ffff)), {
      default: () => 0
    }),
    /** ask for a receipt, retry, and report `delivery` lines until Delivered or Expired (issue #9) */
    reliable: Schema.optionalWith(Schema.Boolean, { default: () => false })
  }),
  id: Id
})

const DiscoverCommand = Schema.Struct({ discover: Schema.String, id: Id })

const PeersCommand = Schema.Struct({ peers: Schema.Literal(true), id: Id })

const Command = Schema.parseJson(Schema.Union(SendCommand, DiscoverCommand, PeersCommand))

type Command = typeof Command.Type

type CommandId = string | number | undefined

/** How long a `send` waits for its per-peer states before reporting the unfinished ones as pending. */
const SEND_WAIT = "15 seconds"

/** Commands in progress at once: a slow one (a discovery takes up to 2 minutes) does not hold up the next. */
const COMMAND_CONCURRENCY = 16

const bad = (message: string) => new CommandError({ error: "BadCommand", message })

const keyArgument = (text: string, crypto: Crypto.CryptoService) =>
  Option.match(checkedKey(text, crypto), {
    onNone: () => Effect.fail(bad(`${JSON.stringify(text)} is not a valid public key (64 hex digits, SPEC §4.3)`)),
    onSome: Effect.succeed
  })

interface Node {
  readonly dht: Dht.DhtService
  readonly tcp: TcpTransport.TcpTransportService
  readonly peers: PeerManager.PeerManagerService
  readonly crypto: Crypto.CryptoService
  readonly config: DhtConfig.Config
  /** the node's: what a command leaves running ends with it */
  readonly scope: Scope.Scope
}

const send = (node: Node, command: typeof SendCommand.Type["send"], id: CommandId) =>
  Effect.gen(function*() {
    const to = yield* keyArgument(command.to, node.crypto)
    const body = command.encoding === "utf8"
      ? new TextEncoder().encode(command.body)
      : yield* Either.match(Encoding.decodeBase64(command.body), {
        onLeft: () => Effect.fail(bad("body is not valid base64")),
        onRight: Effect.succeed
      })
    if (command.reliable) return yield* sendReliable(node, command, to, body, id)
    const encrypt = command.encrypt ?? command.strategy !== "flood"
    if (command.strategy === "flood" && encrypt) {
      return yield* bad("flood sends in clear to every connected node (SPEC §6.6): drop \"encrypt\" or set it false")
    }
    const encryption = encrypt ? OutboundRequester.encryptFor(to) : OutboundRequester.clearText
    const destination = Envelope.destinationPublicKey(to)
    const type = command.messageType
    const request = (() => {
      switch (command.strategy) {
        case "direct":
          return encrypt
            ? OutboundRequester.sendDirectEncrypted(to, type, body)
            : OutboundRequester.sendDirectUnencrypted(to, type, body)
        case "closest":
          return OutboundRequester.closestBroadcast(to, encryption, [], type, body)
        case "flood":
          return OutboundRequester.flood(destination, [], type, body)
        case "random":
          return OutboundRequester.sendRandom(node.config.broadcastFactor, destination, encryption, type, body)
        case "propagate":
          return OutboundRequester.propagate(destination, encryption, [], type, body)
      }
    })()
    const states = yield* request.pipe(
      Effect.flatMap(OutboundRequester.resolve),
      Effect.provideService(OutboundRequester.OutboundRequester, node.dht.requester),
      Effect.mapError((error) => new CommandError({ error: error._tag, message: error.message }))
    )
    const results = yield* states.waitN(SEND_WAIT, states.size)
    const done = new Set([...results.sentTo, ...results.failures.map((failure) => failure.peer)].map(hex))
    yield* emit({
      type: "sent",
      id,
      to: hex(to),
      strategy: command.strategy,
      encrypted: encrypt,
      tag: states.tags[0]?.toString() ?? null,
      peers: states.peers.map(hex),
      succeeded: results.sentTo.map(hex),
      failed: results.failures.map((failure) => ({ peer: hex(failure.peer), reason: failure.reason._tag })),
      pending: states.peers.map(hex).filter((peer) => !done.has(peer))
    })
  })

// A receipt can only come back for a message encrypted for its destination, sent toward it: direct, closest or
// propagate (the first attempt's strategy; the retries take the others in turn).
const sendReliable = (
  node: Node,
  command: typeof SendCommand.Type["send"],
  to: NodeId.PublicKey,
  body: Uint8Array,
  id: CommandId
) =>
  Effect.gen(function*() {
    if (command.encrypt === false) return yield* bad("a reliable send is encrypted for its destination: drop \"encrypt\"")
    const first = command.strategy
    if (first !== "direct" && first !== "closest" && first !== "propagate") {
      return yield* bad(`a reliable send goes toward its destination: strategy direct, closest or propagate, not ${first}`)
    }
    const strategies: ReadonlyArray<Reliable.AttemptStrategy> = [
      first,
      ...(["direct", "closest", "propagate"] as const).filter((s) => s !== first)
    ]
    const delivery = yield* node.dht.sendReliable({ destination: to, messageType: command.messageType, body, strategies })
      .pipe(Effect.mapError((error) => new CommandError({ error: error._tag, message: error.message })))
    const hash = hex(delivery.messageHash)
    yield* emit({ type: "sent", id, to: hex(to), reliable: true, hash })
    // the status lines follow on their own: the command is done once the send is under way
    yield* Effect.forkIn(
      delivery.changes.pipe(
        Stream.takeUntil(Reliable.isFinal),
        Stream.runForEach((status) =>
          emit({
            type: "delivery",
            id,
            hash,
            status: status._tag,
            ...(status._tag === "Delivered" ? { elapsedMs: status.elapsedMs } : {}),
            ...(status._tag === "Sent" || status._tag === "Stored" ? { attempts: status.attempts } : {})
          })
        )
      ),
      node.scope
    )
  })

const discover = (node: Node, key: string, id: CommandId) =>
  Effect.gen(function*() {
    const publicKey = yield* keyArgument(key, node.crypto)
    const peer = yield* node.dht.discover(publicKey).pipe(
      Effect.mapError((error) => new CommandError({ error: error._tag, message: error.message }))
    )
    yield* emit({
      type: "discovered",
      id,
      publicKey: hex(peer.publicKey),
      nodeId: hex(peer.nodeId),
      addresses: peer.addresses.map((a) => a.address)
    })
  })

const listPeers = (node: Node, id: CommandId) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const all = yield* node.peers.all.pipe(
      Effect.mapError((error) => new CommandError({ error: error._tag, message: error.message }))
    )
    const connected = new Set((yield* node.tcp.connectedPeers).map(hex))
    yield* emit({
      type: "peers",
      id,
      peers: all.map((peer) => ({
        publicKey: hex(peer.publicKey),
        nodeId: hex(peer.nodeId),
        addresses: peer.addresses.map((a) => a.address),
        features: peer.features,
        seed: peer.isSeed,
        verified: peer.isVerified,
        connected: connected.has(hex(peer.nodeId)),
        banned: peer.isBanned(now),
        offline: peer.isOffline
      }))
    })
  })

const execute = (node: Node, command: Command): Effect.Effect<void> => {
  const work = "send" in command
    ? send(node, command.send, command.id)
    : "discover" in command
    ? discover(node, command.discover, command.id)
    : listPeers(node, command.id)
  return Effect.catchAll(
    work,
    (error) => emit({ type: "error", id: command.id, error: error.error, message: error.message })
  )
}

const handleLine = (node: Node) => (line: string): Effect.Effect<void> =>
  Schema.decodeUnknown(Command)(line, { onExcessProperty: "error" }).pipe(
    Effect.matchEffect({
      onFailure: (error) => emit({ type: "error", error: "BadCommand", message: error.message }),
      onSuccess: (command) => execute(node, command)
    }),
    // a command must never take the node down: a defect is reported like any other failure
    Effect.catchAllDefect((defect) =>
      Effect.zipRight(
        Effect.logError("command failed", defect),
        emit({ type: "error", error: "Internal", message: String(defect) })
      )
    )
  )

// --- the node ---

/** Adds a `--peer` as a seed, keeping what an earlier run (same `--db`) learnt about it. */
const addSeed = (peers: PeerManager.PeerManagerService, seed: Seed) =>
  Effect.gen(function*() {
    const nowMs = yield* Clock.currentTimeMillis
    const nodeId = NodeId.fromPublicKey(seed.publicKey)
    const known = yield* peers.get(nodeId).pipe(
      Effect.map(Option.some),
      Effect.catchTag("PeerNotFound", () => Effect.succeedNone)
    )
    if (Option.isNone(known)) {
      yield* peers.add(Peer.make({
        publicKey: seed.publicKey,
        addresses: [seed.address],
        features: Peer.PeerFeatures.COMMUNICATION_NODE,
        source: "Config",
        nowMs,
        flags: Peer.PeerFlags.SEED
      }))
    } else {
      const address = new Peer.PeerAddress({ address: seed.address, connectionFailures: 0, source: "Config" })
      yield* peers.update(nodeId, (peer) =>
        new Peer.Peer({
          ...peer,
          flags: peer.flags | Peer.PeerFlags.SEED,
          addresses: peer.addresses.some((a) => a.address === seed.address)
            ? peer.addresses
            : [...peer.addresses, address]
        }))
    }
    yield* emit({
      type: "peer",
      event: "added",
      publicKey: hex(seed.publicKey),
      nodeId: hex(nodeId),
      source: "Config",
      address: seed.address
    })
  })

/** Seeds in the peer table, dialled; one join once any of them answers (SPEC §10.1). */
const bootstrap = (node: Node, transport: Transport.TransportService, seeds: ReadonlyArray<Seed>) =>
  Effect.gen(function*() {
    yield* Effect.forEach(seeds, (seed) => addSeed(node.peers, seed), { discard: true })
    const dials = yield* Effect.forEach(
      seeds,
      (seed) =>
        transport.dial(NodeId.fromPublicKey(seed.publicKey)).pipe(
          Effect.tapError((error) =>
            Effect.logWarning("seed dial failed").pipe(Effect.annotateLogs({ peer: seed.address, error: error._tag }))
          ),
          Effect.either
        ),
      { concurrency: "unbounded" }
    )
    if (dials.some(Either.isRight)) yield* node.dht.join
  }).pipe(Effect.catchAll((error) => Effect.logWarning("adding the seeds failed", error)))

const describe = (error: unknown): string => {
  if (error instanceof ConfigError) return error.reason
  if (error instanceof StoreError) return `storage: ${error.reason}: ${error.message}`
  if (error instanceof Error && error.message.length > 0) return error.message
  return String(error)
}

/**
 * `comms-dht run`: one node over TCP and sqlite until the input ends or the fiber is interrupted (a signal); the
 * node's scope closes either way, which closes the database.
 */
export const run = <E>(
  args: RunArgs,
  makeDhtLayer: Simulation.MakeDhtLayer<E>,
  environment: RunEnvironment
): Effect.Effect<void, UsageError | RunFailed, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const crypto = yield* Effect.provide(Crypto.Crypto, environment.crypto)
    if (crypto.deterministic) {
      return yield* new UsageError({
        message: "refusing a deterministic (seeded) Crypto layer: it would repeat keys and nonces (SPEC §4)"
      })
    }
    const listen = yield* Option.match(parseHostPort(args.listen), {
      onNone: () => Effect.fail(new UsageError({ message: `--listen ${args.listen}: expected HOST:PORT` })),
      onSome: Effect.succeed
    })
    const identity = yield* loadIdentity(args.identity, crypto)
    const seeds = yield* Effect.forEach(args.peers, (text) => parseSeed(text, crypto))
    const config = yield* loadConfig(args.config, listen.host)

    const nodeLayer = makeDhtLayer(config).pipe(
      Layer.provideMerge(TcpTransport.layer({ listen: args.listen })),
      Layer.provideMerge(Layer.mergeAll(
        SqliteStore.layer({ filename: Option.getOrElse(args.db, () => ":memory:") }),
        NodeIdentity.layer(identity),
        DhtConfig.layer(config),
        Layer.succeed(Crypto.Crypto, crypto)
      ))
    )

    const serve = Effect.gen(function*() {
      const dht = yield* Dht.Dht
      const tcp = yield* TcpTransport.TcpTransport
      const node: Node = { dht, tcp, peers: yield* PeerManager.PeerManager, crypto, config, scope: yield* Effect.scope }
      yield* Effect.forkScoped(Stream.runForEach(dht.inbound, messageLine))
      yield* Effect.forkScoped(Stream.runForEach(dht.events, eventLine))
      yield* Effect.forkScoped(Stream.runForEach(tcp.events, connectionLine))
      // the three streams subscribe when their fibers first run: let them, before anyone can learn our address
      yield* Effect.yieldNow()
      yield* emit({
        type: "ready",
        publicKey: hex(identity.publicKey),
        nodeId: hex(identity.nodeId),
        address: tcp.listenAddresses[0] ?? formatAddress(tcp.address.host, tcp.address.port)
      })
      yield* Effect.forkScoped(bootstrap(node, tcp, seeds))
      yield* environment.input.pipe(
        Stream.decodeText(),
        Stream.splitLines,
        Stream.filter((line) => line.trim().length > 0),
        Stream.mapEffect(handleLine(node), { concurrency: COMMAND_CONCURRENCY, unordered: true }),
        Stream.runDrain
      )
      yield* Effect.logInfo("end of input: stopping")
    }).pipe(Effect.scoped)

    yield* serve.pipe(
      Effect.provide(nodeLayer),
      Effect.mapError((error) => new RunFailed({ message: describe(error) }))
    )
  })
