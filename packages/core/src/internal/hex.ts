/** @internal */

const alphabet = "0123456789abcdef"
const table: ReadonlyArray<string> = Array.from({ length: 256 }, (_, i) => alphabet[i >> 4]! + alphabet[i & 15]!)

/** @internal */
export const encode = (bytes: Uint8Array): string => {
  let out = ""
  for (let i = 0; i < bytes.length; i++) out += table[bytes[i]!]
  return out
}

const nibble = (c: number): number =>
  c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1

/** @internal undefined for anything that is not an even-length hex string */
export const decode = (s: string): Uint8Array | undefined => {
  if (s.length % 2 !== 0) return undefined
  const out = new Uint8Array(s.length / 2)
  for (let i = 0; i < out.length; i++) {
    const hi = nibble(s.charCodeAt(2 * i))
    const lo = nibble(s.charCodeAt(2 * i + 1))
    if (hi < 0 || lo < 0) return undefined
    out[i] = (hi << 4) | lo
  }
  return out
}
