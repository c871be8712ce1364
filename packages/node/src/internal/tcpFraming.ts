/** @internal */
import * as Noise from "@comms-dht/core/Noise"
import type { DecryptionFailed, EncryptionFailed } from "@comms-dht/core/DhtError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"

// Three layers on one TCP stream (SPEC §11.6): chunks as the socket delivers them, Noise records
// (`u16be(length) || ciphertext`, ≤ 65,535 bytes), and inside the decrypted record stream our frames
// (`u32be(length) || envelope`). None of the boundaries line up, so each layer keeps its own partial state.

/** @internal the stream ended inside a record */
export interface Eof {
  readonly _tag: "Eof"
}

const eof: Eof = { _tag: "Eof" }

/** @internal exact-length reads over a chunked source */
export interface ByteReader<E> {
  readonly readExact: (n: number) => Effect.Effect<Uint8Array, E | Eof>
  /** `None` at a clean end of stream (nothing buffered) */
  readonly readRecord: Effect.Effect<Option.Option<Uint8Array>, E | Eof>
}

/** @internal */
export const byteReader = <E>(read: Effect.Effect<Option.Option<Uint8Array>, E>): ByteReader<E> => {
  let buffer: Uint8Array = new Uint8Array(0)
  let position = 0
  const available = () => buffer.length - position
  /** false at end of stream */
  const fill: Effect.Effect<boolean, E> = Effect.map(read, (chunk) => {
    if (Option.isNone(chunk)) return false
    const rest = buffer.subarray(position)
    if (rest.length === 0) {
      buffer = chunk.value
    } else {
      const joined = new Uint8Array(rest.length + chunk.value.length)
      joined.set(rest, 0)
      joined.set(chunk.value, rest.length)
      buffer = joined
    }
    position = 0
    return true
  })
  const take = (n: number): Uint8Array => {
    const out = buffer.subarray(position, position + n)
    position += n
    return out
  }
  const readExact = (n: number): Effect.Effect<Uint8Array, E | Eof> =>
    Effect.suspend(() => {
      if (available() >= n) return Effect.succeed(take(n))
      return Effect.flatMap(fill, (more): Effect.Effect<Uint8Array, E | Eof> => more ? readExact(n) : Effect.fail(eof))
    })
  const readRecord: Effect.Effect<Option.Option<Uint8Array>, E | Eof> = Effect.suspend(() => {
    if (available() === 0) {
      return Effect.flatMap(fill, (more) => more ? readRecord : Effect.succeed(Option.none()))
    }
    return Effect.map(
      Effect.flatMap(readExact(2), (header) => readExact((header[0]! << 8) | header[1]!)),
      Option.some
    )
  })
  return { readExact, readRecord }
}

/** @internal `u16be(length) || message` */
export const record = (message: Uint8Array): Uint8Array => {
  const out = new Uint8Array(2 + message.length)
  out[0] = message.length >>> 8
  out[1] = message.length & 0xff
  out.set(message, 2)
  return out
}

/**
 * @internal
 * Frames (`u32be(length) || bytes` each) cut into Noise transport records of at most 65,519 plaintext bytes, each
 * sealed with the next nonce and preceded by its `u16be` length: the bytes to write, in one buffer.
 */
export const sealFrames = (
  send: Noise.CipherState,
  frames: ReadonlyArray<Uint8Array>
): Either.Either<Uint8Array, EncryptionFailed> => {
  let plainLength = 0
  for (const f of frames) plainLength += 4 + f.length
  const plain = new Uint8Array(plainLength)
  const view = new DataView(plain.buffer)
  let offset = 0
  for (const f of frames) {
    view.setUint32(offset, f.length)
    plain.set(f, offset + 4)
    offset += 4 + f.length
  }
  const records = Math.ceil(plainLength / Noise.MAX_PLAINTEXT_LENGTH)
  const out = new Uint8Array(plainLength + records * (2 + Noise.TAGLEN))
  let at = 0
  for (let start = 0; start < plainLength; start += Noise.MAX_PLAINTEXT_LENGTH) {
    const sealed = Noise.encrypt(send, plain.subarray(start, Math.min(plainLength, start + Noise.MAX_PLAINTEXT_LENGTH)))
    if (Either.isLeft(sealed)) return Either.left(sealed.left)
    out[at] = sealed.right.length >>> 8
    out[at + 1] = sealed.right.length & 0xff
    out.set(sealed.right, at + 2)
    at += 2 + sealed.right.length
  }
  return Either.right(out)
}

/** @internal a frame header announced more than the limit */
export interface Oversize {
  readonly _tag: "Oversize"
  readonly size: number
}

/**
 * @internal
 * Splits the decrypted record stream into frames. A length over `maxFrameSize` is reported as soon as its header is
 * complete, before any of its body is buffered.
 */
export interface FrameParser {
  readonly push: (plaintext: Uint8Array) => Either.Either<ReadonlyArray<Uint8Array>, Oversize>
}

/** @internal */
export const frameParser = (maxFrameSize: number): FrameParser => {
  const header = new Uint8Array(4)
  let headerFill = 0
  let body: Uint8Array | undefined
  let bodyFill = 0
  return {
    push: (plaintext) => {
      const frames: Array<Uint8Array> = []
      let offset = 0
      while (offset < plaintext.length) {
        if (body === undefined) {
          const n = Math.min(4 - headerFill, plaintext.length - offset)
          header.set(plaintext.subarray(offset, offset + n), headerFill)
          headerFill += n
          offset += n
          if (headerFill < 4) break
          headerFill = 0
          const size = ((header[0]! << 24) >>> 0) + (header[1]! << 16) + (header[2]! << 8) + header[3]!
          if (size > maxFrameSize) return Either.left({ _tag: "Oversize", size })
          body = new Uint8Array(size)
          bodyFill = 0
        }
        const n = Math.min(body.length - bodyFill, plaintext.length - offset)
        body.set(plaintext.subarray(offset, offset + n), bodyFill)
        bodyFill += n
        offset += n
        if (bodyFill === body.length) {
          frames.push(body)
          body = undefined
        }
      }
      return Either.right(frames)
    }
  }
}

/** @internal decrypts one record with the connection's receiving state */
export const openRecord = (
  receive: Noise.CipherState,
  message: Uint8Array
): Either.Either<Uint8Array, DecryptionFailed> => Noise.decrypt(receive, message)

