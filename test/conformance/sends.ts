/**
 * SPEC 1.6 through the engine, as one suite every backend must pass: a reply reaches the user
 * at most twice, whichever holders send it and whenever they crash, and throttling alone never
 * dead-letters it. Sends go through the real Cloud API sender to the fake Graph API, whose
 * `sent` list is what the user received (a slow answer the sender gave up on counts there too).
 *
 *   describeSendsConformance('embedded', async () => new EmbeddedBackend({ ... }));
 *
 * The factory returns a backend on fresh storage (not yet initialised), using the real clock.
 * A crash is a holder whose process stops talking to the store (`crashable`): its lease then
 * expires and another engine takes the session, as after a SIGKILL.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backends/types.ts';
import type { Engine } from '../../src/engine/engine.ts';
import type { SessionKey } from '../../src/model/message.ts';
import { mayHaveReached, type OutboundRecord } from '../../src/model/session.ts';
import { defineFlow, type Flow } from '../../src/flow/define.ts';
import { CloudApiSender } from '../../src/providers/cloud-api/send.ts';
import { eventually, newKey, uid } from '../distributed/fixtures.ts';
import { testEngine } from '../support/engine.ts';
import { startFakeGraph, type FakeGraph } from '../support/fake-graph.ts';

/**
 * The timeout of a hasty sender, ms: a slow answer (SLOW_MS) is a send without an answer that
 * still lands. Only the tests about such sends use it: on a loaded machine the fake's prompt
 * answer (a 429 above all) took longer than that now and then, and a test about a refusal saw a
 * send without an answer instead (a conformance flake, about 1 run in 15 beside a CPU hog).
 */
const TIMEOUT_MS = 150;
/** Every other sender's timeout, ms. */
const PATIENT_MS = 5_000;
const SLOW_MS = 400;
/** A crashed holder's lease, ms. */
const CRASH_TTL_MS = 400;

/** `backend` as a process sees it that can die: once `crash()` is called, no call settles. */
function crashable(backend: Backend): { backend: Backend; crash(): void } {
  let crashed = false;
  const never = new Promise<never>(() => undefined);
  const proxy = new Proxy(backend, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]): unknown =>
        crashed ? never : (v as (...a: unknown[]) => unknown).apply(target, args);
    },
  });
  return { backend: proxy, crash: () => (crashed = true) };
}

/**
 * `backend` as a process sees it that can be starved: once `starve()` is called (or `when`
 * says so of a call that has just been made), no call settles until `wake()`, and then they all
 * do, in order: a process that got no CPU for a while, its lease lapsing meanwhile.
 */
function starvable(
  backend: Backend,
  when?: (prop: string | symbol, args: unknown[]) => boolean,
): { backend: Backend; starve(): void; wake(): void } {
  let gate: Promise<void> | null = null;
  let open: () => void = () => undefined;
  const starve = (): void => {
    gate ??= new Promise<void>((r) => (open = r));
  };
  const proxy = new Proxy(backend, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      return async (...args: unknown[]): Promise<unknown> => {
        if (gate) await gate;
        const result: unknown = await (v as (...a: unknown[]) => unknown).apply(target, args);
        if (when?.(prop, args)) starve();
        if (gate) await gate;
        return result;
      };
    },
  });
  return { backend: proxy, starve, wake: () => open() };
}

export function describeSendsConformance(name: string, make: () => Promise<Backend>): void {
  describe(`Sends conformance (SPEC 1.6): ${name}`, () => {
    let backend: Backend;
    let fake: FakeGraph;
    let key: SessionKey;
    let engines: Engine[];
    let sender: CloudApiSender;
    let hasty: CloudApiSender;

    beforeEach(async () => {
      backend = await make();
      await backend.init();
      fake = await startFakeGraph();
      sender = new CloudApiSender({ baseUrl: fake.url, timeoutMs: PATIENT_MS });
      hasty = new CloudApiSender({ baseUrl: fake.url, timeoutMs: TIMEOUT_MS });
      key = newKey();
      engines = [];
    });

    afterEach(async () => {
      for (const e of engines) e.leases.close();
      await fake.close();
      await backend.close();
    });

    /** A worker process over `store`; `send` wraps the Cloud API sender. */
    function worker(
      store: Backend,
      o: {
        lockTtlMs?: number;
        /** Sends time out after TIMEOUT_MS (a SLOW_MS answer is no answer). */
        hasty?: boolean;
        maxSendAttempts?: number;
        onSent?: (n: number) => void;
        flows?: readonly Flow[];
      } = {},
    ): Engine {
      let n = 0;
      const e = testEngine(store, {
        ...(o.flows ? { flows: o.flows } : {}),
        send: async (m: OutboundRecord) => {
          const r = await (o.hasty === true ? hasty : sender).send(m);
          o.onSent?.((n += 1));
          return r;
        },
        sendBackoffMs: 1,
        maxSendAttempts: o.maxSendAttempts ?? 4,
        lockTtlMs: o.lockTtlMs ?? 5000,
      });
      engines.push(e);
      return e;
    }

    async function hi(text = 'hi', timestamp = 100): Promise<void> {
      await backend.ingest({
        messages: [
          {
            id: `wamid.in.${uid()}`,
            provider: 'cloud-api',
            channel: key.channel,
            user: key.user,
            timestamp,
            content: { type: 'text', body: text },
          },
        ],
        statuses: [],
      });
    }

    /** Runs a holder that crashes right after its first accepted send, and waits for its lease to lapse. */
    async function crashAfterDelivery(o: { hasty?: boolean } = {}): Promise<void> {
      const dying = crashable(backend);
      const a = worker(dying.backend, { ...o, lockTtlMs: CRASH_TTL_MS, onSent: () => dying.crash() });
      void a.runSession(key); // never settles: the process died
      await eventually(
        async () => (fake.sent.length >= 1 && (await backend.leaseInfo(key)) === null ? true : null),
        10_000,
        'the crashed holder’s lease to lapse',
      );
    }

    /** Waits until the fake Graph got `sent` requests and the (crashed) holder's lease lapsed. */
    const lapsed = (sent: number, what: string): Promise<unknown> =>
      eventually(
        async () => (fake.sent.length >= sent && (await backend.leaseInfo(key)) === null ? true : null),
        10_000,
        what,
      );

    /** A step whose prompt is two messages: one commit, two replies. */
    const twoPart = defineFlow({
      id: 'two_part',
      start: 'ask',
      steps: {
        ask: { say: ['Welcome!', 'Your name?'], accepts: 'text', to: ['ask'], on: (_i, c) => c.retry() },
      },
    });

    const delivered = (): string[] => fake.sent.map((c) => String(c.body.biz_opaque_callback_data));

    it('the hot path writes no claim: commit, send, record', async () => {
      const calls: string[] = [];
      const counted = new Proxy(backend, {
        get(target, prop) {
          const v: unknown = Reflect.get(target, prop, target);
          if (typeof v !== 'function') return v;
          return (...args: unknown[]): unknown => {
            calls.push(String(prop));
            return (v as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      });
      // Answers are never late here: on a busy machine the fake's answer took longer than the
      // short timeout the other tests use, and a retry after no answer rightly claims.
      sender = new CloudApiSender({ baseUrl: fake.url, timeoutMs: 10_000 });
      await hi();
      await worker(counted).runSession(key);
      await hi('Jane', 101);
      await worker(counted).runSession(key);
      expect(delivered()).toEqual(['baton:order:ask_name:1', 'baton:order:choose_product:2']);
      expect(calls).toContain('commit');
      expect(calls).not.toContain('claimOutbound');
    });

    it('no answer, a retry that lands, a crash before it is recorded: the next holder does not send a third time', async () => {
      await hi();
      fake.failNext(1, { status: 200, delayMs: SLOW_MS, body: { messages: [{ id: 'wamid.slow' }] } });
      await crashAfterDelivery({ hasty: true });
      await fake.waitForSent(2); // the first, slow send landed as well
      expect(delivered()).toEqual(['baton:order:ask_name:1', 'baton:order:ask_name:1']);

      await worker(backend).runSession(key); // the next holder
      expect(fake.sent).toHaveLength(2);
      const [out] = await backend.outbound(key);
      expect(out).toMatchObject({ status: 'failed', claims: 3 });
      // The console tells it from a reply the user did not get (see mayHaveReached).
      expect(mayHaveReached(out!.status, out!.lastError)).toBe(true);
      const letters = (await backend.listDeadLetters(50)).filter((d) => d.ref === out!.id);
      expect(letters).toHaveLength(1);
      expect(letters[0]!.reason).toContain('two attempts may have reached the user, so not sent again');
      expect(await backend.unsent(key)).toEqual([]);
    });

    it('a crash after a send, then no answer to the next holder’s: at most twice', async () => {
      await hi();
      await crashAfterDelivery();
      expect(fake.sent).toHaveLength(1);

      fake.failNext(1, { status: 200, delayMs: SLOW_MS, body: { messages: [{ id: 'wamid.slow' }] } });
      await worker(backend, { hasty: true }).runSession(key);
      await fake.waitForSent(2);
      // Give a wrong third send the time to show.
      await new Promise((r) => setTimeout(r, SLOW_MS));
      expect(delivered()).toEqual(['baton:order:ask_name:1', 'baton:order:ask_name:1']);
      const [out] = await backend.outbound(key);
      expect(out).toMatchObject({ status: 'failed', claims: 2 });
      expect(mayHaveReached(out!.status, out!.lastError)).toBe(true);
      const letters = (await backend.listDeadLetters(50)).filter((d) => d.ref === out!.id);
      expect(letters[0]!.reason).toContain('two attempts may have reached the user, so not sent again');
    });

    it('a crash after a send, then the next holder’s is answered: delivered twice, no dead letter', async () => {
      await hi();
      await crashAfterDelivery();
      await worker(backend).runSession(key);
      expect(delivered()).toEqual(['baton:order:ask_name:1', 'baton:order:ask_name:1']);
      expect(await backend.unsent(key)).toEqual([]);
      expect((await backend.outbound(key))[0]).toMatchObject({ status: 'sent', claims: 2 });
      expect(await backend.listDeadLetters(50)).toEqual([]);
    });

    it('throttled for longer than a turn, over several workers, then accepted: each reply once, in order, no dead letter', async () => {
      // Every turn makes 2 attempts, refused with 429, and leaves the replies for a later turn,
      // giving back the claims it did not use: a takeover's claim is always its first.
      await hi();
      fake.failNext(6, { status: 429 });
      await worker(backend, { maxSendAttempts: 2 }).runSession(key);
      expect((await backend.unsent(key)).map((o) => o.claims)).toEqual([0]);
      // A second reply behind the throttled one, committed by the next worker, then a third worker.
      await hi('Jane', 101);
      await worker(backend, { maxSendAttempts: 2 }).runSession(key);
      expect((await backend.unsent(key)).map((o) => o.claims)).toEqual([0, 0]);
      await worker(backend, { maxSendAttempts: 2 }).runSession(key);
      expect(fake.requests).toHaveLength(6);
      expect(fake.sent).toHaveLength(0);

      await worker(backend, { maxSendAttempts: 2 }).runSession(key);
      expect(delivered()).toEqual(['baton:order:ask_name:1', 'baton:order:choose_product:2']);
      expect(await backend.unsent(key)).toEqual([]);
      expect((await backend.outbound(key)).map((o) => [o.status, o.claims])).toEqual([
        ['sent', 1],
        ['sent', 1],
      ]);
      expect(await backend.listDeadLetters(50)).toEqual([]);
    });

    it('two replies of one commit, the holder dies sending the first: the second is no claim yet, so two more holders may each try it (twice in all), no dead letter', async () => {
      await hi();
      // The committing holder dies once its first reply is sent: it never tried the second.
      const first = crashable(backend);
      void worker(first.backend, {
        flows: [twoPart],
        lockTtlMs: CRASH_TTL_MS,
        onSent: () => first.crash(),
      }).runSession(key);
      await lapsed(1, 'the first holder’s lease to lapse');
      // The next holder sends the first again (its one repeat), then the second, and dies before
      // recording that one.
      const second = crashable(backend);
      void worker(second.backend, {
        flows: [twoPart],
        lockTtlMs: CRASH_TTL_MS,
        onSent: (n) => n === 2 && second.crash(),
      }).runSession(key);
      await lapsed(3, 'the second holder’s lease to lapse');
      // One attempt at the second reply may have reached the user: the third holder makes the
      // one repeat SPEC 1.6 allows (with a claim on the commit for every reply, it counted 3).
      await worker(backend, { flows: [twoPart] }).runSession(key);
      expect(delivered()).toEqual([
        'baton:two_part:ask:1',
        'baton:two_part:ask:1',
        'baton:two_part:ask:1#2',
        'baton:two_part:ask:1#2',
      ]);
      expect(await backend.listDeadLetters(50)).toEqual([]);
      expect((await backend.outbound(key)).map((o) => [o.status, o.claims])).toEqual([
        ['sent', 2],
        ['sent', 2],
      ]);
    });

    it('a commit whose first reply waits behind one an earlier holder left: crashes while the older is sent leave no claim on the newer', async () => {
      const dies = (n: number): Engine => {
        const dying = crashable(backend);
        const e = worker(dying.backend, {
          lockTtlMs: CRASH_TTL_MS,
          onSent: (k) => k === n && dying.crash(),
        });
        void e.runSession(key);
        return e;
      };
      await hi();
      dies(1); // sends the name prompt, dies before recording it
      await lapsed(1, 'the first holder’s lease to lapse');
      await hi('Jane', 101);
      // The next holder commits Jane (its product prompt waits behind the name prompt), sends the
      // name prompt again and dies before its own reply was tried.
      dies(1);
      await lapsed(2, 'the second holder’s lease to lapse');
      // The third finds the name prompt sent twice (dead-lettered: no third copy) and sends the
      // product prompt, then dies before recording it.
      dies(1);
      await lapsed(3, 'the third holder’s lease to lapse');
      // One attempt at the product prompt may have reached the user: the fourth repeats it once.
      await worker(backend).runSession(key);
      expect(delivered()).toEqual([
        'baton:order:ask_name:1',
        'baton:order:ask_name:1',
        'baton:order:choose_product:2',
        'baton:order:choose_product:2',
      ]);
      expect((await backend.outbound(key)).map((o) => [o.status, o.claims])).toEqual([
        ['failed', 3],
        ['sent', 2],
      ]);
      expect((await backend.listDeadLetters(50)).map((d) => d.ref)).toEqual([
        (await backend.outbound(key))[0]!.id,
      ]);
    });

    it('a worker stopping between two replies of one commit gives back the claim it made for the second', async () => {
      await hi();
      const stopping: { engine?: Engine } = {};
      // The worker is told to stop while it records the first reply's send (the second's claim
      // is on its way in the same round trip).
      const stopsWhileRecording = new Proxy(backend, {
        get(target, prop) {
          const v: unknown = Reflect.get(target, prop, target);
          if (typeof v !== 'function') return v;
          return (...args: unknown[]): unknown => {
            if (prop === 'updateOutbound') void stopping.engine?.stop();
            return (v as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      });
      stopping.engine = worker(stopsWhileRecording, { flows: [twoPart] });
      await stopping.engine.runSession(key);
      expect(delivered()).toEqual(['baton:two_part:ask:1']);
      // Nothing was tried: the next holder's attempt will be the second's first claim.
      expect((await backend.outbound(key)).map((o) => [o.status, o.claims])).toEqual([
        ['sent', 1],
        ['pending', 0],
      ]);
    });

    it('holders starved between their claim and the send give it back when they wake: the reply is sent once, not dead-lettered (outside test QA20-F1)', async () => {
      await hi();
      const lapse = (what: string): Promise<unknown> =>
        eventually(async () => ((await backend.leaseInfo(key)) === null ? true : null), 10_000, what);
      // A commits the name prompt (its commit counts a claim) and starves before the send.
      const a = starvable(backend, (prop) => prop === 'commit');
      const aRun = worker(a.backend, { lockTtlMs: CRASH_TTL_MS }).runSession(key);
      await eventually(
        async () => ((await backend.unsent(key)).length === 1 ? true : null),
        10_000,
        'the commit',
      );
      await lapse('the first holder’s lease to lapse');
      expect((await backend.unsent(key)).map((o) => o.claims)).toEqual([1]);
      // B takes the session over, claims the reply, and starves before the send too.
      const b = starvable(backend, (prop, args) => prop === 'claimOutbound' && args[2] === 1);
      const bRun = worker(b.backend, { lockTtlMs: CRASH_TTL_MS }).runSession(key);
      await eventually(
        async () => ((await backend.unsent(key))[0]?.claims === 2 ? true : null),
        10_000,
        'the second holder’s claim',
      );
      await lapse('the second holder’s lease to lapse');
      // Both wake: neither holds the baton any more, and neither sent; their claims go back.
      a.wake();
      b.wake();
      await Promise.all([aRun, bRun].map((r) => r.catch(() => undefined)));
      await eventually(
        async () => ((await backend.unsent(key))[0]?.claims === 0 ? true : null),
        10_000,
        'the starved holders’ claims given back',
      );
      expect(delivered()).toEqual([]);
      // The next holder's claim is the first: it sends.
      await worker(backend).runSession(key);
      expect(delivered()).toEqual(['baton:order:ask_name:1']);
      expect(await backend.listDeadLetters(50)).toEqual([]);
    });

    it('holders that crash while waiting out 429s used no claim, and the next waits the rest out: the reply is sent once, no dead letter', async () => {
      await hi();
      // Each holder is refused with a Retry-After and dies while it waits.
      for (let holder = 1; holder <= 3; holder++) {
        fake.failNext(1, { status: 429, retryAfter: 2 });
        const dying = crashable(backend);
        void worker(dying.backend, { lockTtlMs: CRASH_TTL_MS }).runSession(key); // dies below
        await eventually(async () => (fake.requests.length >= holder ? true : null), 10_000, 'the refusal');
        // Waiting out its Retry-After (it gave its claim back first), it dies.
        await eventually(
          async () => ((await backend.unsent(key))[0]?.claims === 0 ? true : null),
          10_000,
          'the claim given back',
        );
        dying.crash();
        await eventually(
          async () => ((await backend.leaseInfo(key)) === null ? true : null),
          10_000,
          'the crashed holder’s lease to lapse',
        );
      }
      await worker(backend).runSession(key);
      expect(delivered()).toEqual(['baton:order:ask_name:1']);
      expect(await backend.listDeadLetters(50)).toEqual([]);
      expect((await backend.outbound(key)).map((o) => [o.status, o.claims])).toEqual([['sent', 1]]);
      // The Retry-After was kept with the refusal: no holder asked again before it was over,
      // though the one that heard it died at once (outside test QA19-F1: 5.3 s after a 10 s one).
      const at = fake.requests.map((r) => r.at);
      for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(1_950);
    });
  });
}
