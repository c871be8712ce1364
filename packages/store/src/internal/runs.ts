/**
 * @internal
 * Rows or bound parameters per statement of a batch: far below sqlite's limit of 32,766 variables (a peer row has 12),
 * and a power of two, so that every run has one of the shapes `runs` makes.
 */
export const RUN = 64

/**
 * @internal
 * `items` cut into runs for a statement with a place per item: runs of `RUN`, the last padded up to a power of two by
 * repeating its last item. sqlite prepares each text of a statement anew, and a batch's text changes with its number
 * of rows: a 64-row peer upsert takes 283 µs to prepare and 72 µs to run, and cut as they came the 300-node
 * simulation prepared 81 texts of it, 1,632 times. Padded, a connection meets at most seven shapes of a statement.
 * Only for statements where an item written twice does what it did once: an upsert of the same row, `DELETE … IN`,
 * `INSERT … ON CONFLICT DO NOTHING`.
 */
export const runs = <A>(items: ReadonlyArray<A>): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += RUN) {
    const run = items.slice(i, i + RUN)
    let size = 1
    while (size < run.length) size *= 2
    const last = run[run.length - 1]!
    while (run.length < size) run.push(last)
    out.push(run)
  }
  return out
}
