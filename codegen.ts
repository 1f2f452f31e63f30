import type { CodegenConfig } from "@graphql-codegen/cli";

// `npm run codegen`: a typed client from the committed schema.graphql and the operations in src/client.
const config: CodegenConfig = {
  schema: "schema.graphql",
  documents: ["src/client/**/*.graphql"],
  // ESM: relative imports with their extension, as Node and this tsconfig require.
  emitLegacyCommonJSImports: false,
  generates: {
    "src/client/generated/": {
      preset: "client",
      config: {
        scalars: { DateTime: "string", JSON: "unknown" },
        enumsAsTypes: true,
        useTypeImports: true,
      },
      // persistedDocuments: each document carries its sha256 (`__meta__.hash`) and persisted-documents.json
      // maps hash -> text: the manifest PERSISTED_OPERATIONS=only runs (src/server/persisted-operations.ts).
      presetConfig: { fragmentMasking: false, persistedDocuments: { mode: "embedHashInDocument", hashAlgorithm: "sha256" } },
    },
  },
};

export default config;
