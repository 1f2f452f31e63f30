// `node scripts/check-compose.ts` (a CI step; no Docker engine needed): parses docker-compose.yml and
// the Dockerfile and checks them against the code, so a compose file the app refuses fails CI rather
// than a user's first `docker compose up`:
// - every variable set on a service built from this repo (plus the Dockerfile's ENV) is one that
//   src/config.ts reads, and that environment, with the secrets `npm run compose:secrets` writes,
//   passes the config schema (and the API's production rule);
// - no secret has a default: each comes from a `${NAME:?message}` that compose:secrets writes;
// - every published port is bound to 127.0.0.1 unless PUBLISH_ADDRESS says otherwise;
// - Redis asks for a password, PostgreSQL has one and does not trust every connection;
// - the npm scripts the services run and the files the Dockerfile copies exist.
import fs from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import {
  apiConfigProblems,
  CONFIG_VARIABLES,
  ConfigError,
  loadConfig,
  QUEUE_CONCURRENCY_PREFIX,
  QUEUE_RATE_LIMIT_PREFIX,
} from "../src/config.ts";
import { COMPOSE_SECRETS, secretValue } from "./compose-secrets.ts";

interface Service {
  build?: unknown;
  command?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: (string | number | { host_ip?: string; published?: string | number })[];
}

const SECRET_NAME = /PASSWORD|SECRET|API_KEY|TOKEN|REQUIREPASS/i;
const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$\$|\$([A-Za-z_][A-Za-z0-9_]*)/g;

/**
 * Compose's interpolation of one value: `${A}`, `$A`, `${A:-default}`, `${A-default}`, `${A:?error}`,
 * `${A?error}`, `$$`. A required variable missing from `vars` is reported through `missing`.
 */
export function interpolate(
  value: string,
  vars: Record<string, string>,
  missing: (name: string, message: string) => void = () => {},
): string {
  return value.replace(
    REFERENCE,
    (whole, name: string | undefined, op: string | undefined, arg: string | undefined, bare: string | undefined) => {
      if (whole === "$$") return "$";
      const key = (name ?? bare) as string;
      const v = vars[key];
      const unset = v === undefined;
      const empty = unset || v === "";
      switch (op) {
        case ":-":
          return empty ? (arg ?? "") : (v as string);
        case "-":
          return unset ? (arg ?? "") : (v as string);
        case ":?":
        case "?":
          if (op === ":?" ? empty : unset) {
            missing(key, arg ?? "");
            return "";
          }
          return v as string;
        default:
          return v ?? "";
      }
    },
  );
}

/** The names a value requires with `${NAME:?…}` / `${NAME?…}`. */
function requiredIn(value: string): string[] {
  return [...value.matchAll(REFERENCE)].filter((m) => m[2]?.endsWith("?")).map((m) => m[1] as string);
}

function environmentOf(service: Service): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((entry) => {
        const at = entry.indexOf("=");
        return at < 0 ? [entry, ""] : [entry.slice(0, at), entry.slice(at + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? "" : String(v)]));
}

/** `ENV A=1 B=2` and `ENV A 1` lines of a Dockerfile (last stage wins, as in the image). */
export function dockerfileEnv(dockerfile: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of dockerfile.replace(/\\\n/g, " ").split("\n")) {
    const line = raw.trim();
    if (/^FROM\s/i.test(line)) for (const k of Object.keys(env)) delete env[k];
    const m = /^ENV\s+(.*)$/i.exec(line);
    if (!m?.[1]) continue;
    const body = m[1].trim();
    if (!body.includes("=")) {
      const [k, ...rest] = body.split(/\s+/);
      if (k) env[k] = rest.join(" ");
      continue;
    }
    for (const pair of body.match(/[A-Za-z_][A-Za-z0-9_]*=("[^"]*"|\S*)/g) ?? []) {
      const at = pair.indexOf("=");
      env[pair.slice(0, at)] = pair.slice(at + 1).replace(/^"(.*)"$/, "$1");
    }
  }
  return env;
}

const known = (name: string) =>
  CONFIG_VARIABLES.includes(name) || name.startsWith(QUEUE_CONCURRENCY_PREFIX) || name.startsWith(QUEUE_RATE_LIMIT_PREFIX);

/** Every problem found, one line each; empty when the files agree with the code. */
export function checkCompose(files: { compose: string; dockerfile: string; packageJson: string; root: string }): string[] {
  const problems: string[] = [];
  const doc = parse(files.compose) as { services?: Record<string, Service> };
  const services = doc.services ?? {};
  const scripts = (JSON.parse(files.packageJson) as { scripts: Record<string, string> }).scripts;
  const imageEnv = dockerfileEnv(files.dockerfile);
  const secrets = Object.fromEntries(COMPOSE_SECRETS.map((name) => [name, secretValue()]));
  const required = new Set<string>();

  for (const name of Object.keys(imageEnv)) {
    if (!known(name)) problems.push(`Dockerfile: ENV ${name} is not a variable src/config.ts reads`);
  }
  for (const line of files.dockerfile.split("\n")) {
    const copy = /^COPY\s+(?!--from)(.+)\s+\S+$/i.exec(line.trim());
    for (const source of copy?.[1]?.split(/\s+/) ?? []) {
      if (!fs.existsSync(path.join(files.root, source))) problems.push(`Dockerfile: COPY ${source}: no such file in the repository`);
    }
  }
  const cmd = /^CMD\s+(\[.*\])\s*$/im.exec(files.dockerfile)?.[1];
  const commands: [string, string[]][] = cmd ? [["Dockerfile CMD", JSON.parse(cmd) as string[]]] : [];

  for (const [name, service] of Object.entries(services)) {
    const where = `docker-compose.yml: services.${name}`;
    const env = environmentOf(service);
    const command = typeof service.command === "string" ? service.command.split(/\s+/) : (service.command ?? []);
    if (service.build !== undefined && command.length > 0) commands.push([`${where}.command`, command]);

    // Secrets: no literal values and no defaults, only `${NAME:?message}`.
    // [where, the name it is set under (a variable, or the flag before a command argument), value]
    const values: [string, string, string][] = [
      ...Object.entries(env).map(([k, v]) => [`${where}.environment.${k}`, k, v] as [string, string, string]),
      ...command.map((arg, i) => {
        const flag = command[i - 1]?.startsWith("-") ? (command[i - 1] as string) : "";
        return [`${where}.command[${i}]`, flag, arg] as [string, string, string];
      }),
    ];
    for (const [at, key, value] of values) {
      for (const r of requiredIn(value)) required.add(r);
      const withDefaults = interpolate(value, {});
      const urlPassword = /^[a-z]+:\/\/[^/@]*:([^@/]+)@/i.exec(withDefaults)?.[1];
      if (SECRET_NAME.test(key) && withDefaults.trim() !== "") {
        problems.push(`${at}: a secret with a value or default in the file (${JSON.stringify(withDefaults)}); use \${NAME:?message}`);
      }
      if (urlPassword) problems.push(`${at}: a URL with a password in the file; take it from \${NAME:?message}`);
    }

    for (const [i, port] of (service.ports ?? []).entries()) {
      const published = typeof port === "object" ? (port.host_ip ?? "") : interpolate(String(port), {});
      if (!/^127\.0\.0\.1(:|$)/.test(published)) {
        problems.push(
          `${where}.ports[${i}]: ${JSON.stringify(port)} is published beyond loopback; use \${PUBLISH_ADDRESS:-127.0.0.1}:host:container`,
        );
      }
    }

    if (name === "redis" && !command.includes("--requirepass")) problems.push(`${where}: Redis without --requirepass`);
    if (name === "postgres") {
      if (!env.POSTGRES_PASSWORD) problems.push(`${where}: PostgreSQL without POSTGRES_PASSWORD`);
      if (/trust/i.test(env.POSTGRES_HOST_AUTH_METHOD ?? "")) problems.push(`${where}: POSTGRES_HOST_AUTH_METHOD=trust lets anyone in`);
    }

    if (service.build === undefined) continue;
    // A service built from this repo: its environment is the app's configuration.
    for (const key of Object.keys(env)) {
      if (!known(key)) problems.push(`${where}.environment.${key}: not a variable src/config.ts reads (a typo, or add it to the schema)`);
    }
    // As `docker compose up` with only .env from compose:secrets: required secrets set, defaults used.
    const given = Object.fromEntries(Object.entries(secrets).filter(([k]) => required.has(k)));
    const resolved = Object.fromEntries(Object.entries({ ...imageEnv, ...env }).map(([k, v]) => [k, interpolate(v, given)]));
    try {
      const config = loadConfig(resolved);
      if (command.includes("start")) for (const line of apiConfigProblems(config)) problems.push(`${where}: ${line}`);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      for (const line of err.problems) problems.push(`${where}: the app would refuse to start: ${line}`);
    }
  }

  for (const [at, command] of commands) {
    const script = command[0] === "npm" ? (command[1] === "run" ? command[2] : command[1]) : undefined;
    if (script && !scripts[script]) problems.push(`${at}: npm script "${script}" is not in package.json`);
  }
  for (const name of required) {
    if (!(COMPOSE_SECRETS as readonly string[]).includes(name)) {
      problems.push(`docker-compose.yml requires ${name}, which npm run compose:secrets does not write (add it to COMPOSE_SECRETS)`);
    }
  }
  return [...new Set(problems)];
}

if (import.meta.main) {
  const root = path.resolve(import.meta.dirname, "..");
  const read = (f: string) => fs.readFileSync(path.join(root, f), "utf8");
  const problems = checkCompose({
    compose: read("docker-compose.yml"),
    dockerfile: read("Dockerfile"),
    packageJson: read("package.json"),
    root,
  });
  for (const line of problems) console.error(line);
  if (problems.length > 0) process.exit(1);
  console.log("docker-compose.yml and the Dockerfile agree with src/config.ts and package.json");
}
