/**
 * core's `MessageStore` cases (SPEC §9.1–§9.3, scenarios 21 and 42), run on the memory and the sqlite store alike.
 */
import { messageStoreSuite } from "../../core/test/suites/messageStoreSuite.js"
import { implementations, sqlite } from "./implementations.js"

for (const impl of implementations) {
  messageStoreSuite(`MessageStore (${impl.name})`, impl.layer, {
    // each sqlite run opens and migrates a fresh database; half the runs keep the suite within a minute under load
    invariantRuns: impl === sqlite ? 100 : 200
  })
}
