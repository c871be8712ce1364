/**
 * `npm run bench` (a table) and `npm run bench -- --json` (exactly one JSON object on stdout). Every figure is
 * ops/s measured in this run, and every target is a ratio between two figures of the same run, because this
 * machine's speed varies by ±30 % from run to run.
 */
import { Bench } from "tinybench"
import { codecBenches } from "./codec.js"
import { cryptoBenches } from "./crypto.js"
import { inboundBenches } from "./inbound.js"
import { outboundBenches } from "./outbound.js"
import { simScaling, type SimScalingResult, SIZES } from "./sim.js"
import { storeBenches } from "./store.js"
import { tcpBenches } from "./tcp.js"

/**
 * A benchmark. `bound` names another task of the same run whose rate this one is compared with; `minRatio` is the
 * target for `opsPerSec / boundOpsPerSec`.
 */
export interface Task {
  readonly name: string
  readonly fn: () => unknown
  readonly bound?: string
  readonly minRatio?: number
  /**
   * Operations one call of `fn` performs (default 1). The pipeline benchmarks run a batch per call inside one
   * `Effect.runPromise`, so that starting a runtime and awaiting its promise — the harness, not the pipeline — is
   * paid once per batch rather than once per message; their crypto-only bounds are batched the same way.
   */
  readonly batch?: number
}

interface Result {
  readonly name: string
  readonly opsPerSec: number
  readonly meanMs: number
  readonly rme: number
  readonly samples: number
  readonly bound?: string
  readonly boundOpsPerSec?: number
  readonly ratio?: number
  readonly sequentialRatio?: number
  readonly minRatio?: number
  readonly ok?: boolean
}

const json = process.argv.includes("--json")
const filter = process.argv.find((a) => a.startsWith("--filter="))?.slice("--filter=".length)
const time = Number(process.argv.find((a) => a.startsWith("--time="))?.slice("--time=".length) ?? 500)
// seconds of predicted wall time a `sim.scaling` size may take; 0 leaves the simulations out
const simSizes = process.argv.find((a) => a.startsWith("--sim-sizes="))?.slice("--sim-sizes=".length).split(",")
  .map(Number) ?? SIZES
const simBudget = Number(process.argv.find((a) => a.startsWith("--sim-budget="))?.slice("--sim-budget=".length) ?? 900)

const run = async (tasks: ReadonlyArray<Task>): Promise<Array<Result>> => {
  const bench = new Bench({ time, warmupTime: Math.min(200, time / 2) })
  for (const task of tasks) {
    if (filter === undefined || task.name.includes(filter)) bench.add(task.name, task.fn)
  }
  await bench.run()
  return bench.tasks.flatMap((task) => {
    const r = task.result
    if (r === undefined || r.error !== undefined) {
      process.stderr.write(`bench ${task.name} did not complete: ${String(r?.error)}\n`)
      return []
    }
    const batch = tasks.find((t) => t.name === task.name)?.batch ?? 1
    return [{
      name: task.name,
      opsPerSec: r.throughput.mean * batch,
      meanMs: r.latency.mean / batch,
      rme: r.latency.rme,
      samples: r.latency.samples.length
    }]
  })
}

/**
 * A task's rate over its bound's, the two run in alternation for `ms` (a call of each per round, in the order
 * bound–task, then task–bound): both see the same machine, whose speed drifts by tens of percent within a minute. Run
 * one after the other, as tinybench runs tasks, the same code's inbound ratio came out anywhere from 0.49 to 0.82.
 */
const interleavedRatio = async (task: Task, bound: Task, ms: number): Promise<number> => {
  let taskMs = 0
  let boundMs = 0
  const timed = async (fn: () => unknown) => {
    const start = performance.now()
    await fn()
    return performance.now() - start
  }
  const end = performance.now() + ms
  for (let round = 0; round < 4 || performance.now() < end; round++) {
    if (round % 2 === 0) {
      boundMs += await timed(bound.fn)
      taskMs += await timed(task.fn)
    } else {
      taskMs += await timed(task.fn)
      boundMs += await timed(bound.fn)
    }
  }
  return (boundMs / (bound.batch ?? 1)) / (taskMs / (task.batch ?? 1))
}

/**
 * Adds `boundOpsPerSec`, `ratio` and `ok` to every result whose task names a bound measured in this run. The ratio
 * is measured again with the two interleaved (`interleavedRatio`); `sequentialRatio` is the quotient of the two
 * rates above, for comparison.
 */
const withBounds = async (tasks: ReadonlyArray<Task>, results: ReadonlyArray<Result>): Promise<Array<Result>> => {
  const out: Array<Result> = []
  for (const result of results) {
    const task = tasks.find((t) => t.name === result.name)
    const bound = results.find((r) => r.name === task?.bound)
    const boundTask = tasks.find((t) => t.name === task?.bound)
    if (task?.bound === undefined || bound === undefined || boundTask === undefined) {
      out.push(result)
      continue
    }
    const ratio = await interleavedRatio(task, boundTask, 2 * time)
    out.push({
      ...result,
      bound: bound.name,
      boundOpsPerSec: bound.opsPerSec,
      ratio,
      sequentialRatio: result.opsPerSec / bound.opsPerSec,
      ...(task.minRatio === undefined ? {} : { minRatio: task.minRatio, ok: ratio >= task.minRatio })
    })
  }
  return out
}

const main = async () => {
  const tasks: ReadonlyArray<Task> = [
    ...cryptoBenches(),
    ...codecBenches(),
    ...(await outboundBenches()),
    ...(await inboundBenches()),
    ...(await tcpBenches()),
    // filling the 100,000-row file takes seconds: only when a store task can be selected
    ...(filter === undefined || /store|saf|sql/.test(filter) ? await storeBenches() : [])
  ]
  const results = await withBounds(tasks, await run(tasks))
  // whole simulations, each in a process of its own, after the microbenchmarks so they do not share the heap
  const sims: Array<SimScalingResult> = simBudget > 0 && (filter === undefined || "sim.scaling".includes(filter) ||
      filter.startsWith("sim"))
    ? await simScaling(simSizes, simBudget * 1000, (line) => process.stderr.write(`${line}\n`))
    : []
  if (json) {
    process.stdout.write(JSON.stringify({ node: process.version, results: [...results, ...sims] }) + "\n")
    return
  }
  const pad = (s: string, n: number) => s.padEnd(n)
  process.stdout.write(`${pad("benchmark", 32)} ${"ops/s".padStart(12)} ${"±%".padStart(6)}  ratio to bound\n`)
  for (const r of results) {
    const versus = r.ratio === undefined
      ? ""
      : `${r.ratio.toFixed(2)}× ${r.bound}` + (r.minRatio === undefined ? "" : ` (target ≥ ${r.minRatio}×: ${r.ok ? "ok" : "MISSED"})`)
    process.stdout.write(
      `${pad(r.name, 32)} ${r.opsPerSec.toFixed(0).padStart(12)} ${r.rme.toFixed(1).padStart(6)}  ${versus}\n`
    )
  }
  for (const r of sims) {
    const line = r.skipped === true
      ? `skipped (predicted ${((r.predictedMs ?? 0) / 1000).toFixed(0)} s)`
      : r.ratio !== undefined
      ? `${r.ratio.toFixed(2)}× from 1000 nodes (target ≤ ${r.maxRatio}×: ${r.ok === true ? "ok" : "MISSED"})`
      : `${((r.wallMs ?? 0) / 1000).toFixed(1)} s, delivered ${((r.deliveryRatio ?? 0) * 100).toFixed(2)} %, ` +
        `${((r.peakRssPerNodeBytes ?? 0) / 1e6).toFixed(1)} MB/node peak`
    process.stdout.write(`${pad(r.name, 32)} ${r.opsPerSec.toFixed(0).padStart(12)} ${"".padStart(6)}  ${line}\n`)
  }
}

main().then(
  // the pipeline benches keep their memory networks' fibers alive for the whole run; the run is over now
  () => process.exit(process.exitCode ?? 0),
  (error: unknown) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(1)
  }
)
