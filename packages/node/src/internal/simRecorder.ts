/** @internal */

/**
 * @internal
 * The simulation's bookkeeping: the body every simulated message carries (its sim id and virtual send time), what
 * each message is expected to reach, and what did reach whom, when, and how often.
 *
 * Plain mutable maps in a closure, as the `VirtualClock`'s heap: the recorder is private to one run, tens of
 * thousands of deliveries pass through it, and every call is one synchronous step (made inside `Effect.sync`).
 */

/** @internal the application message type of simulated messages */
export const SIM_MESSAGE_TYPE = 0x51_4d

/** @internal */
export type Kind = "direct" | "broadcast" | "saf"

const prefixes: Record<Kind, string> = { direct: "d", broadcast: "b", saf: "s" }

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: false })

const bodyPattern = /^([dbs])(\d{1,9})\|(\d{1,16})$/

/** @internal */
export const encodeBody = (kind: Kind, index: number, sentAt: number): Uint8Array =>
  encoder.encode(`${prefixes[kind]}${index}|${Math.floor(sentAt)}`)

/** @internal */
export interface DecodedBody {
  readonly kind: Kind
  readonly index: number
  readonly sentAt: number
}

/** @internal `undefined` for a body no simulation wrote */
export const decodeBody = (bytes: Uint8Array): DecodedBody | undefined => {
  const match = bodyPattern.exec(decoder.decode(bytes))
  if (match === null) return undefined
  const kind: Kind = match[1] === "d" ? "direct" : match[1] === "b" ? "broadcast" : "saf"
  return { kind, index: Number(match[2]), sentAt: Number(match[3]) }
}

/** @internal delivered counts of one kind */
export interface Tally {
  readonly expected: number
  readonly delivered: number
}

/** @internal */
export interface Snapshot {
  readonly direct: Tally
  readonly broadcast: Tally
  readonly saf: Tally
  readonly duplicates: number
  /** deliveries of a sim message to a node it was not meant for */
  readonly strays: number
  /** virtual ms from send to first delivery, one per delivered (message, recipient) */
  readonly latencies: ReadonlyArray<number>
}

/** @internal */
export interface Recorder {
  /** message `index` of `kind` goes to node `target` (direct, saf) or to all but node `target` (broadcast) */
  readonly expect: (kind: Kind, index: number, target: number) => void
  readonly record: (recipient: number, body: Uint8Array, now: number) => void
  readonly snapshot: () => Snapshot
  /** (message, recipient) pairs delivered so far, all kinds */
  readonly deliveredCount: () => number
}

/** @internal */
export const make = (nodes: number): Recorder => {
  const targets: Record<Kind, Map<number, number>> = { direct: new Map(), broadcast: new Map(), saf: new Map() }
  const delivered: Record<Kind, Set<string>> = { direct: new Set(), broadcast: new Set(), saf: new Set() }
  const latencies: Array<number> = []
  let duplicates = 0
  let strays = 0

  const intended = (kind: Kind, target: number, recipient: number): boolean =>
    kind === "broadcast" ? recipient !== target : recipient === target

  return {
    expect: (kind, index, target) => {
      targets[kind].set(index, target)
    },
    record: (recipient, body, now) => {
      const decoded = decodeBody(body)
      if (decoded === undefined) return
      const target = targets[decoded.kind].get(decoded.index)
      if (target === undefined || !intended(decoded.kind, target, recipient)) {
        strays++
        return
      }
      const key = `${decoded.index}>${recipient}`
      const seen = delivered[decoded.kind]
      if (seen.has(key)) {
        duplicates++
        return
      }
      seen.add(key)
      latencies.push(Math.max(0, now - decoded.sentAt))
    },
    snapshot: () => ({
      direct: { expected: targets.direct.size, delivered: delivered.direct.size },
      broadcast: { expected: targets.broadcast.size * (nodes - 1), delivered: delivered.broadcast.size },
      saf: { expected: targets.saf.size, delivered: delivered.saf.size },
      duplicates,
      strays,
      latencies: [...latencies]
    }),
    deliveredCount: () => delivered.direct.size + delivered.broadcast.size + delivered.saf.size
  }
}

/** @internal nearest-rank percentile of ascending `sorted`; 0 when empty */
export const percentile = (sorted: ReadonlyArray<number>, p: number): number => {
  if (sorted.length === 0) return 0
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)))
  return sorted[rank - 1] ?? 0
}

/** @internal a ratio kept to 6 decimals, so the JSON stays readable (and identical between runs) */
export const ratio = (numerator: number, denominator: number): number =>
  denominator === 0 ? 0 : Math.round((numerator / denominator) * 1e6) / 1e6
