/**
 * The background flusher: reads session members from the flush stream (consumer group, so
 * every notification goes to one flusher among all processes), copies their journals to
 * PostgreSQL through the group committer, then acknowledges and deletes the stream entries.
 * In write-behind mode this is how PostgreSQL gets every commit; in write-through mode it
 * only repairs (journals left behind while PostgreSQL was unreachable). Entries of a flusher
 * that died are taken over after `claimIdleMs`.
 * @module
 */
import type { RedisClient } from './redis-client.ts';

export interface FlusherDeps {
  /** A dedicated connection: XREADGROUP blocks it. */
  readonly conn: RedisClient;
  readonly stream: string;
  readonly group: string;
  readonly consumer: string;
  flush(members: readonly string[]): Promise<void>;
  onError(err: unknown): void;
  readonly claimIdleMs: number;
  readonly blockMs: number;
}

type StreamEntry = [id: string, fields: string[]];

function entriesOf(reply: unknown): StreamEntry[] {
  // XREADGROUP on one stream: RESP2 answers [[stream, entries]]; RESP3 (a map, shown flat by
  // ioredis) answers [stream, entries]; no news is null.
  if (!Array.isArray(reply) || reply.length === 0) return [];
  const pair = (typeof reply[0] === 'string' ? reply : reply[0]) as unknown[];
  return Array.isArray(pair) && Array.isArray(pair[1]) ? (pair[1] as StreamEntry[]) : [];
}

export class StreamFlusher {
  private stopped = false;
  private loop: Promise<void> | null = null;
  private wakeBackoff: (() => void) | null = null;

  constructor(private readonly deps: FlusherDeps) {}

  start(): void {
    this.loop ??= this.run();
  }

  /**
   * Stops reading, and leaves the consumer group if this flusher holds no unacknowledged
   * entries (otherwise they stay for another flusher's XAUTOCLAIM).
   */
  async stop(cleanup?: RedisClient): Promise<void> {
    this.stopped = true;
    this.wakeBackoff?.();
    this.deps.conn.disconnect();
    await this.loop;
    if (!cleanup) return;
    const { stream, group, consumer } = this.deps;
    try {
      const mine = (await cleanup.call('XPENDING', stream, group, '-', '+', 1, consumer)) as unknown[];
      if (mine.length === 0) await cleanup.call('XGROUP', 'DELCONSUMER', stream, group, consumer);
    } catch {
      // Redis away at shutdown: the idle consumer is harmless
    }
  }

  private async ensureGroup(): Promise<void> {
    try {
      await this.deps.conn.xgroup('CREATE', this.deps.stream, this.deps.group, '0', 'MKSTREAM');
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('BUSYGROUP'))) throw err;
    }
  }

  private async run(): Promise<void> {
    const { conn, stream, group, consumer } = this.deps;
    let grouped = false;
    let retryOwn = false;
    let lastClaim = 0;
    let failures = 0;
    while (!this.stopped) {
      try {
        if (!grouped) {
          await this.ensureGroup();
          grouped = true;
        }
        let entries: StreamEntry[];
        if (Date.now() - lastClaim >= this.deps.claimIdleMs) {
          lastClaim = Date.now();
          const reply = (await conn.call(
            'XAUTOCLAIM',
            stream,
            group,
            consumer,
            this.deps.claimIdleMs,
            '0-0',
            'COUNT',
            500,
          )) as unknown[];
          entries = (reply[1] as StreamEntry[] | null) ?? [];
        } else if (retryOwn) {
          entries = entriesOf(
            await conn.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 500, 'STREAMS', stream, '0'),
          );
        } else {
          entries = entriesOf(
            await conn.call(
              'XREADGROUP',
              'GROUP',
              group,
              consumer,
              'COUNT',
              500,
              'BLOCK',
              this.deps.blockMs,
              'STREAMS',
              stream,
              '>',
            ),
          );
        }
        entries = entries.filter((e) => Array.isArray(e) && Array.isArray(e[1]));
        if (entries.length === 0) {
          retryOwn = false;
          continue;
        }
        const members = [
          ...new Set(
            entries.map(([, fields]) => fields[1]).filter((m): m is string => typeof m === 'string'),
          ),
        ];
        await this.deps.flush(members);
        // Stopped meanwhile: the connection is closed, and a Cluster client would queue the
        // acknowledgement forever. The entries stay pending for another flusher (or our restart).
        if (this.stopped) break;
        const ids = entries.map(([id]) => id);
        await conn
          .pipeline()
          .xack(stream, group, ...ids)
          .xdel(stream, ...ids)
          .exec();
        retryOwn = false;
        failures = 0;
      } catch (err) {
        if (this.stopped) break;
        this.deps.onError(err);
        if (err instanceof Error && err.message.startsWith('NOGROUP')) grouped = false;
        retryOwn = true;
        failures++;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(5000, 100 * 2 ** Math.min(failures, 6)));
          this.wakeBackoff = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wakeBackoff = null;
      }
    }
  }
}
