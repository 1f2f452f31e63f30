// Equivalent of: prisma migrate status
import { filters, migrationList, openEngine } from "./schema-engine.mjs";

const { engine } = await openEngine();
try {
  const d = await engine.diagnoseMigrationHistory({ migrationsList: migrationList(), optInToShadowDatabase: false, filters });
  console.log(JSON.stringify(d, null, 2));
  process.exitCode = d.history || d.failedMigrationNames.length ? 1 : 0;
} finally {
  engine.free();
}
process.exit();
