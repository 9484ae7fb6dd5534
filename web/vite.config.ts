import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// Served by the gateway at /ui (same origin as the API); `npm run dev` proxies the API to a running gateway.
const gateway = process.env.LYCEUM_GATEWAY_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  base: "/ui/",
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true },
  server: {
    proxy: Object.fromEntries(
      ["/v1", "/openai", "/healthz", "/readyz"].map((prefix) => [prefix, gateway]),
    ),
  },
});
