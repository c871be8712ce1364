/**
 * `PeerManager` on the `peers` and `peer_addresses` tables (SPEC §2.5, §18), behaving as core's
 * `PeerManager.layerMemory` does: the same bounds (`maxKnownPeers` with its eviction order, the per-source hourly
 * budget in 60 one-minute buckets, kept in memory), the same selections and the same seeded random draws.
 *
 * The table (at most `maxKnownPeers`, 10,000) is read at open and mirrored in memory, so selections (`closest`,
 * `random`), which rank every peer, cost no query. What the network teaches — a peer added or re-added (`add`,
 * `addMany`: joins, peer sync, discovery, connections) and a touch (a change of only when the peer was last seen or
 * verified and of its addresses' statistics, which every connection and dial makes) — reaches the mirror at once
 * and the table with its next transaction, once 64 records are waiting, or when the scope closes: a crash can lose
 * the last few peers learnt, which the network teaches again, and nothing else. Every other change (a ban, an
 * unban, an offline mark or any `update` that is not a touch, a removal, an addition that evicts) is written
 * first, with the waiting records, in one transaction, and reaches the mirror only once committed. Address order
 * is kept (rows are rewritten in order when the list changes); a repeated address is stored once, its first
 * occurrence.
 *
 * @since 0.1.0
 */
import { DhtConfig } from "@comms-dht/core/DhtConfig"
import { PeerNotFound, type StoreError } from "@comms-dht/core/DhtError"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as FiberClock from "@comms-dht/core/FiberClock"
import * as LightLock from "@comms-dht/core/LightLock"
import * as MessageStore from "@comms-dht/core/MessageStore"
import * as NodeId from "@comms-dht/core/NodeId"
import * as Peer from "@comms-dht/core/Peer"
import * as PeerManager from "@comms-dht/core/PeerManager"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Equal from "effect/Equal"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { runs } from "./internal/runs.js"
import * as Claims from "./internal/claims.js"
import * as Db from "./internal/db.js"
import { lift, storeError } from "./internal/errors.js"
import { PeerTable } from "./internal/table.js"
import { BigIntText, Blob, clampInt64, clampSafe, optionalSafe } from "./internal/values.js"

const Nullable = <S extends Schema.Schema.Any>(s: S) => Schema.NullOr(s)

const PeerRow = Schema.Struct({
  public_key: Blob,
  node_id: Blob,
  features: Schema.Number,
  flags: Schema.Number,
  banned_until: Nullable(Schema.Number),
  banned_reason: Schema.String,
  offline_at: Nullable(Schema.Number),
  last_seen: Nullable(Schema.Number),
  added_at: Schema.Number,
  verified_at: Nullable(Schema.Number),
  claim_updated_at: Nullable(BigIntText),
  identity_signature: Nullable(Blob)
})

const AddressRow = Schema.Struct({
  node_id: Blob,
  address: Schema.String,
  source: Schema.String,
  last_seen: Nullable(Schema.Number),
  last_attempt: Nullable(Schema.Number),
  connection_failures: Schema.Number,
  claim: Nullable(Blob)
})

const decodePeerRows = Schema.decodeUnknown(Schema.Array(PeerRow))
const decodeAddressRows = Schema.decodeUnknown(Schema.Array(AddressRow))
const decodePeer = Schema.decodeUnknown(Peer.Peer)

// Optional model fields are absent, not `undefined`, when their column is NULL.
const optional = <A>(key: string, value: A | null): { readonly [k: string]: A } =>
  value === null ? {} : { [key]: value }

const blobField = <A>(
  key: string,
  value: Uint8Array | null,
  decode: (b: Uint8Array) => Either.Either<A, string>
): Either.Either<{ readonly [k: string]: A }, string> =>
  value === null ? Either.right({}) : Either.map(decode(value), (a) => ({ [key]: a }))

// A row pair as the `Peer` schema's encoded form; the schema then checks every field (keys, brands, sources).
const encodedPeer = (
  row: typeof PeerRow.Type,
  addresses: ReadonlyArray<typeof AddressRow.Type>
): Either.Either<unknown, string> =>
  Either.gen(function*() {
    const encodedAddresses: Array<unknown> = []
    for (const a of addresses) {
      encodedAddresses.push({
        address: a.address,
        connectionFailures: a.connection_failures,
        source: a.source,
        ...optional("lastSeen", a.last_seen),
        ...optional("lastAttempt", a.last_attempt),
        ...(yield* blobField("claim", a.claim, Claims.decodeClaim))
      })
    }
    return {
      publicKey: row.public_key,
      nodeId: row.node_id,
      addresses: encodedAddresses,
      features: row.features,
      flags: row.flags,
      bannedReason: row.banned_reason,
      addedAt: row.added_at,
      ...optional("bannedUntil", row.banned_until),
      ...optional("offlineAt", row.offline_at),
      ...optional("lastSeen", row.last_seen),
      ...optional("verifiedAt", row.verified_at),
      ...optional("claimUpdatedAt", row.claim_updated_at),
      ...(yield* blobField("identitySignature", row.identity_signature, Claims.decodeSignature))
    }
  })

const sameAddresses = (a: ReadonlyArray<Peer.PeerAddress>, b: ReadonlyArray<Peer.PeerAddress>) =>
  a === b || (a.length === b.length && a.every((x, i) => Equal.equals(x, b[i])))

const withoutBan = (peer: Peer.Peer): Peer.Peer => {
  const { bannedUntil: _until, ...rest } = peer
  return Peer.unsafePeer({ ...rest, bannedReason: "" })
}

const MINUTE_MS = 60_000

const skippedBudget = DhtMetrics.tagged(DhtMetrics.peersSkipped, "cause", "budget")
const skippedCapacity = DhtMetrics.tagged(DhtMetrics.peersSkipped, "cause", "capacity")

/**
 * `next` differs from `previous` only in what connections and dials change: when it was last seen and verified,
 * and the statistics of its addresses (last seen, last attempt, failures). The addresses, their sources and claims,
 * the peer's claim, features, flags, ban and offline mark are the same.
 */
const isTouch = (previous: Peer.Peer, next: Peer.Peer): boolean =>
  next.features === previous.features && next.flags === previous.flags &&
  next.bannedUntil === previous.bannedUntil && next.bannedReason === previous.bannedReason &&
  next.offlineAt === previous.offlineAt && next.addedAt === previous.addedAt &&
  next.claimUpdatedAt === previous.claimUpdatedAt &&
  Peer.sameIdentitySignature(next.identitySignature, previous.identitySignature) &&
  next.addresses.length === previous.addresses.length &&
  next.addresses.every((a, i) => {
    const b = previous.addresses[i]!
    return a.address === b.address && a.source === b.source && Peer.sameClaim(a.claim, b.claim)
  })

// records waiting for a write before one is forced
const PENDING_PER_FLUSH = 64

/**
 * The sqlite peer table, with the bounds of the `DhtConfig` reference read when it is made. Fails if the stored
 * peers cannot be read.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<
  PeerManager.PeerManagerService,
  StoreError,
  SqliteClient.SqliteClient | Scope.Scope
> = Effect.gen(
  function*() {
    const client = yield* SqliteClient.SqliteClient
    const sql: SqlClient.SqlClient = client
    const filename = client.config.filename
    const db = Db.forClient(sql)
    const config = yield* DhtConfig

    const load = Effect.gen(function*() {
      const peerRows = yield* db.once(
        sql`SELECT public_key, node_id, features, flags, banned_until, banned_reason, offline_at,
          last_seen, added_at, verified_at, CAST(claim_updated_at AS TEXT) AS claim_updated_at, identity_signature
        FROM peers`
      ).pipe(Effect.flatMap(decodePeerRows))
      const addressRows = yield* db.once(
        sql`SELECT node_id, address, source, last_seen, last_attempt, connection_failures,
          claim FROM peer_addresses ORDER BY rowid`
      ).pipe(Effect.flatMap(decodeAddressRows))
      const byPeer = new Map<string, Array<typeof AddressRow.Type>>()
      for (const a of addressRows) {
        const key = NodeId.toHex(a.node_id)
        const list = byPeer.get(key)
        if (list === undefined) byPeer.set(key, [a])
        else list.push(a)
      }
      const loaded = new Map<string, Peer.Peer>()
      for (const row of peerRows) {
        const key = NodeId.toHex(row.node_id)
        const encoded = encodedPeer(row, byPeer.get(key) ?? [])
        if (Either.isLeft(encoded)) {
          return yield* Effect.fail(
            new ParseResult.ParseError({ issue: new ParseResult.Type(PeerRow.ast, row, encoded.left) })
          )
        }
        loaded.set(key, yield* decodePeer(encoded.right))
      }
      return loaded
    })
    // Keyed by hex NodeId. Changed only while `lock` is held, after the write it mirrors has committed (or, for an
    // addition or a touch, after it is marked in `pending`).
    const peers = new PeerTable(yield* load.pipe(lift(filename, "load peers")))
    // Records whose latest changes were additions or touches, to write whole: a transaction per learnt peer was a
    // quarter of a joining network's work (a peer table write is ~250 steps of Effect's run loop, ~150 of them the
    // transaction), and a batch of them is a statement per table. Written with the table's next transaction, when
    // PENDING_PER_FLUSH are waiting, and when the scope closes.
    const pending = new Set<string>()
    const lock = yield* LightLock.make
    const budget = MessageStore.makeSourceWindow()
    let prunedAtMinute = 0
    // the budget's expired buckets go at most once a minute
    const pruneBudget = (now: number): void => {
      const minute = Math.floor(now / MINUTE_MS)
      if (minute > prunedAtMinute) {
        budget.prune(now)
        prunedAtMinute = minute
      }
    }
    const publishSize = Effect.suspend(() => Metric.set(DhtMetrics.knownPeers, peers.size))
    yield* publishSize

    // A record's encoded fields, or why the table cannot take them, in plain code: every peer written passes here
    // (about 48,000 in a 300-node simulation's join), and as Effects they were a dozen steps of the run loop each.
    const encoded = <A>(what: string, result: Either.Either<A, string>): Either.Either<A, StoreError> =>
      Either.isRight(result)
        ? Either.right(result.right)
        : Either.left(storeError(filename, "write peer", `${what}: ${result.left}`, "Constraint"))

    const peerRow = (peer: Peer.Peer, signature: Uint8Array | null) => ({
      public_key: peer.publicKey,
      node_id: peer.nodeId,
      features: clampSafe(peer.features),
      flags: clampSafe(peer.flags),
      banned_until: optionalSafe(peer.bannedUntil),
      banned_reason: peer.bannedReason,
      offline_at: optionalSafe(peer.offlineAt),
      last_seen: optionalSafe(peer.lastSeen),
      added_at: clampSafe(peer.addedAt),
      verified_at: optionalSafe(peer.verifiedAt),
      claim_updated_at: peer.claimUpdatedAt === undefined ? null : clampInt64(peer.claimUpdatedAt),
      identity_signature: signature
    })

    // one row or many: a row of the same key in the same statement updates the one before it
    const upsertRows = (rows: ReadonlyArray<ReturnType<typeof peerRow>>) =>
      db.run(sql`INSERT INTO peers ${sql.insert(rows)} ON CONFLICT (public_key) DO UPDATE SET
        features = excluded.features, flags = excluded.flags, banned_until = excluded.banned_until,
        banned_reason = excluded.banned_reason,
        offline_at = excluded.offline_at, last_seen = excluded.last_seen, added_at = excluded.added_at,
        verified_at = excluded.verified_at, claim_updated_at = excluded.claim_updated_at,
        identity_signature = excluded.identity_signature`)

    const upsertPeer = (peer: Peer.Peer, signature: Uint8Array | null) => upsertRows([peerRow(peer, signature)])

    const noSignature = Either.right(null)
    const signatureOf = (peer: Peer.Peer): Either.Either<Uint8Array | null, StoreError> =>
      peer.identitySignature === undefined
        ? noSignature
        : encoded("identity signature", Claims.encodeSignature(peer.identitySignature))

    // the peer's rows of `peer_addresses` (each address once), added to `into`; the first claim that cannot be
    // encoded is the failure
    const addressRecords = (
      peer: Peer.Peer,
      into: Array<Record<string, unknown>>
    ): StoreError | undefined => {
      const seen = new Set<string>()
      for (const a of peer.addresses) {
        if (seen.has(a.address)) continue
        seen.add(a.address)
        let claim: Uint8Array | null = null
        if (a.claim !== undefined) {
          const bytes = encoded("claim", Claims.encodeClaim(a.claim))
          if (Either.isLeft(bytes)) return bytes.left
          claim = bytes.right
        }
        into.push({
          node_id: peer.nodeId,
          address: a.address,
          source: a.source,
          last_seen: optionalSafe(a.lastSeen),
          last_attempt: optionalSafe(a.lastAttempt),
          connection_failures: clampSafe(a.connectionFailures),
          claim
        })
      }
      return undefined
    }

    // The statements that store `peer` (replacing `previous`, if known), to run in one transaction.
    const writes = (
      peer: Peer.Peer,
      previous: Peer.Peer | undefined
    ): Either.Either<Effect.Effect<unknown, SqlError>, StoreError> => {
      const signatureOrError = signatureOf(peer)
      if (Either.isLeft(signatureOrError)) return Either.left(signatureOrError.left)
      const signature = signatureOrError.right
      const rewriteAddresses = previous === undefined || !sameAddresses(previous.addresses, peer.addresses)
      const records: Array<Record<string, unknown>> = []
      const failed = rewriteAddresses ? addressRecords(peer, records) : undefined
      if (failed !== undefined) return Either.left(failed)
      return Either.right(
        upsertPeer(peer, signature).pipe(
          Effect.zipRight(
            rewriteAddresses
              ? db.run(sql`DELETE FROM peer_addresses WHERE node_id = ${peer.nodeId}`).pipe(
                Effect.zipRight(
                  records.length === 0
                    ? Effect.void
                    : Effect.asVoid(db.run(sql`INSERT INTO peer_addresses ${sql.insert(records)}`))
                )
              )
              : Effect.void
          )
        )
      )
    }

    // rows upserted, the addresses of `readdressed` deleted, `addresses` inserted: a statement per table and run
    const batchWrites = (
      rows: ReadonlyArray<ReturnType<typeof peerRow>>,
      readdressed: ReadonlyArray<NodeId.NodeId>,
      addresses: ReadonlyArray<Record<string, unknown>>
    ) =>
      Effect.all([
        Effect.forEach(runs(rows), upsertRows, { discard: true }),
        Effect.forEach(
          runs(readdressed),
          (ids) => db.run(sql`DELETE FROM peer_addresses WHERE ${sql.in("node_id", ids)}`),
          { discard: true }
        ),
        // the peers' addresses were deleted above and a peer's are distinct: a conflict is a run's padding
        Effect.forEach(
          runs(addresses),
          (records) =>
            db.run(sql`INSERT INTO peer_addresses ${sql.insert(records)} ON CONFLICT (node_id, address) DO NOTHING`),
          { discard: true }
        )
      ], { discard: true })

    const deletePeer = (nodeId: NodeId.NodeId) => db.run(sql`DELETE FROM peers WHERE node_id = ${nodeId}`)

    // the current records of `keys`, written whole: their rows upserted, their addresses rewritten
    const rewrite = (keys: ReadonlyArray<string>): Either.Either<Effect.Effect<void, SqlError>, StoreError> => {
      const rows: Array<ReturnType<typeof peerRow>> = []
      const ids: Array<NodeId.NodeId> = []
      const addresses: Array<Record<string, unknown>> = []
      for (const key of keys) {
        const peer = peers.get(key)
        if (peer === undefined) continue
        const signature = signatureOf(peer)
        if (Either.isLeft(signature)) return Either.left(signature.left)
        rows.push(peerRow(peer, signature.right))
        ids.push(peer.nodeId)
        const failed = addressRecords(peer, addresses)
        if (failed !== undefined) return Either.left(failed)
      }
      return Either.right(batchWrites(rows, ids, addresses))
    }

    // `statements` in one transaction, after the pending records (taken out first, put back if it fails)
    const commit = (statements: Effect.Effect<unknown, SqlError>, action: string) =>
      Effect.suspend(() => {
        const batch = Array.from(pending)
        pending.clear()
        const putBack = Effect.sync(() => {
          for (const key of batch) pending.add(key)
        })
        const first = batch.length === 0 ? Either.right(Effect.void) : rewrite(batch)
        const written = Either.isLeft(first)
          ? Effect.fail(first.left)
          : first.right.pipe(Effect.zipRight(statements), db.transaction, lift(filename, action))
        return Effect.tapError(written, () => putBack)
      })

    const writePending = Effect.suspend(() => pending.size === 0 ? Effect.void : commit(Effect.void, "write peers"))
    // a failed write keeps the records pending for the next one
    const writePendingOrLog = Effect.catchAll(
      writePending,
      (error) => Effect.logWarning("could not write peers", error)
    )

    // the mirror now, the table later (`pending`)
    const defer = (key: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        pending.add(key)
        return pending.size < PENDING_PER_FLUSH ? Effect.void : writePendingOrLog
      })

    const touch = (key: string, next: Peer.Peer) =>
      Effect.suspend(() => {
        peers.set(key, next)
        return defer(key)
      })

    const getSync = (nodeId: NodeId.NodeId) => Option.fromNullable(peers.get(NodeId.toHex(nodeId)))

    const get = (nodeId: NodeId.NodeId) =>
      Effect.suspend(() =>
        Option.match(getSync(nodeId), {
          onNone: () => Effect.fail(new PeerNotFound({ nodeId }, true)),
          onSome: Effect.succeed
        })
      )

    const sortedPeers = Effect.sync((): ReadonlyArray<Peer.Peer> => peers.inOrder())

    const sortedMatches = (query: PeerManager.PeerQuery | undefined) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.map(sortedPeers, (all) => {
          const matches = PeerManager.matchesQuery(query, now)
          return all.filter((peer) => matches(peer))
        }))

    // a record the table could not take fails here, not in the batch it would be written with
    const storable = (peer: Peer.Peer): Effect.Effect<void, StoreError> => {
      const problem = Claims.unstorable(peer)
      return problem === undefined
        ? Effect.void
        : Effect.fail(storeError(filename, "write peer", problem, "Constraint"))
    }

    const add = (peer: Peer.Peer, source: NodeId.NodeId | undefined) =>
      Effect.gen(function*() {
        yield* storable(peer)
        const now = yield* Clock.currentTimeMillis
        const key = NodeId.toHex(peer.nodeId)
        if (peers.has(key)) {
          yield* touch(key, peer)
          return "Updated" as const
        }
        pruneBudget(now)
        if (source !== undefined && budget.count(source, now) >= config.maxPeersAddedPerSourcePerHour) {
          yield* Metric.increment(skippedBudget)
          return "SkippedBudget" as const
        }
        if (peers.size >= config.maxKnownPeers) {
          const victim = PeerManager.evictionCandidate(peers.values(), now)
          // without a source (config seeds, the transport's own registrations) the peer is added even over the bound
          if (Option.isNone(victim) && source !== undefined) {
            yield* Metric.increment(skippedCapacity)
            return "SkippedCapacity" as const
          }
          // an eviction is a removal: written before the call returns, with what waits
          if (Option.isSome(victim)) {
            yield* commit(deletePeer(victim.value.nodeId), "evict peer")
            peers.delete(NodeId.toHex(victim.value.nodeId))
          }
        }
        peers.set(key, peer)
        if (source !== undefined) budget.record(source, now)
        yield* publishSize
        yield* defer(key)
        return "Added" as const
      })

    // `add` for each peer in turn. A batch that could evict (the table within a batch of its bound) or that names a
    // peer twice is added one peer at a time, since each addition then depends on the ones before it.
    const addMany = (batch: ReadonlyArray<Peer.Peer>, source: NodeId.NodeId | undefined) =>
      Effect.gen(function*() {
        const keys = batch.map((peer) => NodeId.toHex(peer.nodeId))
        if (new Set(keys).size !== keys.length || peers.size + batch.length >= config.maxKnownPeers) {
          return yield* Effect.forEach(batch, (peer) => add(peer, source))
        }
        for (const peer of batch) yield* storable(peer)
        const now = yield* Clock.currentTimeMillis
        pruneBudget(now)
        let allowance = source === undefined
          ? Number.POSITIVE_INFINITY
          : config.maxPeersAddedPerSourcePerHour - budget.count(source, now)
        const results: Array<PeerManager.AddResult> = []
        let skipped = 0
        let added = 0
        for (const [i, peer] of batch.entries()) {
          const key = keys[i]!
          if (peers.has(key)) {
            peers.set(key, peer)
            results.push("Updated")
          } else if (allowance <= 0) {
            skipped++
            results.push("SkippedBudget")
            continue
          } else {
            allowance--
            added++
            peers.set(key, peer)
            if (source !== undefined) budget.record(source, now)
            results.push("Added")
          }
          pending.add(key)
        }
        if (skipped > 0) yield* Metric.incrementBy(skippedBudget, skipped)
        if (added > 0) yield* publishSize
        if (pending.size >= PENDING_PER_FLUSH) yield* writePendingOrLog
        return results
      })

    const update = (nodeId: NodeId.NodeId, f: (peer: Peer.Peer) => Peer.Peer) =>
      Effect.gen(function*() {
        const previous = yield* get(nodeId)
        const next = f(previous)
        if (next === previous) return next
        if (!NodeId.equals(next.publicKey, previous.publicKey) || !NodeId.equals(next.nodeId, previous.nodeId)) {
          // the rows are keyed by the identity, so an update cannot move a record to another one
          return yield* Effect.fail(
            storeError(filename, "update peer", "an update may not change the peer's key", "Constraint")
          )
        }
        const key = NodeId.toHex(nodeId)
        if (isTouch(previous, next)) {
          yield* touch(key, next)
          return next
        }
        yield* commit(yield* writes(next, previous), "update peer")
        peers.set(key, next)
        return next
      })

    // The table and its mirror change together: nothing may stop an operation between the two.
    const locked = lock.withLockUninterruptible

    // `update` when it is a touch that needs no write yet, in this one step: the mirror and `pending` are all it
    // changes, and with the lock free nothing can come between (most updates are touches: a dial's attempt, a
    // connection's `lastSeen`). Otherwise undefined, and `update` runs under the lock, calling `f` again there.
    const touchedNow = (
      nodeId: NodeId.NodeId,
      f: (peer: Peer.Peer) => Peer.Peer
    ): Effect.Effect<Peer.Peer> | undefined => {
      if (lock.unsafeIsHeld() || pending.size + 1 >= PENDING_PER_FLUSH) return undefined
      const key = NodeId.toHex(nodeId)
      const previous = peers.get(key)
      if (previous === undefined) return undefined
      const next = f(previous)
      if (next === previous) return Effect.succeed(next)
      if (
        !NodeId.equals(next.publicKey, previous.publicKey) || !NodeId.equals(next.nodeId, previous.nodeId) ||
        !isTouch(previous, next)
      ) return undefined
      peers.set(key, next)
      pending.add(key)
      return Effect.succeed(next)
    }

    yield* Effect.addFinalizer(() =>
      locked(writePendingOrLog)
    )

    return PeerManager.PeerManager.of({
      add: (peer, options) => locked(add(peer, options?.source)),
      addMany: (batch, options) => locked(addMany(batch, options?.source)),
      get,
      unsafeGet: (nodeId) => peers.get(NodeId.toHex(nodeId)),
      getMany: (nodeIds) =>
        Effect.sync(() => {
          const found: Array<Peer.Peer> = []
          for (const nodeId of nodeIds) {
            const peer = peers.get(NodeId.toHex(nodeId))
            if (peer !== undefined) found.push(peer)
          }
          return found
        }),
      getByPublicKey: (key) => {
        const nodeId = NodeId.fromPublicKey(key)
        return Effect.flatMap(
          get(nodeId),
          (peer) =>
            NodeId.equals(peer.publicKey, key) ? Effect.succeed(peer) : Effect.fail(new PeerNotFound({ nodeId }, true))
        )
      },
      exists: (nodeId) => Effect.sync(() => peers.has(NodeId.toHex(nodeId))),
      all: sortedPeers,
      count: Effect.sync(() => peers.size),
      // a run of the order, widened until n match, not every record filtered and ranked
      closest: (target, n, query) =>
        FiberClock.withNow((now) =>
          Effect.succeed(
            PeerManager.closestSorted(peers.peekInOrder(), target, n, PeerManager.matchesQuery(query, now))
          )
        ),
      // a run of the order, not the whole table: this node is often among the closest, where a scan reads every
      // record (a store-and-forward decision per message passing through, a neighbour check per connection)
      closerCount: (target, nodeId, limit, query) =>
        FiberClock.withNow((now) =>
          Effect.succeed(
            PeerManager.countCloserSorted(
              peers.peekInOrder(),
              target,
              nodeId,
              limit,
              PeerManager.matchesQuery(query, now)
            )
          )
        ),
      random: (n, query) => Effect.flatMap(sortedMatches(query), (candidates) => PeerManager.sample(candidates, n)),
      ban: (nodeId, durationMs, reason) =>
        locked(Effect.flatMap(Clock.currentTimeMillis, (now) =>
          update(nodeId, (peer) => {
            const until = now + durationMs
            return peer.isBanned(now) && peer.bannedUntil !== undefined && peer.bannedUntil >= until
              ? peer
              : Peer.unsafePeer({ ...peer, bannedUntil: until, bannedReason: reason })
          }))),
      unban: (nodeId) => locked(Effect.asVoid(update(nodeId, withoutBan))),
      update: (nodeId, f) => Effect.suspend(() => touchedNow(nodeId, f) ?? locked(update(nodeId, f))),
      remove: (nodeId) =>
        locked(
          commit(deletePeer(nodeId), "remove peer").pipe(
            Effect.zipRight(Effect.sync(() => peers.delete(NodeId.toHex(nodeId)))),
            Effect.zipRight(publishSize)
          )
        )
    })
  }
)

/**
 * `make` as a Layer over the store's client.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<PeerManager.PeerManager, StoreError, SqliteClient.SqliteClient> = Layer.scoped(
  PeerManager.PeerManager,
  make
)
