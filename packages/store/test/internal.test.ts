/**
 * The store's private codecs and error classification, against the rest of the code base: claims are stored as the
 * exact bytes core's peer-sync codec produces, and sqlite result codes map to the reasons of SPEC §18.
 */
import * as NodeId from "@comms-dht/core/NodeId"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerSyncMessages from "@comms-dht/core/PeerSyncMessages"
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import { RUN, runs } from "../src/internal/runs.js"
import * as Claims from "../src/internal/claims.js"
import { reasonOf } from "../src/internal/errors.js"
import { PeerTable } from "../src/internal/table.js"

const signature = (updatedAt: bigint, version = 0) =>
  new Peer.IdentitySignature({ version, signature: new Uint8Array(64).fill(9), updatedAt })

const claim = (addresses: ReadonlyArray<string>, features: number, updatedAt: bigint) =>
  new Peer.PeerClaim({ addresses: [...addresses], features, identitySignature: signature(updatedAt) })

// a PeerSyncResponse holding one PeerInfo with one claim, as core encodes it; the claim's bytes sit at its end
const coreClaimBytes = (c: Peer.PeerClaim): Uint8Array => {
  const publicKey = new Uint8Array(32).fill(1)
  const response = new PeerSyncMessages.PeerSyncResponse({
    peers: [new PeerSyncMessages.PeerInfo({ publicKey, claims: [PeerSyncMessages.fromPeerClaim(c)] })],
    requestId: 0
  })
  return PeerSyncMessages.encodePeerSyncResponse(response)
}

const ourResponseBytes = (claimBytes: Uint8Array): Uint8Array => {
  const varint = (n: number) => {
    const out: Array<number> = []
    while (n >= 0x80) {
      out.push((n & 0x7f) | 0x80)
      n >>>= 7
    }
    out.push(n)
    return out
  }
  const info = [0x0a, 32, ...new Uint8Array(32).fill(1), 0x12, ...varint(claimBytes.length), ...claimBytes]
  return Uint8Array.from([0x0a, ...varint(info.length), ...info])
}

const Address = FastCheck.string({ unit: "grapheme", maxLength: 40 })

describe("claims codec", () => {
  it.prop(
    "encodes a claim to the bytes core's peer-sync codec writes, and decodes them back",
    [
      FastCheck.array(Address, { maxLength: 5 }),
      FastCheck.integer({ min: 0, max: 0xffffffff }),
      FastCheck.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n })
    ],
    ([addresses, features, updatedAt]) => {
      const c = claim(addresses, features, updatedAt)
      const bytes = Either.getOrThrow(Claims.encodeClaim(c))
      expect(ourResponseBytes(bytes)).toEqual(coreClaimBytes(c))
      expect(Either.getOrThrow(Claims.decodeClaim(bytes))).toEqual({
        addresses,
        features,
        identitySignature: { version: 0, signature: c.identitySignature.signature, updatedAt }
      })
    },
    { fastCheck: { numRuns: 1_000 } }
  )

  it("round-trips a signature, clamps updatedAt to int64, and refuses what protobuf cannot hold", () => {
    const s = signature(-5n, 3)
    expect(Either.getOrThrow(Claims.decodeSignature(Either.getOrThrow(Claims.encodeSignature(s))))).toEqual({
      version: 3,
      signature: s.signature,
      updatedAt: -5n
    })
    const huge = Either.getOrThrow(Claims.encodeSignature(signature((1n << 64n) - 1n)))
    expect(Either.getOrThrow(Claims.decodeSignature(huge)).updatedAt).toBe((1n << 63n) - 1n)
    expect(Either.isLeft(Claims.encodeSignature(signature(0n, -1)))).toBe(true)
    expect(Either.isLeft(Claims.encodeClaim(claim([], 2 ** 32, 0n)))).toBe(true)
  })

  it.prop("decoding arbitrary bytes never throws", [FastCheck.uint8Array({ maxLength: 200 })], ([bytes]) => {
    Claims.decodeClaim(bytes)
    Claims.decodeSignature(bytes)
  }, { fastCheck: { numRuns: 1_000 } })

  it("rejects truncated input and addresses that are not UTF-8", () => {
    const bytes = Either.getOrThrow(Claims.encodeClaim(claim(["/ip4/1.2.3.4/tcp/1"], 3, 7n)))
    expect(Either.isLeft(Claims.decodeClaim(bytes.subarray(0, bytes.length - 1)))).toBe(true)
    expect(Either.isLeft(Claims.decodeClaim(Uint8Array.of(0x0a, 2, 0xff, 0xfe)))).toBe(true)
  })
})

describe("runs of a batch", () => {
  it.prop(
    "cuts items in order into runs of a few shapes, padding only with the run's last item",
    [FastCheck.array(FastCheck.nat(), { maxLength: 4 * RUN + 3 })],
    ([items]) => {
      const cut = runs(items)
      const sizes = new Set(cut.map((run) => run.length))
      for (const size of sizes) expect(size <= RUN && (size & (size - 1)) === 0).toBe(true)
      // without the padding, the runs are the items in order
      const unpadded = cut.map((run, i) => run.slice(0, Math.min(RUN, items.length - i * RUN)))
      expect(unpadded.flat()).toEqual(items)
      cut.forEach((run, i) => {
        const real = unpadded[i]!
        expect(run.slice(real.length).every((item) => item === real[real.length - 1])).toBe(true)
      })
    }
  )
})

describe("the peer table's mirror", () => {
  const record = (i: number, lastSeen: number) =>
    new Peer.Peer({
      ...Peer.make({
        publicKey: NodeId.PublicKey.make(new Uint8Array(32).fill(i)),
        addresses: [],
        features: Peer.PeerFeatures.COMMUNICATION_NODE,
        source: "Join",
        nowMs: 0
      }),
      lastSeen
    })
  it.prop(
    "keeps its records in key order through additions, replacements and removals; what it handed out stays as it was",
    [FastCheck.array(FastCheck.tuple(FastCheck.boolean(), FastCheck.integer({ min: 0, max: 40 })), { maxLength: 120 })],
    ([ops]) => {
      const reference = new Map<string, Peer.Peer>()
      const table = new PeerTable(new Map())
      let handed: { readonly view: ReadonlyArray<Peer.Peer>; readonly copy: ReadonlyArray<Peer.Peer> } | undefined
      ops.forEach(([add, i], step) => {
        const peer = record(i, step)
        const key = NodeId.toHex(peer.nodeId)
        if (add) {
          reference.set(key, peer)
          table.set(key, peer)
        } else {
          reference.delete(key)
          table.delete(key)
        }
        if (step % 7 === 0) {
          const view = table.inOrder()
          handed = { view, copy: view.slice() }
        }
        const expected = [...reference].sort(([a], [b]) => a < b ? -1 : 1).map(([, p]) => p)
        expect(table.peekInOrder()).toEqual(expected)
        expect(table.size).toBe(reference.size)
        expect(table.get(key)).toBe(reference.get(key))
        if (handed !== undefined) expect(handed.view).toEqual(handed.copy)
      })
    }
  )
})

describe("StoreError reasons (SPEC §18)", () => {
  const sqliteError = (code: string) => Object.assign(new Error(code), { code })
  it("classifies sqlite result codes, extended ones included, through SqlError and its causes", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["SQLITE_CORRUPT", "Corrupt"],
      ["SQLITE_CORRUPT_INDEX", "Corrupt"],
      ["SQLITE_NOTADB", "Corrupt"],
      ["SQLITE_BUSY", "Locked"],
      ["SQLITE_BUSY_SNAPSHOT", "Locked"],
      ["SQLITE_LOCKED", "Locked"],
      ["SQLITE_IOERR_WRITE", "Io"],
      ["SQLITE_FULL", "Io"],
      ["SQLITE_READONLY", "Io"],
      ["SQLITE_CANTOPEN", "Io"],
      ["SQLITE_CONSTRAINT_UNIQUE", "Constraint"],
      ["SQLITE_CONSTRAINT_TRIGGER", "Constraint"],
      ["SQLITE_MISMATCH", "Unknown"]
    ]
    for (const [code, reason] of cases) {
      expect(reasonOf(new SqlError({ cause: sqliteError(code) }))).toBe(reason)
      expect(reasonOf({ cause: new SqlError({ cause: sqliteError(code) }) })).toBe(reason)
    }
    expect(reasonOf(new SqlError({ cause: new RangeError("too big") }))).toBe("Unknown")
    expect(reasonOf("nope")).toBe("Unknown")
  })
})
