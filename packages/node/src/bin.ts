#!/usr/bin/env node
/**
 * The `comms-dht` executable: the command line of `Cli`, with each node built by `Dht.layer`, run on Node's
 * platform Layers. The only place in the library that runs an Effect (STYLE.md §7); the process exit code is the one
 * `Cli.main` returns, or after a signal the one `Cli.teardownFor` gives (0 for `run`, whose scope has closed).
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Cli from "./Cli.js"
import * as Dht from "./Dht.js"

Cli.main(Dht.layer, process.argv).pipe(
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disablePrettyLogger: true, teardown: Cli.teardownFor(process.argv) })
)
