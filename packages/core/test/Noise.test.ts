import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc, Option } from "effect"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import * as Noise from "../src/Noise.js"

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")
const unhex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, "hex"))

/** Read from the shared folder beside the repository, never copied (SPEC §4.8). */
const vectorsFile = "noise-xx-25519-chachapoly-blake2b.json"
const vectorsPath = fileURLToPath(new URL(`../../../../shared/vectors/${vectorsFile}`, import.meta.url))

interface Vector {
  readonly protocol_name: string
  readonly init_prologue: string
  readonly init_static: string
  readonly init_ephemeral: string
  readonly resp_prologue: string
  readonly resp_static: string
  readonly resp_ephemeral: string
  readonly handshake_hash?: string
  readonly messages: ReadonlyArray<{ readonly payload: string; readonly ciphertext: string }>
}

const start = (role: Noise.Role, prologue: Uint8Array, staticSecret: Uint8Array, ephemeralSecret?: Uint8Array) =>
  Either.getOrThrow(Noise.initialize({
    role,
    prologue,
    staticSecret,
    ...(ephemeralSecret === undefined ? {} : { ephemeralSecret })
  }))

describe("Noise_XX_25519_ChaChaPoly_BLAKE2b", () => {
  const present = fs.existsSync(vectorsPath)
  const vectors: ReadonlyArray<Vector> = present ? JSON.parse(fs.readFileSync(vectorsPath, "utf8")).vectors : []

  const withVectors = present ? it : it.skip
  withVectors(`passes every vector of ../shared/vectors/${vectorsFile}`, () => {
    expect(vectors.length).toBeGreaterThan(0)
    for (const [index, v] of vectors.entries()) {
      expect(v.protocol_name).toBe(Noise.PROTOCOL_NAME)
      const initiator = start("initiator", unhex(v.init_prologue), unhex(v.init_static), unhex(v.init_ephemeral))
      const responder = start("responder", unhex(v.resp_prologue), unhex(v.resp_static), unhex(v.resp_ephemeral))
      let transport: { readonly initiator: Noise.TransportState; readonly responder: Noise.TransportState } | undefined
      for (const [i, m] of v.messages.entries()) {
        const label = `vector ${index} message ${i}`
        const fromInitiator = i % 2 === 0
        if (i < 3) {
          const [writer, reader] = fromInitiator ? [initiator, responder] : [responder, initiator]
          expect(hex(Either.getOrThrow(Noise.writeMessage(writer, unhex(m.payload)))), label).toBe(m.ciphertext)
          expect(hex(Either.getOrThrow(Noise.readMessage(reader, unhex(m.ciphertext)))), label).toBe(m.payload)
          if (i === 2) {
            expect(Noise.isComplete(initiator) && Noise.isComplete(responder)).toBe(true)
            if (v.handshake_hash !== undefined) {
              expect(hex(Noise.handshakeHash(initiator)), label).toBe(v.handshake_hash)
              expect(hex(Noise.handshakeHash(responder)), label).toBe(v.handshake_hash)
            }
            const staticOf = (s: Noise.HandshakeState) => Option.some(hex(Noise.localStatic(s)))
            expect(Option.map(Noise.remoteStatic(responder), hex)).toEqual(staticOf(initiator))
            expect(Option.map(Noise.remoteStatic(initiator), hex)).toEqual(staticOf(responder))
            transport = {
              initiator: Either.getOrThrow(Noise.split(initiator)),
              responder: Either.getOrThrow(Noise.split(responder))
            }
          }
        } else {
          if (transport === undefined) throw new Error("no split")
          const [writer, reader] = fromInitiator
            ? [transport.initiator, transport.responder]
            : [transport.responder, transport.initiator]
          expect(hex(Either.getOrThrow(Noise.encrypt(writer.send, unhex(m.payload)))), label).toBe(m.ciphertext)
          expect(hex(Either.getOrThrow(Noise.decrypt(reader.receive, unhex(m.ciphertext)))), label).toBe(m.payload)
        }
      }
      expect(transport, `vector ${index} reaches split`).toBeDefined()
    }
  })

  const key = fc.uint8Array({ minLength: 32, maxLength: 32 })
  const payload = fc.uint8Array({ maxLength: 300 })
  const session = fc.record({
    prologue: fc.uint8Array({ maxLength: 40 }),
    initiatorStatic: key,
    initiatorEphemeral: key,
    responderStatic: key,
    responderEphemeral: key,
    handshakePayloads: fc.tuple(payload, payload, payload),
    transport: fc.array(fc.tuple(fc.boolean(), payload), { maxLength: 6 })
  })

  /** Runs a whole session; `tamper(i, bytes)` may alter the i-th message on the wire (handshake first). */
  type Session = typeof session extends fc.Arbitrary<infer T> ? T : never
  const run = (s: Session, tamper: (i: number, m: Uint8Array) => Uint8Array) => {
    const initiator = start("initiator", s.prologue, s.initiatorStatic, s.initiatorEphemeral)
    const responder = start("responder", s.prologue, s.responderStatic, s.responderEphemeral)
    const received: Array<string> = []
    for (let i = 0; i < 3; i++) {
      const [writer, reader] = i % 2 === 0 ? [initiator, responder] : [responder, initiator]
      const written = Noise.writeMessage(writer, s.handshakePayloads[i]!)
      if (Either.isLeft(written)) return { ok: false as const, at: i, received }
      const read = Noise.readMessage(reader, tamper(i, written.right))
      if (Either.isLeft(read)) return { ok: false as const, at: i, received }
      received.push(hex(read.right))
    }
    const a = Noise.split(initiator)
    const b = Noise.split(responder)
    if (Either.isLeft(a) || Either.isLeft(b)) return { ok: false as const, at: 3, received }
    expect(hex(a.right.handshakeHash)).toBe(hex(b.right.handshakeHash))
    expect(hex(a.right.remoteStatic)).toBe(hex(Noise.localStatic(responder)))
    expect(hex(b.right.remoteStatic)).toBe(hex(Noise.localStatic(initiator)))
    for (const [j, [fromInitiator, p]] of s.transport.entries()) {
      const [writer, reader] = fromInitiator ? [a.right, b.right] : [b.right, a.right]
      const sealed = Either.getOrThrow(Noise.encrypt(writer.send, p))
      expect(sealed.length).toBe(p.length + Noise.TAGLEN)
      const opened = Noise.decrypt(reader.receive, tamper(3 + j, sealed))
      if (Either.isLeft(opened)) {
        expect(opened.left._tag).toBe("DecryptionFailed")
        return { ok: false as const, at: 3 + j, received }
      }
      received.push(hex(opened.right))
    }
    return { ok: true as const, at: -1, received }
  }

  it.prop("random key pairs complete a handshake and round-trip random payloads", [session], ([s]) => {
    const result = run(s, (_, m) => m)
    expect(result.ok).toBe(true)
    expect(result.received).toEqual([...s.handshakePayloads, ...s.transport.map(([, p]) => p)].map(hex))
  }, { fastCheck: { numRuns: 1000 } })

  it.prop(
    "a flipped bit in any message makes the handshake or that transport message fail, without a throw",
    [session, fc.nat(), fc.nat()],
    ([s, which, bit]) => {
      const total = 3 + s.transport.length
      const target = which % total
      const result = run(s, (i, m) => {
        if (i !== target) return m
        const flipped = Uint8Array.from(m)
        const at = bit % (m.length * 8)
        flipped[at >> 3] = flipped[at >> 3]! ^ (1 << (at & 7))
        return flipped
      })
      expect(result.ok).toBe(false)
      // message 1 carries no tag: its tampering is caught when the responder's answer fails to authenticate
      expect(result.at).toBe(target === 0 ? 1 : target)
    },
    { fastCheck: { numRuns: 1000 } }
  )

  it.prop("reading arbitrary bytes never throws", [fc.uint8Array({ maxLength: 200 }), key], ([bytes, secret]) => {
    const responder = start("responder", new Uint8Array(0), secret)
    const first = Noise.readMessage(responder, bytes)
    // any 32 bytes are a public key to message 1, which carries no tag
    expect(Either.isRight(first)).toBe(bytes.length >= 32)
    if (Either.isRight(first)) {
      expect(Either.isRight(Noise.writeMessage(responder, new Uint8Array(0)))).toBe(true)
      expect(Noise.readMessage(responder, bytes)._tag).toBe("Left")
    }
  }, { fastCheck: { numRuns: 1000 } })

  it("refuses out-of-turn steps, split before completion, and messages over 65,535 bytes", () => {
    const i = start("initiator", new Uint8Array(0), new Uint8Array(32).fill(1))
    const r = start("responder", new Uint8Array(0), new Uint8Array(32).fill(2))
    expect(Either.isLeft(Noise.readMessage(i, new Uint8Array(32)))).toBe(true)
    expect(Either.isLeft(Noise.split(r))).toBe(true)
    expect(Either.isLeft(Noise.writeMessage(r, new Uint8Array(0)))).toBe(true)
    const fresh = start("initiator", new Uint8Array(0), new Uint8Array(32))
    expect(Either.isLeft(Noise.writeMessage(fresh, new Uint8Array(65_504)))).toBe(true)
    const c = Noise.cipherState(new Uint8Array(32))
    expect(Either.isLeft(Noise.encrypt(c, new Uint8Array(Noise.MAX_PLAINTEXT_LENGTH + 1)))).toBe(true)
    expect(Noise.encrypt(c, new Uint8Array(Noise.MAX_PLAINTEXT_LENGTH)).pipe(Either.map((m) => m.length)))
      .toEqual(Either.right(Noise.MAX_MESSAGE_LENGTH))
    expect(Noise.nonceOf(c)).toBe(1)
  })
})
