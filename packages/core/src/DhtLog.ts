/**
 * Logging helpers for the node's hot paths. `Effect.annotateLogs` costs about 26 steps of Effect's run loop (it
 * copies the fiber's annotations), whether or not the log it wraps is written: a debug line with annotations cost
 * as much as sending a frame, on paths taken for every peer sync, every failed send and every relayed peer. `debug`
 * checks the minimum log level first and builds the annotated log only when a debug line would be written.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as LogLevel from "effect/LogLevel"

/**
 * `Effect.logDebug(message)` with `annotations`, or nothing (2 operations) when the fiber's minimum log level is
 * above `Debug`.
 *
 * @since 0.1.0
 * @category logging
 */
export const debug = (message: string, annotations: Readonly<Record<string, unknown>>): Effect.Effect<void> =>
  Effect.withFiberRuntime((fiber) =>
    LogLevel.greaterThan(fiber.getFiberRef(FiberRef.currentMinimumLogLevel), LogLevel.Debug)
      ? Effect.void
      : Effect.annotateLogs(Effect.logDebug(message), annotations)
  )
