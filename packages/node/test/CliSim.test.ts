/**
 * `comms-dht sim` as a user runs it: a real process (`node packages/node/bin/comms-dht.js`, so `tsc -b` must have
 * built `dist/`) that starts itself again with the V8 flags of `Cli.nodeFlagsFor`, hands on that process's output
 * and exit code, and stops on Ctrl-C.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import * as path from "node:path"
import * as Cli from "../src/Cli.js"

const BIN = path.join(import.meta.dirname, "..", "bin", "comms-dht.js")

interface Finished {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `comms-dht ...args` in a process group of its own; `interruptOn` sends SIGINT to the group once it is seen. */
const runBin = (args: ReadonlyArray<string>, interruptOn?: RegExp) =>
  Effect.async<Finished>((resume) => {
    const child = spawn(process.execPath, [BIN, ...args], { detached: true, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    let interrupted = false
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
      if (interruptOn !== undefined && !interrupted && interruptOn.test(stderr) && child.pid !== undefined) {
        interrupted = true
        // what a terminal does on Ctrl-C: the signal goes to every process of the foreground group
        process.kill(-child.pid, "SIGINT")
      }
    })
    child.once("exit", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => {
      if (child.pid !== undefined && child.exitCode === null) process.kill(-child.pid, "SIGKILL")
    })
  }).pipe(Effect.timeout("60 seconds"))

describe("comms-dht sim", () => {
  it("asks for a semi-space by network size and most of the memory for sim only, and never twice", () => {
    const argv = (...args: Array<string>) => ["node", "comms-dht", ...args]
    const GiB = 1024 * 1024 * 1024
    const big = { totalBytes: 24 * GiB, heapLimitBytes: 4 * GiB }
    expect(Cli.nodeFlagsFor(argv("sim", "--nodes", "3"), [], undefined, big))
      .toEqual(["--max-semi-space-size=64", "--max-old-space-size=18432"])
    // more than 200 nodes: 256 MB; more than 1000: up to 1 GB; never more than a 24th of the memory
    expect(Cli.nodeFlagsFor(argv("sim", "--nodes", "1000"), [], undefined, big))
      .toEqual(["--max-semi-space-size=256", "--max-old-space-size=18432"])
    expect(Cli.nodeFlagsFor(argv("sim", "--nodes", "3000"), [], undefined, big))
      .toEqual(["--max-semi-space-size=1024", "--max-old-space-size=18432"])
    const small = { totalBytes: 8 * GiB, heapLimitBytes: 4 * GiB }
    expect(Cli.nodeFlagsFor(argv("sim", "--nodes=300"), [], undefined, small))
      .toEqual(["--max-semi-space-size=256", "--max-old-space-size=6144"])
    expect(Cli.nodeFlagsFor(argv("sim", "--nodes=3000"), [], undefined, small))
      .toEqual(["--max-semi-space-size=341", "--max-old-space-size=6144"])
    expect(Cli.nodeFlagsFor(argv("sim", "--nodes", "200"), [], undefined, big))
      .toEqual(["--max-semi-space-size=64", "--max-old-space-size=18432"])
    expect(Cli.nodeFlagsFor(argv("run", "--identity", "a.json"), [], undefined, big)).toEqual([])
    expect(Cli.nodeFlagsFor(argv("keygen"), [], undefined, big)).toEqual([])
    expect(Cli.nodeFlagsFor(argv("--help"), [], undefined, big)).toEqual([])
    // a machine where V8's default limit is already more than three quarters of the memory
    expect(Cli.nodeFlagsFor(argv("sim"), [], undefined, { totalBytes: 2 * GiB, heapLimitBytes: 2 * GiB }))
      .toEqual(["--max-semi-space-size=64"])
    // started with a flag already, by hand or by the command itself
    expect(Cli.nodeFlagsFor(argv("sim"), ["--max-semi-space-size=32"], undefined, big))
      .toEqual(["--max-old-space-size=18432"])
    expect(Cli.nodeFlagsFor(argv("sim"), ["--max-old-space-size=8000"], undefined, big))
      .toEqual(["--max-semi-space-size=64"])
    expect(Cli.nodeFlagsFor(argv("sim"), [], "--max-old-space-size=4096 --max-semi-space-size=16", big)).toEqual([])
    expect(Cli.nodeFlagsFor(argv("sim"), ["--max-semi-space-size=64", "--max-old-space-size=18432"], undefined, big))
      .toEqual([])
  })

  it.live("through the executable: one JSON object on stdout and exit code 0", () =>
    Effect.gen(function*() {
      const done = yield* runBin(["sim", "--nodes", "4", "--messages", "4", "--json"])
      expect(done.code).toBe(0)
      const lines = done.stdout.trim().split("\n")
      expect(lines).toHaveLength(1)
      const result: unknown = JSON.parse(lines[0]!)
      expect(result).toMatchObject({ nodes: 4, messages: 4, direct: { expected: 4, delivered: 4 }, duplicates: 0 })
      // the simulated nodes' info lines ("connectivity online" from each) stay out of a run's stderr
      expect(done.stderr).not.toContain("level=INFO")
    }), 90_000)

  it.live("a usage error's exit code 2 comes through the restarted process", () =>
    Effect.gen(function*() {
      const done = yield* runBin(["sim", "--nodes", "1"])
      expect(done.code).toBe(2)
      expect(done.stdout).toBe("")
      expect(done.stderr).toContain("--nodes must be at least 2")
    }), 90_000)

  it.live("Ctrl-C stops a run under way with exit code 130 and no result on stdout", () =>
    Effect.gen(function*() {
      // a network large enough to be mid-run when its nodes come online, which they log at --log-level debug
      const done = yield* runBin(["--log-level", "debug", "sim", "--nodes", "60", "--json"], /connectivity online/)
      expect(done.code).toBe(130)
      expect(done.stdout).toBe("")
    }), 90_000)
})
