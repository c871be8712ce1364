/**
 * Crypto benchmarks, one set per backend ("noble/…", "node/…"): sign, verify, ECDH + KDF (what a sender does per
 * encrypted message), encrypt and decrypt of a 1 KiB body. Verification runs without the memo (capacity 0), so
 * it measures the predicate itself; peer key imports stay cached, as they are in a running node.
 */
import * as Crypto from "@comms-dht/core/Crypto"
import * as Envelope from "@comms-dht/core/Envelope"
import * as MessageCrypto from "@comms-dht/core/MessageCrypto"
import * as NodeCrypto from "@comms-dht/node/Crypto"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

export interface CryptoBench {
  readonly name: string
  readonly fn: () => void
  readonly bound?: string
  readonly minRatio?: number
}

/** The node backend is measured against noble in the same run; verify and ECDH must be at least 5× faster. */
const targets: Record<string, number> = { verify: 5, "ecdh+kdf": 5 }

const backend = (name: string, make: (options: Crypto.LayerOptions) => Effect.Effect<Crypto.CryptoService>) => {
  const crypto = Effect.runSync(make({ verifyMemoCapacity: 0 }))
  const run = <A, E>(effect: Effect.Effect<A, E, Crypto.Crypto>): A =>
    Effect.runSync(Effect.provideService(effect, Crypto.Crypto, crypto))
  const identity = () => {
    const secretKey = run(crypto.generateSecretKey)
    return { secretKey, publicKey: crypto.publicKeyOf(secretKey) }
  }
  const sender = identity()
  const recipient = identity()
  const message = run(crypto.randomBytes(32))
  const signature = crypto.sign(sender.secretKey, message)
  const body = run(crypto.randomBytes(1024))
  const fields: MessageCrypto.EncryptFields = {
    version: 1,
    destination: Envelope.destinationPublicKey(recipient.publicKey),
    messageType: Envelope.DhtMessageType.None,
    flags: Envelope.DhtMessageFlags.ENCRYPTED,
    expires: 1_735_700_400n
  }
  const encrypted = run(MessageCrypto.encrypt(sender, recipient.publicKey, fields, body))
  const header: MessageCrypto.ReceivedHeader = {
    ...fields,
    ephemeralPublicKey: Option.some(encrypted.ephemeralPublicKey),
    messageSignature: encrypted.messageSignature
  }
  const ecdhKdf = Effect.gen(function*() {
    const e = yield* crypto.ephemeralKeyPair
    const ss = yield* crypto.sharedSecretToRecipient(e.secret, recipient.publicKey)
    return yield* MessageCrypto.deriveKeys(ss, e.publicKey, recipient.publicKey)
  })
  const check = (ok: boolean) => {
    if (!ok) throw new Error(`${name}: a benchmark input failed to verify`)
  }
  return [
    { name: `${name}/sign`, fn: () => void crypto.sign(sender.secretKey, message) },
    { name: `${name}/verify`, fn: () => check(run(crypto.verify(sender.publicKey, signature, message))) },
    { name: `${name}/ecdh+kdf`, fn: () => void run(ecdhKdf) },
    {
      name: `${name}/encrypt-1KiB`,
      fn: () => void run(MessageCrypto.encrypt(sender, recipient.publicKey, fields, body))
    },
    { name: `${name}/decrypt-1KiB`, fn: () => void run(MessageCrypto.decryptBytes(recipient, header, encrypted.body)) }
  ]
}

/** Every crypto benchmark, noble first. */
export const cryptoBenches = (): ReadonlyArray<CryptoBench> => [
  ...backend("noble", Crypto.makeNoble),
  ...backend("node", NodeCrypto.makeNode).map((task): CryptoBench => {
    const op = task.name.slice("node/".length)
    const minRatio = targets[op]
    return { ...task, bound: `noble/${op}`, ...(minRatio === undefined ? {} : { minRatio }) }
  })
]
