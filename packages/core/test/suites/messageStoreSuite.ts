/**
 * The `MessageStore` cases (SPEC §9.1–§9.3, scenarios 21 and 42) every implementation must pass: core runs them on
 * `layerMemory`, `@comms-dht/store` on its sqlite store. Imports core by package name so that both packages' tests
 * resolve the same modules.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as TestClock from "effect/TestClock"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as NodeId from "@comms-dht/core/NodeId"

const { High, Low } = MessageStore.Priority
const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
const U64_MAX = (1n << 64n) - 1n

const bytes32 = (tag: number, i: number) => {
  const b = new Uint8Array(32)
  b[0] = tag
  new DataView(b.buffer).setUint32(28, i)
  return b
}

const key = (i: number): NodeId.PublicKey => NodeId.PublicKey.make(bytes32(1, i))
const nodeId = (i: number): NodeId.NodeId => NodeId.fromPublicKey(key(1_000 + i))

let nextHash = 0

interface RowOptions {
  readonly to?: number
  readonly from?: number
  readonly priority?: MessageStore.Priority
  /** ms */
  readonly expiresAt?: number
  readonly headerBytes?: number
  readonly bodyBytes?: number
  readonly hash?: number
}

const row = (options: RowOptions = {}): MessageStore.NewStoredMessage => {
  const to = key(options.to ?? 0)
  return {
    version: 1,
    messageType: Envelope.DhtMessageType.None,
    destinationPublicKey: to,
    destinationNodeId: NodeId.fromPublicKey(to),
    header: new Uint8Array(options.headerBytes ?? 10),
    body: new Uint8Array(options.bodyBytes ?? 30),
    priority: options.priority ?? Low,
    expiresAt: options.expiresAt ?? 3 * HOUR,
    sourceNodeId: nodeId(options.from ?? 0),
    bodyHash: bytes32(2, options.hash ?? ++nextHash)
  }
}

const counter = (metric: typeof DhtMetrics.safEvicted, tag: string, value: string) =>
  Effect.map(Metric.value(Metric.tagged(metric, tag, value)), (s) => s.count)

const store = MessageStore.MessageStore

const insertedId = (result: MessageStore.InsertResult): number => {
  if (result._tag !== "Inserted") throw new Error(`expected Inserted, got ${result._tag}`)
  return result.id
}

const idsFor = (to: number, cursor: MessageStore.Cursor = MessageStore.initialCursor, limit = 1_000) =>
  Effect.flatMap(store, (s) => s.fetchFor(key(to), cursor, limit)).pipe(
    Effect.map((r) => r.rows.map((x) => x.id))
  )

const noRoom = MessageStore.InsertResult.Rejected({ cause: "noRoom" })

/** Tuning for an implementation whose builds are costly. */
export interface SuiteOptions {
  /** Runs of the invariant property; each run builds a fresh store (default 200). */
  readonly invariantRuns?: number
}

/**
 * Declares the `MessageStore` cases under `name`. `layer` must build a fresh, empty store each time it is provided; the
 * suite supplies the `DhtConfig` each case needs.
 */
export const messageStoreSuite = <E>(
  name: string,
  layer: Layer.Layer<MessageStore.MessageStore, E>,
  options: SuiteOptions = {}
): void => {
  const withStore = (overrides: DhtConfig.Overrides = {}) =>
    Effect.provide(Layer.provide(layer, DhtConfig.layer(DhtConfig.unsafeMake(overrides))))

  describe(name, () => {
    it.effect("inserts are unique by bodyHash", () =>
      Effect.gen(function*() {
        const s = yield* store
        const first = yield* s.insert(row({ hash: 7, to: 1 }))
        expect(first).toEqual(MessageStore.InsertResult.Inserted({ id: 1, storedAt: 0 }))
        expect(yield* s.insert(row({ hash: 7, to: 2, priority: High }))).toEqual(MessageStore.InsertResult.Existed())
        expect(yield* s.count).toBe(1)
        expect(yield* s.totalBytes).toBe(40)
        const [stored] = (yield* s.fetchFor(key(1), MessageStore.initialCursor, 10)).rows
        expect(stored).toEqual(new MessageStore.StoredMessage({ ...row({ hash: 7, to: 1 }), id: 1, storedAt: 0 }))
      }).pipe(withStore()))

    it.effect("counts stored rows by priority and keeps the stored-messages gauge", () =>
      Effect.gen(function*() {
        const s = yield* store
        const low = yield* counter(DhtMetrics.safStored, "priority", "low")
        const high = yield* counter(DhtMetrics.safStored, "priority", "high")
        yield* s.insert(row())
        yield* s.insert(row({ priority: High }))
        yield* s.insert(row({ priority: High }))
        expect((yield* counter(DhtMetrics.safStored, "priority", "low")) - low).toBe(1)
        expect((yield* counter(DhtMetrics.safStored, "priority", "high")) - high).toBe(2)
        expect((yield* Metric.value(DhtMetrics.safStoredMessages)).value).toBe(3)
      }).pipe(withStore()))

    it.effect("storedAt never decreases, even when the clock goes back", () =>
      Effect.gen(function*() {
        const s = yield* store
        yield* TestClock.setTime(10_000)
        yield* s.insert(row({ to: 1 }))
        yield* TestClock.setTime(5_000)
        const second = yield* s.insert(row({ to: 1 }))
        expect(second).toEqual(MessageStore.InsertResult.Inserted({ id: 2, storedAt: 10_000 }))
        // the row that went in first stays first in cursor order
        const page = yield* s.fetchFor(key(1), MessageStore.initialCursor, 1)
        expect(page.rows.map((r) => r.id)).toEqual([1])
        const rest = yield* s.fetchFor(key(1), MessageStore.cursorOf(page.rows[0]!), 10)
        expect(rest.rows.map((r) => r.id)).toEqual([2])
        // the high-water mark outlives the rows that set it
        yield* s.remove([1, 2])
        expect(yield* s.insert(row({ to: 1 }))).toEqual(MessageStore.InsertResult.Inserted({ id: 3, storedAt: 10_000 }))
      }).pipe(withStore({ saf: { lowPriorityMsgStorageTtl: Duration.days(1) } })))

    describe("limits at insert (scenario 42)", () => {
      it.effect("the 1,001st row from one source within an hour is rejected, and accepted again after the hour", () =>
        Effect.gen(function*() {
          const s = yield* store
          const rejected = yield* counter(DhtMetrics.safInsertRejected, "cause", "source")
          for (let i = 0; i < 1_000; i++) {
            expect((yield* s.insert(row({ from: 1, to: i % 10 })))._tag).toBe("Inserted")
          }
          const over = MessageStore.InsertResult.Rejected({ cause: "source" })
          expect(yield* s.insert(row({ from: 1 }))).toEqual(over)
          // the limit is per source
          expect((yield* s.insert(row({ from: 2 })))._tag).toBe("Inserted")
          yield* TestClock.adjust("59 minutes")
          expect(yield* s.insert(row({ from: 1 }))).toEqual(over)
          expect((yield* counter(DhtMetrics.safInsertRejected, "cause", "source")) - rejected).toBe(2)
          yield* TestClock.adjust("1 minute")
          expect((yield* s.insert(row({ from: 1 })))._tag).toBe("Inserted")
          expect(yield* s.count).toBe(1_002)
        }).pipe(withStore({ saf: { lowPriorityMsgStorageTtl: Duration.days(1) } })))

      it.effect("the hour slides: rows age out minute by minute", () =>
        Effect.gen(function*() {
          const s = yield* store
          for (let i = 0; i < 3; i++) {
            yield* s.insert(row({ from: 1 }))
            yield* TestClock.adjust("20 minutes")
          }
          // t = 60 min: the row of minute 0 has left the window, those of minutes 20 and 40 have not
          expect((yield* s.insert(row({ from: 1 })))._tag).toBe("Inserted")
          expect((yield* s.insert(row({ from: 1 })))._tag).toBe("Rejected")
          yield* TestClock.adjust("20 minutes")
          expect((yield* s.insert(row({ from: 1 })))._tag).toBe("Inserted")
        }).pipe(withStore({ saf: { maxRowsPerSourcePeerPerHour: 3 } })))

      it.effect("at maxRowsPerDestination the oldest Low row of that destination is evicted", () =>
        Effect.gen(function*() {
          const s = yield* store
          const evicted = yield* counter(DhtMetrics.safEvicted, "cause", "destination")
          const a = insertedId(yield* s.insert(row({ to: 1 })))
          const b = insertedId(yield* s.insert(row({ to: 1, priority: High })))
          const other = insertedId(yield* s.insert(row({ to: 2 })))
          const c = insertedId(yield* s.insert(row({ to: 1 })))
          const d = insertedId(yield* s.insert(row({ to: 1 })))
          expect(yield* idsFor(1)).toEqual([b, c, d])
          // a High insert still takes Low rows first
          const e = insertedId(yield* s.insert(row({ to: 1, priority: High })))
          expect(yield* idsFor(1)).toEqual([b, d, e])
          expect(yield* idsFor(2)).toEqual([other])
          expect((yield* counter(DhtMetrics.safEvicted, "cause", "destination")) - evicted).toBe(2)
          expect(a).toBe(1)
        }).pipe(withStore({ saf: { maxRowsPerDestination: 3 } })))

      it.effect("a Low row never displaces a High one: a destination or store full of High ones rejects it", () =>
        Effect.gen(function*() {
          const s = yield* store
          const rejected = yield* counter(DhtMetrics.safInsertRejected, "cause", "noRoom")
          for (const to of [1, 1, 2]) yield* s.insert(row({ to, priority: High }))
          // per destination
          expect(yield* s.insert(row({ to: 1 }))).toEqual(noRoom)
          // whole store
          expect(yield* s.insert(row({ to: 3 }))).toEqual(noRoom)
          expect(yield* s.count).toBe(3)
          expect((yield* counter(DhtMetrics.safInsertRejected, "cause", "noRoom")) - rejected).toBe(2)

          // a High row evicts the oldest High row
          const evicted = yield* counter(DhtMetrics.safEvicted, "cause", "capacity")
          const id = insertedId(yield* s.insert(row({ to: 3, priority: High })))
          expect(yield* idsFor(1)).toEqual([2])
          expect(yield* idsFor(3)).toEqual([id])
          expect((yield* counter(DhtMetrics.safEvicted, "cause", "capacity")) - evicted).toBe(1)
        }).pipe(withStore({ saf: { maxRowsPerDestination: 2, msgStorageCapacity: 3 } })))

      it.effect("at msgStorageCapacity Low rows go first, oldest first, whatever their destination", () =>
        Effect.gen(function*() {
          const s = yield* store
          const h1 = insertedId(yield* s.insert(row({ to: 1, priority: High })))
          const l1 = insertedId(yield* s.insert(row({ to: 2 })))
          const l2 = insertedId(yield* s.insert(row({ to: 3 })))
          const h2 = insertedId(yield* s.insert(row({ to: 4, priority: High })))
          expect(l1 < l2).toBe(true)
          yield* s.insert(row({ to: 5, priority: High }))
          expect(yield* idsFor(2)).toEqual([])
          expect(yield* idsFor(3)).toEqual([l2])
          yield* s.insert(row({ to: 5 }))
          expect(yield* idsFor(3)).toEqual([])
          expect(yield* idsFor(1)).toEqual([h1])
          expect(yield* idsFor(4)).toEqual([h2])
          expect(yield* s.count).toBe(4)
        }).pipe(withStore({ saf: { msgStorageCapacity: 4 } })))

      it.effect("maxStoredBytes is enforced the same way, by header + body bytes", () =>
        Effect.gen(function*() {
          const s = yield* store
          const evicted = yield* counter(DhtMetrics.safEvicted, "cause", "bytes")
          // 40 bytes each, limit 100
          const h1 = insertedId(yield* s.insert(row({ to: 1, priority: High })))
          const l1 = insertedId(yield* s.insert(row({ to: 2 })))
          expect(yield* s.totalBytes).toBe(80)
          // the older High row stays, the newer Low one goes
          const h2 = insertedId(yield* s.insert(row({ to: 3, priority: High })))
          expect(yield* idsFor(2)).toEqual([])
          expect(yield* s.totalBytes).toBe(80)
          // only High rows left: a Low row does not fit
          expect(yield* s.insert(row({ to: 4 }))).toEqual(noRoom)
          // a 70-byte High row pushes out both older High rows
          const big = insertedId(yield* s.insert(row({ to: 4, priority: High, headerBytes: 20, bodyBytes: 50 })))
          expect(yield* s.totalBytes).toBe(70)
          expect(yield* idsFor(1)).toEqual([])
          expect(yield* idsFor(3)).toEqual([])
          expect(yield* idsFor(4)).toEqual([big])
          expect((yield* counter(DhtMetrics.safEvicted, "cause", "bytes")) - evicted).toBe(3)
          // larger than the whole budget: rejected, nothing evicted
          expect(yield* s.insert(row({ to: 5, priority: High, bodyBytes: 91 }))).toEqual(noRoom)
          expect(yield* s.count).toBe(1)
          expect([h1, l1, h2].length).toBe(3)
        }).pipe(withStore({ saf: { maxStoredBytes: 100 } })))

      it.effect("a rejected insert changes nothing, even when some rows could have been evicted", () =>
        Effect.gen(function*() {
          const s = yield* store
          // two Low rows of 40 bytes, a High row of 40: 120 of 130 bytes
          yield* s.insert(row({ to: 1 }))
          yield* s.insert(row({ to: 2 }))
          yield* s.insert(row({ to: 3, priority: High }))
          // a 100-byte Low row would need the High row's bytes too
          expect(yield* s.insert(row({ to: 4, bodyBytes: 90 }))).toEqual(noRoom)
          expect(yield* s.count).toBe(3)
          expect(yield* s.totalBytes).toBe(120)
          expect(yield* idsFor(1)).toEqual([1])
        }).pipe(withStore({ saf: { maxStoredBytes: 130 } })))
    })

    describe("lifetime (scenario 21)", () => {
      // runs cleanup every cleanupInterval, as the SAF service does, and reports when the row was deleted
      const vanishesAt = (id: number, to: number) =>
        Effect.gen(function*() {
          const s = yield* store
          for (let i = 0; i < 6 * 24 * 4; i++) {
            yield* TestClock.adjust("10 minutes")
            yield* s.cleanup
            const ids = yield* idsFor(to)
            if (!ids.includes(id)) return i * 10 * MINUTE + 10 * MINUTE
          }
          return -1
        })

      it.effect("a default-expiry row vanishes at the first cleanup after expires + 10 min", () =>
        Effect.gen(function*() {
          const s = yield* store
          const before = yield* counter(DhtMetrics.safEvicted, "cause", "expired")
          const id = insertedId(yield* s.insert(row({ to: 1, expiresAt: 3 * HOUR })))
          expect(yield* vanishesAt(id, 1)).toBe(3 * HOUR + 10 * MINUTE)
          expect((yield* counter(DhtMetrics.safEvicted, "cause", "expired")) - before).toBe(1)
          expect(yield* s.count).toBe(0)
          expect(yield* s.totalBytes).toBe(0)
        }).pipe(withStore()))

      it.effect("with a 3-day expiry a Low row vanishes after 6 h", () =>
        Effect.gen(function*() {
          const s = yield* store
          const before = yield* counter(DhtMetrics.safEvicted, "cause", "ttl")
          const id = insertedId(yield* s.insert(row({ to: 1, expiresAt: 3 * DAY })))
          expect(yield* vanishesAt(id, 1)).toBe(6 * HOUR)
          expect((yield* counter(DhtMetrics.safEvicted, "cause", "ttl")) - before).toBe(1)
        }).pipe(withStore()))

      it.effect("with a 3-day expiry a High row vanishes after 3 days", () =>
        Effect.gen(function*() {
          const s = yield* store
          const id = insertedId(yield* s.insert(row({ to: 1, priority: High, expiresAt: 3 * DAY })))
          expect(yield* vanishesAt(id, 1)).toBe(3 * DAY)
        }).pipe(withStore()))

      it.effect("cleanup deletes a row exactly at its deletion time, by cause, and only past ones", () =>
        Effect.gen(function*() {
          const s = yield* store
          yield* TestClock.setTime(HOUR)
          yield* s.insert(row({ to: 1, expiresAt: 2 * HOUR })) // expired at 2 h 10 min
          yield* s.insert(row({ to: 1, expiresAt: 3 * DAY })) // ttl at 7 h
          yield* s.insert(row({ to: 1, priority: High, expiresAt: 3 * DAY })) // expired at 3 d 10 min
          const early = { priority: Low, storedAt: HOUR, expiresAt: 2 * HOUR }
          expect(MessageStore.deletionTime(early, DhtConfig.defaultConfig))
            .toEqual({ at: 2 * HOUR + 10 * MINUTE, cause: "expired" })

          yield* TestClock.setTime(2 * HOUR + 10 * MINUTE - 1)
          expect(yield* s.cleanup).toEqual({ ttl: 0, expired: 0 })
          yield* TestClock.setTime(2 * HOUR + 10 * MINUTE)
          expect(yield* s.cleanup).toEqual({ ttl: 0, expired: 1 })
          yield* TestClock.setTime(7 * HOUR)
          expect(yield* s.cleanup).toEqual({ ttl: 1, expired: 0 })
          expect(yield* s.count).toBe(1)
          yield* TestClock.setTime(3 * DAY + 10 * MINUTE)
          expect(yield* s.cleanup).toEqual({ ttl: 0, expired: 1 })
          expect(yield* s.count).toBe(0)
        }).pipe(withStore()))

      it.effect("a row past its deletion time is not served even before cleanup removes it", () =>
        Effect.gen(function*() {
          const s = yield* store
          yield* s.insert(row({ to: 1, expiresAt: HOUR }))
          yield* s.insert(row({ to: 1, expiresAt: 3 * HOUR }))
          yield* TestClock.setTime(HOUR + 10 * MINUTE)
          expect(yield* idsFor(1)).toEqual([2])
          expect(yield* s.count).toBe(2)
        }).pipe(withStore()))
    })

    describe("fetchFor and cursors (§9.3)", () => {
      it.effect("returns a destination's rows strictly after the cursor, ascending, at most limit, with more", () =>
        Effect.gen(function*() {
          const s = yield* store
          // all at the same millisecond: the id breaks the tie
          for (let i = 0; i < 5; i++) yield* s.insert(row({ to: 1 }))
          yield* s.insert(row({ to: 2 }))
          const pages: Array<[Array<number>, boolean]> = []
          let cursor = MessageStore.initialCursor
          for (let i = 0; i < 4; i++) {
            const page = yield* s.fetchFor(key(1), cursor, 2)
            pages.push([page.rows.map((r) => r.id), page.more])
            if (page.rows.length > 0) cursor = MessageStore.cursorOf(page.rows[page.rows.length - 1]!)
          }
          expect(pages).toEqual([[[1, 2], true], [[3, 4], true], [[5], false], [[], false]])
          // sinceMs alone: rows stored later
          yield* TestClock.setTime(1_000)
          yield* s.insert(row({ to: 1 }))
          expect(yield* idsFor(1, { sinceMs: 0n, afterId: 1_000n })).toEqual([7])
          expect(yield* idsFor(1, { sinceMs: 999n, afterId: 0n })).toEqual([7])
          expect(yield* idsFor(1, { sinceMs: 1_000n, afterId: 7n })).toEqual([])
        }).pipe(withStore()))

      it.effect("60 rows ahead for C do not hide later ones when paging with the cursor", () =>
        Effect.gen(function*() {
          const s = yield* store
          for (let i = 0; i < 60; i++) yield* s.insert(row({ to: 3, from: 9 }))
          yield* TestClock.adjust("1 minute")
          const genuine: Array<number> = []
          for (let i = 0; i < 5; i++) genuine.push(insertedId(yield* s.insert(row({ to: 3, from: 8 }))))
          const first = yield* s.fetchFor(key(3), MessageStore.initialCursor, 50)
          expect([first.rows.length, first.more]).toEqual([50, true])
          const second = yield* s.fetchFor(key(3), MessageStore.cursorOf(first.rows[49]!), 50)
          expect([second.rows.length, second.more]).toEqual([15, false])
          expect(second.rows.slice(10).map((r) => r.id)).toEqual(genuine)
        }).pipe(withStore()))

      it.effect("packs within maxBytes but always returns the first qualifying row", () =>
        Effect.gen(function*() {
          const s = yield* store
          for (let i = 0; i < 3; i++) yield* s.insert(row({ to: 1 }))
          const two = yield* s.fetchFor(key(1), MessageStore.initialCursor, 10, { maxBytes: 100 })
          expect([two.rows.map((r) => r.id), two.more]).toEqual([[1, 2], true])
          const one = yield* s.fetchFor(key(1), MessageStore.initialCursor, 10, { maxBytes: 10 })
          expect([one.rows.map((r) => r.id), one.more]).toEqual([[1], true])
          const sized = yield* s.fetchFor(key(1), MessageStore.initialCursor, 10, { maxBytes: 3, sizeOf: () => 1 })
          expect([sized.rows.map((r) => r.id), sized.more]).toEqual([[1, 2, 3], false])
        }).pipe(withStore()))

      it.effect("rows past their deletion time ahead of live ones are skipped, across more than one page", () =>
        Effect.gen(function*() {
          const s = yield* store
          for (let i = 0; i < 300; i++) yield* s.insert(row({ to: 1, expiresAt: HOUR }))
          const live: Array<number> = []
          for (let i = 0; i < 5; i++) live.push(insertedId(yield* s.insert(row({ to: 1, expiresAt: 3 * HOUR }))))
          yield* TestClock.setTime(HOUR + 10 * MINUTE)
          expect(yield* s.fetchFor(key(1), MessageStore.initialCursor, 50)).toEqual({
            rows: (yield* s.fetchFor(key(1), MessageStore.initialCursor, 5)).rows,
            more: false
          })
          expect(yield* idsFor(1)).toEqual(live)
          const two = yield* s.fetchFor(key(1), MessageStore.initialCursor, 2)
          expect([two.rows.map((r) => r.id), two.more]).toEqual([live.slice(0, 2), true])
          const none = yield* s.fetchFor(key(1), MessageStore.initialCursor, 0)
          expect([none.rows, none.more]).toEqual([[], true])
        }).pipe(withStore()))

      it.effect("packing follows sizeOf, even where it is below header + body bytes", () =>
        Effect.gen(function*() {
          const s = yield* store
          for (let i = 0; i < 12; i++) yield* s.insert(row({ to: 1 }))
          // 40 bytes of header and body each, counted as 10: ten rows fit in 100
          const ten = yield* s.fetchFor(key(1), MessageStore.initialCursor, 50, { maxBytes: 100, sizeOf: () => 10 })
          expect([ten.rows.map((r) => r.id), ten.more]).toEqual([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], true])
          // counted as 60: the first always goes, the second does not fit
          const one = yield* s.fetchFor(key(1), MessageStore.initialCursor, 50, { maxBytes: 100, sizeOf: () => 60 })
          expect([one.rows.map((r) => r.id), one.more]).toEqual([[1], true])
          const all = yield* s.fetchFor(key(1), MessageStore.initialCursor, 50, { maxBytes: 1_000 })
          expect([all.rows.length, all.more]).toEqual([12, false])
        }).pipe(withStore()))

      it.effect("a cursor only moves forward, per responder", () =>
        Effect.gen(function*() {
          const s = yield* store
          const r1 = key(1)
          const r2 = key(2)
          expect(yield* s.cursor(r1)).toEqual(MessageStore.initialCursor)
          expect(yield* s.advanceCursor(r1, { sinceMs: 5n, afterId: 3n })).toEqual({ sinceMs: 5n, afterId: 3n })
          expect(yield* s.advanceCursor(r1, { sinceMs: 5n, afterId: 2n })).toEqual({ sinceMs: 5n, afterId: 3n })
          expect(yield* s.advanceCursor(r1, { sinceMs: 4n, afterId: 100n })).toEqual({ sinceMs: 5n, afterId: 3n })
          expect(yield* s.cursor(r1)).toEqual({ sinceMs: 5n, afterId: 3n })
          expect(yield* s.advanceCursor(r1, { sinceMs: 6n, afterId: 0n })).toEqual({ sinceMs: 6n, afterId: 0n })
          // a responder whose clock runs an hour fast moves only its own cursor
          yield* s.advanceCursor(r2, { sinceMs: BigInt(HOUR), afterId: 1n })
          expect(yield* s.cursor(r1)).toEqual({ sinceMs: 6n, afterId: 0n })
          expect(yield* s.cursor(r2)).toEqual({ sinceMs: BigInt(HOUR), afterId: 1n })
        }).pipe(withStore()))

      it.effect("cursor values near 2⁶⁴ − 1 are clamped to 2⁶³ − 1", () =>
        Effect.gen(function*() {
          const s = yield* store
          yield* s.insert(row({ to: 1 }))
          const max = MessageStore.MAX_CURSOR_VALUE
          expect(max).toBe(2n ** 63n - 1n)
          expect(yield* s.advanceCursor(key(1), { sinceMs: U64_MAX, afterId: U64_MAX - 1n }))
            .toEqual({ sinceMs: max, afterId: max })
          expect(yield* s.cursor(key(1))).toEqual({ sinceMs: max, afterId: max })
          expect(yield* s.fetchFor(key(1), { sinceMs: U64_MAX, afterId: 0n }, 10)).toEqual({ rows: [], more: false })
          expect(yield* idsFor(1, { sinceMs: 0n, afterId: U64_MAX })).toEqual([])
          expect(MessageStore.clampCursor({ sinceMs: -1n, afterId: 2n ** 63n })).toEqual({ sinceMs: 0n, afterId: max })
        }).pipe(withStore()))
    })

    it.effect("remove and removeByBodyHash keep the running totals", () =>
      Effect.gen(function*() {
        const s = yield* store
        yield* s.insert(row({ to: 1, hash: 100 }))
        yield* s.insert(row({ to: 1, hash: 101, bodyBytes: 60 }))
        yield* s.insert(row({ to: 2, hash: 102 }))
        expect(yield* s.totalBytes).toBe(150)
        // what the §9.1 decision reads: "a row with this hash exists"
        expect(yield* s.contains(bytes32(2, 101))).toBe(true)
        expect(yield* s.contains(bytes32(2, 999))).toBe(false)
        expect(yield* s.remove([1, 42])).toBe(1)
        expect(yield* s.removeByBodyHash(bytes32(2, 101))).toBe(true)
        expect(yield* s.contains(bytes32(2, 101))).toBe(false)
        expect(yield* s.removeByBodyHash(bytes32(2, 101))).toBe(false)
        expect(yield* s.count).toBe(1)
        expect(yield* s.totalBytes).toBe(40)
        expect(yield* idsFor(1)).toEqual([])
        // a removed hash may be stored again, under a new id
        const again = yield* s.insert(row({ to: 1, hash: 100 }))
        expect(again).toEqual(MessageStore.InsertResult.Inserted({ id: 4, storedAt: 0 }))
      }).pipe(withStore()))

    it.effect("eviction order and deadlines survive the compaction of their lazily-deleted indexes", () =>
      Effect.gen(function*() {
        const s = yield* store
        const spread = (i: number) => ({ to: i % 10, from: i % 10 })
        for (let i = 0; i < 2_000; i++) yield* s.insert(row(spread(i)))
        // leaves thousands of stale ids behind the oldest row, which stays first in line
        yield* s.remove(Array.from({ length: 1_999 }, (_, i) => i + 2))
        expect(yield* s.count).toBe(1)
        const a = insertedId(yield* s.insert(row({ to: 11 })))
        for (let i = 0; i < 1_998; i++) yield* s.insert(row(spread(i)))
        expect(yield* s.count).toBe(2_000)
        yield* s.insert(row({ to: 12 }))
        expect(yield* idsFor(0)).not.toContain(1)
        expect(yield* idsFor(11)).toEqual([a])
        expect(yield* s.count).toBe(2_000)
        yield* TestClock.setTime(3 * HOUR + 10 * MINUTE)
        expect(yield* s.cleanup).toEqual({ ttl: 0, expired: 2_000 })
        expect(yield* s.count).toBe(0)
        expect(yield* s.totalBytes).toBe(0)
      }).pipe(withStore({ saf: { msgStorageCapacity: 2_000 } })))

    describe("invariants under arbitrary inserts", () => {
      const Insert = FastCheck.record({
        to: FastCheck.integer({ min: 0, max: 3 }),
        from: FastCheck.integer({ min: 0, max: 2 }),
        high: FastCheck.boolean(),
        bodyBytes: FastCheck.integer({ min: 0, max: 70 }),
        hash: FastCheck.integer({ min: 0, max: 40 }),
        // mostly 0: each clock adjustment costs the test a scheduler round trip
        advance: FastCheck.oneof(FastCheck.constant(0), FastCheck.integer({ min: 1, max: 20 * MINUTE }))
      })

      it.effect.prop(
        "limits hold, totals match the rows, a Low insert never removes a High row, a rejection changes nothing",
        [FastCheck.array(Insert, { maxLength: 60 })],
        ([inserts]) =>
          Effect.gen(function*() {
            const s = yield* store
            const snapshot = Effect.gen(function*() {
              const rows: Array<MessageStore.StoredMessage> = []
              for (let to = 0; to < 4; to++) {
                const page = yield* s.fetchFor(key(to), MessageStore.initialCursor, 1_000)
                rows.push(...page.rows)
              }
              return rows
            })
            for (const op of inserts) {
              if (op.advance > 0) yield* TestClock.adjust(op.advance)
              const before = yield* snapshot
              const result = yield* s.insert(row({
                to: op.to,
                from: op.from,
                priority: op.high ? High : Low,
                bodyBytes: op.bodyBytes,
                hash: 10_000 + op.hash
              }))
              const after = yield* snapshot
              const ids = (rs: ReadonlyArray<MessageStore.StoredMessage>) => rs.map((r) => r.id).sort((a, b) => a - b)
              if (result._tag !== "Inserted") expect(ids(after)).toEqual(ids(before))
              else {
                expect(after.some((r) => r.id === result.id)).toBe(true)
                if (!op.high) {
                  const highs = (rs: ReadonlyArray<MessageStore.StoredMessage>) =>
                    ids(rs.filter((r) => r.priority === High))
                  expect(highs(after)).toEqual(highs(before))
                }
              }
              expect(after.length).toBe(yield* s.count)
              expect(after.reduce((n, r) => n + MessageStore.rowBytes(r), 0)).toBe(yield* s.totalBytes)
              expect(after.length).toBeLessThanOrEqual(6)
              expect(yield* s.totalBytes).toBeLessThanOrEqual(200)
              for (let to = 0; to < 4; to++) {
                const forTo = after.filter((r) => NodeId.equals(r.destinationPublicKey, key(to)))
                expect(forTo.length).toBeLessThanOrEqual(3)
              }
              expect(new Set(after.map((r) => NodeId.toHex(r.bodyHash))).size).toBe(after.length)
            }
          }).pipe(withStore({
            saf: {
              maxRowsPerDestination: 3,
              msgStorageCapacity: 6,
              maxStoredBytes: 200,
              maxRowsPerSourcePeerPerHour: 8
            }
          })),
        { fastCheck: { numRuns: options.invariantRuns ?? 200 } }
      )
    })
  })
}
