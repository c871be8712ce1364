/** @internal */

/** @internal one second (by default) of a connection's received traffic */
export interface Bucket {
  readonly bucket: number
  readonly frames: number
  readonly bytes: number
}

/**
 * @internal
 * The flood window of SPEC §11.5: `BUCKETS` buckets of `bucketMs` each. The current bucket is counted in place and
 * the earlier non-empty ones are kept with their sums, so a frame costs O(1) and memory per connection stays bounded
 * whatever the rate (a timestamp per frame would grow with the flood).
 */
export interface FloodWindow {
  /** absolute bucket number (`floor(t / bucketMs)`) being counted */
  readonly bucket: number
  readonly frames: number
  readonly bytes: number
  /** earlier non-empty buckets still inside the window, oldest first */
  readonly older: ReadonlyArray<Bucket>
  readonly olderFrames: number
  readonly olderBytes: number
}

/** @internal */
export const BUCKETS = 100

/** @internal */
export const empty: FloodWindow = { bucket: -1, frames: 0, bytes: 0, older: [], olderFrames: 0, olderBytes: 0 }

/** @internal the totals over the window, the frame just recorded included */
export interface FloodTotals {
  readonly frames: number
  readonly bytes: number
}

/**
 * @internal
 * Records one frame of `size` bytes at `nowMs`; returns the totals of the last `BUCKETS` buckets (the current one
 * included) and the new window.
 */
export const record = (
  window: FloodWindow,
  nowMs: number,
  size: number,
  bucketMs: number
): readonly [FloodTotals, FloodWindow] => {
  const bucket = Math.floor(nowMs / bucketMs)
  let next: FloodWindow
  if (bucket <= window.bucket) {
    next = { ...window, frames: window.frames + 1, bytes: window.bytes + size }
  } else {
    let older = window.frames > 0
      ? [...window.older, { bucket: window.bucket, frames: window.frames, bytes: window.bytes }]
      : window.older
    let olderFrames = window.olderFrames + window.frames
    let olderBytes = window.olderBytes + window.bytes
    let expired = 0
    while (expired < older.length && older[expired]!.bucket <= bucket - BUCKETS) {
      olderFrames -= older[expired]!.frames
      olderBytes -= older[expired]!.bytes
      expired++
    }
    if (expired > 0) older = older.slice(expired)
    next = { bucket, frames: 1, bytes: size, older, olderFrames, olderBytes }
  }
  return [{ frames: next.frames + next.olderFrames, bytes: next.bytes + next.olderBytes }, next]
}
