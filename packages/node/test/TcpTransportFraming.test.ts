import * as Noise from "@comms-dht/core/Noise"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, FastCheck as fc, Option } from "effect"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import * as Framing from "../src/internal/tcpFraming.js"
import { nodeBackend } from "../src/internal/tcpHandshake.js"

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")
const unhex = (s: string) => Uint8Array.from(Buffer.from(s, "hex"))

const vectorsFile = "noise-xx-25519-chachapoly-blake2b.json"
const vectorsPath = fileURLToPath(new URL(`../../../../shared/vectors/${vectorsFile}`, import.meta.url))

interface Vector {
  readonly init_prologue: string
  readonly init_static: string
  readonly init_ephemeral: string
  readonly resp_static: string
  readonly resp_ephemeral: string
  readonly handshake_hash?: string
  readonly messages: ReadonlyArray<{ readonly payload: string; readonly ciphertext: string }>
}

/** Cuts `bytes` at the given points: what a socket might deliver. */
const chunked = (bytes: Uint8Array, cuts: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y)
  const out: Array<Uint8Array> = []
  let last = 0
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(last, p))
    last = p
  }
  return out.filter((c) => c.length > 0)
}

describe("TcpTransport framing", () => {
  const withVectors = fs.existsSync(vectorsPath) ? it : it.skip
  withVectors(`the node:crypto Noise backend passes ../shared/vectors/${vectorsFile}`, () => {
    const vectors: ReadonlyArray<Vector> = JSON.parse(fs.readFileSync(vectorsPath, "utf8")).vectors
    for (const v of vectors) {
      const init = (role: Noise.Role, s: string, e: string) =>
        Either.getOrThrow(Noise.initialize({
          role,
          prologue: unhex(v.init_prologue),
          staticSecret: unhex(s),
          ephemeralSecret: unhex(e),
          backend: nodeBackend
        }))
      const i = init("initiator", v.init_static, v.init_ephemeral)
      const r = init("responder", v.resp_static, v.resp_ephemeral)
      let split: readonly [Noise.TransportState, Noise.TransportState] | undefined
      for (const [n, m] of v.messages.entries()) {
        const fromInitiator = n % 2 === 0
        if (n < 3) {
          const [w, rd] = fromInitiator ? [i, r] : [r, i]
          expect(hex(Either.getOrThrow(Noise.writeMessage(w, unhex(m.payload))))).toBe(m.ciphertext)
          expect(hex(Either.getOrThrow(Noise.readMessage(rd, unhex(m.ciphertext))))).toBe(m.payload)
          if (n === 2) split = [Either.getOrThrow(Noise.split(i)), Either.getOrThrow(Noise.split(r))]
        } else if (split !== undefined) {
          const [w, rd] = fromInitiator ? split : [split[1], split[0]]
          expect(hex(Either.getOrThrow(Noise.encrypt(w.send, unhex(m.payload))))).toBe(m.ciphertext)
          expect(hex(Either.getOrThrow(Noise.decrypt(rd.receive, unhex(m.ciphertext))))).toBe(m.payload)
        }
      }
      if (v.handshake_hash !== undefined) expect(hex(Noise.handshakeHash(i))).toBe(v.handshake_hash)
      expect(split).toBeDefined()
    }
  })

  const frames = fc.array(
    fc.oneof({ arbitrary: fc.uint8Array({ maxLength: 100 }), weight: 5 }, {
      arbitrary: fc.integer({ min: 60_000, max: 140_000 }).map((n) => new Uint8Array(n).map((_, i) => i * 7)),
      weight: 1
    }),
    { maxLength: 6 }
  )

  it.effect.prop(
    "frames sealed into records and delivered in arbitrary chunks come out whole, in order",
    [frames, fc.array(fc.nat(), { maxLength: 12 })],
    ([input, cuts]) =>
      Effect.gen(function*() {
        const key = new Uint8Array(32).fill(5)
        const send = Noise.cipherState(key, nodeBackend)
        const receive = Noise.cipherState(key, nodeBackend)
        const wire = Either.getOrThrow(Framing.sealFrames(send, input))
        const chunks = chunked(wire, cuts)
        const reader = Framing.byteReader(Effect.sync(() => Option.fromNullable(chunks.shift())))
        const parser = Framing.frameParser(1 << 20)
        const out: Array<string> = []
        while (true) {
          const record = yield* reader.readRecord
          if (Option.isNone(record)) break
          expect(record.value.length).toBeLessThanOrEqual(Noise.MAX_MESSAGE_LENGTH)
          const plain = Either.getOrThrow(Framing.openRecord(receive, record.value))
          for (const f of Either.getOrThrow(parser.push(plain))) out.push(hex(f))
        }
        expect(out).toEqual(input.map(hex))
      }),
    { fastCheck: { numRuns: 200 } }
  )

  it("an oversize length is reported from its header, before any body arrives", () => {
    const parser = Framing.frameParser(1024)
    expect(Either.getOrThrow(parser.push(Uint8Array.of(0, 0, 4)))).toEqual([])
    expect(parser.push(Uint8Array.of(1))).toEqual(Either.left({ _tag: "Oversize", size: 1025 }))
    expect(Framing.frameParser(1024).push(Uint8Array.of(0xff, 0xff, 0xff, 0xff))).toEqual(
      Either.left({ _tag: "Oversize", size: 0xffff_ffff })
    )
  })
})
