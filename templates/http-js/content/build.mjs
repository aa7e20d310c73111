// Bundles src/ into one ES module for componentize-js. The Spin plugin marks the WIT
// imports of the dependencies (such as `wasi:http`) as externals the host provides.
import { mkdir } from "node:fs/promises";
import { build } from "esbuild";
import { SpinEsbuildPlugin } from "@spinframework/build-tools/plugins/esbuild/index.js";

await build({
  entryPoints: ["./src/index.js"],
  outfile: "./build/bundle.js",
  bundle: true,
  format: "esm",
  platform: "node",
  logLevel: "error",
  plugins: [await SpinEsbuildPlugin()],
});
await mkdir("dist", { recursive: true });
