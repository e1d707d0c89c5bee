// Regenerates src/api/schema.d.ts from openapi.json and stamps it with the spec's hash, so a Python test
// can tell when the committed types are stale without needing node.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import openapiTS, { astToString } from "openapi-typescript";

const text = readFileSync(new URL("../openapi.json", import.meta.url), "utf8");
const hash = createHash("sha256").update(text).digest("hex").slice(0, 16);
const ast = await openapiTS(JSON.parse(text));
const out = `// Generated from ui/openapi.json by scripts/gen-types.mjs; do not edit.\n// openapi-sha256: ${hash}\n\n${astToString(ast)}`;
writeFileSync(new URL("../src/api/schema.d.ts", import.meta.url), out);
console.log(`wrote src/api/schema.d.ts (openapi ${hash})`);
