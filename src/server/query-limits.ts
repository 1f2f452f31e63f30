import {
  type ASTVisitor,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLCompositeType,
  GraphQLError,
  type GraphQLSchema,
  getNamedType,
  isCompositeType,
  isListType,
  isNonNullType,
  Kind,
  NoSchemaIntrospectionCustomRule,
  parse,
  type SelectionSetNode,
  type ValidationContext,
} from "graphql";
import type { Plugin } from "graphql-yoga";
import type { RequestLimits } from "../config.ts";

/**
 * What one GraphQL document may cost, checked before anything runs:
 * - tokens (graphql-js' own `maxTokens`, so the parser stops early) and bracket nesting (scanned
 *   before parsing: graphql-js parses recursively, and 5,000 nested `[` overflowed its stack);
 * - depth, aliases, directives and an estimated cost, as validation rules (cached with the document);
 * - suggestions ("Did you mean ...") removed from messages unless introspection is on.
 * The same checks as GraphQL Armor's envelop plugins (max-tokens, max-depth, max-aliases,
 * max-directives, cost-limit, block-field-suggestions), written against graphql-js directly: a few
 * dozen lines instead of six dependencies.
 */

/** A limit exceeded: HTTP 400 whatever the Accept header (`spec: false`), code QUERY_LIMIT_EXCEEDED. */
const badRequest = (message: string) => new GraphQLError(message, { extensions: { code: "QUERY_LIMIT_EXCEEDED", http: notSpecHttp(400) } });

/**
 * `extensions.http` whose `spec` stays false: Yoga marks parse errors `spec ||= true`, which makes
 * them HTTP 200 for `Accept: application/json` (the GraphQL-over-HTTP rule for syntax errors); a
 * limit exceeded is a 4xx whatever the client accepts.
 */
export function notSpecHttp(status: number): { status: number; spec: boolean } {
  const http = { status, spec: false };
  Object.defineProperty(http, "spec", { get: () => false, set: () => {}, enumerable: true });
  return http;
}

/**
 * Deepest nesting of `{`, `[` and `(` outside strings and comments; stops counting past `limit`.
 * Linear in the source, no allocation.
 */
export function bracketDepth(source: string, limit: number): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < source.length; i++) {
    const c = source.charCodeAt(i);
    if (c === 123 /* { */ || c === 91 /* [ */ || c === 40 /* ( */) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 125 || c === 93 || c === 41) {
      depth--;
    } else if (c === 35 /* # */) {
      while (i < source.length && source.charCodeAt(i) !== 10 && source.charCodeAt(i) !== 13) i++;
    } else if (c === 34 /* " */) {
      if (source.startsWith('"""', i)) {
        // A block string ends at the first `"""` not escaped as `\"""`.
        let end = source.indexOf('"""', i + 3);
        while (end > 0 && source.charCodeAt(end - 1) === 92) end = source.indexOf('"""', end + 3);
        i = end < 0 ? source.length : end + 2;
      } else {
        for (i++; i < source.length; i++) {
          const d = source.charCodeAt(i);
          if (d === 92 /* \ */) i++;
          else if (d === 34 || d === 10 || d === 13) break;
        }
      }
    }
  }
  return max;
}

/** Bracket nesting a document may have: selection depth plus argument objects, with room to spare. */
export const maxBracketDepth = (limits: RequestLimits) => limits.maxDepth + limits.maxDataDepth + 8;

/** graphql-js' parse with the token limit and the nesting check. */
export function limitedParse(limits: RequestLimits) {
  const maxNesting = maxBracketDepth(limits);
  return (source: string, options?: Parameters<typeof parse>[1]): DocumentNode => {
    const text = typeof source === "string" ? source : String(source);
    if (bracketDepth(text, maxNesting) > maxNesting) {
      throw badRequest(`Document nested too deeply: more than ${maxNesting} levels of brackets`);
    }
    try {
      return parse(text, { ...options, maxTokens: limits.maxTokens });
    } catch (err) {
      if (err instanceof GraphQLError && /tokens/.test(err.message)) {
        throw badRequest(`Document too long: more than ${limits.maxTokens} tokens (MAX_QUERY_TOKENS)`);
      }
      throw err;
    }
  };
}

/**
 * Extra cost of fields that do more than read an object already loaded (`Type.field`): each Redis
 * call or list read they make. Every other field costs 1 (a leaf) or 2 (an object).
 */
export const FIELD_COST: Record<string, number> = {
  "Queue.workers": 50,
  "Queue.counts": 10,
  "Queue.schedulers": 20,
  "Job.logs": 10,
  "Job.replays": 10,
  "Job.replayOf": 5,
  "Query.jobs": 20,
  "Query.failedJobAudits": 20,
  "Query.operatorActions": 20,
  "Mutation.bulkJobAction": 20,
  "BulkAction.sample": 20,
  "BulkAction.jobs": 20,
  "BulkAction.outcomeCounts": 5,
};

/** Each level down multiplies a field's cost by this: nested lists multiply the work. */
const DEPTH_FACTOR = 1.5;

interface Walk {
  depth: number;
  cost: number;
}

function fragmentsOf(doc: DocumentNode): Map<string, FragmentDefinitionNode> {
  const map = new Map<string, FragmentDefinitionNode>();
  for (const def of doc.definitions) if (def.kind === Kind.FRAGMENT_DEFINITION) map.set(def.name.value, def);
  return map;
}

/**
 * Depth and estimated cost of a selection set, fragments expanded (each fragment at most once per
 * path, so a cycle cannot loop: graphql-js reports cycles itself).
 */
/** What the walk of one operation shares. */
interface WalkContext {
  schema: GraphQLSchema;
  fragments: Map<string, FragmentDefinitionNode>;
  /** Fragments being expanded on the current path. */
  visiting: Set<string>;
  /** Past these the walk stops early: the operation is refused anyway. */
  stopAt: { depth: number; cost: number };
}

function walk(ctx: WalkContext, type: GraphQLCompositeType | undefined, set: SelectionSetNode, depth: number): Walk {
  const { schema, fragments, visiting, stopAt } = ctx;
  let maxDepth = depth;
  let cost = 0;
  for (const selection of set.selections) {
    if (maxDepth > stopAt.depth || cost > stopAt.cost) break;
    if (selection.kind === Kind.FIELD) {
      const r = fieldWalk(ctx, type, selection, depth);
      maxDepth = Math.max(maxDepth, r.depth);
      cost += r.cost;
    } else {
      let fragment: { typeCondition?: { name: { value: string } } | undefined; selectionSet: SelectionSetNode } | undefined;
      if (selection.kind === Kind.INLINE_FRAGMENT) fragment = selection;
      else if (!visiting.has(selection.name.value)) fragment = fragments.get(selection.name.value);
      if (!fragment) continue;
      const name = selection.kind === Kind.FRAGMENT_SPREAD ? selection.name.value : undefined;
      if (name) visiting.add(name);
      const condition = fragment.typeCondition ? schema.getType(fragment.typeCondition.name.value) : type;
      const r = walk(ctx, isCompositeType(condition) ? condition : type, fragment.selectionSet, depth);
      if (name) visiting.delete(name);
      maxDepth = Math.max(maxDepth, r.depth);
      cost += r.cost;
    }
  }
  return { depth: maxDepth, cost };
}

function fieldWalk(ctx: WalkContext, parent: GraphQLCompositeType | undefined, field: FieldNode, depth: number): Walk {
  const name = field.name.value;
  const def = parent && "getFields" in parent ? parent.getFields()[name] : undefined;
  let fieldType = def?.type;
  let isList = false;
  while (fieldType && (isNonNullType(fieldType) || isListType(fieldType))) {
    if (isListType(fieldType)) isList = true;
    fieldType = fieldType.ofType;
  }
  const named = def ? getNamedType(def.type) : undefined;
  const own = (field.selectionSet ? 2 : 1) + (parent ? (FIELD_COST[`${parent.name}.${name}`] ?? 0) : 0) + (isList ? 1 : 0);
  const cost = own * DEPTH_FACTOR ** depth;
  if (!field.selectionSet || name.startsWith("__")) return { depth: depth + 1, cost };
  const inner = walk(ctx, isCompositeType(named) ? named : undefined, field.selectionSet, depth + 1);
  return { depth: inner.depth, cost: cost + inner.cost };
}

/** Depth and cost of each operation; one error per limit exceeded. */
export function depthAndCostRule(limits: RequestLimits) {
  return function QueryDepthAndCost(context: ValidationContext): ASTVisitor {
    const schema = context.getSchema();
    const doc = context.getDocument();
    const fragments = fragmentsOf(doc);
    return {
      OperationDefinition(node) {
        const root =
          node.operation === "query"
            ? schema.getQueryType()
            : node.operation === "mutation"
              ? schema.getMutationType()
              : schema.getSubscriptionType();
        const ctx = { schema, fragments, visiting: new Set<string>(), stopAt: { depth: limits.maxDepth, cost: limits.maxCost } };
        const r = walk(ctx, root ?? undefined, node.selectionSet, 0);
        if (r.depth > limits.maxDepth) {
          context.reportError(badRequest(`Query too deep: more than ${limits.maxDepth} levels of fields (MAX_QUERY_DEPTH)`));
        } else if (r.cost > limits.maxCost) {
          context.reportError(badRequest(`Query too costly: estimated cost above ${limits.maxCost} (MAX_QUERY_COST)`));
        }
        return false;
      },
    };
  };
}

/** Aliases and directives in the whole document. */
export function aliasAndDirectiveRule(limits: RequestLimits) {
  return function AliasAndDirectiveCount(context: ValidationContext): ASTVisitor {
    let aliases = 0;
    let directives = 0;
    return {
      Field(node) {
        if (node.alias && ++aliases === limits.maxAliases + 1) {
          context.reportError(badRequest(`Too many aliases: more than ${limits.maxAliases} (MAX_QUERY_ALIASES)`));
        }
      },
      Directive() {
        if (++directives === limits.maxDirectives + 1) {
          context.reportError(badRequest(`Too many directives: more than ${limits.maxDirectives} (MAX_QUERY_DIRECTIVES)`));
        }
      },
    };
  };
}

const SUGGESTION = / ?Did you mean .*$/s;

/** A message without graphql-js' "Did you mean ..." (which lists names of the schema). */
export function withoutSuggestions<E extends Error>(error: E): E | GraphQLError {
  if (!(error instanceof GraphQLError) || !SUGGESTION.test(error.message)) return error;
  return new GraphQLError(error.message.replace(SUGGESTION, ""), {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions: error.extensions,
  });
}

/**
 * Entries held until their estimated size adds up to `maxBytes`, least recently used out first.
 * A parsed document is estimated at `bytesPerChar` per character of its source (measured with
 * graphql-js 16: 57 bytes of heap per source character for a run of trivial fields, 82 for a
 * realistic query with arguments and nested selections; see the README).
 */
export class ByteBoundedCache<T> {
  private readonly entries = new Map<string, { value: T; bytes: number }>();
  private bytes = 0;
  private readonly maxBytes: number;
  private readonly bytesPerChar: number;

  constructor(maxBytes: number, bytesPerChar: number) {
    this.maxBytes = maxBytes;
    this.bytesPerChar = bytesPerChar;
  }

  get size(): number {
    return this.bytes;
  }

  get(key: string): T | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.value;
  }

  set(key: string, value: T): void {
    const bytes = key.length * (2 + this.bytesPerChar);
    // One entry may take at most an eighth of the budget: a few huge documents must not evict the rest.
    if (bytes > this.maxBytes / 8) return;
    const old = this.entries.get(key);
    if (old) {
      this.bytes -= old.bytes;
      this.entries.delete(key);
    }
    this.entries.set(key, { value, bytes });
    this.bytes += bytes;
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= e.bytes;
    }
  }
}

/** Heap bytes per source character assumed for a parsed document (see ByteBoundedCache). */
export const DOCUMENT_BYTES_PER_CHAR = 80;

/**
 * Yoga's `parserAndValidationCache` with both caches bounded by bytes, and its validation cache off:
 * `queryLimitsPlugin` does that part (`cacheValidation`).
 */
export function boundedParserCache(limits: RequestLimits) {
  if (limits.parserCacheBytes === 0) return false as const;
  return {
    documentCache: new ByteBoundedCache<DocumentNode>(limits.parserCacheBytes, DOCUMENT_BYTES_PER_CHAR),
    errorCache: new ByteBoundedCache<unknown>(limits.parserCacheBytes / 4, 2),
    validationCache: false,
  };
}

/**
 * The Yoga plugin: limited parser, the validation rules (with `introspection: false`, graphql-js'
 * NoSchemaIntrospectionCustomRule too), and (with introspection off) no suggestions.
 *
 * `cacheValidation`: validation results are kept per parsed document (the parser cache hands the
 * same document object for the same text, so a known document is validated once, its limits
 * included). This replaces Yoga's own validation cache, which keys each lookup by the names of every
 * validation rule joined into one string (about 30 of them, 800 characters, built on every
 * request); the rules here never change for an app, so the document alone is the key. The result
 * is kept as the hooks leave it (suggestions removed); no plugin after this one adds a validation
 * hook of its own.
 */
export function queryLimitsPlugin(
  limits: RequestLimits,
  options: { suggestions: boolean; introspection?: boolean; cacheValidation?: boolean },
): Plugin {
  const parseLimited = limitedParse(limits);
  const rules = [
    ...(options.introspection === false ? [NoSchemaIntrospectionCustomRule] : []),
    depthAndCostRule(limits),
    aliasAndDirectiveRule(limits),
  ];
  const results = options.cacheValidation ? new WeakMap<DocumentNode, readonly Error[]>() : null;
  // The hooks' answers made once, not per request.
  const afterValidate: OnValidateDone | undefined = options.suggestions
    ? undefined
    : ({ result, setResult }) => {
        if (result.length > 0) setResult(result.map(withoutSuggestions));
      };
  const afterExecute: OnExecuteAfter | undefined = options.suggestions
    ? undefined
    : {
        onExecuteDone({ result, setResult }) {
          if ("errors" in result && result.errors?.length) setResult({ ...result, errors: result.errors.map(withoutSuggestions) });
        },
      };
  return {
    onParse({ setParseFn }) {
      setParseFn(parseLimited as typeof parse);
    },
    onValidate({ params, addValidationRule, setResult }) {
      const document = params.documentAST;
      const known = results?.get(document);
      if (known !== undefined) {
        setResult(known);
        return;
      }
      for (const rule of rules) addValidationRule(rule);
      if (!results) return afterValidate;
      return (payload) => {
        afterValidate?.(payload);
        results.set(document, payload.result);
      };
    },
    onExecute() {
      return afterExecute;
    },
  };
}

type OnValidateDone = Extract<ReturnType<NonNullable<Plugin["onValidate"]>>, (...args: never[]) => unknown>;
type OnExecuteAfter = Extract<ReturnType<NonNullable<Plugin["onExecute"]>>, { onExecuteDone?: unknown }>;
