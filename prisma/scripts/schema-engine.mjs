// Loads @prisma/schema-engine-wasm on plain Node (>=20) and binds it to @prisma/adapter-pg.

import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PrismaPg } from "@prisma/adapter-pg";
import { bindMigrationAwareSqlAdapterFactory } from "@prisma/driver-adapter-utils";
import * as bg from "@prisma/schema-engine-wasm/schema_engine_bg";
import pg from "pg";

// The package is built for bundlers (`import * as wasm from "./x.wasm"`), so instantiate by hand.
const wasmFile =
  process.env.SCHEMA_ENGINE_WASM ??
  path.join(path.dirname(fileURLToPath(import.meta.resolve("@prisma/schema-engine-wasm"))), "schema_engine_bg.wasm");
const instance = new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(wasmFile)), { "./schema_engine_bg.js": bg });
bg.__wbg_set_wasm(instance.exports);
instance.exports.__wbindgen_start();

export const schemaPath = path.resolve(process.env.PRISMA_SCHEMA ?? "prisma/schema.prisma");
export const migrationsDir = path.resolve(process.env.PRISMA_MIGRATIONS ?? "prisma/migrations");
export const filters = { externalTables: [], externalEnums: [] };
export const schemaFiles = () => ({ files: [{ path: schemaPath, content: fs.readFileSync(schemaPath, "utf8") }] });

// adapter-pg's executeScript() splits on ';' and runs the pieces on a pool (breaks $$-bodies, string
// literals with ';', and atomicity). Send the whole script as ONE simple-protocol query like the CLI does.
const wholeScript = (a) => {
  a.executeScript = async (sql) => {
    try {
      await a.underlyingDriver().query(sql);
    } catch (e) {
      a.onError(e);
    }
  };
  return a;
};

// adapter-pg 7.10 cannot map Postgres' internal "char" type (OID 18, used all over pg_catalog), so
// every introspection fails with "Column type 'char' could not be deserialized". Report it as text (25).
class CharAsTextClient extends pg.Client {
  query(config, values, cb) {
    const fix = (res) => {
      for (const r of [res].flat()) for (const f of r?.fields ?? []) if (f.dataTypeID === 18) f.dataTypeID = 25;
      return res;
    };
    if (typeof values === "function") [values, cb] = [undefined, values];
    if (typeof cb === "function") return super.query(config, values, (err, res) => cb(err, err ? res : fix(res)));
    const r = super.query(config, values);
    return typeof r?.then === "function" ? r.then(fix) : r;
  }
}
const pgAdapter = (url) => new PrismaPg({ connectionString: url, Client: CharAsTextClient });

export async function openEngine(url = process.env.DATABASE_URL, shadowUrl = process.env.SHADOW_DATABASE_URL) {
  if (!url) throw new Error("DATABASE_URL is not set");
  const main = pgAdapter(url);
  // NOT main.connectToShadowDb(): it spreads {connectionString, database}, and pg lets connectionString win,
  // so its "shadow" pool points at the MAIN database. Create/drop a throwaway database ourselves instead.
  const connectToShadowDb = async () => {
    if (shadowUrl) {
      // explicit shadow DB (e.g. `prisma dev`, whose PGlite ignores the database name): wipe it
      if (shadowUrl === url) throw new Error("SHADOW_DATABASE_URL must differ from DATABASE_URL");
      const shadow = await pgAdapter(shadowUrl).connect();
      await shadow.underlyingDriver().query("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;");
      return shadow;
    }
    const admin = await main.connect();
    const name = `prisma_migrate_shadow_db_${randomUUID()}`;
    await admin.executeScript(`CREATE DATABASE "${name}"`);
    const u = new URL(url);
    u.pathname = `/${name}`;
    const shadow = await pgAdapter(u.toString()).connect();
    const dispose = shadow.dispose.bind(shadow);
    shadow.dispose = async () => {
      await dispose();
      await admin.executeScript(`DROP DATABASE IF EXISTS "${name}"`);
      await admin.dispose();
    };
    return shadow;
  };
  const factory = {
    provider: main.provider,
    adapterName: main.adapterName,
    connect: async () => wholeScript(await main.connect()),
    connectToShadowDb: async () => wholeScript(await connectToShadowDb()),
  };
  const logs = [];
  const engine = await bg.SchemaEngine.new(
    { datamodels: [[schemaPath, fs.readFileSync(schemaPath, "utf8")]] },
    (msg) => {
      logs.push(msg);
      if (process.env.SCHEMA_ENGINE_DEBUG) console.error("[schema-engine]", msg);
    },
    bindMigrationAwareSqlAdapterFactory(factory),
  );
  return { engine, logs, version: bg.version() };
}

// Same shape the Prisma CLI builds in `listMigrations()` (cli.js): sorted dirs, migration.sql content as JsResult.
export function migrationList(shadowDbInitScript = "") {
  const lockPath = path.join(migrationsDir, "migration_lock.toml");
  const dirs = fs.existsSync(migrationsDir)
    ? fs
        .readdirSync(migrationsDir, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name)
    : [];
  return {
    baseDir: migrationsDir,
    lockfile: { path: "migration_lock.toml", content: fs.existsSync(lockPath) ? fs.readFileSync(lockPath, "utf8") : null },
    shadowDbInitScript,
    migrationDirectories: dirs
      .sort((a, b) => a.localeCompare(b))
      .map((name) => {
        let content;
        try {
          content = { tag: "ok", value: fs.readFileSync(path.join(migrationsDir, name, "migration.sql"), "utf8") };
        } catch (e) {
          content = { tag: "error", value: e.message };
        }
        return { path: name, migrationFile: { path: "migration.sql", content } };
      }),
  };
}
