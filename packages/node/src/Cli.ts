/**
 * The `comms-dht` command line (ARCHITECTURE.md "Command line", SPEC §19), on `@effect/cli`:
 * - `sim`: the simulation (`Simulation.run`), a progress bar on stderr when it is a terminal, then a summary table
 *   on stdout, or with `--json` exactly one JSON object;
 * - `keygen [--out FILE]`: a new identity from the CSPRNG as SPEC §2.1's JSON;
 * - `run --identity FILE --listen HOST:PORT [--peer PUBLICKEY@HOST:PORT]… [--db FILE] [--config FILE]`: one node
 *   over TCP on sqlite, speaking JSON lines: events on stdout, commands on stdin (README "Run a real node").
 *
 * Logs go to stderr for every command (logfmt): stdout carries only the result. `sim` shows its nodes' warnings and
 * errors; `comms-dht --log-level debug sim …` shows everything they log. `main` returns the process exit
 * code, which `teardownFor` hands to the runtime: 0 on completion, 1 on an internal error, 2 on a usage error; an
 * interrupted `sim` gives 130, while SIGINT/SIGTERM is how a `run` node is meant to stop, so it gives 0.
 *
 * @since 0.1.0
 */
import * as CoreCrypto from "@comms-dht/core/Crypto"
import * as NodeId from "@comms-dht/core/NodeId"
import * as Peer from "@comms-dht/core/Peer"
import * as CliApp from "@effect/cli/CliApp"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as FileSystem from "@effect/platform/FileSystem"
import type * as PlatformError from "@effect/platform/Error"
import type * as PlatformRuntime from "@effect/platform/Runtime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as NodeCrypto from "./Crypto.js"
import * as CliRun from "./internal/cliRun.js"
import * as Simulation from "./Simulation.js"

/**
 * SPEC §2.1's identity file: keys as 64 and the NodeId as 26 lowercase hex characters.
 *
 * @since 0.1.0
 * @category models
 */
export interface IdentityFile {
  readonly secretKey: string
  readonly publicKey: string
  readonly nodeId: string
  readonly features: number
}

/**
 * A new communication-node identity from the `Crypto` layer's CSPRNG. A key failing the key check (SPEC §4.3) is
 * drawn again, so every identity written can be used as a destination and a claim key.
 *
 * @since 0.1.0
 * @category constructors
 */
export const generateIdentity: Effect.Effect<IdentityFile, never, CoreCrypto.Crypto> = Effect.gen(function*() {
  const crypto = yield* CoreCrypto.Crypto
  while (true) {
    const secretKey = yield* crypto.generateSecretKey
    const publicKey = crypto.publicKeyOf(secretKey)
    if (!crypto.checkPublicKey(publicKey)) continue
    return {
      secretKey: NodeId.toHex(secretKey),
      publicKey: NodeId.toHex(publicKey),
      nodeId: NodeId.toHex(NodeId.fromPublicKey(publicKey)),
      features: Peer.PeerFeatures.COMMUNICATION_NODE
    }
  }
})

// --- keygen ---

const keygen = Command.make(
  "keygen",
  {
    out: Options.file("out").pipe(
      Options.withDescription("write the identity to FILE (created with mode 0600; an existing file is kept)"),
      Options.optional
    )
  },
  ({ out }) =>
    Effect.gen(function*() {
      const identity = yield* generateIdentity.pipe(Effect.provide(NodeCrypto.layerNode()))
      const json = JSON.stringify(identity)
      if (Option.isNone(out)) return yield* Console.log(json)
      const fs = yield* FileSystem.FileSystem
      yield* fs.writeFileString(out.value, `${json}\n`, { flag: "wx", mode: 0o600 }).pipe(
        Effect.catchTag("SystemError", (error): Effect.Effect<never, CliRun.UsageError | PlatformError.SystemError> =>
          error.reason === "AlreadyExists"
            ? Effect.fail(
              new CliRun.UsageError({ message: `${out.value} exists: keygen never overwrites an identity` })
            )
            : Effect.fail(error))
      )
      yield* Console.log(JSON.stringify({ publicKey: identity.publicKey, nodeId: identity.nodeId, out: out.value }))
    })
).pipe(Command.withDescription("create a new identity (SPEC §2.1) as JSON"))

// --- sim ---

const BAR_WIDTH = 30

const formatVirtual = (ms: number): string => {
  const seconds = Math.floor(ms / 1000)
  const h = Math.floor(seconds / 3600)
  const m = Math.floor((seconds % 3600) / 60)
  const s = seconds % 60
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(s).padStart(2, "0")}s`
}

/** One line, redrawn in place: the terminal is stderr's, so stdout stays clean for the result. */
const drawProgress = (progress: Simulation.Progress): Effect.Effect<void> =>
  Effect.sync(() => {
    const filled = Math.round(progress.fraction * BAR_WIDTH)
    const bar = `${"#".repeat(filled)}${".".repeat(BAR_WIDTH - filled)}`
    const percent = String(Math.round(progress.fraction * 100)).padStart(3)
    process.stderr.write(
      `\r\x1b[2K[${bar}] ${percent}%  step ${progress.step}/${progress.steps} ${progress.label}  ` +
        `t+${formatVirtual(progress.virtualMs)}`
    )
  })

const clearProgress = Effect.sync(() => {
  process.stderr.write("\r\x1b[2K")
})

const pad = (value: string | number, width: number) => String(value).padStart(width)

const row = (label: string, tally: Simulation.Tally, extra = "") =>
  `${label.padEnd(12)}${pad(tally.expected, 10)}${pad(tally.delivered, 11)}${
    pad(tally.expected === 0 ? "-" : (tally.delivered / tally.expected).toFixed(4), 9)
  }${extra}`

/**
 * The summary table the command prints without `--json`.
 *
 * @since 0.1.0
 * @category utils
 */
export const summary = (r: Simulation.Result, store: Simulation.StoreKind): string =>
  [
    `comms-dht sim: ${r.nodes} nodes, degree ${r.degree}, seed ${r.seed}, ${r.messages} messages, ` +
    `${r.offline} offline, ${store} store`,
    "",
    `${"".padEnd(12)}${pad("expected", 10)}${pad("delivered", 11)}${pad("ratio", 9)}`,
    row("direct", r.direct),
    row("broadcast", r.broadcast),
    row("saf", r.saf, `  (${r.saf.stored} stored)`),
    row("total", { expected: r.expected, delivered: r.delivered }),
    "",
    `duplicates    ${r.duplicates}`,
    `bans          ${r.bans}`,
    `discovery     ${r.discovery.succeeded}/${r.discovery.attempted}`,
    `wire          ${r.wireMessages} envelopes, amplification ${r.amplification.toFixed(2)}`,
    `propagation   ${r.propagation.wireMessages} envelopes for ${r.propagation.messages} messages, ` +
    `mean ${r.propagation.mean.toFixed(2)}`,
    `latency       p50 ${r.latencyMs.p50} ms, p95 ${r.latencyMs.p95} ms, max ${r.latencyMs.max} ms (virtual)`,
    `receipts      ${r.receipts.delivered}/${r.receipts.requested} delivered, p50 ${r.receipts.p50Ms} ms, ` +
    `p95 ${r.receipts.p95Ms} ms (virtual), ${r.receipts.safCleaned} SAF copies removed`,
    `time          ${formatVirtual(r.virtualMs)} virtual, ${(r.durationMs / 1000).toFixed(1)} s wall`
  ].join("\n")

const checkDbDir = (dir: string, nodes: number) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    yield* fs.makeDirectory(dir, { recursive: true })
    for (let i = 0; i < nodes; i++) {
      const file = `${dir}/node-${i}.sqlite`
      if (yield* fs.exists(file)) {
        return yield* new CliRun.UsageError({
          message: `${file} exists: a run starts from empty stores, so give --db an empty directory`
        })
      }
    }
  })

const simCommand = <E>(makeDhtLayer: Simulation.MakeDhtLayer<E>) =>
  Command.make(
    "sim",
    {
      nodes: Options.integer("nodes").pipe(
        Options.withDefault(100),
        Options.withDescription("N, nodes in the network")
      ),
      degree: Options.integer("degree").pipe(
        Options.withDefault(8),
        Options.withDescription("K, seed peers per node")
      ),
      seed: Options.integer("seed").pipe(
        Options.withDefault(1),
        Options.withDescription("S: same seed, same network and counts")
      ),
      messages: Options.integer("messages").pipe(
        Options.withDefault(1000),
        Options.withDescription("M, point-to-point messages (plus M/10 broadcasts)")
      ),
      offline: Options.float("offline").pipe(
        Options.withDefault(0.1),
        Options.withDescription("F, the fraction of nodes that goes offline and comes back")
      ),
      db: Options.directory("db").pipe(
        Options.withDescription("keep each node's sqlite store as DIR/node-<i>.sqlite (an empty or new directory)"),
        Options.optional
      ),
      store: Options.choice("store", ["sqlite", "memory"]).pipe(
        Options.withDefault("sqlite" as const),
        Options.withDescription("sqlite (in memory unless --db) or core's memory layers")
      ),
      json: Options.boolean("json").pipe(Options.withDescription("print exactly one JSON object on stdout"))
    },
    (input) =>
      Effect.gen(function*() {
        const problems: Array<string> = []
        if (input.nodes < 2) problems.push("--nodes must be at least 2")
        if (input.degree < 1) problems.push("--degree must be at least 1")
        if (input.messages < 0) problems.push("--messages must not be negative")
        if (input.seed < 0) problems.push("--seed must not be negative")
        if (!(input.offline >= 0 && input.offline <= 1)) problems.push("--offline must be between 0 and 1")
        if (Option.isSome(input.db) && input.store !== "sqlite") problems.push("--db needs --store sqlite")
        if (problems.length > 0) return yield* new CliRun.UsageError({ message: problems.join("; ") })
        if (Option.isSome(input.db)) yield* checkDbDir(input.db.value, input.nodes)
        const tty = process.stderr.isTTY === true
        const result = yield* Simulation.run({
          nodes: input.nodes,
          degree: input.degree,
          seed: input.seed,
          messages: input.messages,
          offline: input.offline,
          store: input.store,
          db: Option.getOrUndefined(input.db),
          onProgress: tty ? drawProgress : undefined
        }, makeDhtLayer).pipe(
          Effect.ensuring(tty ? clearProgress : Effect.void),
          Logger.withMinimumLogLevel(yield* simLogLevel)
        )
        yield* Console.log(input.json ? JSON.stringify(result) : summary(result, input.store))
      })
  ).pipe(Command.withDescription("simulate a network of full nodes in one process, on virtual time (SPEC §19)"))

// The simulated nodes log like real ones: at the default level every one of them says "connectivity online" and
// more, over a thousand lines at 1000 nodes, through the progress bar. A run shows their warnings and errors unless
// `--log-level` asks for less than `info` (`debug`, `trace`, `all`).
const simLogLevel = Effect.map(
  FiberRef.get(FiberRef.currentMinimumLogLevel),
  (level) =>
    LogLevel.lessThan(level, LogLevel.Info) || LogLevel.greaterThan(level, LogLevel.Warning) ? level : LogLevel.Warning
)

// --- run ---

/**
 * What `run` takes from its surroundings. The binary uses `Crypto.layerNode()` and stdin; tests swap them.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunEnvironment {
  /** the node's Crypto layer; a deterministic (seeded) one is refused with exit code 2 (SPEC §4) */
  readonly crypto?: Layer.Layer<CoreCrypto.Crypto>
  /** the JSON-line commands (default: stdin) */
  readonly input?: Stream.Stream<Uint8Array>
}

const runCommand = <E>(makeDhtLayer: Simulation.MakeDhtLayer<E>, environment: RunEnvironment) =>
  Command.make(
    "run",
    {
      identity: Options.file("identity", { exists: "yes" }).pipe(
        Options.withDescription("the identity written by comms-dht keygen --out")
      ),
      listen: Options.text("listen").pipe(
        Options.withDescription("HOST:PORT to listen on (port 0 picks a free port, reported in the ready line)")
      ),
      peer: Options.text("peer").pipe(
        Options.withDescription("PUBLICKEY@HOST:PORT of a seed peer, dialled at start (repeatable)"),
        Options.repeated
      ),
      db: Options.file("db").pipe(
        Options.withDescription("the node's sqlite file, kept across restarts (default: an in-memory database)"),
        Options.optional
      ),
      config: Options.file("config", { exists: "yes" }).pipe(
        Options.withDescription("a JSON file of DhtConfig fields (SPEC §17); the others keep their defaults"),
        Options.optional
      )
    },
    (input) =>
      CliRun.run(
        { identity: input.identity, listen: input.listen, peers: input.peer, db: input.db, config: input.config },
        makeDhtLayer,
        {
          crypto: environment.crypto ?? NodeCrypto.layerNode(),
          input: environment.input ?? NodeStream.stdin
        }
      )
  ).pipe(Command.withDescription("run a node over TCP: JSON lines out on stdout, commands in on stdin"))

// --- the program ---

const VERSION = "0.1.0"

/**
 * The root command: the simulation and `run` build each node's `Dht` with `makeDhtLayer` (`Dht.layer`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const command = <E>(makeDhtLayer: Simulation.MakeDhtLayer<E>, environment: RunEnvironment = {}) =>
  Command.make("comms-dht").pipe(
    Command.withDescription("comms-dht: a p2p DHT messaging node and its simulator"),
    Command.withSubcommands([simCommand(makeDhtLayer), keygen, runCommand(makeDhtLayer, environment)])
  )

/**
 * Logs as logfmt on stderr, for every command.
 *
 * @since 0.1.0
 * @category layers
 */
export const loggerLayer: Layer.Layer<never> = Logger.replace(
  Logger.defaultLogger,
  Logger.withConsoleError(Logger.logfmtLogger)
)

/**
 * Parses `argv` (`process.argv`: runtime, script, arguments) and runs the command; succeeds with the exit code.
 * Usage errors are reported on stderr (by `@effect/cli`, or here) and give 2; any other failure is the runtime's to
 * report, with exit code 1.
 *
 * @since 0.1.0
 * @category constructors
 */
export const main = <E>(
  makeDhtLayer: Simulation.MakeDhtLayer<E>,
  argv: ReadonlyArray<string>,
  environment: RunEnvironment = {}
): Effect.Effect<number, E | Simulation.SimulationError | PlatformError.PlatformError, CliApp.CliApp.Environment> =>
  Command.run(command(makeDhtLayer, environment), { name: "comms-dht", version: VERSION })(argv).pipe(
    Effect.as(0),
    Effect.catchIf(ValidationError.isValidationError, () => Effect.succeed(2)),
    Effect.catchIf(
      (error): error is CliRun.UsageError => error instanceof CliRun.UsageError,
      (error) => Effect.as(Console.error(`comms-dht: ${error.message}`), 2)
    ),
    Effect.catchIf(
      (error): error is CliRun.RunFailed => error instanceof CliRun.RunFailed,
      (error) => Effect.as(Console.error(`comms-dht run: ${error.message}`), 1)
    ),
    Effect.provide(loggerLayer)
  )

const teardownWith = (interrupted: number): PlatformRuntime.Teardown => (exit, onExit) => {
  if (Exit.isSuccess(exit)) {
    const value: unknown = exit.value
    return onExit(typeof value === "number" ? value : 0)
  }
  return onExit(Cause.isInterruptedOnly(exit.cause) ? interrupted : 1)
}

/**
 * Hands `main`'s exit code to the process: the code it succeeded with, 1 after a failure, 130 after an interrupt.
 *
 * @since 0.1.0
 * @category utils
 */
export const teardown: PlatformRuntime.Teardown = teardownWith(130)

const SUBCOMMANDS: ReadonlySet<string> = new Set(["sim", "keygen", "run"])

// the subcommand is the first argument naming one: root options take no such values, subcommand options follow it
const subcommandOf = (argv: ReadonlyArray<string>): string | undefined =>
  argv.slice(2).find((arg) => SUBCOMMANDS.has(arg))

const SEMI_SPACE = "--max-semi-space-size"
const OLD_SPACE = "--max-old-space-size"
const MIB = 1024 * 1024
const DEFAULT_NODES = 100

// `--nodes N` or `--nodes=N` of `sim` (the flag's default otherwise); read before the CLI parses, so loosely
const nodesOf = (argv: ReadonlyArray<string>): number => {
  const at = argv.indexOf("--nodes")
  const value = at >= 0 ? argv[at + 1] : argv.find((arg) => arg.startsWith("--nodes="))?.slice("--nodes=".length)
  const n = Number(value)
  return value !== undefined && Number.isFinite(n) ? n : DEFAULT_NODES
}

const semiSpaceMiB = (nodes: number, totalBytes: number): number =>
  nodes <= 200 ? 64 : Math.max(64, Math.min(nodes <= 1000 ? 256 : 1024, Math.floor(totalBytes / 24 / MIB)))

/**
 * The V8 flags `comms-dht sim` wants and the process was not started with (each unless `execArgv` or `NODE_OPTIONS`
 * sets it), empty for every other command:
 * - a 64 MB semi-space; for more than 200 nodes 256 MB, and above 1000 nodes up to 1 GB (never more than a 24th
 *   of the machine's memory). A
 *   simulation keeps thousands of fibers and frames alive across virtual time; with V8's default young generation
 *   (16 MB) they outlive two scavenges and are promoted, and the old generation's collections grow with the
 *   network. Measured on the default run (100 nodes, sqlite, seed 1), two runs each: 94.6 and 76.7 s without, 61.6
 *   and 66.0 s with 64 MB (32 MB: 77.3 s; 128 MB: 73.7 and 72.6 s); the join step at 200 nodes, 110 → 84 s. The
 *   larger the network, the more of the young generation is alive at each scavenge, which then copies it: at 300
 *   nodes (seed 7, to the offline step) 64 MB took 111.7 s, 256 MB 100.6 s, 1 GB 94.5 s; 1000 nodes took 605 s
 *   with 1 GB (9.7 GB peak RSS), 792 s with 64 MB (under the profiler, before this session's selection changes);
 *   at 100 nodes 1 GB changed nothing (38.2, 38.3 s against 36.9, 41.8 s) and took 1.6 GB more memory. Once the
 *   node kept less alive per frame (session 25), a young generation that large cost more in the kernel than it
 *   saved the scavenger: each page is cleared when first touched (`perf`: `clear_page` 16 % of a 300-node run's
 *   samples with 1 GB). 300 nodes took 36–40 s with 256 MB (five runs) against 49–51 s with 1 GB (four); 1000
 *   nodes 186.8 s with 256 MB (peak RSS 5.3 GB, 23 s of system time), 193.5 s with 512 MB, 198.3 s with 1 GB
 *   (6.9 GB, 40 s); 3000 nodes 830 s with 256 MB against 808 s with 1 GB (one run each).
 * - an old generation of three quarters of the machine's memory, when that is more than V8's default limit
 *   (`memory.heapLimitBytes`). A 1000-node run (seed 7) died of V8's default limit here (about 4 GB of 24 GB) in its
 *   join after 45 minutes, collecting 77 % of the time by then.
 *
 * V8 reads these only when the process starts, so `bin` starts itself again with them.
 *
 * @since 0.1.0
 * @category utils
 */
export const nodeFlagsFor = (
  argv: ReadonlyArray<string>,
  execArgv: ReadonlyArray<string>,
  nodeOptions: string | undefined,
  memory: { readonly totalBytes: number; readonly heapLimitBytes: number }
): ReadonlyArray<string> => {
  if (subcommandOf(argv) !== "sim") return []
  const isSet = (flag: string) => execArgv.some((arg) => arg.startsWith(flag)) || (nodeOptions ?? "").includes(flag)
  const flags: Array<string> = []
  if (!isSet(SEMI_SPACE)) flags.push(`${SEMI_SPACE}=${semiSpaceMiB(nodesOf(argv), memory.totalBytes)}`)
  const oldSpaceMiB = Math.floor((memory.totalBytes * 0.75) / MIB)
  if (!isSet(OLD_SPACE) && oldSpaceMiB * MIB > memory.heapLimitBytes) flags.push(`${OLD_SPACE}=${oldSpaceMiB}`)
  return flags
}

/**
 * The teardown for `argv` (`process.argv`): `teardown`, except that an interrupted `run` exits with 0, since a
 * signal is how a node is stopped and its scope has closed by then (the database included).
 *
 * @since 0.1.0
 * @category utils
 */
export const teardownFor = (argv: ReadonlyArray<string>): PlatformRuntime.Teardown =>
  subcommandOf(argv) === "run" ? teardownWith(0) : teardown
