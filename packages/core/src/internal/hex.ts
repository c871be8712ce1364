/** @internal */

const alphabet = "0123456789abcdef"
const codes: ReadonlyArray<number> = Array.from(
  { length: 512 },
  (_, i) => alphabet.charCodeAt(i & 1 ? (i >> 1) & 15 : i >> 5)
)

/** Bytes per `String.fromCharCode` call: its characters travel as call arguments. */
const CHUNK = 4096

const encodeChunk = (bytes: Uint8Array): string => {
  const chars = new Array<number>(bytes.length * 2)
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!
    chars[2 * i] = codes[2 * b]!
    chars[2 * i + 1] = codes[2 * b + 1]!
  }
  return String.fromCharCode(...chars)
}

/**
 * @internal
 * Lowercase hex as one flat string. Hex strings are our map keys (SPEC §19: never a `Uint8Array`): a string built by
 * concatenation stays a rope when used as a key, about 900 bytes for a 32-byte key instead of about 100.
 */
export const encode = (bytes: Uint8Array): string => {
  if (bytes.length <= CHUNK) return encodeChunk(bytes)
  const parts: Array<string> = []
  for (let i = 0; i < bytes.length; i += CHUNK) parts.push(encodeChunk(bytes.subarray(i, i + CHUNK)))
  return parts.join("")
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
