import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    projects: ["packages/*", "test"],
    // the JSON file lets .ci/run print one plain "N passed, N failed" line
    reporters: ["default", ["json", { outputFile: "node_modules/.cache/vitest/results.json" }]]
  }
})
