/**
 * `comms-dht run` as a user runs it: real processes (`node packages/node/bin/comms-dht.js`, so `tsc -b` must have
 * built `dist/`), real TCP on 127.0.0.1, JSON lines on stdout, commands on stdin. The tests of this file run in
 * order on one small network: A, B (seeded with A) and C (seeded with B only).
 */
import * as NodeId from "@comms-dht/core/NodeId"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as SqliteStore from "@comms-dht/store/SqliteStore"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as Net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"

const BIN = path.join(import.meta.dirname, "..", "bin", "comms-dht.js")
const WAIT = "20 seconds"

type Line = { readonly [key: string]: unknown }

const decodeLine = Schema.decodeUnknownEither(
  Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
)

interface Proc {
  readonly name: string
  readonly child: ChildProcessWithoutNullStreams
  /** every stdout line, parsed */
  readonly lines: Array<Line>
  /** stdout lines that were not JSON objects: there must be none */
  readonly invalid: Array<string>
  readonly stderr: Array<string>
  readonly exited: Promise<number | null>
}

interface Identity {
  readonly file: string
  readonly publicKey: string
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "comms-dht-run-"))

/** A new identity through `comms-dht keygen --out`, the file `run --identity` reads. */
const keygen = (name: string) =>
  Effect.gen(function*() {
    const file = path.join(dir, `${name}.json`)
    const child = spawn(process.execPath, [BIN, "keygen", "--out", file])
    const code = yield* Effect.promise(() => new Promise<number | null>((resolve) => child.once("exit", resolve))).pipe(
      Effect.timeout(WAIT),
      Effect.ensuring(Effect.sync(() => child.kill("SIGKILL")))
    )
    expect(code).toBe(0)
    const parsed = decodeLine(fs.readFileSync(file, "utf8"))
    if (Either.isLeft(parsed)) return yield* Effect.dieMessage(`${file} is not JSON`)
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    const identity: Identity = { file, publicKey: String(parsed.right.publicKey) }
    return identity
  })

/** Starts `comms-dht run ...args`; killed (SIGKILL) when `scope` closes if it still runs. */
const start = (name: string, args: ReadonlyArray<string>, scope: Scope.Scope) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, [BIN, "run", ...args], { stdio: ["pipe", "pipe", "pipe"] })
      const proc: Proc = {
        name,
        child,
        lines: [],
        invalid: [],
        stderr: [],
        exited: new Promise((resolve) => child.once("exit", (code) => resolve(code)))
      }
      readline.createInterface({ input: child.stdout }).on("line", (text) => {
        const parsed = decodeLine(text)
        if (Either.isRight(parsed)) proc.lines.push(parsed.right)
        else proc.invalid.push(text)
      })
      readline.createInterface({ input: child.stderr }).on("line", (text) => proc.stderr.push(text))
      return proc
    }),
    (proc) =>
      Effect.sync(() => {
        if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill("SIGKILL")
      })
  ).pipe(Scope.extend(scope))

const context = (proc: Proc) =>
  `${proc.name} stdout:\n${proc.lines.map((l) => JSON.stringify(l)).join("\n")}\nstderr:\n${
    proc.stderr.slice(-20).join("\n")
  }`

/** The first line after the `from`-th that matches; fails after `WAIT`, or at once if the process has ended. */
const waitFor = (proc: Proc, what: string, predicate: (line: Line) => boolean, from = 0) =>
  Effect.suspend(() => {
    const found = proc.lines.slice(from).find(predicate)
    if (found !== undefined) return Effect.succeed(found)
    if (proc.child.exitCode !== null) return Effect.die(new Error(`${proc.name} exited: ${context(proc)}`))
    return Effect.fail("not yet")
  }).pipe(
    Effect.retry(Schedule.spaced("25 millis")),
    Effect.timeoutFail({ duration: WAIT, onTimeout: () => new Error(`no ${what} within ${WAIT}: ${context(proc)}`) }),
    Effect.orDie
  )

const command = (proc: Proc, value: unknown) =>
  Effect.sync(() => {
    proc.child.stdin.write(`${typeof value === "string" ? value : JSON.stringify(value)}\n`)
  })

/** Sends a signal and returns the exit code (null: killed by the signal, not a clean exit). */
const stop = (proc: Proc, signal: NodeJS.Signals) =>
  Effect.sync(() => proc.child.kill(signal)).pipe(
    Effect.zipRight(Effect.promise(() => proc.exited)),
    Effect.timeoutFail({ duration: WAIT, onTimeout: () => new Error(`${proc.name} ignored ${signal}`) }),
    Effect.orDie
  )

const ready = (proc: Proc) => waitFor(proc, "ready line", (line) => line.type === "ready")

const addressOf = (line: Line) => String(line.address).replace("tcp://", "")

const connectedTo = (proc: Proc, key: string) =>
  waitFor(proc, `connection to ${key}`, (l) => l.type === "peer" && l.event === "connected" && l.publicKey === key)

const messageWith = (proc: Proc, body: string) =>
  waitFor(proc, `message "${body}"`, (l) => l.type === "message" && l.body === body)

interface Network {
  readonly ids: { readonly a: Identity; readonly b: Identity; readonly c: Identity }
  readonly a: Proc
  readonly b: Proc
  readonly c: Proc
  readonly aAddress: string
  readonly aNodeId: string
  readonly bDb: string
  readonly bArgs: ReadonlyArray<string>
}

let scope: Scope.CloseableScope
let net: Network | undefined

const network = Effect.suspend(() =>
  net === undefined ? Effect.dieMessage("the first test builds the network") : Effect.succeed(net)
)

beforeAll(async () => {
  scope = await Effect.runPromise(Scope.make())
})

afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  fs.rmSync(dir, { recursive: true, force: true })
})

describe("comms-dht run", () => {
  it.live("C, seeded with B only, propagates a message to A's key: A receives it, signed by C", () =>
    Effect.gen(function*() {
      const ids = yield* Effect.all({ a: keygen("a"), b: keygen("b"), c: keygen("c") }, { concurrency: "unbounded" })
      // B asks A for its stored messages when it first starts, and again on its restart below, well within the
      // 30 s per-requester limit: the restart is a new connection, which A serves at once (spec departure 4).
      // A's config file leaves every value at its default: --config is read, nothing is changed
      const aConfig = path.join(dir, "a-config.json")
      fs.writeFileSync(aConfig, JSON.stringify({}))
      const a = yield* start("A", ["--identity", ids.a.file, "--listen", "127.0.0.1:0", "--config", aConfig], scope)
      const aReady = yield* ready(a)
      expect(aReady).toEqual({
        type: "ready",
        publicKey: ids.a.publicKey,
        nodeId: expect.stringMatching(/^[0-9a-f]{26}$/),
        address: expect.stringMatching(/^tcp:\/\/127\.0\.0\.1:[1-9][0-9]*$/)
      })
      const aAddress = addressOf(aReady)

      const bDb = path.join(dir, "b.sqlite")
      const seedA = `${ids.a.publicKey}@${aAddress}`
      const bArgs = ["--identity", ids.b.file, "--listen", "127.0.0.1:0", "--db", bDb, "--peer", seedA]
      const b = yield* start("B", bArgs, scope)
      const bAddress = addressOf(yield* ready(b))
      yield* connectedTo(b, ids.a.publicKey)

      const cArgs = ["--identity", ids.c.file, "--listen", "127.0.0.1:0", "--peer", `${ids.b.publicKey}@${bAddress}`]
      const c = yield* start("C", cArgs, scope)
      yield* ready(c)
      yield* connectedTo(c, ids.b.publicKey)
      net = { ids, a, b, c, aAddress, aNodeId: String(aReady.nodeId), bDb, bArgs }

      yield* command(c, { send: { to: ids.a.publicKey, body: "hello A", strategy: "propagate" }, id: "p1" })
      const sent = yield* waitFor(c, "sent line", (l) => l.type === "sent" && l.id === "p1")
      expect(sent).toMatchObject({ strategy: "propagate", encrypted: true, failed: [] })
      expect(sent.succeeded).not.toEqual([])

      const received = yield* messageWith(a, "hello A")
      expect(received).toMatchObject({
        type: "message",
        origin: ids.c.publicKey,
        encoding: "utf8",
        messageType: 0,
        viaSaf: false,
        encrypted: true,
        tag: expect.stringMatching(/^[0-9]+$/)
      })
    }))

  it.live("A shrugs off 64 KiB of garbage on its port and a malformed command, and delivers the next message", () =>
    Effect.gen(function*() {
      const { a, c, ids, aAddress } = yield* network
      const colon = aAddress.lastIndexOf(":")
      const [host, port] = [aAddress.slice(0, colon), Number(aAddress.slice(colon + 1))]
      // A drops the connection when the bytes fail its handshake; a bounded wait either way
      yield* Effect.async<void>((resume) => {
        const socket = Net.connect({ host, port }, () => socket.end(randomBytes(64 * 1024)))
        socket.on("error", () => resume(Effect.void))
        socket.on("close", () => resume(Effect.void))
        socket.resume()
        return Effect.sync(() => socket.destroy())
      }).pipe(Effect.timeout(WAIT))

      const from = a.lines.length
      yield* command(a, "this is not json")
      yield* command(a, { send: { to: "00", body: "x" }, id: "bad-key" })
      yield* command(a, { peers: true, id: "p" })
      expect(yield* waitFor(a, "error line", (l) => l.type === "error" && l.id === undefined, from)).toMatchObject({
        error: "BadCommand"
      })
      expect(yield* waitFor(a, "error line for the bad key", (l) => l.type === "error" && l.id === "bad-key", from))
        .toMatchObject({ error: "BadCommand" })
      const peers = yield* waitFor(a, "peers line", (l) => l.type === "peers" && l.id === "p", from)
      // B, its connected seed: whether A has learnt C by now depends on real-time join and peer sync timing
      expect(JSON.stringify(peers.peers)).toContain(ids.b.publicKey)

      yield* command(c, { send: { to: ids.a.publicKey, body: "still there?", strategy: "propagate" } })
      expect(yield* messageWith(a, "still there?")).toMatchObject({ origin: ids.c.publicKey, viaSaf: false })
      // bytes that are not UTF-8 travel and print as base64
      const binary = Buffer.from([0xff, 0x00, 0xc3]).toString("base64")
      yield* command(c, { send: { to: ids.a.publicKey, body: binary, encoding: "base64", strategy: "propagate" } })
      expect(yield* messageWith(a, binary)).toMatchObject({ encoding: "base64", origin: ids.c.publicKey })
      expect(a.child.exitCode).toBe(null)
    }))

  it.live("a reliable send reports its delivery: sent with the message hash, then Delivered when A's receipt verifies", () =>
    Effect.gen(function*() {
      const { a, c, ids } = yield* network
      const from = c.lines.length
      yield* command(c, { send: { to: ids.a.publicKey, body: "tell me you got it", reliable: true }, id: "r1" })
      const sent = yield* waitFor(c, "reliable sent line", (l) => l.type === "sent" && l.id === "r1", from)
      expect(sent).toMatchObject({ reliable: true, to: ids.a.publicKey, hash: expect.stringMatching(/^[0-9a-f]{64}$/) })
      expect(yield* messageWith(a, "tell me you got it")).toMatchObject({ origin: ids.c.publicKey, encrypted: true })
      const delivered = yield* waitFor(
        c,
        "Delivered line",
        (l) => l.type === "delivery" && l.id === "r1" && l.status === "Delivered",
        from
      )
      expect(delivered).toMatchObject({ hash: sent.hash })
      // a reliable send is encrypted toward its destination: flood is refused with an error line
      yield* command(c, { send: { to: ids.a.publicKey, body: "x", strategy: "flood", reliable: true }, id: "r2" })
      expect(yield* waitFor(c, "error line", (l) => l.type === "error" && l.id === "r2", from)).toMatchObject({
        error: "BadCommand"
      })
    }))

  it.live("B, offline while C sends to it, gets the message by store-and-forward when it restarts on its --db", () =>
    Effect.gen(function*() {
      const { a, aNodeId, b, bArgs, c, ids } = yield* network
      // C must know A as a verified neighbour of B's key: it meets A through B (peer sync), then connects to it
      yield* connectedTo(c, ids.a.publicKey)
      expect(yield* stop(b, "SIGTERM")).toBe(0)

      yield* command(c, { send: { to: ids.b.publicKey, body: "for B, later", strategy: "closest" }, id: "saf" })
      const sent = yield* waitFor(c, "sent line", (l) => l.type === "sent" && l.id === "saf")
      expect(sent).toMatchObject({ strategy: "closest", encrypted: true })
      // the copy for B failed (B is down); the one for A, a store-and-forward node of B's, was written
      expect(sent.succeeded).toContain(aNodeId)

      const restarted = yield* start("B again", bArgs, scope)
      expect(yield* ready(restarted)).toMatchObject({ publicKey: ids.b.publicKey })
      const received = yield* messageWith(restarted, "for B, later")
      expect(received).toMatchObject({ origin: ids.c.publicKey, viaSaf: true, encrypted: true })
      net = { ...(yield* network), b: restarted }
      expect(a.child.exitCode).toBe(null)
    }))

  it.live("SIGTERM and SIGINT end every node with exit code 0, its database closed and reopenable", () =>
    Effect.gen(function*() {
      const { a, b, c, ids, bDb } = yield* network
      expect(yield* stop(b, "SIGTERM")).toBe(0)
      expect(yield* stop(a, "SIGINT")).toBe(0)
      expect(yield* stop(c, "SIGTERM")).toBe(0)
      for (const proc of [a, b, c]) expect(proc.invalid).toEqual([])

      // a clean close checkpoints the write-ahead log and removes it: nothing is left to recover
      expect(fs.existsSync(`${bDb}-wal`)).toBe(false)
      const known = yield* Effect.flatMap(PeerManager.PeerManager, (peers) => peers.all).pipe(
        Effect.provide(SqliteStore.layer({ filename: bDb }))
      )
      const keys = known.map((peer) => NodeId.toHex(peer.publicKey))
      expect(keys).toEqual(expect.arrayContaining([ids.a.publicKey, ids.c.publicKey]))
    }))

  it.live("end of stdin stops a node with exit code 0", () =>
    Effect.gen(function*() {
      const { ids } = yield* network
      const proc = yield* start("A alone", ["--identity", ids.a.file, "--listen", "127.0.0.1:0"], scope)
      yield* ready(proc)
      proc.child.stdin.end()
      const code = yield* Effect.promise(() => proc.exited).pipe(
        Effect.timeoutFail({ duration: WAIT, onTimeout: () => new Error(`still running: ${context(proc)}`) }),
        Effect.orDie
      )
      expect(code).toBe(0)
    }))
})
