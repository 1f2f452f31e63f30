// Equivalent of: prisma migrate diff --from-migrations prisma/migrations --to-schema prisma/schema.prisma --exit-code
// (uses a shadow database). Exit 2 = schema has changes that no migration covers.
import { filters, migrationList, openEngine, schemaFiles } from "./schema-engine.mjs";

const { engine } = await openEngine();
let code = 0;
try {
  const r = await engine.diff({
    from: { tag: "migrations", ...migrationList() },
    to: { tag: "schemaDatamodel", ...schemaFiles() },
    script: true,
    exitCode: true,
    filters,
  });
  process.stdout.write(r.stdout ?? "");
  code = r.exitCode;
} finally {
  engine.free();
}
process.exit(code);
