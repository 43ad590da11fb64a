/**
 * What a distributed backend is built from: its options and the logger it writes to.
 * @module
 */
import type { RetentionOptions } from '../retention.ts';

/** The logger methods the backend uses; a pino logger fits. */
export interface BackendLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** `BATON_INTAKE_LOG` (see intake-log.ts). */
export type IntakeLogMode = 'auto' | 'on' | 'off';

export interface DistributedBackendOptions extends RetentionOptions {
  /** One Redis URL; with `cluster`, one or more seed-node URLs separated by commas. */
  readonly redisUrl: string;
  /** `BATON_REDIS_CLUSTER`: `redisUrl` names nodes of a Redis Cluster (default false). */
  readonly cluster?: boolean;
  readonly databaseUrl: string;
  /** `BATON_BUFFER_MS`. */
  readonly bufferMs: number;
  /** `BATON_DEDUPE_TTL`, seconds. */
  readonly dedupeTtlSec: number;
  readonly syncMode: 'write-through' | 'write-behind';
  /**
   * `BATON_INTAKE_LOG`: write each message to PostgreSQL too before a webhook is answered
   * (intake-log.ts). `auto` (default): when a Redis master does not persist every write.
   */
  readonly intakeLog?: IntakeLogMode;
  /** Redis key prefix, default `baton`. */
  readonly prefix?: string;
  /** PostgreSQL schema, default `baton`. */
  readonly schema?: string;
  /** Clock, epoch ms (storage times, due times). */
  readonly now?: () => number;
  readonly logger?: BackendLogger;

  // --- tuning; the defaults suit production -------------------------------------------
  /** Run migrations in `init` (default true). */
  readonly migrate?: boolean;
  /** Run the stream flusher in this process (default true). */
  readonly flusher?: boolean;
  /** How long a claimed session stays invisible before another caller may claim it (5000). */
  readonly claimTimeoutMs?: number;
  /** Added to a lease's expiry before its watchdog makes the session due again (250). */
  readonly leaseGraceMs?: number;
  /** How often one process scans for sessions to reschedule (30000; 0 disables). */
  readonly reaperIntervalMs?: number;
  /**
   * How often one process looks for sessions whose messages wait with neither a lease nor a
   * ready entry (2000; 0 disables; see maintenance.ts, `checkStalled`).
   */
  readonly stallCheckIntervalMs?: number;
  /**
   * How often a process looks for the prefix's claim in Redis and puts it back if it is gone (5000;
   * 0 disables): a cluster master that restarted empty takes it, and no reconnect says so.
   */
  readonly ownerCheckMs?: number;
  /** How long past its buffer window a message waits before its session counts as stalled (3000). */
  readonly stallAfterMs?: number;
  /**
   * Seconds an idle session's keys stay in Redis before they expire (they reload from
   * PostgreSQL when it is next needed); default 24 h, the app passes `BATON_SESSION_TTL`.
   */
  readonly idleTtlSec?: number;
  /** Fencing tokens reserved in PostgreSQL at a time (1000). */
  readonly fenceBlockSize?: number;
  /** Outbound records kept in Redis per session besides unsent ones (100). */
  readonly outboundKeep?: number;
  /** Redis command timeout, ms (3000). */
  readonly commandTimeoutMs?: number;
  /** How long write-through `commit` retries PostgreSQL before it gives up (2000). */
  readonly pgRetryMs?: number;
  /** Most sessions copied in one PostgreSQL transaction (500). */
  readonly maxGroup?: number;
  /**
   * Group-commit transactions running at once, over disjoint sessions (1: while one runs, the
   * next group gathers; measured, two in flight made groups half as big and cost PostgreSQL
   * about a third more CPU per message).
   */
  readonly maxInFlightGroups?: number;
  /** Longest `nextReady` sleep without news, ms (1000). */
  readonly maxIdleMs?: number;
  /** PostgreSQL pool size (10). */
  readonly poolSize?: number;
}
