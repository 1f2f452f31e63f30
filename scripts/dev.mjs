// `npm run dev`: checks the Node version (plain JavaScript, so an old Node gets a sentence rather
// than a loader error), then hands over to the TypeScript bootstrap in dev-bootstrap.ts.
import "./preflight.mjs";

await import("./dev-bootstrap.ts");
