import { describe, expect, it } from 'vitest';
import { DOSE_WAIT_MS, EXPIRE_DOSE, handInDoses, handOver } from '../../src/backends/retention.ts';
import type { IngestResult } from '../../src/backends/types.ts';
import type { WebhookBatch } from '../../src/model/message.ts';

/** What a store says of a dose it took: `seen` of its events were stored before. */
const took = (b: WebhookBatch, seen = 0): IngestResult => ({
  accepted: b.messages.length - seen,
  duplicates: seen,
  statuses: 0,
});

const rows = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    channel: 'c',
    user: `u${i}`,
    version: 1,
    provider: null,
    waId: null,
    userId: null,
  }));

describe('a purge hands its expiry events over a dose at a time', () => {
  it('hands the next dose once the workers took the one before, and all of them', async () => {
    const { batch } = handOver(rows(60), () => true, 0);
    let depth = 0;
    const doses: number[] = [];
    const handed = await handInDoses(batch, {
      ingest: async (b: WebhookBatch) => {
        doses.push(b.messages.length);
        depth += b.messages.length;
        setTimeout(() => (depth = 0), 30); // the workers take it
        // The first dose's first 3 were handed by a purge before, which the store's copy the
        // sweep read had not caught up with: duplicates, which expire nothing.
        return took(b, doses.length === 1 ? 3 : 0);
      },
      depth: async () => depth,
      now: Date.now,
    });
    expect(handed).toEqual({ handed: 60, expired: 57 });
    expect(doses).toEqual([EXPIRE_DOSE, EXPIRE_DOSE, 60 - 2 * EXPIRE_DOSE]);
  });

  it('stops when a dose is not taken in time; the next purge resumes after the last one handed', async () => {
    const page = rows(60);
    const { batch, resumeAfter } = handOver(page, () => true, 0);
    let clock = 0;
    let depth = 0;
    const { handed } = await handInDoses(batch, {
      ingest: async (b: WebhookBatch) => {
        depth += b.messages.length; // no worker takes it
        return took(b);
      },
      depth: async () => {
        clock += DOSE_WAIT_MS / 2;
        return depth;
      },
      now: () => clock,
    });
    expect(handed).toBe(EXPIRE_DOSE);
    expect(resumeAfter(handed)).toBe(page[EXPIRE_DOSE - 1]);
    expect(resumeAfter(0)).toBeNull();
    expect(resumeAfter(60)).toBeUndefined(); // the page's end: the next sweep starts over
  });
});
