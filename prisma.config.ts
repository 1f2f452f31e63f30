// Prisma 7 reads the connection URL from here, not from schema.prisma. Only `prisma generate` uses this
// file in this project (see prisma/scripts/ for migrations without Prisma's downloaded engine).
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: { url: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/jobs" },
});
