/**
 * One simulation in a process of its own, for `sim.scaling` (bench/sim.ts): `node bench/dist/simChild.js N SEED`
 * runs SPEC §19's simulation with N nodes (K = 8, M = 1000, F = 0.1, sqlite in memory) and prints one JSON line:
 * the result, and the process's peak resident memory. A process per run keeps each run's memory its own.
 */
import * as Dht from "@comms-dht/node/Dht"
import * as Simulation from "@comms-dht/node/Simulation"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"

const nodes = Number(process.argv[2] ?? 100)
const seed = Number(process.argv[3] ?? 7)

Effect.runPromise(
  Simulation.run(
    { nodes, degree: 8, seed, messages: 1000, offline: 0.1, store: "sqlite" },
    Dht.layer
  ).pipe(Logger.withMinimumLogLevel(LogLevel.Error))
).then(
  (result) => {
    // resourceUsage reports kilobytes
    process.stdout.write(JSON.stringify({ result, maxRssBytes: process.resourceUsage().maxRSS * 1024 }) + "\n")
    process.exit(0)
  },
  (error: unknown) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(1)
  }
)
