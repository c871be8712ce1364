/**
 * `Simulation`: the engine of `comms-dht sim` (SPEC §19). N full `Dht` nodes in one process on a `MemoryNetwork`,
 * each with its own storage, on virtual time (`VirtualClock`): they join and network-discover from a few seed peers,
 * discover, exchange encrypted direct and propagated messages and signed broadcasts, a fraction goes offline and
 * comes back so store-and-forward delivers what it missed; the result is the measures of §19's table.
 *
 * Everything follows from the seed: identities (`simIdentitySeed`), one Effect `Random` seeded with S (topology,
 * pairs, offline choice, link latency, the nodes' own choices) and one seeded `Crypto` shared by all nodes. Keys and
 * maps are by index or hex, never by `Uint8Array` reference. Same inputs, same JSON except `durationMs`.
 *
 * It lives off the main entry point (`@comms-dht/node/Simulation`): it runs on the deterministic Crypto and the
 * virtual clock, which ARCHITECTURE.md keeps behind the testing entry points, and hands neither out.
 *
 * @since 0.1.0
 */
import * as Crypto from "@comms-dht/core/Crypto"
import type * as DedupCache from "@comms-dht/core/DedupCache"
import * as CoreDedupCache from "@comms-dht/core/DedupCache"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import { ConfigError, type SendFailure, type StoreError } from "@comms-dht/core/DhtError"
import type * as DhtEvent from "@comms-dht/core/DhtEvent"
import * as DhtLog from "@comms-dht/core/DhtLog"
import * as DhtMetadata from "@comms-dht/core/DhtMetadata"
import * as Drbg from "@comms-dht/core/Drbg"
import * as Envelope from "@comms-dht/core/Envelope"
import * as FiberClock from "@comms-dht/core/FiberClock"
import type * as InboundMessages from "@comms-dht/core/InboundMessages"
import * as LightQueue from "@comms-dht/core/LightQueue"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as NodeIdentity from "@comms-dht/core/NodeIdentity"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as PeerValidator from "@comms-dht/core/PeerValidator"
import { Transport, type TransportService } from "@comms-dht/core/Transport"
import * as SqliteStore from "@comms-dht/store/SqliteStore"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as RuntimeFlagsPatch from "effect/RuntimeFlagsPatch"
import * as Scope from "effect/Scope"
import * as Schedule from "effect/Schedule"
import * as Dht from "./Dht.js"
import * as Recorder from "./internal/simRecorder.js"
import type * as Reliable from "./Reliable.js"
import { makeNodeSeeded } from "./testing.js"
import * as VirtualClock from "./VirtualClock.js"

/**
 * @since 0.1.0
 * @category models
 */
export type StoreKind = "sqlite" | "memory"

/**
 * The inputs of a run (defaults are the CLI's: N = 100, K = 8, S = 1, M = 1000, F = 0.1, sqlite in memory).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly nodes: number
  readonly degree: number
  readonly seed: number
  readonly messages: number
  /** the fraction F of nodes taken offline in step 6 */
  readonly offline: number
  readonly store: StoreKind
  /** with `store = "sqlite"`: keep each node's database as `DIR/node-<i>.sqlite` (default: `:memory:`) */
  readonly db?: string | undefined
  /** called as the run moves on; at most once per percent of each step */
  readonly onProgress?: ((progress: Progress) => Effect.Effect<void>) | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Progress {
  /** 1–8, SPEC §19's steps */
  readonly step: number
  readonly steps: number
  readonly label: string
  /** how far the current step is, 0–1 */
  readonly fraction: number
  /** virtual ms since the run started */
  readonly virtualMs: number
  /** Effect operations the simulation's fibers have run so far: its work, in a unit independent of the machine */
  readonly operations: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Tally {
  readonly expected: number
  readonly delivered: number
}

/**
 * The measures of SPEC §19, in its table's order. Only `durationMs` differs between runs of the same inputs.
 *
 * @since 0.1.0
 * @category models
 */
export interface Result {
  readonly nodes: number
  readonly degree: number
  readonly seed: number
  readonly messages: number
  /** the number of nodes taken offline */
  readonly offline: number
  readonly direct: Tally
  readonly broadcast: Tally
  readonly saf: Tally & { readonly stored: number }
  readonly expected: number
  readonly delivered: number
  readonly deliveryRatio: number
  readonly duplicates: number
  readonly wireMessages: number
  readonly amplification: number
  readonly propagation: { readonly messages: number; readonly wireMessages: number; readonly mean: number }
  readonly latencyMs: { readonly p50: number; readonly p95: number; readonly max: number }
  readonly discovery: { readonly attempted: number; readonly succeeded: number }
  readonly bans: number
  /**
   * Reliable sends (ours, docs/spec-departures.md §2): every fourth step-5 message and every step-6 message ask for a
   * receipt; how many were `Delivered`, virtual ms from send to Delivered (p50, p95), and the stored SAF copies
   * their receipts removed.
   */
  readonly receipts: {
    readonly requested: number
    readonly delivered: number
    readonly p50Ms: number
    readonly p95Ms: number
    readonly safCleaned: number
  }
  /** virtual ms from the start to the end of step 8 */
  readonly virtualMs: number
  readonly durationMs: number
}

/**
 * What every node's `Dht` Layer is given.
 *
 * @since 0.1.0
 * @category models
 */
export type NodeServices =
  | Transport
  | PeerManager.PeerManager
  | Crypto.Crypto
  | NodeIdentity.NodeIdentity
  | DedupCache.DedupCache
  | MessageStore.MessageStore
  | DhtMetadata.DhtMetadata

/**
 * Builds one node's `Dht` from its config (`Dht.layer`).
 *
 * @since 0.1.0
 * @category models
 */
export type MakeDhtLayer<E> = (config: DhtConfig.Config) => Layer.Layer<Dht.Dht, E, NodeServices>

/**
 * How a run can fail: bad inputs, or storage that cannot open. A step that outlives its virtual-time cap is cut
 * short with a warning; the measures then show what it missed.
 *
 * @since 0.1.0
 * @category models
 */
export type SimulationError = ConfigError | StoreError

type Storage = PeerManager.PeerManager | MessageStore.MessageStore | DedupCache.DedupCache | DhtMetadata.DhtMetadata

const STEPS = 8
const JOIN_CAP = Duration.minutes(30)
const SETTLE_CAP = Duration.minutes(30)
const WORK_CAP = Duration.minutes(30)
const OFFLINE_WAIT = Duration.minutes(10)
const DISCOVERY_PAIRS = 50
const SAF_PER_OFFLINE = 2
// every fourth step-5 message is sent reliably (a share of the even-numbered, direct ones)
const RELIABLE_EVERY = 4

/** distinct values of [0, n) other than `except`, drawn from Effect's `Random`: at most n − 1 of them */
const sampleDistinct = (n: number, k: number, except: number): Effect.Effect<Array<number>> =>
  Effect.gen(function*() {
    const pool = Array.from({ length: n }, (_, i) => i).filter((i) => i !== except)
    const take = Math.min(k, pool.length)
    // partial Fisher–Yates: the first `take` slots end up a uniform sample
    for (let i = 0; i < take; i++) {
      const j = yield* Random.nextIntBetween(i, pool.length)
      const a = pool[i]!
      pool[i] = pool[j]!
      pool[j] = a
    }
    return pool.slice(0, take)
  })

const otherThan = (n: number, except: number): Effect.Effect<number> =>
  Effect.map(Random.nextIntBetween(0, n - 1), (j) => j >= except ? j + 1 : j)

const validate = (options: Options): Effect.Effect<void, ConfigError> => {
  const problems: Array<string> = []
  const whole = (name: string, value: number, min: number) => {
    if (!Number.isSafeInteger(value) || value < min) {
      problems.push(`${name} must be an integer ≥ ${min}, got ${value}`)
    }
  }
  whole("nodes", options.nodes, 2)
  whole("degree", options.degree, 1)
  whole("messages", options.messages, 0)
  whole("seed", options.seed, 0)
  if (!(options.offline >= 0 && options.offline <= 1)) {
    problems.push(`offline must be in [0, 1], got ${options.offline}`)
  }
  if (options.db !== undefined && options.store !== "sqlite") problems.push("--db needs --store sqlite")
  return problems.length === 0 ? Effect.void : Effect.fail(new ConfigError({ reason: problems.join("; ") }))
}

interface SimNode {
  readonly index: number
  readonly identity: NodeIdentity.Identity
  readonly address: string
  readonly storage: Context.Context<Storage>
}

interface Running {
  readonly scope: Scope.CloseableScope
  readonly dht: Dht.DhtService
  readonly transport: TransportService
}

/**
 * One simulation run (steps 1–8 of SPEC §19), measured. `makeDhtLayer` is `Dht.layer`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const run = <E>(options: Options, makeDhtLayer: MakeDhtLayer<E>): Effect.Effect<Result, SimulationError | E> =>
  Effect.gen(function*() {
    yield* validate(options)
    // the ambient clock is the real one here (in tests, TestClock): durationMs is the only wall-clock figure
    const started = yield* Clock.currentTimeMillis
    const vc = yield* VirtualClock.make()
    const result = yield* vc.use(Effect.scoped(simulate(options, vc, makeDhtLayer))).pipe(
      Effect.withRandom(Random.make(options.seed)),
      withoutFiberMetrics
    )
    const ended = yield* Clock.currentTimeMillis
    return { ...result, durationMs: Math.max(0, ended - started) }
  })

// Effect's runtime counts every fiber's start and end (`effect_fiber_*`, on by default) under the fiber's metric
// labels; the simulation reads none of them, and its nodes start fibers by the hundred thousand (192,000 to the end
// of the 1000-node join), each paying 3 to 4 µs for them (a loop of forks under a node label, as the nodes' are).
const withoutFiberMetrics = Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.disable(RuntimeFlags.RuntimeMetrics))

const simulate = <E>(
  options: Options,
  vc: VirtualClock.VirtualClock,
  makeDhtLayer: MakeDhtLayer<E>
): Effect.Effect<Omit<Result, "durationMs">, SimulationError | E, Scope.Scope> =>
  Effect.gen(function*() {
    const n = options.nodes
    const simScope = yield* Effect.scope
    const t0 = yield* Clock.currentTimeMillis
    const config = yield* DhtConfig.make({
      networkDiscovery: { minDesiredPeers: Math.min(50, n - 1) },
      peerValidator: { allowTestAddresses: true }
    })
    const crypto = yield* makeNodeSeeded(options.seed)
    const recorder = Recorder.make(n)

    // --- progress ---
    const lastReported = yield* Ref.make({ step: 0, label: "", percent: -1 })
    const onProgress = options.onProgress
    const report = (step: number, label: string, fraction: number): Effect.Effect<void> =>
      Effect.gen(function*() {
        const percent = Math.floor(Math.min(1, Math.max(0, fraction)) * 100)
        const previous = yield* Ref.get(lastReported)
        // a new label within a step (its closing) is news even at the same percentage
        if (previous.step === step && previous.label === label && previous.percent === percent) return
        yield* Ref.set(lastReported, { step, label, percent })
        const now = yield* Clock.currentTimeMillis
        const stats = yield* vc.stats
        if (previous.step !== step || previous.label !== label) {
          yield* DhtLog.debug("simulation step", { step, label, ...stats })
        }
        if (onProgress !== undefined) {
          yield* onProgress({
            step,
            steps: STEPS,
            label,
            fraction: percent / 100,
            virtualMs: now - t0,
            operations: stats.operations
          })
        }
      })

    // Work that waits on time (dials, discoveries, sends through discovery, closing scopes), driven to its end; past
    // its cap it is interrupted and the run goes on, as it does when the network stays busy past a settling cap.
    const capped = (label: string) =>
      Effect.flatMap(vc.stats, (stats) =>
        Effect.logWarning("simulation step stopped at its virtual-time cap").pipe(
          Effect.annotateLogs({ label, ...stats })
        ))
    const work = (label: string, effect: Effect.Effect<unknown>): Effect.Effect<void> =>
      vc.drive(effect, { cap: WORK_CAP }).pipe(Effect.catchTag("Timeout", () => capped(label)), Effect.asVoid)
    const quiesce = (label: string, onSettle?: Effect.Effect<void>): Effect.Effect<void> =>
      Effect.flatMap(
        vc.runToQuiescence(onSettle === undefined ? { cap: SETTLE_CAP } : { cap: SETTLE_CAP, onSettle }),
        (quiet) => quiet ? Effect.void : capped(label)
      )

    // --- counters fed by the network and the storage ---
    // filled in step 5 before any of those messages is sent, read by the frame observer
    const propagationTags = new Set<bigint>()
    let propagationFrames = 0
    const bans = yield* Ref.make(0)
    const safStored = yield* Ref.make(0)
    const safCleaned = yield* Ref.make(0)
    const deliveries: Array<Reliable.Delivery> = []
    let reliableRequested = 0

    const hub = yield* MemoryNetwork.makeHub({
      ...vc.hubHooks,
      // 5–50 ms a frame, drawn in the step that writes it from a generator of the run's seed (the golden ratio's
      // bits mixed in, so that it is not the stream of Effect's `Random` seeded alike)
      latency: MemoryNetwork.seededUniformLatency(5, 50, options.seed ^ 0x9e3779b9),
      tapFrame: (frame) => {
        if (propagationTags.has(frame.tag)) propagationFrames++
      }
    })

    const counted = (storage: Context.Context<Storage>): Context.Context<Storage> => {
      const peers = Context.get(storage, PeerManager.PeerManager)
      const messages = Context.get(storage, MessageStore.MessageStore)
      return storage.pipe(
        Context.add(
          PeerManager.PeerManager,
          PeerManager.PeerManager.of({
            ...peers,
            ban: (nodeId, durationMs, reason) =>
              Effect.tap(peers.ban(nodeId, durationMs, reason), () => Ref.update(bans, (k) => k + 1))
          })
        ),
        Context.add(
          MessageStore.MessageStore,
          MessageStore.MessageStore.of({
            ...messages,
            insert: (row) =>
              Effect.tap(
                messages.insert(row),
                (inserted) => inserted._tag === "Inserted" ? Ref.update(safStored, (k) => k + 1) : Effect.void
              ),
            // only receipts remove a row by its hash
            removeByBodyHash: (hash) =>
              Effect.tap(
                messages.removeByBodyHash(hash),
                (removed) => removed ? Ref.update(safCleaned, (k) => k + 1) : Effect.void
              )
          })
        )
      )
    }

    const storageLayer = (i: number): Layer.Layer<Storage, StoreError> =>
      options.store === "memory"
        ? Layer.mergeAll(
          PeerManager.layerMemory,
          MessageStore.layerMemory,
          CoreDedupCache.layerMemory,
          DhtMetadata.layerMemory
        )
        : SqliteStore.layer({ filename: options.db === undefined ? ":memory:" : `${options.db}/node-${i}.sqlite` })

    // --- step 1: identities, storage, claims ---
    yield* report(1, "identities", 0)
    const nodes: Array<SimNode> = []
    const claims: Array<PeerValidator.AcceptedClaim> = []
    for (let i = 0; i < n; i++) {
      const secretKey = Drbg.simIdentitySeed(options.seed, i)
      const identity = NodeIdentity.make({
        secretKey,
        publicKey: crypto.publicKeyOf(secretKey),
        features: Peer.PeerFeatures.COMMUNICATION_NODE
      })
      const address = `mem://${i}`
      const storage = counted(yield* Layer.buildWithScope(storageLayer(i), simScope))
      nodes.push({ index: i, identity, address, storage })
      const claim = yield* PeerValidator.signClaim({
        secretKey,
        publicKey: identity.publicKey,
        addresses: [address],
        features: identity.features
      }).pipe(Effect.provideService(Crypto.Crypto, crypto))
      const accepted = yield* PeerValidator.validateClaims(identity.publicKey, [claim]).pipe(
        Effect.provideService(Crypto.Crypto, crypto),
        Effect.provideService(DhtConfig.DhtConfig, config),
        Effect.mapError((e) => new ConfigError({ reason: `node ${i}'s own claim: ${e.reason}` }))
      )
      const first = accepted[0]
      if (first === undefined) return yield* new ConfigError({ reason: `node ${i}'s claim was dropped by policy` })
      claims.push(first)
      yield* report(1, "identities", (i + 1) / n)
    }
    const nodeAt = (i: number): SimNode => nodes[i]!

    // --- step 2: topology ---
    yield* report(2, "topology", 0)
    const seeds: Array<ReadonlyArray<number>> = []
    for (let i = 0; i < n; i++) {
      const chosen = yield* sampleDistinct(n, options.degree, i)
      seeds.push(chosen)
      const peers = Context.get(nodeAt(i).storage, PeerManager.PeerManager)
      for (const j of chosen) {
        const seed = nodeAt(j)
        const record = PeerValidator.applyClaims(
          Peer.make({
            publicKey: seed.identity.publicKey,
            addresses: [seed.address],
            features: Peer.PeerFeatures.COMMUNICATION_NODE,
            source: "Config",
            nowMs: t0,
            flags: Peer.PeerFlags.SEED
          }),
          [claims[j]!],
          { source: "Config", maxAddressesPerPeer: config.peerValidator.maxAddressesPerPeer }
        )
        yield* peers.add(record)
      }
    }

    // --- nodes: endpoints first (so every address answers), then each node's Dht ---
    const running = yield* Ref.make(HashMap.empty<number, Running>())
    // the nodes whose network discovery has been ready, by index
    const ready = new Set<number>()

    const baseContext = (node: SimNode) =>
      node.storage.pipe(
        Context.add(NodeIdentity.NodeIdentity, node.identity),
        Context.add(Crypto.Crypto, crypto),
        Context.add(MemoryNetwork.MemoryNetworkHub, hub),
        Context.add(DhtConfig.DhtConfig, config)
      )

    // Every running node's scope is a child of this one, which closes its children at once when the run is
    // interrupted (Ctrl-C) or fails: one after another, each departure set the remaining nodes reacting to it (the
    // closing step below). Opened after the storage, so closed before it.
    const nodesScope = yield* Scope.fork(simScope, ExecutionStrategy.parallel)

    const startEndpoint = (node: SimNode, claim: Option.Option<Peer.PeerClaim>) =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(nodesScope, ExecutionStrategy.sequential)
        const endpoint = yield* Layer.buildWithScope(
          MemoryNetwork.layer(
            Option.match(claim, {
              onNone: () => ({ address: node.address }),
              onSome: (c) => ({ address: node.address, claim: c })
            })
          ),
          scope
        ).pipe(Effect.provide(baseContext(node)))
        return { scope, endpoint }
      })

    // any state after Initializing means Ready was entered (SPEC §12.2)
    // listened to in the publishing step: a node publishes an event for every peer it learns, and a fiber woken for
    // each one to look at its tag cost a few percent of the join
    const onEvent = (i: number) => (event: DhtEvent.DhtEvent): void => {
      if (
        event._tag === "NetworkDiscoveryStateChanged" &&
        (event.to === "Ready" || (event.from !== "Initializing" && event.from !== "Shutdown"))
      ) ready.add(i)
    }

    const onMessage = (i: number) => (message: InboundMessages.DomainMessage): Effect.Effect<void> =>
      message.messageType !== Recorder.SIM_MESSAGE_TYPE
        ? Effect.void
        : FiberClock.withNow((now) => {
          recorder.record(i, message.body, now)
          return Effect.void
        })

    const startDht = (
      node: SimNode,
      started: { readonly scope: Scope.CloseableScope; readonly endpoint: Context.Context<Transport> }
    ) =>
      Effect.gen(function*() {
        const context = yield* Layer.buildWithScope(makeDhtLayer(config), started.scope).pipe(
          Effect.provide(Context.merge(baseContext(node), started.endpoint))
        )
        const dht = Context.get(context, Dht.Dht)
        // subscribed before the driver next runs, so before any frame of this node can arrive (latency ≥ 5 ms); read
        // by a loop of takes rather than a stream's pulls, a third of the operations per message
        const messages = yield* Scope.extend(dht.subscribeInbound, started.scope)
        yield* Scope.extend(dht.listenEvents(onEvent(node.index)), started.scope)
        yield* Effect.forkIn(LightQueue.consume(messages, onMessage(node.index)), started.scope)
        yield* Ref.update(
          running,
          HashMap.set(node.index, { scope: started.scope, dht, transport: Context.get(started.endpoint, Transport) })
        )
      })

    const endpoints = yield* Effect.forEach(nodes, (node, i) => startEndpoint(node, Option.some(claims[i]!.claim)))
    for (const [i, started] of endpoints.entries()) {
      yield* startDht(nodeAt(i), started)
      yield* report(2, "starting nodes", (i + 1) / n)
    }

    const withRunning = <A>(i: number, f: (r: Running) => Effect.Effect<A>): Effect.Effect<Option.Option<A>> =>
      Effect.flatMap(Ref.get(running), (all) =>
        Option.match(HashMap.get(all, i), { onNone: () => Effect.succeedNone, onSome: (r) => Effect.asSome(f(r)) }))
    // offline: the node's scope closes (its Dht and endpoint); its storage stays in the simulation's scope
    const stop = (i: number): Effect.Effect<void> =>
      Effect.flatMap(Ref.modify(running, (all) => [HashMap.get(all, i), HashMap.remove(all, i)] as const), (r) =>
        Option.match(r, { onNone: () => Effect.void, onSome: (node) => Scope.close(node.scope, Exit.void) }))

    // node i connects to its seed peers
    yield* work(
      "dial seeds",
      Effect.forEach(
        seeds.flatMap((chosen, i) => chosen.map((j) => [i, j] as const)),
        ([i, j]) => withRunning(i, (r) => Effect.ignore(r.transport.dial(nodeAt(j).identity.nodeId))),
        { concurrency: "unbounded", discard: true }
      )
    )

    // --- step 3: join, network discovery until every node is Ready and pools have refreshed ---
    yield* report(3, "joining", 0)
    yield* work(
      "join",
      Effect.forEach(nodes, (node) => withRunning(node.index, (r) => r.dht.join), {
        concurrency: "unbounded",
        discard: true
      })
    )
    // every node started at t0 (time stands still while they are built): connectivity's first periodic refresh of
    // the pools (§11.2) is due one update interval later, with the peers network discovery has found by then
    const refreshDue = t0 + Duration.toMillis(config.connectivity.updateInterval)
    const joined = yield* vc.runUntil(
      Effect.gen(function*() {
        const readyCount = ready.size
        const now = yield* Clock.currentTimeMillis
        const interval = refreshDue - t0
        yield* report(3, "joining", (readyCount / n + Math.min(1, interval <= 0 ? 1 : (now - t0) / interval)) / 2)
        return readyCount === n && now >= refreshDue
      }),
      { cap: JOIN_CAP }
    )
    if (!joined) yield* capped("join")

    // --- step 4: discovery between nodes that do not know each other ---
    yield* report(4, "discovery", 0)
    const pairs: Array<readonly [number, number]> = []
    const wanted = Math.min(n, DISCOVERY_PAIRS)
    for (let attempt = 0; attempt < wanted * 20 && pairs.length < wanted; attempt++) {
      const a = yield* Random.nextIntBetween(0, n)
      const b = yield* otherThan(n, a)
      if (pairs.some(([x, y]) => x === a && y === b)) continue
      const known = yield* Context.get(nodeAt(a).storage, PeerManager.PeerManager).exists(nodeAt(b).identity.nodeId)
      if (!known) pairs.push([a, b])
    }
    const discovered = yield* Ref.make(0)
    yield* work(
      "discovery",
      Effect.forEach(pairs, ([a, b]) =>
        withRunning(a, (r) =>
          r.dht.discover(nodeAt(b).identity.publicKey).pipe(
            Effect.zipRight(Ref.update(discovered, (k) => k + 1)),
            Effect.zipRight(Effect.flatMap(Ref.get(discovered), (k) => report(4, "discovery", k / pairs.length))),
            Effect.catchAll((error) =>
              DhtLog.debug("simulated discovery failed", { a, b, reason: error._tag })
            )
          )), { concurrency: "unbounded", discard: true })
    )

    // --- step 5: traffic ---
    // a send that fails is simply not delivered: the measures count it
    const send = (
      from: number,
      effect: Effect.Effect<unknown, SendFailure, OutboundRequester.OutboundRequester>
    ) =>
      withRunning(from, (r) =>
        effect.pipe(
          Effect.provideService(OutboundRequester.OutboundRequester, r.dht.requester),
          Effect.catchAll((error) =>
            DhtLog.debug("simulated send failed", { from, reason: error._tag })
          ),
          Effect.asVoid
        ))

    // a reliable send is followed by its `Delivery`, read when the run is over
    const sendReliable = (from: number, request: Reliable.ReliableRequest, policy?: Schedule.Schedule<unknown>) => {
      reliableRequested++
      return withRunning(from, (r) =>
        r.dht.sendReliable(request, policy).pipe(
          Effect.tap((delivery) => Effect.sync(() => deliveries.push(delivery))),
          Effect.catchAll((error) =>
            DhtLog.debug("simulated reliable send failed", { from, reason: error._tag })
          ),
          Effect.asVoid
        ))
    }

    const trafficProgress = (step: number, label: string, expected: number) =>
      Effect.suspend(() => report(step, label, expected === 0 ? 1 : recorder.deliveredCount() / expected))

    yield* report(5, "traffic", 0)
    const now5 = yield* Clock.currentTimeMillis
    const sends: Array<Effect.Effect<unknown>> = []
    for (let k = 0; k < options.messages; k++) {
      const from = yield* Random.nextIntBetween(0, n)
      const to = yield* otherThan(n, from)
      recorder.expect("direct", k, to)
      const body = Recorder.encodeBody("direct", k, now5)
      const key = nodeAt(to).identity.publicKey
      if (k % RELIABLE_EVERY === 0) {
        sends.push(sendReliable(from, { destination: key, messageType: Recorder.SIM_MESSAGE_TYPE, body }))
      } else if (k % 2 === 0) {
        sends.push(send(from, OutboundRequester.sendDirectEncrypted(key, Recorder.SIM_MESSAGE_TYPE, body)))
      } else {
        const tag = yield* OutboundRequester.randomTag
        propagationTags.add(tag)
        sends.push(send(
          from,
          OutboundRequester.propagate(
            Envelope.destinationPublicKey(key),
            OutboundRequester.encryptFor(key),
            [],
            Recorder.SIM_MESSAGE_TYPE,
            body,
            { tag: Option.some(tag) }
          )
        ))
      }
    }
    const broadcasts = Math.ceil(options.messages / 10)
    for (let k = 0; k < broadcasts; k++) {
      const from = yield* Random.nextIntBetween(0, n)
      recorder.expect("broadcast", k, from)
      const body = Recorder.encodeBody("broadcast", k, now5)
      sends.push(
        send(from, OutboundRequester.flood(Envelope.destinationUnknown(), [], Recorder.SIM_MESSAGE_TYPE, body))
      )
    }
    const trafficExpected = options.messages + broadcasts * (n - 1)
    yield* work("traffic", Effect.all(sends, { concurrency: "unbounded", discard: true }))
    yield* quiesce("traffic", trafficProgress(5, "traffic", trafficExpected))

    // --- step 6: a fraction goes offline; messages for them go to their closest nodes ---
    yield* report(6, "offline", 0)
    const offlineCount = Math.round(options.offline * n)
    const offline = (yield* sampleDistinct(n, offlineCount, -1)).sort((a, b) => a - b)
    const offlineSet = new Set(offline)
    yield* work("offline", Effect.forEach(offline, stop, { discard: true }))
    yield* quiesce("offline")
    const online = nodes.map((node) => node.index).filter((i) => !offlineSet.has(i))
    const now6 = yield* Clock.currentTimeMillis
    const safSends: Array<Effect.Effect<unknown>> = []
    let safIndex = 0
    for (const dest of offline) {
      for (let c = 0; c < SAF_PER_OFFLINE && online.length > 0; c++) {
        const from = online[yield* Random.nextIntBetween(0, online.length)]!
        const k = safIndex++
        recorder.expect("saf", k, dest)
        const key = nodeAt(dest).identity.publicKey
        // to the destination's closest nodes, as a closest broadcast, once: store-and-forward holds it from there
        safSends.push(sendReliable(from, {
          destination: key,
          messageType: Recorder.SIM_MESSAGE_TYPE,
          body: Recorder.encodeBody("saf", k, now6),
          strategies: ["closest"]
        }, Schedule.stop))
      }
    }
    yield* work("messages for offline nodes", Effect.all(safSends, { concurrency: "unbounded", discard: true }))
    yield* quiesce("messages for offline nodes")
    yield* report(6, "offline", 0.5)
    yield* vc.advance(OFFLINE_WAIT)
    yield* report(6, "offline", 1)

    // --- step 7: the offline nodes come back on their own storage ---
    for (const [k, i] of offline.entries()) {
      const node = nodeAt(i)
      yield* startDht(node, yield* startEndpoint(node, Option.none()))
      yield* report(7, "back online", (k + 1) / Math.max(1, offline.length))
    }

    // --- step 8: store-and-forward delivers what they missed ---
    const allExpected = trafficExpected + safIndex
    yield* quiesce("store and forward", trafficProgress(8, "store and forward", allExpected))
    const end = yield* Clock.currentTimeMillis
    const receiptTimes: Array<number> = []
    for (const delivery of deliveries) {
      const status = yield* delivery.status
      if (status._tag === "Delivered") receiptTimes.push(status.elapsedMs)
    }
    receiptTimes.sort((a, b) => a - b)
    yield* report(8, "closing", 1)
    // All at once: closed one after another, each departure set the remaining nodes reacting to it (pools,
    // dials to nodes about to close), 37.5 s of a 200-node run and 177 s at 1000 nodes; together, 5.1 s at 200
    // nodes, with the same JSON.
    yield* work(
      "closing",
      Effect.forEach(nodes, (node) => stop(node.index), { concurrency: "unbounded", discard: true })
    )

    // --- measures ---
    yield* DhtLog.debug("simulation done", { ...(yield* vc.stats) })
    const snapshot = recorder.snapshot()
    const wire = yield* hub.stats
    const latencies = [...snapshot.latencies].sort((a, b) => a - b)
    const expected = snapshot.direct.expected + snapshot.broadcast.expected + snapshot.saf.expected
    const delivered = snapshot.direct.delivered + snapshot.broadcast.delivered + snapshot.saf.delivered
    const propagated = Math.floor(options.messages / 2)
    const propagationWire = propagationFrames
    if (snapshot.strays > 0) {
      yield* Effect.logWarning("simulated messages reached nodes they were not meant for").pipe(
        Effect.annotateLogs({ strays: snapshot.strays })
      )
    }
    return {
      nodes: n,
      degree: options.degree,
      seed: options.seed,
      messages: options.messages,
      offline: offline.length,
      direct: snapshot.direct,
      broadcast: snapshot.broadcast,
      saf: { ...snapshot.saf, stored: yield* Ref.get(safStored) },
      expected,
      delivered,
      deliveryRatio: Recorder.ratio(delivered, expected),
      duplicates: snapshot.duplicates,
      wireMessages: wire.frames,
      amplification: Recorder.ratio(wire.frames, expected),
      propagation: {
        messages: propagated,
        wireMessages: propagationWire,
        mean: Recorder.ratio(propagationWire, propagated)
      },
      latencyMs: {
        p50: Recorder.percentile(latencies, 0.5),
        p95: Recorder.percentile(latencies, 0.95),
        max: latencies[latencies.length - 1] ?? 0
      },
      discovery: { attempted: pairs.length, succeeded: yield* Ref.get(discovered) },
      bans: yield* Ref.get(bans),
      receipts: {
        requested: reliableRequested,
        delivered: receiptTimes.length,
        p50Ms: Recorder.percentile(receiptTimes, 0.5),
        p95Ms: Recorder.percentile(receiptTimes, 0.95),
        safCleaned: yield* Ref.get(safCleaned)
      },
      virtualMs: end - t0
    }
  })
