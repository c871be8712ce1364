/**
 * The byte-level checks of libsodium's Ed25519 acceptance rules (SPEC §4.3), shared by every `Crypto` backend:
 * the key check applied to every public key accepted from outside, and the pre-checks on a signature's `R` and
 * `S` that node:crypto's OpenSSL verifier does not make by itself.
 *
 * @since 0.1.0
 */
import { ed25519 } from "@noble/curves/ed25519.js"
import * as Hex from "./internal/hex.js"
import type { PublicKey } from "./NodeId.js"

/** p = 2^255 - 19 */
const P = (1n << 255n) - 19n
/** L = 2^252 + 27742317777372353535851937790883648493 */
const L = (1n << 252n) + 27742317777372353535851937790883648493n

const leToBigInt = (bytes: Uint8Array, clearTopBit: boolean): bigint => {
  let n = 0n
  for (let i = bytes.length - 1; i >= 0; i--) {
    const b = i === bytes.length - 1 && clearTopBit ? bytes[i]! & 0x7f : bytes[i]!
    n = (n << 8n) | BigInt(b)
  }
  return n
}

/**
 * libsodium's blocklist: encodings of the points of order 1, 2, 4 and 8 and their non-canonical forms, compared
 * with bit 255 cleared.
 */
const smallOrder: ReadonlySet<string> = new Set([
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
])

/**
 * The encoding, with bit 255 cleared, is one of libsodium's small-order encodings.
 *
 * @since 0.1.0
 * @category utils
 */
export const isSmallOrderEncoding = (bytes: Uint8Array): boolean => {
  if (bytes.length !== 32) return false
  const cleared = Uint8Array.from(bytes)
  cleared[31] = cleared[31]! & 0x7f
  return smallOrder.has(Hex.encode(cleared))
}

/**
 * `y` (little-endian, bit 255 cleared) is below p.
 *
 * @since 0.1.0
 * @category utils
 */
export const hasCanonicalY = (bytes: Uint8Array): boolean => bytes.length === 32 && leToBigInt(bytes, true) < P

/**
 * `S` (little-endian) is below the group order L.
 *
 * @since 0.1.0
 * @category utils
 */
export const isCanonicalScalar = (bytes: Uint8Array): boolean => bytes.length === 32 && leToBigInt(bytes, false) < L

const decodesToPoint = (bytes: Uint8Array): boolean => {
  try {
    ed25519.Point.fromBytes(bytes, false)
    return true
  } catch {
    // noble signals "not on the curve" by throwing; that is just a failed check here
    return false
  }
}

/**
 * The key check of SPEC §4.3: 32 bytes, canonical `y`, decodes to a curve point, not small-order.
 *
 * @since 0.1.0
 * @category utils
 */
export const checkPublicKey = (bytes: Uint8Array): bytes is PublicKey =>
  bytes.length === 32 && hasCanonicalY(bytes) && !isSmallOrderEncoding(bytes) && decodesToPoint(bytes)

// The key check costs ~100 µs (a field square root in bigint arithmetic) and the same keys come back again and
// again (destinations, relayed peers, claims), so results are memoised. The check is a pure function of the 32
// bytes, so the memo is unobservable; it is bounded (oldest entry out first) and holds rejections too, so that a
// peer repeating a bad key costs no more than one repeating a good one.
const KEY_CHECK_MEMO_CAPACITY = 16_384
const keyCheckMemo = new Map<string, boolean>()

/**
 * `checkPublicKey` through a bounded memo: for keys that arrive from the network, where the same keys repeat.
 *
 * @since 0.1.0
 * @category utils
 */
export const checkPublicKeyMemo = (bytes: Uint8Array): bytes is PublicKey => {
  if (bytes.length !== 32) return false
  const id = Hex.encode(bytes)
  const known = keyCheckMemo.get(id)
  if (known !== undefined) return known
  const ok = checkPublicKey(bytes)
  if (keyCheckMemo.size >= KEY_CHECK_MEMO_CAPACITY) {
    const oldest = keyCheckMemo.keys().next()
    if (oldest.done !== true) keyCheckMemo.delete(oldest.value)
  }
  keyCheckMemo.set(id, ok)
  return ok
}

/**
 * Checks 1–3 of the verification predicate (SPEC §4.3): `S < L`, `R` canonical and not small-order, `A` passes
 * the key check. The equation (check 4) is the backend's.
 *
 * @since 0.1.0
 * @category utils
 */
export const preCheck = (publicKey: Uint8Array, signature: Uint8Array): boolean => {
  if (signature.length !== 64) return false
  const r = signature.subarray(0, 32)
  const s = signature.subarray(32, 64)
  return isCanonicalScalar(s) && hasCanonicalY(r) && !isSmallOrderEncoding(r) && checkPublicKey(publicKey)
}

/**
 * @since 0.1.0
 * @category constants
 */
export const GROUP_ORDER = L

/**
 * @since 0.1.0
 * @category constants
 */
export const FIELD_PRIME = P
