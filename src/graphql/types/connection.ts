import type { ObjectRef } from "@pothos/core";
import type { Page } from "../../jobs/history/index.ts";
import { builder } from "../builder.ts";

export const PageInfoRef = builder.objectRef<Pick<Page<unknown>, "hasNextPage" | "endCursor">>("PageInfo").implement({
  fields: (t) => ({
    hasNextPage: t.exposeBoolean("hasNextPage"),
    endCursor: t.exposeString("endCursor", {
      nullable: true,
      description: "Pass as `after` for the next page; null on an empty page",
    }),
  }),
});

/**
 * `<Name>Edge { cursor node }` and `<Name>Connection { edges pageInfo }` over a domain Page (Relay
 * forward pagination, as the API contract spells it).
 */
// biome-ignore lint/suspicious/noExplicitAny: Pothos' SchemaTypes of this builder, inferred where it is used
export function connectionOf<T extends object>(name: string, node: ObjectRef<any, T>) {
  const EdgeRef = builder.objectRef<{ cursor: string; node: T }>(`${name}Edge`).implement({
    fields: (t) => ({
      cursor: t.exposeString("cursor"),
      // The node type is the ObjectRef above, whose shape is exactly T.
      node: t.field({ type: node, resolve: (e) => e.node as never }),
    }),
  });
  return builder.objectRef<Page<T>>(`${name}Connection`).implement({
    fields: (t) => ({
      edges: t.field({ type: [EdgeRef], resolve: (p) => p.edges }),
      pageInfo: t.field({ type: PageInfoRef, resolve: (p) => p }),
    }),
  });
}
