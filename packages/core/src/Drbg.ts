/**
 * The deterministic byte source of the seeded `Crypto` layers and the simulation's identities (SPEC §19): the
 * ChaCha20 (RFC 8439) keystream under the key `DSH("sim_drbg", 32, u64le(S))`, with a 12-byte zero nonce and the
 * block counter starting at 0, consumed strictly in order. Every backend draws from it through this module, so
 * the same seed gives the same bytes everywhere.
 *
 * @since 0.1.0
 */
import { chacha20 } from "@noble/ciphers/chacha.js"
import { blake2b } from "@noble/hashes/blake2.js"
import * as Effect from "effect/Effect"
import { u32le, u64le } from "./internal/bytes.js"
import { dshWith } from "./internal/dsh.js"
import type { SecretKey } from "./NodeId.js"

/**
 * A simulation seed `S`, read as a u64 (reduced mod 2⁶⁴; a non-integer number is truncated, a non-finite one is 0).
 *
 * @since 0.1.0
 * @category models
 */
export type Seed = bigint | number

/**
 * A stream of deterministic bytes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Drbg {
  /** The next `n` bytes of the keystream (`n` is floored; negative is 0). */
  readonly bytes: (n: number) => Effect.Effect<Uint8Array>
}

const dsh = dshWith((chunks) => {
  const h = blake2b.create()
  for (const c of chunks) h.update(c)
  return h.digest()
})

/**
 * The ChaCha20 key of the DRBG for seed `S`: `DSH("sim_drbg", 32, u64le(S))`.
 *
 * @since 0.1.0
 * @category utils
 */
export const keyFor = (seed: Seed): Uint8Array => dsh("sim_drbg", 32, [u64le(seed)])

/**
 * The identity seed of simulated node `i`: `DSH("sim_identity", 32, u64le(S), u32le(i))`.
 *
 * @since 0.1.0
 * @category utils
 */
export const simIdentitySeed = (seed: Seed, index: number): SecretKey =>
  // 32 bytes by construction, which is all the brand states
  dsh("sim_identity", 32, [u64le(seed), u32le(index)]) as SecretKey

// 64 ChaCha20 blocks per refill: one call into the cipher serves many small draws (nonces, ephemeral keys).
const CHUNK = 4096
const BLOCK = 64

/**
 * A fresh DRBG for seed `S`, positioned at the first keystream byte.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (seed: Seed): Effect.Effect<Drbg> => Effect.suspend(() => fromKey(keyFor(seed)))

/**
 * The ChaCha20 keystream of a 32-byte key (zero nonce, counter from 0) as a DRBG; `make` derives the key from the
 * seed. The key must be 32 bytes. Exposed so that the keystream can be checked against RFC 8439's vectors.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromKey = (key: Uint8Array): Effect.Effect<Drbg> =>
  Effect.sync(() => {
    const ownKey = Uint8Array.from(key)
    const nonce = new Uint8Array(12)
    const zeros = new Uint8Array(CHUNK)
    let buffer = new Uint8Array(0)
    let position = 0
    let counter = 0
    // A plain closure rather than a Ref: the state is private to this value and only ever advanced inside
    // Effect.sync, which the single JavaScript thread runs to completion, so draws never interleave.
    const take = (n: number): Uint8Array => {
      const out = new Uint8Array(Math.max(0, Math.floor(n)))
      let offset = 0
      while (offset < out.length) {
        if (position === buffer.length) {
          buffer = chacha20(ownKey, nonce, zeros, undefined, counter)
          counter += CHUNK / BLOCK
          position = 0
        }
        const k = Math.min(out.length - offset, buffer.length - position)
        out.set(buffer.subarray(position, position + k), offset)
        offset += k
        position += k
      }
      return out
    }
    return { bytes: (n) => Effect.sync(() => take(n)) }
  })
