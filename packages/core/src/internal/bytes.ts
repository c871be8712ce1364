/** @internal */

/** @internal */
export const u32le = (n: number): Uint8Array => {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, n >>> 0, true)
  return out
}

/** @internal two's complement, as the enum value is a signed 32-bit integer on the wire */
export const i32le = (n: number): Uint8Array => {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setInt32(0, n | 0, true)
  return out
}

/** @internal reduced mod 2^64, so a negative `int64` is signed as its two's complement */
export const u64le = (n: bigint | number): Uint8Array => {
  const out = new Uint8Array(8)
  const v = typeof n === "bigint" ? BigInt.asUintN(64, n) : BigInt.asUintN(64, BigInt(Math.trunc(finite(n))))
  new DataView(out.buffer).setBigUint64(0, v, true)
  return out
}

const finite = (n: number): number => (Number.isFinite(n) ? n : 0)

/** @internal writes the u64le of a non-negative safe integer (a length) at `offset` */
export const writeLength = (target: Uint8Array, offset: number, n: number): void => {
  const view = new DataView(target.buffer, target.byteOffset + offset, 8)
  view.setUint32(0, n >>> 0, true)
  view.setUint32(4, Math.floor(n / 0x1_0000_0000) >>> 0, true)
}

/** @internal */
export const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.length
  }
  return out
}

/** @internal not constant-time: every comparison here is of public values */
export const equal = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** @internal */
export const isZero = (a: Uint8Array): boolean => {
  let acc = 0
  for (let i = 0; i < a.length; i++) acc |= a[i]!
  return acc === 0
}

/** @internal the ASCII bytes of a string made only of ASCII characters */
export const ascii = (s: string): Uint8Array => {
  const out = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0x7f
  return out
}
