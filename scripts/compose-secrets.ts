// `npm run compose:secrets`: writes the secrets docker-compose.yml requires to .env (which compose
// reads and git ignores), random, keeping any already there. Prints names, never values.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

/** Every variable docker-compose.yml requires (`${NAME:?…}`); scripts/check-compose.ts keeps the two in step. */
export const COMPOSE_SECRETS = ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "ADMIN_API_KEY", "WEBHOOK_SECRET", "JOB_TOKEN_SECRET"] as const;

/** A random value that is safe inside a URL and long enough for every 16-character rule. */
export function secretValue(): string {
  return randomBytes(24).toString("hex");
}

/** Adds the missing secrets to the .env file at `file`; returns the names it added. */
export function writeComposeSecrets(file: string): string[] {
  const existing = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
  const have = new Set(existing.split("\n").map((line) => /^\s*([A-Z0-9_]+)\s*=/.exec(line)?.[1]));
  const added = COMPOSE_SECRETS.filter((name) => !have.has(name));
  if (added.length === 0) return [];
  const lines = added.map((name) => `${name}=${secretValue()}`);
  const prefix = existing === "" || existing.endsWith("\n") ? "" : "\n";
  fs.writeFileSync(file, `${existing}${prefix}${lines.join("\n")}\n`, { mode: 0o600 });
  fs.chmodSync(file, 0o600); // also when the file was there before, readable by others

  return added;
}

if (import.meta.main) {
  const file = path.resolve(process.argv[2] ?? ".env");
  const added = writeComposeSecrets(file);
  console.log(
    added.length > 0
      ? `wrote ${added.join(", ")} to ${file} (random; keep the file private, git ignores it)`
      : `${file} already has ${COMPOSE_SECRETS.join(", ")}`,
  );
}
