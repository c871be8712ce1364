/**
 * ARCHITECTURE.md's package rules, enforced on the source: npm workspaces symlink every package into
 * node_modules, so a forbidden import would otherwise compile once its target is built.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "..")
const packages = ["core", "outbound", "inbound", "store", "node"] as const
type Package = (typeof packages)[number]

/** Which sibling packages each package may import (ARCHITECTURE.md "who may import whom"). */
const allowedSiblings: Record<Package, ReadonlyArray<Package>> = {
  core: [],
  outbound: ["core"],
  inbound: ["core"],
  store: ["core"],
  node: ["core", "outbound", "inbound", "store"]
}
const platformFree: ReadonlyArray<Package> = ["core", "outbound", "inbound"]

const walk = (dir: string): Array<string> =>
  fs.existsSync(dir)
    ? fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
      const full = path.join(dir, entry.name)
      return entry.isDirectory() ? walk(full) : entry.name.endsWith(".ts") ? [full] : []
    })
    : []

const importPattern = /(?:^|\n)\s*(?:import|export)\b[^"'`;]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g

/** Every module specifier a file imports or re-exports from. */
export const importsOf = (source: string): Array<string> =>
  Array.from(source.matchAll(importPattern), (m) => m[1] ?? m[2] ?? "").filter((s) => s.length > 0)

const packageName = (specifier: string): string => {
  const parts = specifier.split("/")
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!
}

const isGenerated = (file: string) => file.includes(`${path.sep}internal${path.sep}proto${path.sep}`)

const manifest = (pkg: Package): { dependencies?: Record<string, string>; peerDependencies?: Record<string, string> } =>
  JSON.parse(fs.readFileSync(path.join(root, "packages", pkg, "package.json"), "utf8"))

const sources = (pkg: Package) => walk(path.join(root, "packages", pkg, "src")).filter((f) => !isGenerated(f))

describe("architecture", () => {
  it("finds the import statements it checks", () => {
    const found = importsOf(`import * as Effect from "effect/Effect"\nimport type { X } from "@comms-dht/core/X"\n` +
      `export { y } from "./y.js"\nconst m = await import("node:fs")`)
    expect(found).toEqual(["effect/Effect", "@comms-dht/core/X", "./y.js", "node:fs"])
  })

  for (const pkg of packages) {
    describe(pkg, () => {
      const declared = new Set([
        ...Object.keys(manifest(pkg).dependencies ?? {}),
        ...Object.keys(manifest(pkg).peerDependencies ?? {})
      ])

      it("imports only declared packages and the siblings ARCHITECTURE.md allows", () => {
        const violations: Array<string> = []
        for (const file of sources(pkg)) {
          for (const specifier of importsOf(fs.readFileSync(file, "utf8"))) {
            if (specifier.startsWith(".")) continue
            const rel = path.relative(root, file)
            if (specifier.startsWith("node:")) {
              if (platformFree.includes(pkg)) violations.push(`${rel}: ${specifier} (platform-free package)`)
              continue
            }
            const name = packageName(specifier)
            if (name.startsWith("@comms-dht/")) {
              const sibling = name.slice("@comms-dht/".length)
              if (!(allowedSiblings[pkg] as ReadonlyArray<string>).includes(sibling)) {
                violations.push(`${rel}: ${specifier} (${pkg} may not import ${sibling})`)
              }
            }
            if (!declared.has(name)) violations.push(`${rel}: ${specifier} (not in package.json)`)
            if (specifier.includes("/internal/") && name.startsWith("@comms-dht/")) {
              violations.push(`${rel}: ${specifier} (another package's internals)`)
            }
          }
        }
        expect(violations).toEqual([])
      })

      it("keeps test helpers behind the /testing entry point", () => {
        const index = path.join(root, "packages", pkg, "src", "index.ts")
        const exported = fs.existsSync(index) ? importsOf(fs.readFileSync(index, "utf8")) : []
        expect(exported.filter((s) => /testing/i.test(s))).toEqual([])
      })

      it("runs no Effect and throws nothing in library code", () => {
        const edges = new Set(["bin.ts", "Cli.ts"])
        const offences: Array<string> = []
        for (const file of sources(pkg)) {
          // comments may discuss these words; code may not use them
          const text = fs.readFileSync(file, "utf8").replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, "")
          const rel = path.relative(root, file)
          if (!edges.has(path.basename(file)) && /\bEffect\.run(Sync|Promise|Fork|Callback|SyncExit|PromiseExit)\b/.test(text)) {
            offences.push(`${rel}: Effect.run*`)
          }
          if (/(^|[^\w.])throw\s/m.test(text)) offences.push(`${rel}: throw`)
          if (/:\s*any\b|<any>|\bas any\b/.test(text)) offences.push(`${rel}: any`)
          if (/@ts-ignore|@ts-expect-error/.test(fs.readFileSync(file, "utf8"))) offences.push(`${rel}: ts-ignore`)
        }
        expect(offences).toEqual([])
      })
    })
  }

  it("uses no platform globals in the platform-free packages", () => {
    const offences = platformFree.flatMap((pkg) =>
      sources(pkg).filter((file) => /\b(Buffer|process)\.\w/.test(fs.readFileSync(file, "utf8")))
        .map((file) => path.relative(root, file))
    )
    expect(offences).toEqual([])
  })
})
