/**
 * `Noise_XX_25519_ChaChaPoly_BLAKE2b` (Noise Protocol Framework, revision 34), the handshake that authenticates a
 * TCP connection (SPEC §4.8, §11.6). Pure: no platform code, no randomness of its own unless none is given, and no
 * function throws — a failed step returns an `Either` whose left side is `HandshakeFailed` (handshake),
 * `DecryptionFailed` (a transport message that does not authenticate) or `EncryptionFailed` (nonce exhausted).
 *
 * The states are mutable objects, each owned by one connection: a handshake advances its `HandshakeState` message by
 * message, `split` then yields the two `CipherState`s whose nonces count the transport messages. Sharing a state
 * between fibers would interleave nonces, so a connection encrypts in write order and decrypts in read order.
 *
 * @since 0.1.0
 */
import { chacha20poly1305 } from "@noble/ciphers/chacha.js"
import { x25519 } from "@noble/curves/ed25519.js"
import { blake2b } from "@noble/hashes/blake2.js"
import { hmac } from "@noble/hashes/hmac.js"
import { randomBytes } from "@noble/hashes/utils.js"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import { DecryptionFailed, EncryptionFailed, HandshakeFailed } from "./DhtError.js"
import { ascii, isZero } from "./internal/bytes.js"

/**
 * The protocol name, hashed into the initial state.
 *
 * @since 0.1.0
 * @category constants
 */
export const PROTOCOL_NAME = "Noise_XX_25519_ChaChaPoly_BLAKE2b"

/**
 * BLAKE2b-512's output length.
 *
 * @since 0.1.0
 * @category constants
 */
export const HASHLEN = 64

/**
 * X25519 key and shared-secret length.
 *
 * @since 0.1.0
 * @category constants
 */
export const DHLEN = 32

/**
 * The Poly1305 tag that every encryption under a key adds.
 *
 * @since 0.1.0
 * @category constants
 */
export const TAGLEN = 16

/**
 * The largest Noise message, handshake or transport (Noise §3).
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_MESSAGE_LENGTH = 65_535

/**
 * The largest plaintext of one transport message.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_PLAINTEXT_LENGTH = MAX_MESSAGE_LENGTH - TAGLEN

// Noise reserves 2^64 − 1; numbers stay exact only up to 2^53 − 1, which no connection reaches (2^53 records of one
// byte would take centuries), so the counter stops there instead of wrapping.
const MAX_NONCE = Number.MAX_SAFE_INTEGER

// --- primitives ---

/**
 * The primitives a handshake and its cipher states use. Each may throw; this module turns a throw into a failed
 * step. `nobleBackend` runs anywhere; `@comms-dht/node` plugs in `node:crypto` (OpenSSL), bit-identical on the vectors.
 *
 * @since 0.1.0
 * @category models
 */
export interface Backend {
  readonly x25519PublicKey: (secretKey: Uint8Array) => Uint8Array
  readonly x25519: (secretKey: Uint8Array, publicKey: Uint8Array) => Uint8Array
  /** IETF ChaCha20-Poly1305 (12-byte nonce): `ciphertext || tag` */
  readonly seal: (key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array) => Uint8Array
  /** throws (or returns anything) when the tag does not verify: only a returned value counts as opened */
  readonly open: (key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array) => Uint8Array
}

/**
 * The portable backend: `@noble/curves` X25519, `@noble/ciphers` ChaCha20-Poly1305.
 *
 * @since 0.1.0
 * @category constructors
 */
export const nobleBackend: Backend = {
  x25519PublicKey: (secretKey) => x25519.getPublicKey(secretKey),
  x25519: (secretKey, publicKey) => x25519.getSharedSecret(secretKey, publicKey),
  seal: (key, nonce, ad, plaintext) => chacha20poly1305(key, nonce, ad).encrypt(plaintext),
  open: (key, nonce, ad, ciphertext) => chacha20poly1305(key, nonce, ad).decrypt(ciphertext)
}

// --- key pairs ---

/**
 * An X25519 key pair.
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyPair {
  readonly secretKey: Uint8Array
  readonly publicKey: Uint8Array
}

/**
 * The key pair of a 32-byte X25519 secret.
 *
 * @since 0.1.0
 * @category constructors
 */
export const keyPairFromSecret = (
  secretKey: Uint8Array,
  backend: Backend = nobleBackend
): Either.Either<KeyPair, HandshakeFailed> => {
  if (secretKey.length !== DHLEN) return handshakeFailure(`secret key of ${secretKey.length} bytes`)
  try {
    const publicKey = backend.x25519PublicKey(secretKey)
    if (publicKey.length !== DHLEN) return handshakeFailure("invalid secret key")
    return Either.right({ secretKey: Uint8Array.from(secretKey), publicKey })
  } catch {
    return handshakeFailure("invalid secret key")
  }
}

/**
 * A key pair from `@noble/hashes`' CSPRNG. A transport whose randomness comes from the `Crypto` layer passes its
 * own bytes to `keyPairFromSecret` instead.
 *
 * @since 0.1.0
 * @category constructors
 */
export const generateKeyPair = (backend: Backend = nobleBackend): Either.Either<KeyPair, HandshakeFailed> =>
  keyPairFromSecret(randomBytes(DHLEN), backend)

const dh = (backend: Backend, keyPair: KeyPair, publicKey: Uint8Array): Either.Either<Uint8Array, HandshakeFailed> => {
  try {
    const shared = backend.x25519(keyPair.secretKey, publicKey)
    // libraries differ on low-order points (noble throws, OpenSSL may return zeros): one answer for both
    return shared.length !== DHLEN || isZero(shared) ? handshakeFailure("all-zero DH output") : Either.right(shared)
  } catch {
    return handshakeFailure("DH with an invalid public key")
  }
}

const handshakeFailure = (reason: string) => Either.left(new HandshakeFailed({ reason: `noise: ${reason}` }))

// --- hash and HKDF (Noise §4.3, §5.2) ---

const hash = (...parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const h = blake2b.create()
  for (const p of parts) h.update(p)
  return h.digest()
}

const hkdf = (chainingKey: Uint8Array, ikm: Uint8Array, outputs: 2 | 3): ReadonlyArray<Uint8Array> => {
  const temp = hmac(blake2b, chainingKey, ikm)
  const out1 = hmac(blake2b, temp, Uint8Array.of(1))
  const out2 = hmac(blake2b, temp, concat2(out1, Uint8Array.of(2)))
  if (outputs === 2) return [out1, out2]
  return [out1, out2, hmac(blake2b, temp, concat2(out2, Uint8Array.of(3)))]
}

const concat2 = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

// --- CipherState (Noise §5.1) ---

/**
 * A key (once set) and the nonce of the next message under it. Mutable; one per direction of a connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface CipherState {
  /** @internal */
  readonly backend: Backend
  /** @internal */
  key: Uint8Array | undefined
  /** @internal the next nonce */
  nonce: number
}

/**
 * A cipher state holding `key` (32 bytes) at nonce 0.
 *
 * @since 0.1.0
 * @category constructors
 */
export const cipherState = (key?: Uint8Array, backend: Backend = nobleBackend): CipherState => ({
  backend,
  key: key === undefined ? undefined : Uint8Array.from(key),
  nonce: 0
})

/**
 * Whether a key is set (before that, "encryption" is the identity, as Noise §5.1 says).
 *
 * @since 0.1.0
 * @category utils
 */
export const hasKey = (state: CipherState): boolean => state.key !== undefined

/**
 * The nonce the next message will use.
 *
 * @since 0.1.0
 * @category utils
 */
export const nonceOf = (state: CipherState): number => state.nonce

// ChaChaPoly's 96-bit nonce: 32 zero bits, then the 64-bit counter little-endian (Noise §12.3)
const nonceBytes = (n: number): Uint8Array => {
  const out = new Uint8Array(12)
  const view = new DataView(out.buffer)
  view.setUint32(4, n >>> 0, true)
  view.setUint32(8, Math.floor(n / 0x1_0000_0000) >>> 0, true)
  return out
}

/**
 * `EncryptWithAd`: seals `plaintext` under the next nonce (the plaintext itself while no key is set).
 *
 * @since 0.1.0
 * @category encryption
 */
export const encryptWithAd = (
  state: CipherState,
  ad: Uint8Array,
  plaintext: Uint8Array
): Either.Either<Uint8Array, EncryptionFailed> => {
  const key = state.key
  if (key === undefined) return Either.right(plaintext)
  if (state.nonce >= MAX_NONCE) return Either.left(new EncryptionFailed({ reason: "noise: nonce exhausted" }))
  try {
    const sealed = state.backend.seal(key, nonceBytes(state.nonce), ad, plaintext)
    state.nonce++
    return Either.right(sealed)
  } catch {
    return Either.left(new EncryptionFailed({ reason: "noise: encryption failed" }))
  }
}

/**
 * `DecryptWithAd`: opens `ciphertext` under the next nonce. A failed tag leaves the nonce unchanged (Noise §5.1), so
 * the caller must drop the connection: the stream can no longer be trusted.
 *
 * @since 0.1.0
 * @category encryption
 */
export const decryptWithAd = (
  state: CipherState,
  ad: Uint8Array,
  ciphertext: Uint8Array
): Either.Either<Uint8Array, DecryptionFailed> => {
  const key = state.key
  if (key === undefined) return Either.right(ciphertext)
  if (state.nonce >= MAX_NONCE) return Either.left(new DecryptionFailed({ reason: "noise: nonce exhausted" }))
  if (ciphertext.length < TAGLEN) return Either.left(new DecryptionFailed({ reason: "noise: message too short" }))
  try {
    const opened = state.backend.open(key, nonceBytes(state.nonce), ad, ciphertext)
    state.nonce++
    return Either.right(opened)
  } catch {
    return Either.left(new DecryptionFailed({ reason: "noise: authentication failed" }))
  }
}

const EMPTY = new Uint8Array(0)

/**
 * A transport message: `encryptWithAd` with empty associated data, at most `MAX_PLAINTEXT_LENGTH` bytes in.
 *
 * @since 0.1.0
 * @category encryption
 */
export const encrypt = (state: CipherState, plaintext: Uint8Array): Either.Either<Uint8Array, EncryptionFailed> =>
  plaintext.length > MAX_PLAINTEXT_LENGTH
    ? Either.left(new EncryptionFailed({ reason: `noise: plaintext of ${plaintext.length} bytes` }))
    : encryptWithAd(state, EMPTY, plaintext)

/**
 * A transport message: `decryptWithAd` with empty associated data, at most `MAX_MESSAGE_LENGTH` bytes in.
 *
 * @since 0.1.0
 * @category encryption
 */
export const decrypt = (state: CipherState, ciphertext: Uint8Array): Either.Either<Uint8Array, DecryptionFailed> =>
  ciphertext.length > MAX_MESSAGE_LENGTH
    ? Either.left(new DecryptionFailed({ reason: `noise: message of ${ciphertext.length} bytes` }))
    : decryptWithAd(state, EMPTY, ciphertext)

// --- SymmetricState (Noise §5.2) ---

interface SymmetricState {
  chainingKey: Uint8Array
  h: Uint8Array
  readonly cipher: CipherState
}

const initializeSymmetric = (protocolName: string, backend: Backend): SymmetricState => {
  const name = ascii(protocolName)
  const h = name.length <= HASHLEN ? concat2(name, new Uint8Array(HASHLEN - name.length)) : hash(name)
  return { chainingKey: h, h, cipher: cipherState(undefined, backend) }
}

const mixKey = (state: SymmetricState, ikm: Uint8Array): void => {
  const [ck, tempK] = hkdf(state.chainingKey, ikm, 2)
  state.chainingKey = ck!
  state.cipher.key = tempK!.slice(0, 32)
  state.cipher.nonce = 0
}

const mixHash = (state: SymmetricState, data: Uint8Array): void => {
  state.h = hash(state.h, data)
}

const encryptAndHash = (state: SymmetricState, plaintext: Uint8Array): Either.Either<Uint8Array, HandshakeFailed> => {
  const sealed = encryptWithAd(state.cipher, state.h, plaintext)
  if (Either.isLeft(sealed)) return handshakeFailure(sealed.left.reason)
  mixHash(state, sealed.right)
  return Either.right(sealed.right)
}

const decryptAndHash = (state: SymmetricState, ciphertext: Uint8Array): Either.Either<Uint8Array, HandshakeFailed> => {
  const opened = decryptWithAd(state.cipher, state.h, ciphertext)
  if (Either.isLeft(opened)) return handshakeFailure("handshake message does not authenticate")
  mixHash(state, ciphertext)
  return Either.right(opened.right)
}

// --- HandshakeState (Noise §5.3, pattern XX of §7.5) ---

/**
 * Initiator or responder.
 *
 * @since 0.1.0
 * @category models
 */
export type Role = "initiator" | "responder"

/**
 * One side of an XX handshake in progress. Mutable; one per connection attempt.
 *
 * @since 0.1.0
 * @category models
 */
export interface HandshakeState {
  readonly role: Role
  /** @internal */
  readonly backend: Backend
  /** @internal */
  readonly symmetric: SymmetricState
  /** @internal */
  readonly s: KeyPair
  /** @internal the ephemeral secret to use when the `e` token is written */
  readonly ephemeralSecret: Uint8Array
  /** @internal */
  e: KeyPair | undefined
  /** @internal */
  rs: Uint8Array | undefined
  /** @internal */
  re: Uint8Array | undefined
  /** @internal messages done: 0 to 3 */
  step: number
  /** @internal set once a step failed: the state is then unusable */
  failed: boolean
}

/**
 * Handshake options. `ephemeralSecret` fixes `e` (test vectors, seeded layers); without it `e` comes from
 * `@noble/hashes`' CSPRNG.
 *
 * @since 0.1.0
 * @category models
 */
export interface HandshakeOptions {
  readonly role: Role
  readonly prologue: Uint8Array
  /** this side's static X25519 secret */
  readonly staticSecret: Uint8Array
  readonly ephemeralSecret?: Uint8Array
  /** default `nobleBackend` */
  readonly backend?: Backend
}

/**
 * `Initialize(XX, initiator, prologue, s)`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const initialize = (options: HandshakeOptions): Either.Either<HandshakeState, HandshakeFailed> => {
  const backend = options.backend ?? nobleBackend
  const s = keyPairFromSecret(options.staticSecret, backend)
  if (Either.isLeft(s)) return Either.left(s.left)
  const ephemeralSecret = options.ephemeralSecret ?? randomBytes(DHLEN)
  if (ephemeralSecret.length !== DHLEN) return handshakeFailure(`ephemeral secret of ${ephemeralSecret.length} bytes`)
  const symmetric = initializeSymmetric(PROTOCOL_NAME, backend)
  mixHash(symmetric, options.prologue)
  return Either.right({
    role: options.role,
    backend,
    symmetric,
    s: s.right,
    ephemeralSecret: Uint8Array.from(ephemeralSecret),
    e: undefined,
    rs: undefined,
    re: undefined,
    step: 0,
    failed: false
  })
}

type Token = "e" | "s" | "ee" | "es" | "se"

const PATTERN: ReadonlyArray<ReadonlyArray<Token>> = [["e"], ["e", "ee", "s", "es"], ["s", "se"]]

/** Who writes message `step`: the initiator the even ones. */
const writerOf = (step: number): Role => step % 2 === 0 ? "initiator" : "responder"

/**
 * Whether all three messages have been written or read.
 *
 * @since 0.1.0
 * @category utils
 */
export const isComplete = (state: HandshakeState): boolean => state.step >= PATTERN.length

/**
 * Whether this side writes the next handshake message.
 *
 * @since 0.1.0
 * @category utils
 */
export const isMyTurn = (state: HandshakeState): boolean =>
  !isComplete(state) && writerOf(state.step) === state.role

/**
 * The remote static key, once the handshake has authenticated it.
 *
 * @since 0.1.0
 * @category utils
 */
export const remoteStatic = (state: HandshakeState): Option.Option<Uint8Array> => Option.fromNullable(state.rs)

/**
 * This side's static public key.
 *
 * @since 0.1.0
 * @category utils
 */
export const localStatic = (state: HandshakeState): Uint8Array => state.s.publicKey

/**
 * `h`: after the last message, the handshake hash both sides share (channel binding).
 *
 * @since 0.1.0
 * @category utils
 */
export const handshakeHash = (state: HandshakeState): Uint8Array => Uint8Array.from(state.symmetric.h)

const mixDh = (
  state: HandshakeState,
  local: KeyPair | undefined,
  remote: Uint8Array | undefined
): Either.Either<void, HandshakeFailed> => {
  if (local === undefined || remote === undefined) return handshakeFailure("DH before its keys are known")
  const shared = dh(state.backend, local, remote)
  if (Either.isLeft(shared)) return Either.left(shared.left)
  mixKey(state.symmetric, shared.right)
  return Either.right(undefined)
}

const mixToken = (state: HandshakeState, token: "ee" | "es" | "se"): Either.Either<void, HandshakeFailed> => {
  const initiator = state.role === "initiator"
  switch (token) {
    case "ee":
      return mixDh(state, state.e, state.re)
    case "es":
      return initiator ? mixDh(state, state.e, state.rs) : mixDh(state, state.s, state.re)
    case "se":
      return initiator ? mixDh(state, state.s, state.re) : mixDh(state, state.e, state.rs)
  }
}

const guard = (state: HandshakeState, writing: boolean): Either.Either<void, HandshakeFailed> => {
  if (state.failed) return handshakeFailure("handshake already failed")
  if (isComplete(state)) return handshakeFailure("handshake already complete")
  const mine = writerOf(state.step) === state.role
  if (mine !== writing) return handshakeFailure(writing ? "not our turn to write" : "not our turn to read")
  return Either.right(undefined)
}

const fail = <A>(
  state: HandshakeState,
  result: Either.Either<A, HandshakeFailed>
): Either.Either<A, HandshakeFailed> => {
  if (Either.isLeft(result)) state.failed = true
  return result
}

/**
 * `WriteMessage(payload)`: the next handshake message of this side. A failure leaves the state unusable.
 *
 * @since 0.1.0
 * @category handshake
 */
export const writeMessage = (state: HandshakeState, payload: Uint8Array): Either.Either<Uint8Array, HandshakeFailed> =>
  fail(state, writeSteps(state, payload))

const writeSteps = (state: HandshakeState, payload: Uint8Array): Either.Either<Uint8Array, HandshakeFailed> => {
  const ok = guard(state, true)
  if (Either.isLeft(ok)) return Either.left(ok.left)
  const parts: Array<Uint8Array> = []
  for (const token of PATTERN[state.step]!) {
    if (token === "e") {
      const e = keyPairFromSecret(state.ephemeralSecret, state.backend)
      if (Either.isLeft(e)) return Either.left(e.left)
      state.e = e.right
      parts.push(e.right.publicKey)
      mixHash(state.symmetric, e.right.publicKey)
    } else if (token === "s") {
      const sealed = encryptAndHash(state.symmetric, state.s.publicKey)
      if (Either.isLeft(sealed)) return sealed
      parts.push(sealed.right)
    } else {
      const mixed = mixToken(state, token)
      if (Either.isLeft(mixed)) return Either.left(mixed.left)
    }
  }
  const sealed = encryptAndHash(state.symmetric, payload)
  if (Either.isLeft(sealed)) return sealed
  parts.push(sealed.right)
  let length = 0
  for (const p of parts) length += p.length
  if (length > MAX_MESSAGE_LENGTH) return handshakeFailure(`handshake message of ${length} bytes`)
  const message = new Uint8Array(length)
  let offset = 0
  for (const p of parts) {
    message.set(p, offset)
    offset += p.length
  }
  state.step++
  return Either.right(message)
}

/**
 * `ReadMessage(message)`: consumes the other side's next handshake message and returns its payload. A failure
 * (wrong length, a DH with a bad key, a tag that does not authenticate) leaves the state unusable.
 *
 * @since 0.1.0
 * @category handshake
 */
export const readMessage = (state: HandshakeState, message: Uint8Array): Either.Either<Uint8Array, HandshakeFailed> =>
  fail(state, readSteps(state, message))

const readSteps = (state: HandshakeState, message: Uint8Array): Either.Either<Uint8Array, HandshakeFailed> => {
  const ok = guard(state, false)
  if (Either.isLeft(ok)) return Either.left(ok.left)
  if (message.length > MAX_MESSAGE_LENGTH) return handshakeFailure(`handshake message of ${message.length} bytes`)
  let offset = 0
  const take = (n: number): Uint8Array | undefined => {
    if (offset + n > message.length) return undefined
    const out = message.subarray(offset, offset + n)
    offset += n
    return out
  }
  for (const token of PATTERN[state.step]!) {
    if (token === "e") {
      const re = take(DHLEN)
      if (re === undefined) return handshakeFailure("handshake message too short")
      state.re = Uint8Array.from(re)
      mixHash(state.symmetric, re)
    } else if (token === "s") {
      const sealed = take(hasKey(state.symmetric.cipher) ? DHLEN + TAGLEN : DHLEN)
      if (sealed === undefined) return handshakeFailure("handshake message too short")
      const rs = decryptAndHash(state.symmetric, sealed)
      if (Either.isLeft(rs)) return rs
      state.rs = Uint8Array.from(rs.right)
    } else {
      const mixed = mixToken(state, token)
      if (Either.isLeft(mixed)) return Either.left(mixed.left)
    }
  }
  const rest = message.subarray(offset)
  if (hasKey(state.symmetric.cipher) && rest.length < TAGLEN) return handshakeFailure("handshake message too short")
  const payload = decryptAndHash(state.symmetric, rest)
  if (Either.isLeft(payload)) return payload
  state.step++
  return Either.right(Uint8Array.from(payload.right))
}

/**
 * The two transport directions after `split()`, oriented for this side, and the handshake hash.
 *
 * @since 0.1.0
 * @category models
 */
export interface TransportState {
  readonly send: CipherState
  readonly receive: CipherState
  readonly handshakeHash: Uint8Array
  readonly remoteStatic: Uint8Array
}

/**
 * `Split()`: the first key encrypts initiator → responder, the second responder → initiator (Noise §5.2).
 *
 * @since 0.1.0
 * @category handshake
 */
export const split = (state: HandshakeState): Either.Either<TransportState, HandshakeFailed> => {
  if (state.failed) return handshakeFailure("handshake already failed")
  if (!isComplete(state) || state.rs === undefined) return handshakeFailure("split before the handshake completed")
  const [k1, k2] = hkdf(state.symmetric.chainingKey, EMPTY, 2)
  const c1 = cipherState(k1!.slice(0, 32), state.backend)
  const c2 = cipherState(k2!.slice(0, 32), state.backend)
  const initiator = state.role === "initiator"
  return Either.right({
    send: initiator ? c1 : c2,
    receive: initiator ? c2 : c1,
    handshakeHash: handshakeHash(state),
    remoteStatic: Uint8Array.from(state.rs)
  })
}
