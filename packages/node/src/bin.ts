#!/usr/bin/env node
/**
 * The `comms-dht` executable: the command line of `Cli`, with each node built by `Dht.layer`, run on Node's
 * platform Layers. The only place in the library that runs an Effect (STYLE.md §7); the process exit code is the one
 * `Cli.main` returns, or after a signal the one `Cli.teardownFor` gives (0 for `run`, whose scope has closed).
 *
 * `sim` wants V8 flags that only take effect when a process starts (`Cli.nodeFlagsFor`): without them the command
 * starts itself again with them and hands on that process's exit code.
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import * as os from "node:os"
import * as v8 from "node:v8"
import * as Cli from "./Cli.js"
import * as Dht from "./Dht.js"

const runHere = () =>
  Cli.main(Dht.layer, process.argv).pipe(
    Effect.provide(NodeContext.layer),
    NodeRuntime.runMain({ disablePrettyLogger: true, teardown: Cli.teardownFor(process.argv) })
  )

const flags = Cli.nodeFlagsFor(process.argv, process.execArgv, process.env.NODE_OPTIONS, {
  totalBytes: os.totalmem(),
  heapLimitBytes: v8.getHeapStatistics().heap_size_limit
})

if (flags.length === 0) {
  runHere()
} else {
  const child = spawn(process.execPath, [...process.execArgv, ...flags, ...process.argv.slice(1)], {
    stdio: "inherit"
  })
  // Ctrl-C reaches the child through the terminal's process group (a second SIGINT would end it without its
  // teardown), so this process only outlives it; a SIGTERM sent to this process alone is passed on.
  const ignore = () => {}
  const forward = () => child.kill("SIGTERM")
  process.on("SIGINT", ignore)
  process.on("SIGTERM", forward)
  child.on("exit", (code, signal) => {
    process.exit(code ?? 128 + (signal === null ? 0 : os.constants.signals[signal]))
  })
  // no process could be started: the command runs here, without the flags
  child.on("error", (error) => {
    process.removeListener("SIGINT", ignore)
    process.removeListener("SIGTERM", forward)
    process.stderr.write(`comms-dht: running without ${flags.join(" ")} (${error.message})\n`)
    runHere()
  })
}
