/** Fence-block reservations in groups: one call per gathering, a session twice waits for the next. */
import { describe, expect, it } from 'vitest';
import { FenceReserver, reservationKey } from '../../src/backends/distributed/fence-reserver.ts';
import type { SessionKey } from '../../src/model/message.ts';

const key = (user: string): SessionKey => ({ channel: 'c', user });

describe('FenceReserver', () => {
  it('takes the requests made while a reservation runs in one next call, each session once per call', async () => {
    const calls: string[][] = [];
    let ceiling = 0;
    const gates: Array<() => void> = [];
    const eras: Array<string | null> = [];
    const reserver = new FenceReserver<number>(async (reqs) => {
      calls.push(reqs.map((r) => r.key.user));
      eras.push(...reqs.map((r) => r.era));
      await new Promise<void>((go) => gates.push(go));
      return new Map(reqs.map((r) => [reservationKey(r.key), (ceiling += 1000)]));
    });
    const first = reserver.request(key('a'), 'run-1');
    // While the first runs, five more gather; 'b' twice.
    const more = ['b', 'c', 'b', 'd'].map((u) => reserver.request(key(u), null));
    expect(calls).toEqual([['a']]);
    gates.shift()!();
    expect(await first).toBe(1000);
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([['a'], ['b', 'c', 'd']]);
    gates.shift()!();
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([['a'], ['b', 'c', 'd'], ['b']]);
    gates.shift()!();
    const got = await Promise.all(more);
    // Every request has a block of its own, and its era goes with it.
    expect(new Set(got).size).toBe(4);
    expect(eras).toEqual(['run-1', null, null, null, null]);
  });

  it('fails every request of a failed call, and goes on with the next', async () => {
    let fail = true;
    const reserver = new FenceReserver<number>(async (reqs) => {
      if (fail) {
        fail = false;
        throw new Error('PostgreSQL is unavailable');
      }
      return new Map(reqs.map((r) => [reservationKey(r.key), 7]));
    });
    await expect(reserver.request(key('a'), null)).rejects.toThrow('unavailable');
    expect(await reserver.request(key('a'), null)).toBe(7);
  });
});
