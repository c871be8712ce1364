/**
 * The README is the first thing a user runs: its commands and its example must stay true.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "..")
const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")

describe("README", () => {
  it("shows examples/quickstart.ts exactly as the type-checked file is", () => {
    const example = fs.readFileSync(path.join(root, "examples", "quickstart.ts"), "utf8").trimEnd()
    expect(readme).toContain("```ts\n" + example + "\n```")
  })

  it("opens with the two commands of a new user, and `npm test` is the test script", () => {
    const firstBlock = readme.split("```")[1] ?? ""
    expect(firstBlock).toContain("npm ci && npx comms-dht sim")
    expect(firstBlock).toContain("npm test")
    const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"))
    expect(manifest.scripts.test).toBe("tsc -b && vitest run")
  })
})
