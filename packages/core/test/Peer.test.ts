import { describe, expect, it } from "@effect/vitest"
import * as Arbitrary from "effect/Arbitrary"
import * as Equal from "effect/Equal"
import * as FastCheck from "effect/FastCheck"
import * as Hash from "effect/Hash"
import * as Schema from "effect/Schema"
import * as Peer from "../src/Peer.js"

// the fields of a record, as the Schema class's own arbitrary draws them
const fieldsOf = <A extends object>(record: A): A => ({ ...record })
const encodePeer = Schema.encodeSync(Peer.Peer)

describe("Peer.unsafePeer and Peer.unsafePeerAddress", () => {
  it.prop(
    "make what the classes' constructors make from the same fields",
    [Arbitrary.make(Peer.Peer), FastCheck.integer({ min: 0, max: 2 ** 40 })],
    ([drawn, now]) => {
      const fields = fieldsOf(drawn)
      const fast = Peer.unsafePeer(fields)
      const slow = new Peer.Peer(fields, true)
      expect(fast).toBeInstanceOf(Peer.Peer)
      expect(Object.getPrototypeOf(fast)).toBe(Object.getPrototypeOf(slow))
      expect(Reflect.ownKeys(fast)).toEqual(Reflect.ownKeys(slow))
      for (const key of Reflect.ownKeys(slow)) {
        expect(Object.is(Reflect.get(fast, key), Reflect.get(slow, key))).toBe(true)
      }
      // as equal as two records the constructor makes (a NaN field is equal to nothing, even itself)
      const again = new Peer.Peer(fields, true)
      expect(Equal.equals(fast, slow)).toBe(Equal.equals(again, slow))
      expect(Hash.hash(fast)).toBe(Hash.hash(slow))
      expect(encodePeer(fast)).toEqual(encodePeer(slow))
      const derived = (peer: Peer.Peer) =>
        [peer.isBanned(now), peer.isVerified, peer.isOffline, peer.isCommunicationNode, peer.allAddressesFailed]
      expect(derived(fast)).toEqual(derived(slow))
      // a changed field makes a different record, as with the constructor
      const moved = Peer.unsafePeer({ ...fields, bannedReason: `${fields.bannedReason}!` })
      expect(Equal.equals(moved, slow)).toBe(false)
      expect(Equal.equals(moved, Peer.unsafePeer({ ...fields, bannedReason: `${fields.bannedReason}!` })))
        .toBe(Equal.equals(again, slow))
      for (const address of fields.addresses) {
        const copy = Peer.unsafePeerAddress(fieldsOf(address))
        expect(copy).toBeInstanceOf(Peer.PeerAddress)
        const made = new Peer.PeerAddress(fieldsOf(address), true)
        expect(Equal.equals(copy, made)).toBe(Equal.equals(new Peer.PeerAddress(fieldsOf(address), true), made))
      }
    },
    { fastCheck: { numRuns: 300 } }
  )
})
