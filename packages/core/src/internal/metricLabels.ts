/** @internal */
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import type * as MetricLabel from "effect/MetricLabel"

/**
 * @internal
 * Runs `f` with the fiber's metric labels (what `Effect.tagMetrics` set) in one step, for the per-frame paths: each
 * `Metric.increment` is a read of that fiber ref and a step of its own, so a batch of counter updates written with
 * `unsafeUpdate` here costs what one of them costs.
 */
export const withMetricLabels = <A>(f: (labels: ReadonlyArray<MetricLabel.MetricLabel>) => A): Effect.Effect<A> =>
  Effect.withFiberRuntime((fiber) => Effect.succeed(f(fiber.getFiberRef(FiberRef.currentMetricLabels))))
