/**
 * The flood window of SPEC §11.5, shared by the transports: a connection's received frames and bytes over
 * `BUCKETS` buckets of `bucketMs` each (100 × 1 s by default). The current bucket is counted in place and the
 * earlier non-empty ones are kept with their sums, so a frame costs O(1) and a window's memory stays bounded whatever
 * the rate (a timestamp per frame would grow with the flood).
 *
 * A window is mutable and belongs to the one reader of its connection: recording a frame changes it in place and
 * allocates nothing but the bucket it closes, where a fresh window per frame cost an object spread (V8's slow path
 * on Node 20) and a tuple on every frame of a simulation.
 *
 * @since 0.1.0
 */

/**
 * Buckets in a window.
 *
 * @since 0.1.0
 * @category constants
 */
export const BUCKETS = 100

/**
 * One closed bucket: its absolute number (`floor(t / bucketMs)`) and what it counted.
 *
 * @since 0.1.0
 * @category models
 */
export interface Bucket {
  readonly bucket: number
  readonly frames: number
  readonly bytes: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface FloodWindow {
  /** absolute bucket number being counted */
  bucket: number
  frames: number
  bytes: number
  /** earlier non-empty buckets still inside the window, oldest first */
  older: Array<Bucket>
  olderFrames: number
  olderBytes: number
}

/**
 * The totals over a window, the frame just recorded included (a type rather than an interface, so that it passes
 * as a record of numbers, such as a log annotation).
 *
 * @since 0.1.0
 * @category models
 */
export type FloodTotals = {
  readonly frames: number
  readonly bytes: number
}

/**
 * A new, empty window.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (): FloodWindow => ({ bucket: -1, frames: 0, bytes: 0, older: [], olderFrames: 0, olderBytes: 0 })

/**
 * The length of a bucket for a `timespan` in milliseconds (`floodBanTimespan`), at least 1 ms.
 *
 * @since 0.1.0
 * @category utils
 */
export const bucketMillis = (timespanMs: number): number => Math.max(1, timespanMs / BUCKETS)

/**
 * Records one frame of `size` bytes received at `nowMs` in `window` and returns the totals of its last `BUCKETS`
 * buckets, this frame included. Time going backwards counts the frame in the current bucket.
 *
 * @since 0.1.0
 * @category utils
 */
export const record = (window: FloodWindow, nowMs: number, size: number, bucketMs: number): FloodTotals => {
  const bucket = Math.floor(nowMs / bucketMs)
  if (bucket <= window.bucket) {
    window.frames++
    window.bytes += size
  } else {
    if (window.frames > 0) {
      window.older.push({ bucket: window.bucket, frames: window.frames, bytes: window.bytes })
      window.olderFrames += window.frames
      window.olderBytes += window.bytes
    }
    let expired = 0
    while (expired < window.older.length && window.older[expired]!.bucket <= bucket - BUCKETS) {
      window.olderFrames -= window.older[expired]!.frames
      window.olderBytes -= window.older[expired]!.bytes
      expired++
    }
    if (expired > 0) window.older = window.older.slice(expired)
    window.bucket = bucket
    window.frames = 1
    window.bytes = size
  }
  return { frames: window.frames + window.olderFrames, bytes: window.bytes + window.olderBytes }
}
