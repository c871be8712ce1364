/**
 * core's `DhtMetadata` cases, run on the memory and the sqlite store alike.
 */
import { dhtMetadataSuite } from "../../core/test/suites/dhtMetadataSuite.js"
import { implementations } from "./implementations.js"

for (const impl of implementations) dhtMetadataSuite(`DhtMetadata (${impl.name})`, impl.layer)
