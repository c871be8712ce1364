/**
 * A signed flood on a 50-node `MemoryNetwork` (scenario 10 at a larger size): every node but the sender delivers it
 * exactly once, no node forwards it twice, and the dedup counters account for every copy that was stopped.
 */
import * as Crypto from "@comms-dht/core/Crypto"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MemoryNetwork from "@comms-dht/core/MemoryNetwork"
import * as OutboundRequester from "@comms-dht/core/OutboundRequester"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import {
  connect,
  count,
  deliveredSoFar,
  eventually,
  identityOf,
  nextDelivered,
  settle,
  startNode,
  text
} from "./harness.js"

const N = 50
/** node i dials i + 1 and i + 7: a ring with chords, degree 4 everywhere, within the gossip fan-out of 6 */
const CHORDS = [1, 7]

describe("flood on a 50-node memory network", () => {
  it.effect("each node delivers the message exactly once; duplicates are stopped and counted", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_700_000_000_000)
      const hub = yield* MemoryNetwork.MemoryNetworkHub
      const nodes = yield* Effect.forEach(Array.from({ length: N }, (_, i) => i), (i) =>
        Effect.flatMap(identityOf(2000 + i), (id) => startNode(id)))
      for (let i = 0; i < N; i++) {
        for (const step of CHORDS) yield* connect(nodes[i]!, nodes[(i + step) % N]!)
      }
      const degreeSum = 2 * N * CHORDS.length
      const framesBefore = (yield* hub.stats).frames
      const duplicatesBefore = yield* count(DhtMetrics.inboundDuplicates)

      const sender = nodes[0]!
      yield* sender.run(
        OutboundRequester.flood(Envelope.destinationUnknown(), [], 7, text("to everyone")).pipe(
          Effect.flatMap(OutboundRequester.resolve)
        )
      )

      // every node but the sender delivers it (a blocking take per node), then the copies still travelling settle
      for (const node of nodes.slice(1)) {
        const m = yield* nextDelivered(node)
        expect(m.body).toEqual(text("to everyone"))
        expect(m.origin).toEqual(Option.some(sender.identity.publicKey))
      }
      const stopped = Effect.gen(function*() {
        const frames = (yield* hub.stats).frames - framesBefore
        const duplicates = (yield* count(DhtMetrics.inboundDuplicates)) - duplicatesBefore
        return duplicates === frames - (N - 1)
      })
      yield* eventually(stopped)
      yield* settle
      const deliveredBy = yield* Effect.forEach(nodes, (node) => Effect.map(deliveredSoFar(node), (got) => got.length))

      // nothing more: the sender never delivered its own message, nobody delivered it twice
      expect(deliveredBy).toEqual(new Array<number>(N).fill(0))
      const frames = (yield* hub.stats).frames - framesBefore
      const duplicates = (yield* count(DhtMetrics.inboundDuplicates)) - duplicatesBefore
      // every node forwards once, to its neighbours but the one it heard from: at most the sum of degrees
      expect(frames).toBeLessThanOrEqual(degreeSum)
      expect(frames).toBeGreaterThan(N - 1)
      // the first copy at each node was delivered; every other copy (echoes to the sender included) was stopped
      expect(duplicates).toBe(frames - (N - 1))
    }).pipe(
      Effect.scoped,
      Effect.provide(Layer.mergeAll(MemoryNetwork.layerHub(), Crypto.layerNoble()))
    ), { timeout: 60_000 })
})
