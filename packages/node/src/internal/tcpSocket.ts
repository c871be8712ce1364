/** @internal */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Net from "node:net"

// `@effect/platform`'s `Socket` does not fit a framed, encrypted, half-closable stream: its `run` forks a fiber per
// chunk and never pauses the socket (no backpressure), and it ends at the peer's FIN and destroys the socket, so a
// connection cannot be read to its end after we stopped writing (the duplicate-connection rule of SPEC §11.6). This
// is the small part of `node:net` we need, with every callback turned into an Effect.

/** @internal a socket failed, closed, or could not open */
export interface SocketFailure {
  readonly _tag: "SocketFailure"
  readonly reason: string
}

const failure = (reason: string): SocketFailure => ({ _tag: "SocketFailure", reason })

/** @internal unread bytes beyond which the socket is paused until the reader catches up */
export const HIGH_WATER = 1 << 20

/** @internal one TCP connection */
export interface TcpSocket {
  readonly remoteAddress: string
  /** the bytes received since the last read; `None` at the end of the stream */
  readonly read: Effect.Effect<Option.Option<Uint8Array>, SocketFailure>
  /** completes once the bytes are handed to the kernel */
  readonly write: (bytes: Uint8Array) => Effect.Effect<void, SocketFailure>
  /** half-close: sends FIN once queued writes are flushed; reading goes on */
  readonly end: Effect.Effect<void>
  readonly destroy: Effect.Effect<void>
}

/** @internal every socket of one transport, so that closing it leaves nothing open */
export interface Registry {
  readonly sockets: Set<Net.Socket>
}

/** @internal */
export const makeRegistry = (): Registry => ({ sockets: new Set() })

/** @internal destroys every socket still open */
export const destroyAll = (registry: Registry): Effect.Effect<void> =>
  Effect.sync(() => {
    for (const socket of registry.sockets) socket.destroy()
    registry.sockets.clear()
  })

type Resume = (effect: Effect.Effect<Option.Option<Uint8Array>, SocketFailure>) => void

const wrap = (registry: Registry, socket: Net.Socket): TcpSocket => {
  registry.sockets.add(socket)
  socket.setNoDelay(true)
  let chunks: Array<Uint8Array> = []
  let buffered = 0
  let ended = false
  let error: string | undefined
  let waiter: Resume | undefined

  const ready = (): Effect.Effect<Option.Option<Uint8Array>, SocketFailure> | undefined => {
    if (chunks.length > 0) {
      const taken = chunks
      const size = buffered
      chunks = []
      buffered = 0
      if (socket.isPaused()) socket.resume()
      if (taken.length === 1) return Effect.succeed(Option.some(taken[0]!))
      const out = new Uint8Array(size)
      let offset = 0
      for (const c of taken) {
        out.set(c, offset)
        offset += c.length
      }
      return Effect.succeed(Option.some(out))
    }
    if (error !== undefined) return Effect.fail(failure(error))
    if (ended) return Effect.succeed(Option.none())
    return undefined
  }
  const wake = () => {
    const resume = waiter
    if (resume === undefined) return
    const next = ready()
    if (next === undefined) return
    waiter = undefined
    resume(next)
  }
  socket.on("data", (chunk: Buffer) => {
    chunks.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length))
    buffered += chunk.length
    if (buffered >= HIGH_WATER) socket.pause()
    wake()
  })
  socket.on("end", () => {
    ended = true
    wake()
  })
  socket.on("error", (cause) => {
    error ??= cause.message
    wake()
  })
  socket.on("close", () => {
    ended = true
    registry.sockets.delete(socket)
    wake()
  })

  return {
    remoteAddress: `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`,
    read: Effect.async<Option.Option<Uint8Array>, SocketFailure>((resume) => {
      const next = ready()
      if (next !== undefined) return resume(next)
      waiter = resume
      return Effect.sync(() => {
        if (waiter === resume) waiter = undefined
      })
    }),
    write: (bytes) =>
      Effect.async<void, SocketFailure>((resume) => {
        if (socket.destroyed || socket.writableEnded) return resume(Effect.fail(failure("socket closed")))
        socket.write(bytes, (cause) => resume(cause ? Effect.fail(failure(cause.message)) : Effect.void))
      }),
    end: Effect.sync(() => {
      if (!socket.destroyed && !socket.writableEnded) socket.end()
    }),
    destroy: Effect.sync(() => {
      socket.destroy()
      registry.sockets.delete(socket)
    })
  }
}

/** @internal connects (half-close allowed); interruption destroys the socket */
export const connect = (registry: Registry, host: string, port: number): Effect.Effect<TcpSocket, SocketFailure> =>
  Effect.async<TcpSocket, SocketFailure>((resume) => {
    const socket = Net.createConnection({ host, port, allowHalfOpen: true })
    registry.sockets.add(socket)
    const onError = (cause: Error) => {
      registry.sockets.delete(socket)
      socket.destroy()
      resume(Effect.fail(failure(cause.message)))
    }
    socket.once("error", onError)
    socket.once("connect", () => {
      socket.off("error", onError)
      resume(Effect.succeed(wrap(registry, socket)))
    })
    return Effect.sync(() => {
      registry.sockets.delete(socket)
      socket.destroy()
    })
  })

/** @internal a listening server */
export interface Listener {
  readonly host: string
  readonly port: number
  /** stops accepting; resolves once the server has closed (after `destroyAll` of its connections) */
  readonly close: Effect.Effect<void>
}

/**
 * @internal
 * Listens on `host:port` (port 0 takes a free one) and hands each accepted connection to `onConnection`, synchronously in
 * Node's callback: the callback must only fork.
 */
export const listen = (
  registry: Registry,
  host: string,
  port: number,
  onConnection: (socket: TcpSocket) => void
): Effect.Effect<Listener, SocketFailure> =>
  Effect.async<Listener, SocketFailure>((resume) => {
    const server = Net.createServer({ allowHalfOpen: true }, (socket) => onConnection(wrap(registry, socket)))
    const close = Effect.async<void>((done) => {
      if (!server.listening) return done(Effect.void)
      server.close(() => done(Effect.void))
    })
    const onError = (cause: Error) => resume(Effect.fail(failure(cause.message)))
    server.once("error", onError)
    server.listen({ host, port }, () => {
      server.off("error", onError)
      // later server errors (EMFILE on accept) must not crash the process: Node retries accepting by itself
      server.on("error", () => undefined)
      const address = server.address()
      if (address === null || typeof address === "string") {
        server.close()
        return resume(Effect.fail(failure("not a TCP address")))
      }
      resume(Effect.succeed({ host: address.address, port: address.port, close }))
    })
    return Effect.sync(() => {
      server.close()
    })
  })
