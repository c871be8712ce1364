import { describe, expect, it } from "@effect/vitest"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import { Effect, Metric, MetricBoundaries } from "effect"

// Metrics are process-global: each test uses names of its own.
const counter = (name: string) => Metric.counter(name, { incremental: true })
const countOf = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => state.count)

describe("DhtMetrics.tagged", () => {
  it.effect("counts under the same key as Metric.tagged, with the fiber's labels and without", () =>
    Effect.gen(function*() {
      const base = counter("dht_metrics_test_tagged_total")
      const ours = DhtMetrics.tagged(base, "direction", "in")
      const effects = Metric.tagged(base, "direction", "in")
      yield* Metric.increment(ours)
      yield* Metric.increment(effects)
      for (let i = 0; i < 3; i++) {
        yield* Metric.increment(ours).pipe(Effect.tagMetrics("node", "a"))
      }
      yield* Metric.increment(effects).pipe(Effect.tagMetrics("node", "a"))
      yield* Metric.increment(ours).pipe(Effect.tagMetrics("node", "b"))
      // the plain update path the pipelines use, with a labels array held across updates
      yield* DhtMetrics.withLabels((labels) => {
        ours.unsafeUpdate(1, labels)
        ours.unsafeUpdate(1, labels)
      }).pipe(Effect.tagMetrics("node", "b"))
      expect(yield* countOf(effects)).toBe(2)
      expect(yield* countOf(Metric.tagged(effects, "node", "a"))).toBe(4)
      expect(yield* countOf(Metric.tagged(effects, "node", "b"))).toBe(3)
      // and the tag itself is where Effect puts it: the base metric without it counted nothing
      expect(yield* countOf(Metric.tagged(base, "node", "a"))).toBe(0)
    }))

  it.effect("tags twice as Metric.tagged twice does, and tags histograms", () =>
    Effect.gen(function*() {
      const base = counter("dht_metrics_test_tagged_twice_total")
      const ours = DhtMetrics.tagged(DhtMetrics.tagged(base, "severity", "high"), "reason", "forged")
      yield* Metric.increment(ours).pipe(Effect.tagMetrics("node", "c"))
      yield* Metric.increment(ours)
      const effects = Metric.tagged(Metric.tagged(base, "severity", "high"), "reason", "forged")
      expect(yield* countOf(Metric.tagged(effects, "node", "c"))).toBe(1)
      expect(yield* countOf(effects)).toBe(1)

      const histogram = Metric.histogram("dht_metrics_test_tagged_ms", MetricBoundaries.fromIterable([1, 10]))
      yield* Metric.update(DhtMetrics.tagged(histogram, "stage", "front"), 5).pipe(Effect.tagMetrics("node", "c"))
      const state = yield* Metric.value(Metric.tagged(Metric.tagged(histogram, "stage", "front"), "node", "c"))
      expect([state.count, state.sum]).toEqual([1, 5])
    }))
})
