/**
 * core's `DedupCache` cases (SPEC §8.2, scenario 43), run on the memory and the sqlite cache alike.
 */
import { dedupCacheSuite } from "../../core/test/suites/dedupCacheSuite.js"
import { implementations } from "./implementations.js"

for (const impl of implementations) dedupCacheSuite(`DedupCache (${impl.name})`, impl.layer)
