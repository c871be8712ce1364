/**
 * Bounded memory under attack (issue #8): a flood of distinct messages into a live node must never take its dedup
 * cache, its store-and-forward store or its inbound queue past the bounds its config gives them, and the node must
 * still deliver a good message afterwards. The bounds are set small so that 20,000 messages go past each of them
 * (the dedup cache four times over); 100,000 take about two minutes here, too long for every CI run.
 */
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MessageStore from "@comms-dht/core/MessageStore"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as TestClock from "effect/TestClock"
import * as Inbound from "../../packages/inbound/test/harness.js"
import * as H from "./harness.js"

const START = Date.UTC(2026, 10, 25)
const FLOOD = 20_000
const ENCRYPTED = 400

describe("bounded memory under attack (issue #8)", () => {
  it.scoped(`${FLOOD} flooded messages never take the dedup cache, the SAF store or the inbound queue past their bounds`, () =>
    Effect.gen(function*() {
      const cfg = DhtConfig.unsafeMake({
        dedupCacheCapacity: 5_000,
        // one connection carries the whole flood here: the frame-rate ban of §11.5 is tested on its own
        floodBanMaxMsgCount: 10 * FLOOD,
        saf: { msgStorageCapacity: 300, maxRowsPerSourcePeerPerHour: 10 * FLOOD }
      }, H.config)
      yield* TestClock.setTime(START)
      const s = yield* H.scene(cfg)
      const destinations = yield* Effect.forEach(Array.from({ length: 50 }, (_, i) => i), (i) => H.identity(150 + i))
      const queueBound = Queue.capacity(s.victim.transport.inbound)

      const sizes = s.victim.run(Effect.all({
        dedup: Effect.flatMap(DedupCache.DedupCache, (d) => d.size),
        stored: Effect.flatMap(MessageStore.MessageStore, (m) => m.count),
        queued: Queue.size(s.victim.transport.inbound)
      }))
      const peak = { dedup: 0, stored: 0, queued: 0 }
      const sample = Effect.map(sizes, (now) => {
        peak.dedup = Math.max(peak.dedup, now.dedup)
        peak.stored = Math.max(peak.stored, now.stored)
        peak.queued = Math.max(peak.queued, now.queued)
      })

      let batch: Array<Uint8Array> = []
      for (let i = 0; i < FLOOD; i++) {
        const to = destinations[i % destinations.length]!
        // mostly cheap unsigned cleartext for other keys (dedup entries, nothing delivered), and every 50th an
        // encrypted message for a key this node does not hold: a candidate for its SAF store
        const frame = i % 50 === 0 && i / 50 < ENCRYPTED
          ? yield* craftFor(s, { signer: s.attacker.id, encryptFor: to.publicKey, parts: flooded(i) })
          : yield* craftFor(s, { destination: Envelope.destinationPublicKey(to.publicKey), parts: flooded(i) })
        batch.push(frame.bytes)
        // the connection's outbound queue holds 100 frames: write in batches of half that, then wait
        if (batch.length === 50) {
          yield* s.attacker.sendAll(batch)
          batch = []
        }
        if (i % 1_000 === 0) yield* sample
      }
      yield* s.attacker.sendAll(batch)
      // the pipeline works through what is still queued (bounded: a stuck pipeline fails the test)
      yield* Effect.repeatN(Effect.yieldNow(), 999).pipe(
        Effect.zipRight(Queue.size(s.victim.transport.inbound)),
        Effect.repeat({ until: (n) => n === 0, times: 2_000 })
      )
      yield* Effect.repeatN(Effect.yieldNow(), 500)
      yield* sample

      expect(peak.dedup).toBeLessThanOrEqual(5_000)
      expect(peak.stored).toBeLessThanOrEqual(300)
      expect(peak.queued).toBeLessThanOrEqual(queueBound)
      // the bounds were reached, so they were tested
      expect(peak.dedup).toBe(5_000)
      expect(peak.stored).toBe(300)
      yield* s.goodMessageArrives("still here")
    }), 240_000)
})

const flooded = (i: number) => Inbound.applicationParts(H.MESSAGE_TYPE, H.text(`flood ${i}`))

const craftFor = (s: H.Scene, options: Inbound.Craft) => s.attacker.run(Inbound.craft(options))
