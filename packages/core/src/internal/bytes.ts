/** @internal */

// Written byte by byte: on Node 20 a `DataView` costs about a microsecond to make, and these run several times per
// message (the challenge's fields, SPEC §4.3)
/** @internal writes the low 32 bits of `n`, little-endian, at `offset` */
export const putU32 = (out: Uint8Array, offset: number, n: number): void => {
  out[offset] = n & 0xff
  out[offset + 1] = (n >>> 8) & 0xff
  out[offset + 2] = (n >>> 16) & 0xff
  out[offset + 3] = (n >>> 24) & 0xff
}

/** @internal */
export const u32le = (n: number): Uint8Array => {
  const out = new Uint8Array(4)
  putU32(out, 0, n >>> 0)
  return out
}

/** @internal two's complement, as the enum value is a signed 32-bit integer on the wire */
export const i32le = (n: number): Uint8Array => {
  const out = new Uint8Array(4)
  putU32(out, 0, n | 0)
  return out
}

/** @internal reduced mod 2^64, so a negative `int64` is signed as its two's complement */
export const u64le = (n: bigint | number): Uint8Array => {
  const out = new Uint8Array(8)
  const v = typeof n === "bigint" ? BigInt.asUintN(64, n) : BigInt.asUintN(64, BigInt(Math.trunc(finite(n))))
  putU32(out, 0, Number(v & 0xffff_ffffn))
  putU32(out, 4, Number(v >> 32n))
  return out
}

const finite = (n: number): number => (Number.isFinite(n) ? n : 0)

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
