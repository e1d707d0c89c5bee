import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import react from "@vitejs/plugin-react";
import { defineConfig, type Plugin } from "vite";

// NeuroScope-Web: a second, self-contained page. base "./" so the same files work at the workbench's /web/
// and as static files inside an export folder (next to manifest.json and the two parts).
const ORT_FILES = ["ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"];

/** onnxruntime-web's wasm runtime, copied from the npm package into ort/ (served locally, never a CDN). */
function ortRuntime(): Plugin {
  const require = createRequire(import.meta.url);
  // the package exports its wasm files by name (not its package.json)
  const dist = dirname(require.resolve("onnxruntime-web/ort-wasm-simd-threaded.wasm"));
  return {
    name: "neuroscope-ort-runtime",
    apply: "build",
    generateBundle() {
      for (const f of ORT_FILES) {
        this.emitFile({ type: "asset", fileName: `ort/${f}`, source: readFileSync(join(dist, f)) });
      }
    },
  };
}

export default defineConfig({
  plugins: [react(), ortRuntime()],
  base: "./",
  // the ort build that loads its wasm glue from ort.env.wasm.wasmPaths (our ort/ copy), so that its
  // worker threads load that glue rather than our worker bundle
  resolve: { conditions: ["onnxruntime-web-use-extern-wasm"] },
  worker: { format: "es" },
  build: {
    outDir: "../src/neuroscope/server/static/web",
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
    rollupOptions: { input: "web.html" },
  },
});
