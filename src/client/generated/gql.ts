/* eslint-disable */
import * as types from './graphql.js';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "fragment JobSummary on Job {\n  id\n  queue\n  name\n  state\n  progress\n  failedReason\n  createdAt\n  replayOf {\n    id\n  }\n}\n\nquery RecentJobs($filter: JobFilter, $first: Int) {\n  jobs(filter: $filter, first: $first) {\n    edges {\n      node {\n        ...JobSummary\n      }\n    }\n  }\n}\n\nquery RecentFailures($queue: String, $first: Int) {\n  failedJobAudits(queue: $queue, first: $first) {\n    edges {\n      node {\n        id\n        jobId\n        queue\n        jobName\n        failedReason\n        failedAt\n        attemptsMade\n      }\n    }\n  }\n}\n\nmutation ReplayJob($queue: String!, $id: ID!) {\n  replayJob(queue: $queue, id: $id) {\n    __typename\n    ... on JobActionSuccess {\n      job {\n        ...JobSummary\n      }\n    }\n    ... on UserError {\n      code\n      message\n    }\n  }\n}": typeof types.JobSummaryFragmentDoc,
    "mutation EnqueueJob($input: EnqueueJobInput!) {\n  enqueueJob(input: $input) {\n    __typename\n    ... on EnqueueJobSuccess {\n      job {\n        id\n        queue\n        name\n        state\n        createdAt\n      }\n    }\n    ... on UserError {\n      code\n      message\n    }\n    ... on ValidationError {\n      issues {\n        path\n        message\n      }\n    }\n  }\n}\n\nquery Job($queue: String!, $id: ID!) {\n  job(queue: $queue, id: $id) {\n    id\n    queue\n    name\n    data\n    state\n    progress\n    attemptsMade\n    maxAttempts\n    createdAt\n    startedAt\n    finishedAt\n    result\n    failedReason\n  }\n}\n\nsubscription JobEvents($queue: String!, $id: ID!, $since: String) {\n  jobEvents(queue: $queue, id: $id, since: $since) {\n    id\n    type\n    at\n    progress\n    failedReason\n    resync\n    job {\n      id\n      state\n      progress\n      result\n      failedReason\n    }\n  }\n}": typeof types.EnqueueJobDocument,
};
const documents: Documents = {
    "fragment JobSummary on Job {\n  id\n  queue\n  name\n  state\n  progress\n  failedReason\n  createdAt\n  replayOf {\n    id\n  }\n}\n\nquery RecentJobs($filter: JobFilter, $first: Int) {\n  jobs(filter: $filter, first: $first) {\n    edges {\n      node {\n        ...JobSummary\n      }\n    }\n  }\n}\n\nquery RecentFailures($queue: String, $first: Int) {\n  failedJobAudits(queue: $queue, first: $first) {\n    edges {\n      node {\n        id\n        jobId\n        queue\n        jobName\n        failedReason\n        failedAt\n        attemptsMade\n      }\n    }\n  }\n}\n\nmutation ReplayJob($queue: String!, $id: ID!) {\n  replayJob(queue: $queue, id: $id) {\n    __typename\n    ... on JobActionSuccess {\n      job {\n        ...JobSummary\n      }\n    }\n    ... on UserError {\n      code\n      message\n    }\n  }\n}": types.JobSummaryFragmentDoc,
    "mutation EnqueueJob($input: EnqueueJobInput!) {\n  enqueueJob(input: $input) {\n    __typename\n    ... on EnqueueJobSuccess {\n      job {\n        id\n        queue\n        name\n        state\n        createdAt\n      }\n    }\n    ... on UserError {\n      code\n      message\n    }\n    ... on ValidationError {\n      issues {\n        path\n        message\n      }\n    }\n  }\n}\n\nquery Job($queue: String!, $id: ID!) {\n  job(queue: $queue, id: $id) {\n    id\n    queue\n    name\n    data\n    state\n    progress\n    attemptsMade\n    maxAttempts\n    createdAt\n    startedAt\n    finishedAt\n    result\n    failedReason\n  }\n}\n\nsubscription JobEvents($queue: String!, $id: ID!, $since: String) {\n  jobEvents(queue: $queue, id: $id, since: $since) {\n    id\n    type\n    at\n    progress\n    failedReason\n    resync\n    job {\n      id\n      state\n      progress\n      result\n      failedReason\n    }\n  }\n}": types.EnqueueJobDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "fragment JobSummary on Job {\n  id\n  queue\n  name\n  state\n  progress\n  failedReason\n  createdAt\n  replayOf {\n    id\n  }\n}\n\nquery RecentJobs($filter: JobFilter, $first: Int) {\n  jobs(filter: $filter, first: $first) {\n    edges {\n      node {\n        ...JobSummary\n      }\n    }\n  }\n}\n\nquery RecentFailures($queue: String, $first: Int) {\n  failedJobAudits(queue: $queue, first: $first) {\n    edges {\n      node {\n        id\n        jobId\n        queue\n        jobName\n        failedReason\n        failedAt\n        attemptsMade\n      }\n    }\n  }\n}\n\nmutation ReplayJob($queue: String!, $id: ID!) {\n  replayJob(queue: $queue, id: $id) {\n    __typename\n    ... on JobActionSuccess {\n      job {\n        ...JobSummary\n      }\n    }\n    ... on UserError {\n      code\n      message\n    }\n  }\n}"): (typeof documents)["fragment JobSummary on Job {\n  id\n  queue\n  name\n  state\n  progress\n  failedReason\n  createdAt\n  replayOf {\n    id\n  }\n}\n\nquery RecentJobs($filter: JobFilter, $first: Int) {\n  jobs(filter: $filter, first: $first) {\n    edges {\n      node {\n        ...JobSummary\n      }\n    }\n  }\n}\n\nquery RecentFailures($queue: String, $first: Int) {\n  failedJobAudits(queue: $queue, first: $first) {\n    edges {\n      node {\n        id\n        jobId\n        queue\n        jobName\n        failedReason\n        failedAt\n        attemptsMade\n      }\n    }\n  }\n}\n\nmutation ReplayJob($queue: String!, $id: ID!) {\n  replayJob(queue: $queue, id: $id) {\n    __typename\n    ... on JobActionSuccess {\n      job {\n        ...JobSummary\n      }\n    }\n    ... on UserError {\n      code\n      message\n    }\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation EnqueueJob($input: EnqueueJobInput!) {\n  enqueueJob(input: $input) {\n    __typename\n    ... on EnqueueJobSuccess {\n      job {\n        id\n        queue\n        name\n        state\n        createdAt\n      }\n    }\n    ... on UserError {\n      code\n      message\n    }\n    ... on ValidationError {\n      issues {\n        path\n        message\n      }\n    }\n  }\n}\n\nquery Job($queue: String!, $id: ID!) {\n  job(queue: $queue, id: $id) {\n    id\n    queue\n    name\n    data\n    state\n    progress\n    attemptsMade\n    maxAttempts\n    createdAt\n    startedAt\n    finishedAt\n    result\n    failedReason\n  }\n}\n\nsubscription JobEvents($queue: String!, $id: ID!, $since: String) {\n  jobEvents(queue: $queue, id: $id, since: $since) {\n    id\n    type\n    at\n    progress\n    failedReason\n    resync\n    job {\n      id\n      state\n      progress\n      result\n      failedReason\n    }\n  }\n}"): (typeof documents)["mutation EnqueueJob($input: EnqueueJobInput!) {\n  enqueueJob(input: $input) {\n    __typename\n    ... on EnqueueJobSuccess {\n      job {\n        id\n        queue\n        name\n        state\n        createdAt\n      }\n    }\n    ... on UserError {\n      code\n      message\n    }\n    ... on ValidationError {\n      issues {\n        path\n        message\n      }\n    }\n  }\n}\n\nquery Job($queue: String!, $id: ID!) {\n  job(queue: $queue, id: $id) {\n    id\n    queue\n    name\n    data\n    state\n    progress\n    attemptsMade\n    maxAttempts\n    createdAt\n    startedAt\n    finishedAt\n    result\n    failedReason\n  }\n}\n\nsubscription JobEvents($queue: String!, $id: ID!, $since: String) {\n  jobEvents(queue: $queue, id: $id, since: $since) {\n    id\n    type\n    at\n    progress\n    failedReason\n    resync\n    job {\n      id\n      state\n      progress\n      result\n      failedReason\n    }\n  }\n}"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;