import * as Ed25519 from "@comms-dht/core/Ed25519"
import * as NodeId from "@comms-dht/core/NodeId"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Cli from "../src/Cli.js"
import * as NodeCrypto from "../src/Crypto.js"
import * as Dht from "../src/Dht.js"
import type * as Simulation from "../src/Simulation.js"
import * as NodeTesting from "../src/testing.js"

/** Commands that never reach the simulation get a `Dht` Layer that cannot be built. */
const noDht: Simulation.MakeDhtLayer<string> = () => Layer.fail("no Dht in this test")

interface Outcome {
  readonly code: number
  readonly stdout: ReadonlyArray<string>
  readonly stderr: ReadonlyArray<string>
}

/** Runs `comms-dht ...args` in-process, with stdout and stderr captured line by line. */
export const runCli = <E>(
  args: ReadonlyArray<string>,
  makeDhtLayer: Simulation.MakeDhtLayer<E>,
  environment: Cli.RunEnvironment = {}
) =>
  Effect.gen(function*() {
    const stdout = yield* Ref.make<Array<string>>([])
    const stderr = yield* Ref.make<Array<string>>([])
    const base = yield* Effect.console
    const capture = (ref: Ref.Ref<Array<string>>) => (...parts: ReadonlyArray<unknown>) =>
      Ref.update(ref, (lines) => [...lines, ...parts.map(String).join(" ").split("\n")])
    const code = yield* Cli.main(makeDhtLayer, ["node", "comms-dht", ...args], environment).pipe(
      Effect.withConsole({ ...base, log: capture(stdout), error: capture(stderr) }),
      Effect.provide(NodeContext.layer)
    )
    const outcome: Outcome = { code, stdout: yield* Ref.get(stdout), stderr: yield* Ref.get(stderr) }
    return outcome
  })

const hexBytes = (hex: string) => Uint8Array.from(Buffer.from(hex, "hex"))

const checkIdentity = (json: string) =>
  Effect.gen(function*() {
    const parsed: unknown = JSON.parse(json)
    expect(parsed).toEqual({
      secretKey: expect.stringMatching(/^[0-9a-f]{64}$/),
      publicKey: expect.stringMatching(/^[0-9a-f]{64}$/),
      nodeId: expect.stringMatching(/^[0-9a-f]{26}$/),
      features: 3
    })
    const identity = parsed as Cli.IdentityFile
    const crypto = yield* NodeCrypto.makeNode()
    const publicKey = hexBytes(identity.publicKey)
    expect(Ed25519.checkPublicKey(publicKey)).toBe(true)
    expect(NodeId.toHex(crypto.publicKeyOf(NodeId.SecretKey.make(hexBytes(identity.secretKey))))).toBe(
      identity.publicKey
    )
    expect(NodeId.toHex(NodeId.fromPublicKey(NodeId.PublicKey.make(publicKey)))).toBe(identity.nodeId)
    return identity
  })

describe("comms-dht keygen", () => {
  it.effect("prints one identity as SPEC §2.1's JSON: a usable key pair and its NodeId", () =>
    Effect.gen(function*() {
      const first = yield* runCli(["keygen"], noDht)
      expect(first.code).toBe(0)
      expect(first.stdout.filter((line) => line.length > 0)).toHaveLength(1)
      const a = yield* checkIdentity(first.stdout[0]!)
      const b = yield* checkIdentity((yield* runCli(["keygen"], noDht)).stdout[0]!)
      // drawn from the CSPRNG: two runs never share a key
      expect(b.secretKey).not.toBe(a.secretKey)
    }))

  it.live("--out writes the identity to a new file readable only by its owner, and never overwrites one", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "comms-dht-keygen-"))
      const file = path.join(dir, "identity.json")
      const written = yield* runCli(["keygen", "--out", file], noDht)
      expect(written.code).toBe(0)
      const identity = yield* checkIdentity(fs.readFileSync(file, "utf8"))
      expect(fs.statSync(file).mode & 0o777).toBe(0o600)
      expect(JSON.parse(written.stdout[0]!)).toEqual({
        publicKey: identity.publicKey,
        nodeId: identity.nodeId,
        out: file
      })

      const again = yield* runCli(["keygen", "--out", file], noDht)
      expect(again.code).toBe(2)
      expect(again.stderr.join("\n")).toContain("never overwrites")
      expect(JSON.parse(fs.readFileSync(file, "utf8"))).toEqual(identity)
      fs.rmSync(dir, { recursive: true })
    }))
})

describe("comms-dht run and usage errors", () => {
  it.live("run refuses what it cannot start with, on stderr and with exit code 2, before opening anything", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "comms-dht-run-usage-"))
      const file = path.join(dir, "identity.json")
      expect((yield* runCli(["keygen", "--out", file], noDht)).code).toBe(0)
      const identity = yield* checkIdentity(fs.readFileSync(file, "utf8"))
      const refused = (outcome: Outcome, text: string) => {
        expect(outcome.code).toBe(2)
        expect(outcome.stderr.join("\n")).toContain(text)
        expect(outcome.stdout.filter((line) => line.length > 0)).toEqual([])
      }
      const listen = ["--identity", file, "--listen", "127.0.0.1:0"]

      // SPEC §4: a seeded layer would repeat ephemeral keys and nonces across restarts
      refused(yield* runCli(["run", ...listen], noDht, { crypto: NodeTesting.layerNodeSeeded(1) }), "deterministic")
      // SPEC §2.1: a small-order key (the identity point) fails the key check wherever a key is accepted
      const smallOrder = `01${"00".repeat(31)}`
      refused(yield* runCli(["run", ...listen, "--peer", `${smallOrder}@127.0.0.1:1`], noDht), "valid 64-hex-digit")
      const noPort = `${identity.publicKey}@nowhere`
      refused(yield* runCli(["run", ...listen, "--peer", noPort], noDht), "PUBLICKEY@HOST:PORT")
      refused(yield* runCli(["run", "--identity", file, "--listen", "localhost"], noDht), "expected HOST:PORT")

      const other = (yield* Cli.generateIdentity.pipe(Effect.provide(NodeCrypto.layerNode()))).publicKey
      const mismatched = path.join(dir, "mismatched.json")
      fs.writeFileSync(mismatched, JSON.stringify({ ...identity, publicKey: other }))
      refused(
        yield* runCli(["run", "--identity", mismatched, "--listen", "127.0.0.1:0"], noDht),
        "publicKey is not the public key of secretKey"
      )
      const garbage = path.join(dir, "garbage.json")
      fs.writeFileSync(garbage, "{\"secretKey\": 1}")
      refused(
        yield* runCli(["run", "--identity", garbage, "--listen", "127.0.0.1:0"], noDht),
        "is not an identity written by comms-dht keygen"
      )
      const config = path.join(dir, "config.json")
      fs.writeFileSync(config, JSON.stringify({ saf: { maxMessageSize: 9_000_000 } }))
      refused(yield* runCli(["run", ...listen, "--config", config], noDht), "saf.maxMessageSize")

      const absent = path.join(dir, "absent.json")
      expect((yield* runCli(["run", "--identity", absent, "--listen", "127.0.0.1:0"], noDht)).code).toBe(2)
      fs.rmSync(dir, { recursive: true })
    }))

  it.effect("sim refuses impossible inputs before building anything, with exit code 2", () =>
    Effect.gen(function*() {
      const tooSmall = yield* runCli(["sim", "--nodes", "1"], noDht)
      expect(tooSmall.code).toBe(2)
      expect(tooSmall.stderr.join("\n")).toContain("--nodes must be at least 2")
      const offline = yield* runCli(["sim", "--offline", "1.5"], noDht)
      expect(offline.code).toBe(2)
      expect(offline.stderr.join("\n")).toContain("--offline must be between 0 and 1")
      const dbWithMemory = yield* runCli(["sim", "--store", "memory", "--db", os.tmpdir()], noDht)
      expect(dbWithMemory.code).toBe(2)
      expect(dbWithMemory.stderr.join("\n")).toContain("--db needs --store sqlite")
      const unknown = yield* runCli(["sim", "--nodez", "3"], noDht)
      expect(unknown.code).toBe(2)
    }))

  it.effect("--help prints the commands on stdout and exits 0", () =>
    Effect.gen(function*() {
      const outcome = yield* runCli(["--help"], noDht)
      expect(outcome.code).toBe(0)
      const help = outcome.stdout.join("\n")
      for (const name of ["sim", "keygen", "run"]) expect(help).toContain(name)
    }))
})

describe("comms-dht sim", () => {
  it.effect("--json prints exactly one JSON object on stdout, from nodes on the default sqlite store", () =>
    Effect.gen(function*() {
      const outcome = yield* runCli(
        ["sim", "--nodes", "10", "--degree", "4", "--messages", "10", "--offline", "0.2", "--seed", "5", "--json"],
        Dht.layer
      )
      expect(outcome.code).toBe(0)
      const lines = outcome.stdout.filter((line) => line.length > 0)
      expect(lines).toHaveLength(1)
      const result: unknown = JSON.parse(lines[0]!)
      expect(result).toMatchObject({
        nodes: 10,
        degree: 4,
        seed: 5,
        messages: 10,
        offline: 2,
        direct: { expected: 10 },
        broadcast: { expected: 9 },
        saf: { expected: 4 },
        duplicates: 0,
        bans: 0,
        latencyMs: { p50: expect.any(Number), p95: expect.any(Number), max: expect.any(Number) },
        propagation: { messages: 5 },
        discovery: { attempted: expect.any(Number), succeeded: expect.any(Number) },
        durationMs: expect.any(Number)
      })
    }))

  it.effect("without --json it prints the summary table", () =>
    Effect.gen(function*() {
      const outcome = yield* runCli(
        ["sim", "--nodes", "6", "--degree", "3", "--messages", "4", "--offline", "0", "--store", "memory"],
        Dht.layer
      )
      expect(outcome.code).toBe(0)
      const table = outcome.stdout.join("\n")
      expect(table).toContain("comms-dht sim: 6 nodes, degree 3, seed 1, 4 messages, 0 offline, memory store")
      expect(table).toMatch(/direct\s+4\s+4\s+1\.0000/)
      expect(table).toMatch(/duplicates\s+0/)
      // one of the four direct messages (every fourth) went reliably and came back Delivered
      expect(table).toMatch(/receipts\s+1\/1 delivered/)
    }))
})
