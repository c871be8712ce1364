/**
 * `DhtLog.debug`: the annotated debug line is written, with its annotations, when the minimum log level lets debug
 * lines through, and nothing is logged when it does not.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as DhtLog from "../src/DhtLog.js"

interface Line {
  readonly level: string
  readonly message: unknown
  readonly annotations: Record<string, unknown>
}

const capture = (level: LogLevel.LogLevel) => {
  const lines: Array<Line> = []
  const logger = Logger.make<unknown, void>(({ annotations, logLevel, message }) => {
    lines.push({ level: logLevel.label, message, annotations: Object.fromEntries(HashMap.toEntries(annotations)) })
  })
  const run = <A, E>(effect: Effect.Effect<A, E>) =>
    effect.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)), Logger.withMinimumLogLevel(level))
  return { lines, run }
}

describe("DhtLog.debug", () => {
  it.effect("writes the line with its annotations when debug lines are on", () =>
    Effect.gen(function*() {
      const { lines, run } = capture(LogLevel.Debug)
      yield* run(DhtLog.debug("peer sync request answered", { peer: "ab", peers: 3 }))
      expect(lines).toEqual([{
        level: "DEBUG",
        message: ["peer sync request answered"],
        annotations: { peer: "ab", peers: 3 }
      }])
    }))

  it.effect("logs nothing when the minimum level is above debug, while other lines still go out", () =>
    Effect.gen(function*() {
      const { lines, run } = capture(LogLevel.Info)
      yield* run(Effect.zipRight(DhtLog.debug("relayed peer skipped", { reason: "own key" }), Effect.logInfo("kept")))
      expect(lines.map((l) => [l.level, l.message])).toEqual([["INFO", ["kept"]]])
    }))
})
