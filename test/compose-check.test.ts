// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these strings are compose interpolation, not templates
// scripts/check-compose.ts: the CI check that docker-compose.yml and the Dockerfile agree with
// src/config.ts. It passes on the files as committed and fails on each kind of mistake it exists for,
// starting with the one that shipped: an ADMIN_API_KEY default the 16-character rule refuses.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { checkCompose, dockerfileEnv, interpolate } from "../scripts/check-compose.ts";
import { COMPOSE_SECRETS, writeComposeSecrets } from "../scripts/compose-secrets.ts";
import { loadConfig } from "../src/config.ts";

const root = path.resolve(import.meta.dirname, "..");
const read = (f: string) => fs.readFileSync(path.join(root, f), "utf8");
const files = { compose: read("docker-compose.yml"), dockerfile: read("Dockerfile"), packageJson: read("package.json"), root };
const check = (changes: Partial<typeof files>) => checkCompose({ ...files, ...changes });

describe("check-compose", () => {
  it("passes on the committed docker-compose.yml and Dockerfile", () => {
    expect(checkCompose(files)).toEqual([]);
  });

  it("fails on the ADMIN_API_KEY default that made the API container exit", () => {
    const compose = files.compose.replace(/ADMIN_API_KEY: \$\{ADMIN_API_KEY:\?[^}]*\}/, "ADMIN_API_KEY: ${ADMIN_API_KEY:-change-me}");
    expect(compose).not.toBe(files.compose);
    expect(check({ compose })).toEqual([
      'docker-compose.yml: services.api.environment.ADMIN_API_KEY: a secret with a value or default in the file ("change-me"); use ${NAME:?message}',
      "docker-compose.yml: services.api: the app would refuse to start: ADMIN_API_KEY: ADMIN_API_KEY must be at least 16 characters",
    ]);
  });

  it("fails on a variable the config does not read, in compose or in the Dockerfile", () => {
    const compose = files.compose.replace('SHUTDOWN_GRACE_MS: "30000"', 'SHUTDOWN_GRACE: "30000"');
    expect(check({ compose })).toEqual([
      "docker-compose.yml: services.worker.environment.SHUTDOWN_GRACE: not a variable src/config.ts reads (a typo, or add it to the schema)",
    ]);
    const dockerfile = files.dockerfile.replace("ENV NODE_ENV=production", "ENV NODE_ENV=production WORKERPORT=4001");
    expect(check({ dockerfile })).toEqual(["Dockerfile: ENV WORKERPORT is not a variable src/config.ts reads"]);
  });

  it("fails on a value the config refuses (checked with the Dockerfile's ENV underneath)", () => {
    const compose = files.compose.replace('SHUTDOWN_GRACE_MS: "30000"', 'SHUTDOWN_GRACE_MS: "30s"');
    expect(check({ compose })).toEqual([
      'docker-compose.yml: services.worker: the app would refuse to start: SHUTDOWN_GRACE_MS: SHUTDOWN_GRACE_MS must be a positive integer (got "30s")',
    ]);
    const dockerfile = files.dockerfile.replace("PORT=4000", "PORT=http");
    expect(check({ dockerfile }).join("\n")).toContain("PORT: PORT must be a port number (0-65535)");
  });

  it("fails on a password written into the file, a Redis without one, trust auth and ports beyond loopback", () => {
    const compose = files.compose
      .replace(/POSTGRES_PASSWORD: \$\{POSTGRES_PASSWORD:\?[^}]*\}/, "POSTGRES_HOST_AUTH_METHOD: trust")
      .replace(/ {6}- --requirepass\n {6}- \$\{REDIS_PASSWORD:\?[^}]*\}\n/, "")
      .replace('"${PUBLISH_ADDRESS:-127.0.0.1}:4000:4000"', '"4000:4000"')
      .replace(/redis:\/\/:\$\{REDIS_PASSWORD:\?[^}]*\}@redis/, "redis://:hunter2hunter2@redis");
    expect(check({ compose })).toEqual([
      "docker-compose.yml: services.redis: Redis without --requirepass",
      "docker-compose.yml: services.postgres: PostgreSQL without POSTGRES_PASSWORD",
      "docker-compose.yml: services.postgres: POSTGRES_HOST_AUTH_METHOD=trust lets anyone in",
      "docker-compose.yml: services.api.environment.REDIS_URL: a URL with a password in the file; take it from ${NAME:?message}",
      'docker-compose.yml: services.api.ports[0]: "4000:4000" is published beyond loopback; use ${PUBLISH_ADDRESS:-127.0.0.1}:host:container',
    ]);
  });

  it("fails on a required secret compose:secrets does not write, and on a missing npm script", () => {
    const compose = files.compose
      .replace('DEMO_QUEUE: "true"', "METRICS_TOKEN: ${METRICS_TOKEN:?set it}")
      .replace('"npm", "run", "worker"', '"npm", "run", "workers"');
    expect(check({ compose })).toEqual([
      'docker-compose.yml: services.worker.command: npm script "workers" is not in package.json',
      "docker-compose.yml requires METRICS_TOKEN, which npm run compose:secrets does not write (add it to COMPOSE_SECRETS)",
    ]);
  });

  it("fails when the Dockerfile copies a file that is not there", () => {
    expect(check({ dockerfile: files.dockerfile.replace("COPY workers ./workers", "COPY worker ./workers") })).toEqual([
      "Dockerfile: COPY worker: no such file in the repository",
    ]);
  });
});

describe("compose interpolation", () => {
  it("follows compose's rules for defaults, required values and $$", () => {
    const missing: string[] = [];
    const vars = { SET: "v", EMPTY: "" };
    const out = interpolate("$SET ${SET} ${EMPTY:-d1} ${EMPTY-d2} ${UNSET-d3} ${UNSET:?need it} $$HOME", vars, (n, m) =>
      missing.push(`${n}: ${m}`),
    );
    expect(out).toBe("v v d1  d3  $HOME");
    expect(missing).toEqual(["UNSET: need it"]);
  });

  it("reads the Dockerfile's ENV of the last stage", () => {
    expect(dockerfileEnv('FROM a\nENV X=1\nFROM b\nENV A=1 B="two words" \\\n  C=3\nENV D 4 5\n')).toEqual({
      A: "1",
      B: "two words",
      C: "3",
      D: "4 5",
    });
  });
});

describe("npm run compose:secrets", () => {
  it("writes every required secret once, keeps what is there, and its values pass the config", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "compose-secrets-"));
    try {
      const file = path.join(dir, ".env");
      fs.writeFileSync(file, "ADMIN_API_KEY=mine-and-long-enough\nOTHER=1");
      expect(writeComposeSecrets(file)).toEqual(COMPOSE_SECRETS.filter((n) => n !== "ADMIN_API_KEY"));
      expect(writeComposeSecrets(file)).toEqual([]);
      const env = Object.fromEntries(
        fs
          .readFileSync(file, "utf8")
          .trim()
          .split("\n")
          .map((l) => l.split("=") as [string, string]),
      );
      expect(env.ADMIN_API_KEY).toBe("mine-and-long-enough");
      expect(env.OTHER).toBe("1");
      expect((fs.statSync(file).mode & 0o077) === 0).toBe(true);
      const config = loadConfig({ ADMIN_API_KEY: env.REDIS_PASSWORD, WEBHOOK_SECRET: env.WEBHOOK_SECRET });
      expect(config.adminApiKey).toBe(env.REDIS_PASSWORD);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
