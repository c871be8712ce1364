/**
 * `sim.scaling`: SPEC §19's simulation at 100, 300, 1000 and 3000 nodes (seed 7, 10 % offline, sqlite in memory),
 * each in a process of its own (`simChild`), reporting wall time, wire messages per second, the delivered ratio and
 * peak memory per node, and the growth from 1000 to 3000 nodes in time and memory (target ≤ 3.5× each).
 *
 * A size is run only when its predicted wall time fits `--sim-budget=SECONDS` (default 900): the prediction extends
 * the growth between the last two sizes run (quadratic from the first). A size left out is reported with
 * `skipped: true` and its prediction, never with a made-up figure.
 */
import * as Cli from "@comms-dht/node/Cli"
import { spawn } from "node:child_process"
import * as os from "node:os"
import { fileURLToPath } from "node:url"

export interface SimScalingResult {
  readonly name: string
  /** wire messages per second of wall time */
  readonly opsPerSec: number
  readonly nodes: number
  readonly skipped?: boolean
  readonly predictedMs?: number
  readonly wallMs?: number
  readonly wireMessages?: number
  readonly deliveryRatio?: number
  readonly peakRssBytes?: number
  readonly peakRssPerNodeBytes?: number
  readonly ratio?: number
  readonly maxRatio?: number
  readonly ok?: boolean
}

interface ChildOutput {
  readonly result: { readonly wireMessages: number; readonly deliveryRatio: number; readonly durationMs: number }
  readonly maxRssBytes: number
}

const child = fileURLToPath(new URL("./simChild.js", import.meta.url))
// the V8 flags `comms-dht sim --nodes N` runs with (Cli.nodeFlagsFor), so the figures are the command's; the old
// generation's limit aside, which the runs below set to the same for every size (an infinite default limit asks for
// none)
const flagsFor = (nodes: number) =>
  Cli.nodeFlagsFor(["node", "comms-dht", "sim", "--nodes", String(nodes)], [], undefined, {
    totalBytes: os.totalmem(),
    heapLimitBytes: Number.POSITIVE_INFINITY
  })

const runOne = (nodes: number): Promise<ChildOutput> =>
  new Promise((resolve, reject) => {
    const args = ["--max-old-space-size=16000", ...flagsFor(nodes), child, String(nodes), "7"]
    const proc = spawn(process.execPath, args, {
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    proc.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8")
    })
    proc.on("error", reject)
    proc.on("close", (code) => {
      const line = out.trim().split("\n").pop() ?? ""
      if (code !== 0 || line === "") {
        reject(new Error(`sim --nodes ${nodes} exited with ${String(code)}`))
        return
      }
      resolve(JSON.parse(line) as ChildOutput)
    })
  })

/** the sizes of the issue (#8); `--sim-sizes=30,60` picks others */
export const SIZES: ReadonlyArray<number> = [100, 300, 1000, 3000]

export const simScaling = async (
  sizes: ReadonlyArray<number>,
  budgetMs: number,
  log: (line: string) => void
): Promise<Array<SimScalingResult>> => {
  const results: Array<SimScalingResult> = []
  const measured: Array<{ readonly nodes: number; readonly wallMs: number }> = []
  for (const nodes of sizes) {
    const last = measured[measured.length - 1]
    const before = measured[measured.length - 2]
    const exponent = last !== undefined && before !== undefined
      ? Math.log(last.wallMs / before.wallMs) / Math.log(last.nodes / before.nodes)
      : 2
    const predictedMs = last === undefined ? 0 : last.wallMs * Math.pow(nodes / last.nodes, Math.max(1, exponent))
    const name = `sim.scaling.${nodes}`
    if (predictedMs > budgetMs) {
      log(`${name}: skipped, predicted ${(predictedMs / 1000).toFixed(0)} s over the ${budgetMs / 1000} s budget`)
      results.push({ name, opsPerSec: 0, nodes, skipped: true, predictedMs })
      continue
    }
    log(`${name}: running`)
    const started = performance.now()
    const { maxRssBytes, result } = await runOne(nodes)
    const wallMs = performance.now() - started
    measured.push({ nodes, wallMs })
    results.push({
      name,
      opsPerSec: result.wireMessages / (result.durationMs / 1000),
      nodes,
      wallMs,
      wireMessages: result.wireMessages,
      deliveryRatio: result.deliveryRatio,
      peakRssBytes: maxRssBytes,
      peakRssPerNodeBytes: maxRssBytes / nodes
    })
  }
  const at = (n: number) => results.find((r) => r.nodes === n && r.skipped !== true)
  const small = at(1000)
  const large = at(3000)
  if (small?.wallMs !== undefined && large?.wallMs !== undefined && small.peakRssBytes && large.peakRssBytes) {
    const time = large.wallMs / small.wallMs
    const memory = large.peakRssBytes / small.peakRssBytes
    results.push(
      { name: "sim.scaling.growth-time", opsPerSec: 0, nodes: 3000, ratio: time, maxRatio: 3.5, ok: time <= 3.5 },
      {
        name: "sim.scaling.growth-memory",
        opsPerSec: 0,
        nodes: 3000,
        ratio: memory,
        maxRatio: 3.5,
        ok: memory <= 3.5
      }
    )
  }
  return results
}
