/**
 * Expected failures of the job domain. The GraphQL layer maps each class to the union member of the
 * same name in the API contract; anything else is an unexpected failure and is masked.
 */

export interface ValidationIssue {
  path: string[];
  message: string;
}

export class ValidationError extends Error {
  readonly code = "VALIDATION";
  readonly issues: ValidationIssue[];

  constructor(message: string, issues: ValidationIssue[]) {
    super(message);
    this.issues = issues;
    this.name = "ValidationError";
  }

  /** One issue at `path`, its message also the error's message. */
  static at(path: string[], message: string): ValidationError {
    return new ValidationError(`${path.join(".")}: ${message}`, [{ path, message }]);
  }

  /** Several issues; the error's message lists them so a client that only shows `message` is still told. */
  static of(issues: ValidationIssue[]): ValidationError {
    const summary = issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
    return new ValidationError(`Invalid input: ${summary}`, issues);
  }
}

export class NotFoundError extends Error {
  readonly code = "NOT_FOUND";
  constructor(message: string) {
    super(message);
    this.name = "NotFoundError";
  }
}

export class InvalidStateError extends Error {
  readonly code = "INVALID_STATE";
  readonly state: string | null;

  constructor(message: string, state: string | null) {
    super(message);
    this.state = state;
    this.name = "InvalidStateError";
  }
}

export class ForbiddenError extends Error {
  readonly code = "FORBIDDEN";
  constructor(message: string) {
    super(message);
    this.name = "ForbiddenError";
  }
}

/** A subscriber that stopped taking events: its buffer overflowed and the subscription ended. It should resubscribe with `since`. */
export class SlowSubscriberError extends Error {
  readonly code = "SLOW_SUBSCRIBER";
  constructor(limit: number) {
    super(`Subscriber too slow: more than ${limit} events waiting to be read; resubscribe with \`since\``);
    this.name = "SlowSubscriberError";
  }
}

/**
 * A store the operation needs did not answer (the job's history row could not be committed), and
 * nothing was done: the client may retry. GraphQL: an error with `extensions.code = "UNAVAILABLE"`.
 */
export class UnavailableError extends Error {
  readonly code = "UNAVAILABLE";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "UnavailableError";
  }
}

/**
 * A bulk action's filter matches more jobs than one selection may hold (BULK_MAX_SELECTION): nothing
 * was selected. `count` is how many it matches now; narrow the filter (by queue, state, time).
 */
export class SelectionTooLargeError extends Error {
  readonly code = "VALIDATION";
  readonly count: number;
  readonly max: number;

  constructor(count: number, max: number) {
    super(`The filter matches ${count} jobs, more than the ${max} one bulk action may select (BULK_MAX_SELECTION): narrow it`);
    this.count = count;
    this.max = max;
    this.name = "SelectionTooLargeError";
  }
}

/** Another bulk action is running on one of the selection's queues: confirm again once it is DONE. */
export class BulkActionRunningError extends Error {
  readonly code = "CONFLICT";
  readonly queue: string;

  constructor(queue: string) {
    super(`A bulk action is already running on queue "${queue}" (one at a time per queue): confirm again once it is done`);
    this.queue = queue;
    this.name = "BulkActionRunningError";
  }
}
