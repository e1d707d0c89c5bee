import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The build goes straight into the Python package, which serves it; nothing is loaded from a CDN.
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../src/neuroscope/server/static",
    emptyOutDir: true,
    chunkSizeWarningLimit: 6000,
  },
  server: {
    proxy: { "/api": "http://127.0.0.1:8000", "/ws": { target: "ws://127.0.0.1:8000", ws: true } },
  },
});
