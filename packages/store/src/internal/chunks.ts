/**
 * @internal
 * Rows or bound parameters per statement, far below sqlite's limit of 32,766 variables (a peer row has 12).
 */
export const CHUNK = 500

/** @internal `items` cut into runs of at most `CHUNK` */
export const chunks = <A>(items: ReadonlyArray<A>): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += CHUNK) out.push(items.slice(i, i + CHUNK))
  return out
}
