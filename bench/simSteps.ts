/**
 * Where a simulation's wall time and memory go, step by step: `node bench/dist/simSteps.js N SEED STORE` runs SPEC
 * §19's simulation (K = 8, M = 1000, F = 0.1) and writes to stderr, at each step's start, the wall seconds so far,
 * the virtual ms, the Effect operations run so far (a count of work the machine's speed does not change), and the
 * process's RSS, V8 heap and external memory; the result goes to stdout as one JSON line,
 * as `simChild.js` prints it. The figures of one run are comparable only with runs on the same machine and load;
 * `comms-dht sim` runs with `--max-semi-space-size` (64 up to 200 nodes, 256 up to 1000, up to 1024 above) and an old
 * generation of 75 % of the machine's memory (`Cli.nodeFlagsFor`), so pass both to `node` for its figures: at 1000
 * nodes the heap outgrows V8's default limit (4.3 GB here), and near it the collector runs all the time (38 min where
 * `comms-dht sim` took 14).
 *
 * Options, by environment variable:
 * - `STOP="<step> <label>"` (e.g. `STOP="4 discovery"`): exits when that step starts, so a profile covers only the
 *   steps before it (`node --cpu-prof bench/dist/simSteps.js …`);
 * - `METRICS=1`: at every step, the process's metric counters summed over the nodes (frames by message type, peer
 *   sync and SAF requests, duplicates, discovery rounds, fibers started): how many units of work a step did;
 * - `ALLOC=FILE`: samples allocations (collected objects included) for the whole run and writes the V8 sampling
 *   heap profile to FILE, to see what feeds the garbage collector.
 */
import * as Dht from "@comms-dht/node/Dht"
import * as Simulation from "@comms-dht/node/Simulation"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as fs from "node:fs"
import * as inspector from "node:inspector"

const nodes = Number(process.argv[2] ?? 100)
const seed = Number(process.argv[3] ?? 1)
const store: Simulation.StoreKind = process.argv[4] === "memory" ? "memory" : "sqlite"
const stopAt = process.env.STOP
const showMetrics = process.env.METRICS !== undefined
const allocFile = process.env.ALLOC

const started = performance.now()
const seconds = () => ((performance.now() - started) / 1000).toFixed(1)
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)}MB`

const session = allocFile === undefined ? undefined : new inspector.Session()
if (session !== undefined) {
  session.connect()
  session.post("HeapProfiler.startSampling", {
    samplingInterval: 32_768,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true
  })
}

const finish = (code: number) => {
  if (session !== undefined && allocFile !== undefined) {
    // an in-process session answers synchronously
    session.post("HeapProfiler.stopSampling", (error, result) => {
      if (error === null) fs.writeFileSync(allocFile, JSON.stringify(result.profile))
      else process.stderr.write(`allocation profile: ${String(error)}\n`)
    })
  }
  process.exit(code)
}

// counters summed over every label but `node`, in name order
const counters = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>) => {
  const sums = new Map<string, number>()
  for (const pair of pairs) {
    const state = pair.metricState
    const count = MetricState.isCounterState(state)
      ? Number(state.count)
      : MetricState.isHistogramState(state)
      ? state.count
      : 0
    if (count === 0) continue
    const labels = pair.metricKey.tags.filter((t) => t.key !== "node").map((t) => `${t.key}=${t.value}`).join(",")
    const key = `${pair.metricKey.name}{${labels}}`
    sums.set(key, (sums.get(key) ?? 0) + count)
  }
  return [...sums].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
}

let last = ""
const onProgress = (progress: Simulation.Progress) =>
  Effect.flatMap(showMetrics ? Metric.snapshot : Effect.succeed([]), (pairs) =>
    Effect.sync(() => {
      const step = `${progress.step} ${progress.label}`
      if (step === last) return
      last = step
      const memory = process.memoryUsage()
      for (const [key, count] of counters(pairs)) process.stderr.write(`  ${key} ${count}\n`)
      process.stderr.write(
        `${seconds()}s step ${step} virtual=${progress.virtualMs}ms ops=${
          (progress.operations / 1e6).toFixed(1)
        }M rss=${mb(memory.rss)} heap=${
          mb(memory.heapUsed)
        } external=${mb(memory.external)}\n`
      )
      if (step === stopAt) finish(0)
    }))

Effect.runPromise(
  Simulation.run({ nodes, degree: 8, seed, messages: 1000, offline: 0.1, store, onProgress }, Dht.layer).pipe(
    Logger.withMinimumLogLevel(LogLevel.Error)
  )
).then(
  (result) => {
    process.stderr.write(`${seconds()}s done\n`)
    process.stdout.write(JSON.stringify({ result, maxRssBytes: process.resourceUsage().maxRSS * 1024 }) + "\n")
    finish(0)
  },
  (error: unknown) => {
    process.stderr.write(`${String(error)}\n`)
    finish(1)
  }
)
