import { describe, expect, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import * as FloodWindow from "../src/FloodWindow.js"

describe("FloodWindow", () => {
  it.prop(
    "totals equal a count over every frame of the last 100 buckets",
    [FastCheck.array(FastCheck.tuple(FastCheck.nat(3_000), FastCheck.nat(1_000)), { maxLength: 300 })],
    ([steps]) => {
      const bucketMs = 1_000
      const window = FloodWindow.make()
      let now = 0
      const seen: Array<{ readonly bucket: number; readonly size: number }> = []
      for (const [advance, size] of steps) {
        now += advance
        const bucket = Math.floor(now / bucketMs)
        seen.push({ bucket, size })
        const totals = FloodWindow.record(window, now, size, bucketMs)
        const live = seen.filter((f) => f.bucket > bucket - FloodWindow.BUCKETS)
        expect(totals).toEqual({ frames: live.length, bytes: live.reduce((n, f) => n + f.size, 0) })
        expect(window.older.length).toBeLessThan(FloodWindow.BUCKETS)
      }
    },
    { fastCheck: { numRuns: 1_000 } }
  )
})
