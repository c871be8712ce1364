import * as path from "node:path"
import { defineConfig } from "vitest/config"

export default defineConfig({
  ssr: { resolve: { conditions: ["source", "module", "node", "development|production"] } },
  resolve: { conditions: ["source", "module", "node", "development|production"] },
  test: {
    setupFiles: [path.join(import.meta.dirname, "vitest.setup.ts")],
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
