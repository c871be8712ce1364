/**
 * This node's identity: its key pair, NodeId, features and the addresses it announces. Provided once per node by
 * the composition root; the pipelines, the transport and the handlers read it from here.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"
import type { NodeId, PublicKey, SecretKey } from "./NodeId.js"
import { fromPublicKey } from "./NodeId.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Identity {
  readonly secretKey: SecretKey
  readonly publicKey: PublicKey
  readonly nodeId: NodeId
  readonly features: number
}

/**
 * @since 0.1.0
 * @category tags
 */
export class NodeIdentity extends Context.Tag("@comms-dht/core/NodeIdentity")<NodeIdentity, Identity>() {}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly secretKey: SecretKey
  readonly publicKey: PublicKey
  readonly features: number
}): Identity => ({ ...options, nodeId: fromPublicKey(options.publicKey) })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (identity: Identity): Layer.Layer<NodeIdentity> => Layer.succeed(NodeIdentity, identity)
