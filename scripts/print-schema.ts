// `npm run schema:print` writes schema.graphql from the Pothos schema; `npm run schema:check` fails
// when the committed file differs from what the code builds.
import fs from "node:fs";
import path from "node:path";
import { printSchema } from "graphql";
import { schema } from "../src/graphql/schema.ts";

const file = path.resolve(import.meta.dirname, "../schema.graphql");
const printed = `${printSchema(schema)}\n`;
if (process.argv.includes("--check")) {
  const committed = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
  if (committed !== printed) {
    console.error("schema.graphql is stale: run `npm run schema:print` and commit the result.");
    process.exit(1);
  }
  console.log("schema.graphql is current.");
} else {
  fs.writeFileSync(file, printed);
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
}
