import { z } from "zod";
import type { Db } from "../infra/prisma.ts";
import { NotFoundError, ValidationError } from "../jobs/errors.ts";
import { displayPrefix, generateApiKeySecret, hashApiKeySecret } from "./api-key-secret.ts";
import { SCOPES, type Scope } from "./principal.ts";

/** An API key as listed: never its secret. */
export interface ApiKeyView {
  id: string;
  name: string;
  /** `jca_` and the secret's first 8 characters. */
  prefix: string;
  scopes: Scope[];
  tenant: string | null;
  /** null: every queue. */
  queues: string[] | null;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export interface CreateApiKeyInput {
  name: string;
  scopes: readonly string[];
  tenant?: string | null;
  queues?: readonly string[] | null;
}

/** Names the product uses as actors of its own; a key may not take one. */
const RESERVED_NAMES = new Set(["admin", "anonymous", "job-token"]);
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.@:-]*$/;
const TENANT = /^[A-Za-z0-9][A-Za-z0-9_.@:-]*$/;

const inputSchema = z.object({
  name: z
    .string()
    .min(1, "must not be empty")
    .max(100, "must be at most 100 characters")
    .regex(NAME, "may contain letters, digits and _ . @ : - (starting with a letter or digit)")
    .refine((n) => !RESERVED_NAMES.has(n.toLowerCase()), "is reserved (admin, anonymous, job-token)"),
  scopes: z
    .array(z.enum(SCOPES, { error: `must be one of ${SCOPES.join(", ")}` }))
    .min(1, "must list at least one scope")
    .max(SCOPES.length * 2, "lists too many scopes"),
  tenant: z
    .string()
    .min(1, "must not be empty (omit it for a key not bound to a tenant)")
    .max(200, "must be at most 200 characters")
    .regex(TENANT, "may contain letters, digits and _ . @ : - (starting with a letter or digit)")
    .nullish(),
  queues: z
    .array(z.string().min(1).max(200))
    .min(1, "must list at least one queue (omit it for every queue)")
    .max(100, "lists more than 100 queues")
    .nullish(),
});

type Row = {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  tenant: string | null;
  queues: string[];
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
};

function view(row: Row): ApiKeyView {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes.filter((s): s is Scope => (SCOPES as readonly string[]).includes(s)),
    tenant: row.tenant,
    queues: row.queues.length > 0 ? row.queues : null,
    createdAt: row.createdAt,
    lastUsedAt: row.lastUsedAt,
    revokedAt: row.revokedAt,
  };
}

const SELECT = {
  id: true,
  name: true,
  prefix: true,
  scopes: true,
  tenant: true,
  queues: true,
  createdAt: true,
  lastUsedAt: true,
  revokedAt: true,
} as const;

/** API keys in PostgreSQL (`api_key`): the secret's SHA-256 only, never the secret. */
export class ApiKeyStore {
  private readonly db: Db;
  /** Checks a queue name given in `queues`; unknown ones are refused. */
  private readonly hasQueue: (queue: string) => boolean;

  constructor(db: Db, hasQueue: (queue: string) => boolean) {
    this.db = db;
    this.hasQueue = hasQueue;
  }

  /** Creates a key; the secret is returned here once and stored only as its hash. */
  async create(input: CreateApiKeyInput): Promise<{ apiKey: ApiKeyView; secret: string }> {
    const parsed = inputSchema.safeParse(input);
    if (!parsed.success) {
      throw ValidationError.of(parsed.error.issues.map((i) => ({ path: i.path.map(String), message: i.message })));
    }
    const { name, scopes, tenant, queues } = parsed.data;
    const unknown = (queues ?? []).filter((q) => !this.hasQueue(q));
    if (unknown.length > 0) throw ValidationError.at(["queues"], `unknown queues: ${unknown.join(", ")}`);
    const secret = generateApiKeySecret();
    try {
      const row = await this.db.apiKey.create({
        data: {
          name,
          prefix: displayPrefix(secret),
          secretHash: hashApiKeySecret(secret),
          scopes: [...new Set(scopes)],
          tenant: tenant ?? null,
          queues: queues ? [...new Set(queues)] : [],
        },
        select: SELECT,
      });
      return { apiKey: view(row), secret };
    } catch (err) {
      if ((err as { code?: string }).code === "P2002") throw ValidationError.at(["name"], `a key named "${name}" exists already`);
      throw err;
    }
  }

  /** Every key, newest first, revoked ones included. */
  async list(): Promise<ApiKeyView[]> {
    const rows = await this.db.apiKey.findMany({ select: SELECT, orderBy: [{ createdAt: "desc" }, { id: "desc" }] });
    return rows.map(view);
  }

  /** Revokes a key by id or by name (idempotent: revoking again keeps the first time). */
  async revoke(idOrName: string): Promise<ApiKeyView> {
    const isUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(idOrName);
    const where = isUuid ? { id: idOrName } : { name: idOrName };
    const found = await this.db.apiKey.findUnique({ where, select: SELECT });
    if (!found) throw new NotFoundError(`No API key "${idOrName}"`);
    if (found.revokedAt) return view(found);
    const row = await this.db.apiKey.update({ where: { id: found.id }, data: { revokedAt: new Date() }, select: SELECT });
    return view(row);
  }

  /** The key with this secret hash, revoked or not; null when there is none. */
  async findByHash(secretHash: string): Promise<ApiKeyView | null> {
    const row = await this.db.apiKey.findUnique({ where: { secretHash }, select: SELECT });
    return row ? view(row) : null;
  }

  async findById(id: string): Promise<ApiKeyView | null> {
    const row = await this.db.apiKey.findUnique({ where: { id }, select: SELECT });
    return row ? view(row) : null;
  }

  /** True while at least one key is not revoked (auth is then never open). */
  async anyActive(): Promise<boolean> {
    return (await this.db.apiKey.count({ where: { revokedAt: null }, take: 1 })) > 0;
  }

  /** lastUsedAt = now, unless it was set less than a minute ago (one cheap UPDATE at most). */
  async touch(id: string): Promise<void> {
    await this.db.$executeRaw`
      UPDATE api_key SET last_used_at = now()
      WHERE id = ${id}::uuid AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`;
  }
}
