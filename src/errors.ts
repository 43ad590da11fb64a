/**
 * Every Baton error, with a stable code, in one registry. `docs/errors.md` lists them all
 * (a test checks it). Codes are never reused.
 * @module
 */

import { isAbsolute, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serviceAddress } from './config/address.ts';

export const ERROR_CODES = {
  BATON_ERR_CONFIG: { status: 500, message: 'Invalid configuration' },
  BATON_ERR_BAD_SIGNATURE: { status: 401, message: 'Missing or invalid webhook signature' },
  BATON_ERR_BAD_JSON: { status: 400, message: 'Body is not valid JSON' },
  BATON_ERR_BAD_ENVELOPE: { status: 400, message: 'Body is not a webhook envelope this route accepts' },
  BATON_ERR_BODY_TOO_LARGE: { status: 413, message: 'Body is larger than 4 MiB' },
  BATON_ERR_STORAGE_UNAVAILABLE: { status: 503, message: 'Storage is unavailable; retry later' },
  BATON_ERR_UNAUTHORIZED: { status: 401, message: 'Missing or invalid admin token' },
  BATON_ERR_NOT_FOUND: { status: 404, message: 'Not found' },
  BATON_ERR_AMBIGUOUS_SESSION: { status: 409, message: 'The user has sessions on several channels' },
  BATON_ERR_FENCED: { status: 409, message: 'The lease was superseded; the write was refused' },
  BATON_ERR_VERSION_CONFLICT: { status: 409, message: 'The session changed since it was read' },
  BATON_ERR_SESSION_BUSY: {
    status: 409,
    message: 'The session is busy (a worker holds its baton, e.g. running a lookup); try again in a moment',
  },
  BATON_ERR_FLOW_INVALID: { status: 500, message: 'The flow definition is invalid' },
  BATON_ERR_FLOW_UNDECLARED_TRANSITION: { status: 500, message: 'A step went to a step it did not declare' },
  BATON_ERR_FLOW_DATA: { status: 500, message: "Flow code set data the flow's data schema refuses" },
  BATON_ERR_FLOW_HANDLER: { status: 500, message: 'Flow code threw' },
  BATON_ERR_TEST_USAGE: {
    status: 400,
    message: 'A testFlow call names an effect or a choice the conversation does not have',
  },
  BATON_ERR_SEND_RETRYABLE: { status: 502, message: 'The gateway refused the send for now' },
  BATON_ERR_SEND_PERMANENT: { status: 502, message: 'The gateway refused the send' },
  BATON_ERR_LEASE_LOST: { status: 409, message: 'The lease could not be renewed' },
  BATON_ERR_SNAPSHOT_FORMAT: {
    status: 500,
    message: 'A stored session is in a format this Baton cannot read',
  },
  BATON_ERR_PROVIDER_OFF: { status: 404, message: 'This webhook route is off: its secret is not configured' },
  BATON_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Bodies must be application/json' },
  BATON_ERR_RENDER_UNAVAILABLE: { status: 500, message: 'No browser to render a PNG with' },
  BATON_ERR_DATA_DIR_LOCKED: { status: 500, message: 'The data directory is in use by another process' },
  BATON_ERR_NEEDS_DISTRIBUTED: { status: 500, message: 'This command needs REDIS_URL and DATABASE_URL' },
  BATON_ERR_BAD_REQUEST: { status: 400, message: 'A query parameter, id or body is invalid' },
  BATON_ERR_EXPECTATION_FAILED: { status: 417, message: 'Expect is not supported here (only 100-continue)' },
  BATON_ERR_UNKNOWN_STEP: { status: 400, message: 'The flow has no such step' },
  BATON_ERR_UNKNOWN_EVENT: { status: 400, message: 'The flow has no such event' },
  BATON_ERR_NOT_WITH_AGENT: { status: 409, message: 'The session is not waiting for an agent' },
  BATON_ERR_TAKEN_BY_OTHER: {
    status: 409,
    message: 'Another agent has taken the session; send "take_over": true to take it over',
  },
  BATON_ERR_STEP_NEEDS_DATA: { status: 409, message: 'The step needs data the session does not have' },
  BATON_ERR_REPLAY_UNCONFIRMED: {
    status: 409,
    message:
      'The replay would not do what you may expect (see warning); replay with ?confirm=true to do it anyway',
  },
  BATON_ERR_NOT_REPLAYABLE: {
    status: 409,
    message: 'This dead letter names no session Baton can store it under; it cannot be replayed',
  },
  BATON_ERR_FLOW_NOT_SERVED_HERE: {
    status: 409,
    message:
      "This process does not serve the session's flow, or serves an older version of it: hand the session back through one that does",
  },
  BATON_ERR_STEP_NOT_FOR_HANDBACK: {
    status: 400,
    message: 'The flow does not let an agent hand a session back at this step',
  },
  BATON_ERR_SHARED_CHAT: {
    status: 409,
    message: "The session is a group, broadcast list or channel's: Baton records it and never answers it",
  },
  BATON_ERR_CSRF: { status: 403, message: 'Missing or invalid CSRF token' },
  BATON_ERR_VERIFY_TOKEN: {
    status: 403,
    message: 'hub.mode is not subscribe, or hub.verify_token does not match WHATSAPP_VERIFY_TOKEN',
  },
  BATON_ERR_TOO_MANY_ATTEMPTS: {
    status: 429,
    message: 'Too many wrong admin tokens from this address: wait a minute and try again',
  },
  BATON_ERR_REQUEST_TIMEOUT: {
    status: 408,
    message: 'The request was not complete in time (headers within 10 s, the whole request within 30 s)',
  },
  BATON_ERR_HEADERS_TOO_LARGE: { status: 431, message: 'Request headers are too large' },
  BATON_ERR_BODIES_BUSY: {
    status: 503,
    message: 'Too many large bodies are being received at once; retry later',
  },
  BATON_ERR_INTERNAL: { status: 500, message: 'Internal error' },
  BATON_ERR_FLOW_REPLY: { status: 500, message: 'A reply built by flow code breaks a WhatsApp limit' },
  BATON_ERR_FLOW_SLOW: {
    status: 500,
    message: 'Flow code ran longer than the lease on a batch, so its commit was refused',
  },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Most characters of a framework's words passed on in an error answer (they may quote the
 * request: a path, a header).
 */
export const ERROR_DETAIL_MAX = 300;

/** Base class of every error Baton raises on purpose. */
export class BatonError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  /** Whether doing the same thing again later may succeed. */
  readonly retryable: boolean;
  /** Fields an API answer adds beside `error` and `code` (who has a session, say). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    detail?: string,
    options?: { cause?: unknown; retryable?: boolean; details?: Readonly<Record<string, unknown>> },
  ) {
    super(detail ?? ERROR_CODES[code].message, options?.cause === undefined ? {} : { cause: options.cause });
    this.name = 'BatonError';
    this.code = code;
    this.statusCode = ERROR_CODES[code].status;
    this.retryable = options?.retryable ?? false;
    this.details = options?.details ?? {};
  }
}

/** A configuration value is invalid. The message is one line naming the variable. */
export class ConfigError extends BatonError {
  readonly variable: string;
  constructor(variable: string, problem: string) {
    super('BATON_ERR_CONFIG', `${variable}: ${problem}`);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

/** The store could not be reached; the caller should answer 503 or retry. */
export class StorageUnavailableError extends BatonError {
  constructor(detail: string, cause?: unknown) {
    super('BATON_ERR_STORAGE_UNAVAILABLE', detail, { cause, retryable: true });
    this.name = 'StorageUnavailableError';
  }

  /**
   * A store not reached at start-up, named as a bad setting is: the variable, the address tried
   * (from `url`, credentials left out; each URL of a comma-separated list) and the connection's
   * own words on one line.
   */
  static unreachable(store: string, variable: string, url: string, cause: unknown): StorageUnavailableError {
    const why = (cause instanceof Error ? cause.message : String(cause)).replace(/\s+/g, ' ').trim();
    return new StorageUnavailableError(
      `${store} is unreachable at ${serviceAddress(url)} (${variable}): ${why}`,
      cause,
    );
  }
}

/** A write carried a fencing token older than the session's newest one, or the lease is gone. */
export class FencedError extends BatonError {
  readonly sessionId: string;
  readonly fence: number;
  constructor(sessionId: string, fence: number) {
    super('BATON_ERR_FENCED', `write for ${sessionId} with fencing token ${fence} refused`);
    this.name = 'FencedError';
    this.sessionId = sessionId;
    this.fence = fence;
  }
}

/** An agent's or admin's change waited for the session's baton in vain: retryable. */
export class SessionBusyError extends BatonError {
  readonly sessionId: string;
  constructor(sessionId: string, waitedMs: number, message?: string) {
    super(
      'BATON_ERR_SESSION_BUSY',
      message ??
        `session ${sessionId} is busy: a worker held its baton for the ${Math.round(waitedMs / 1000)} s this change waited; try again in a moment`,
      { retryable: true },
    );
    this.name = 'SessionBusyError';
    this.sessionId = sessionId;
  }

  /** The change's baton was cleared or taken over each time before it could commit. */
  static superseded(sessionId: string): SessionBusyError {
    return new SessionBusyError(
      sessionId,
      0,
      `session ${sessionId} is busy: its baton was cleared or taken over while this change was being made, so nothing was changed; try again in a moment`,
    );
  }
}

/** The session's version is not the one the batch was computed from. */
export class VersionConflictError extends BatonError {
  readonly sessionId: string;
  readonly expected: number;
  constructor(sessionId: string, expected: number) {
    super('BATON_ERR_VERSION_CONFLICT', `session ${sessionId} is no longer at version ${expected}`);
    this.name = 'VersionConflictError';
    this.sessionId = sessionId;
    this.expected = expected;
  }
}

/** A flow definition failed validation; the message names the flow and step. */
export class FlowDefinitionError extends BatonError {
  constructor(detail: string) {
    super('BATON_ERR_FLOW_INVALID', detail);
    this.name = 'FlowDefinitionError';
  }
}

/** The codes of a {@link FlowRuntimeError}. */
export type FlowErrorCode =
  | 'BATON_ERR_FLOW_UNDECLARED_TRANSITION'
  | 'BATON_ERR_FLOW_DATA'
  | 'BATON_ERR_FLOW_HANDLER'
  | 'BATON_ERR_FLOW_REPLY'
  | 'BATON_ERR_FLOW_SLOW';

/** Flow code misbehaved while handling a session's input. Not retryable: dead-letter the batch. */
export class FlowRuntimeError extends BatonError {
  readonly flow: string;
  readonly step: string | null;
  /** What went wrong, without the flow and step. */
  readonly detail: string;
  /** The session (user masked), when known. */
  session: string | undefined;
  /**
   * Which of the flow's code threw (`say`, `migrate from version 1`, `event "paid"`): no user
   * data, so an API answer may name it where the error's own words stay in the log.
   */
  phase: string | undefined;
  constructor(
    code: FlowErrorCode,
    flow: string,
    step: string | null,
    detail: string,
    cause?: unknown,
    /** Whether running the same batch again may succeed (errors that are not the flow core's own). */
    retryable = false,
    /** The session (user masked), as a field for logs. */
    session?: string,
  ) {
    super(code, `flow ${flow}, step ${step ?? '(none)'}: ${detail}`, { cause, retryable });
    this.name = 'FlowRuntimeError';
    this.flow = flow;
    this.step = step;
    this.detail = detail;
    this.session = session;
  }
}

/** A gateway refused a send. `retryable` says whether to try again; `retryAfterMs` when. */
export class SendError extends BatonError {
  readonly httpStatus: number;
  readonly providerCode: number | undefined;
  readonly retryAfterMs: number | undefined;
  /**
   * The request may have reached the gateway, but no answer came (a timeout, a connection lost
   * after sending): sending again may deliver the message twice.
   */
  readonly unknownOutcome: boolean;
  constructor(
    detail: string,
    opts: {
      retryable: boolean;
      httpStatus: number;
      providerCode?: number;
      retryAfterMs?: number;
      unknownOutcome?: boolean;
    },
  ) {
    super(opts.retryable ? 'BATON_ERR_SEND_RETRYABLE' : 'BATON_ERR_SEND_PERMANENT', detail, {
      retryable: opts.retryable,
    });
    this.name = 'SendError';
    this.httpStatus = opts.httpStatus;
    this.providerCode = opts.providerCode;
    this.retryAfterMs = opts.retryAfterMs;
    this.unknownOutcome = opts.unknownOutcome ?? false;
  }
}

/** Baton's own code (`src/` or `dist/`): frames in it are not the author's. */
const OWN_CODE = fileURLToPath(new URL('.', import.meta.url));

/**
 * Where in the author's code an error was thrown: the first frame of its stack outside Baton's
 * own code, Node's and `node_modules`, as ` (at <file>:<line>:<column>)`, the file relative to the
 * working directory when it is below it; '' when there is none. A throwing step was named by
 * flow, step and phase, and the line only in the server's log (outside test QA131-F2).
 */
export function thrownAt(err: unknown): string {
  const stack = err instanceof Error && typeof err.stack === 'string' ? err.stack : '';
  for (const line of stack.split('\n').slice(1)) {
    const m = /^\s*at (?:.*? \()?(.+?):(\d+):(\d+)\)?$/.exec(line);
    if (m === null) continue;
    const file = m[1]!.startsWith('file://') ? fileURLToPath(m[1]!) : m[1]!;
    if (!isAbsolute(file) || file.startsWith(OWN_CODE) || file.includes(`${sep}node_modules${sep}`)) continue;
    const shown = relative(process.cwd(), file);
    return ` (at ${shown.startsWith('..') ? file : shown}:${m[2]}:${m[3]})`;
  }
  return '';
}

/**
 * What flow code or an effect threw, as text: `String()` of it, but a plain object as its JSON
 * (`{"code":42}`; outside test QA103-F4: it read "[object Object]"), at most 500 characters.
 */
export function thrownText(err: unknown): string {
  if (err instanceof Error || typeof err !== 'object' || err === null) return String(err);
  let json: string | undefined;
  try {
    json = JSON.stringify(err);
  } catch {
    // Circular, or holding a BigInt: what String() says.
  }
  // An object JSON shows nothing of (`{}`) is named as String() names it (its class's tag).
  const text = json === undefined || json === '{}' ? Object.prototype.toString.call(err) : json;
  return text.length > 500 ? `${text.slice(0, 499)}…` : text;
}
