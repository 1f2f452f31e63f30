# One image for both processes: `npm start` (API, the default) or `npm run worker`.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json prisma.config.ts ./
COPY prisma ./prisma
# Install with dev dependencies to generate the Prisma client, then drop them.
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && PRISMA_SCHEMA_ENGINE_BINARY=/bin/false npx prisma generate --no-hints \
 && npm prune --omit=dev --ignore-scripts

FROM node:24-bookworm-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=4000 WORKER_PORT=4001 REPORT_DIR=/var/lib/job-reports
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY prisma ./prisma
COPY src ./src
COPY workers ./workers
COPY scripts ./scripts
COPY --from=build /app/src/generated ./src/generated
# report.csv writes here; mount a volume on it to keep reports across containers.
RUN mkdir -p /var/lib/job-reports && chown node:node /var/lib/job-reports
USER node
EXPOSE 4000 4001
CMD ["npm", "start"]
