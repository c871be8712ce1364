/** @internal */

/**
 * @internal
 * mulberry32: a small, fast generator of uniform 32-bit integers from a 32-bit seed. For the memory network's plain
 * draws (frame tags, seeded link latencies), which run where an Effect's `Random` would cost a step of a fiber each;
 * not for keys or anything an attacker may predict to advantage.
 */
export const mulberry32 = (seed: number): () => number => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
}
