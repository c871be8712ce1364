/**
 * core's `PeerManager` cases (SPEC §2.5, scenario 45), run on the memory and the sqlite table alike.
 */
import { peerManagerSuite } from "../../core/test/suites/peerManagerSuite.js"
import { implementations } from "./implementations.js"

for (const impl of implementations) peerManagerSuite(`PeerManager (${impl.name})`, impl.layer)
