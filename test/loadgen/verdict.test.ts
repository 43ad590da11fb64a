/**
 * The verdict must see each failure it names: a clean-looking log is only evidence if a dirty
 * one is caught. Crafted evidence, one failure at a time.
 */
import { describe, expect, it } from 'vitest';
import { parseCallback } from '../../loadgen/sink.ts';
import { MAY_HAVE_REACHED } from '../../src/model/session.ts';
import { STALE_NOTICE, type UserTrace } from '../../loadgen/scenario.ts';
import {
  gotAReplyTwice,
  judge,
  mayBeSplit,
  type TransitionEvidence,
  type UserEvidence,
} from '../../loadgen/verdict.ts';

const DATA = { customer_name: 'Ana Silva', product_id: 'sku_550e', shipping_address: '1 Main St Porto' };
const IDS = ['w1', 'w2', 'w3', 'w4', 'w5'];

function trace(over: Partial<UserTrace> = {}): UserTrace {
  return {
    waId: '15550000001',
    expected: { step: 'completed', data: DATA },
    sentIds: [...IDS],
    ackedIds: new Set(IDS),
    rejected: [],
    missingReplies: [],
    completed: true,
    plannedMessages: 5,
    ...over,
  };
}

const reply = (cb: string, at = 0) => ({ callbackData: cb, callback: parseCallback(cb), at });
const REPLIES = [
  'baton:order:choose_product:2',
  'baton:order:collect_shipping_address:3',
  'baton:order:confirm_order:4',
  'baton:order:completed:5',
].map(reply);
const LOG: TransitionEvidence[] = [
  { version: 1, kind: 'advance', message_ids: ['w1'] },
  { version: 2, kind: 'advance', message_ids: ['w2'] },
  { version: 3, kind: 'advance', message_ids: ['w3'] },
  { version: 4, kind: 'advance', message_ids: ['w4'] },
  { version: 5, kind: 'advance', message_ids: ['w5'] },
];

/** A record's write time, `ms` after a fixed instant. */
const at = (ms: number): string => new Date(1_800_000_000_000 + ms).toISOString();

/** When each message was stored: one a second, but w4 at `w4`. */
const stored = (w4: number): Map<string, number> =>
  new Map([
    ['w1', 0],
    ['w2', 1000],
    ['w3', 2000],
    ['w4', w4],
    ['w5', 4000],
  ]);

function user(over: Partial<UserEvidence> = {}): UserEvidence {
  return {
    trace: trace(),
    replies: REPLIES,
    session: { current_step: 'completed', data: DATA, metadata: { version: 5 } },
    transitions: LOG,
    ...over,
  };
}

describe('judge', () => {
  it('a faithful run is clean', () => {
    const v = judge([user()], new Set());
    expect(v.problems).toEqual([]);
    expect(v).toMatchObject({ clean: true, lost: 0, duplicated: 0, outOfOrder: 0, duplicatePrompts: 0 });
  });

  it('an acknowledged message missing from the log is lost, unless dead-lettered', () => {
    const log = LOG.map((t) => (t.version === 3 ? { ...t, message_ids: [] } : t));
    expect(judge([user({ transitions: log })], new Set())).toMatchObject({ clean: false, lostMessages: 1 });
    expect(judge([user({ transitions: log })], new Set(['w3']))).toMatchObject({ lost: 0, deadLettered: 1 });
  });

  it("a script's end lists the data keys to check; the reference order's must match exactly", () => {
    const computed = { ...DATA, order_id: 'P306' }; // an effect's answer, not in the script
    const session = { current_step: 'completed', data: computed, metadata: { version: 5 } };
    const partial = trace({ expected: { step: 'completed', data: DATA, partial: true } });
    expect(judge([user({ trace: partial, session })], new Set())).toMatchObject({
      clean: true,
      outOfOrder: 0,
    });
    expect(judge([user({ session })], new Set())).toMatchObject({ clean: false, outOfOrder: 1 });
    const wrong = { ...session, data: { ...computed, customer_name: 'Bo' } };
    expect(judge([user({ trace: partial, session: wrong })], new Set())).toMatchObject({ outOfOrder: 1 });
  });

  it('a due reply that never came is lost', () => {
    const v = judge(
      [user({ trace: trace({ missingReplies: ['confirm_order'], completed: false }) })],
      new Set(),
    );
    expect(v).toMatchObject({ clean: false, lostReplies: 1, lost: 1, outOfOrder: 0 });
  });

  // The only ingress restarting: every delivery of the user's last message was refused. Baton owes
  // no reply to it; the refusal fails the verdict, as itself (outside test QA130-F5: lost too).
  it('a reply to messages Baton acknowledged none of is not owed: the refusals count, not a loss', () => {
    const refused = trace({
      sentIds: IDS,
      ackedIds: new Set(IDS.slice(0, 4)),
      rejected: [{ id: 'w5', status: 0, detail: 'connect ECONNREFUSED' }],
      missingReplies: ['completed'],
      missingFor: ['w5'],
      completed: false,
    });
    const log = LOG.slice(0, 4);
    const v = judge([user({ trace: refused, transitions: log, replies: REPLIES.slice(0, 3) })], new Set());
    expect(v).toMatchObject({ clean: false, lostReplies: 0, lost: 0, unowedReplies: 1 });
    expect(v.messages.rejected).toBe(1);
    expect(v.problems).toContain(
      '15550000001: no reply for step "completed": none of the messages it answers was acknowledged',
    );
    // One delivery of it acknowledged: owed, and lost.
    const owed = judge(
      [
        user({
          trace: { ...refused, ackedIds: new Set(IDS) },
          transitions: log,
          replies: REPLIES.slice(0, 3),
        }),
      ],
      new Set(),
    );
    expect(owed).toMatchObject({ lostReplies: 1, unowedReplies: 0 });
  });

  it('a due reply Baton gave up on is in its dead letters, not lost; allowed with --crashes (QA124-F1)', () => {
    const reason = `BATON_ERR_SEND_PERMANENT: no outcome recorded for two earlier attempts; ${MAY_HAVE_REACHED}`;
    const gaveUp = user({
      trace: trace({ missingReplies: ['confirm_order'], completed: false }),
      failedReplies: new Map([['confirm_order', reason]]),
    });
    const allowed = judge([gaveUp], new Set(), { crashes: true });
    expect(allowed).toMatchObject({ clean: true, lost: 0, deadLetteredReplies: 1, problems: [] });
    // Named all the same, with Baton's reason (outside test QA127-F1: not at all with --crashes).
    expect(allowed.givenUp[0]).toContain(
      'the reply for step "confirm_order" was dead-lettered: BATON_ERR_SEND_PERMANENT',
    );
    const v = judge([gaveUp], new Set());
    expect(v).toMatchObject({ clean: false, lost: 0, deadLetteredReplies: 1 });
    expect(v.problems[0]).toContain(
      'the reply for step "confirm_order" was dead-lettered: BATON_ERR_SEND_PERMANENT',
    );
    // One the gateway refused (an invalid parameter) is a failure with --crashes too (QA127-F1).
    const refused = user({
      trace: trace({ missingReplies: ['confirm_order'], completed: false }),
      failedReplies: new Map([['confirm_order', 'BATON_ERR_SEND_PERMANENT: (#100) Invalid parameter']]),
    });
    expect(judge([refused], new Set(), { crashes: true })).toMatchObject({
      clean: false,
      lost: 0,
      deadLetteredReplies: 1,
    });
    // Another step's reply given up does not account for this one.
    const other = user({
      trace: trace({ missingReplies: ['confirm_order'], completed: false }),
      failedReplies: new Map([['choose_product', 'refused']]),
    });
    expect(judge([other], new Set(), { crashes: true })).toMatchObject({ clean: false, lostReplies: 1 });
  });

  it('a due reply that came after the user stopped waiting is late, not lost (QA83-F2)', () => {
    // The user waited for completed's reply with 3 replies in hand; it came as the 4th.
    const late = trace({ missingReplies: ['completed'], missingFrom: 3, completed: false });
    expect(judge([user({ trace: late })], new Set())).toMatchObject({
      clean: true,
      lateReplies: 1,
      lostReplies: 0,
      usersCompleted: 0,
    });
    // Not after the wait began (only an earlier step's prompt): lost.
    const lost = trace({ missingReplies: ['completed'], missingFrom: 4, completed: false });
    expect(judge([user({ trace: lost })], new Set())).toMatchObject({ clean: false, lostReplies: 1 });
    // A stale tap's notice that came after the wait is late too (outside test QA127-F2: lost).
    const notice = [...REPLIES.slice(0, 2), reply('baton:order:collect_shipping_address:3:wamid.old')];
    const waited = trace({ missingReplies: [STALE_NOTICE], missingFrom: 2, completed: false });
    expect(judge([user({ trace: waited, replies: notice })], new Set())).toMatchObject({
      lateReplies: 1,
      lostReplies: 0,
    });
    expect(judge([user({ trace: waited, replies: notice.slice(0, 2) })], new Set())).toMatchObject({
      lostReplies: 1,
    });
  });

  // Outside test QA137-F2: `baton load --script` counted a reply that came after `--timeout` as
  // lost, and a burst split where SPEC 1.5 allows as a wrong reply.
  it("a script's reply that came after the wait is late; a repeat of an earlier one is not it", () => {
    const script = (over: Partial<UserTrace>): UserTrace =>
      trace({
        expected: null,
        missingReplies: ['step 4 ("Done")'],
        missingNext: true,
        completed: false,
        ...over,
      });
    expect(judge([user({ trace: script({ missingFrom: 3 }) })], new Set())).toMatchObject({
      clean: true,
      lateReplies: 1,
      lostReplies: 0,
    });
    const repeat = [...REPLIES.slice(0, 3), REPLIES[2]!];
    expect(judge([user({ trace: script({ missingFrom: 3 }), replies: repeat })], new Set())).toMatchObject({
      lateReplies: 0,
      lostReplies: 1,
    });
    expect(judge([user({ trace: script({ missingFrom: 4 }) })], new Set())).toMatchObject({
      lostReplies: 1,
    });
  });

  it("a script's wrong reply after a burst split where SPEC 1.5 allows is the split, not a wrong reply", () => {
    const wrong = ['step 3 reply 1: expected "Confirm?"; got: Your address?'];
    const burst = (over: Partial<UserTrace> = {}): UserTrace =>
      trace({ expected: null, bursts: [['w3', 'w4']], wrongReplies: wrong, completed: false, ...over });
    const log = LOG.map((t) => ({ ...t, at: at(t.version * 1000), fencing_token: 7 }));
    const judged = (t: UserTrace, storedAt?: Map<string, number>) =>
      judge([user({ trace: t, transitions: log, ...(storedAt ? { storedAt } : {}) })], new Set(), {
        bufferMs: 500,
      });
    expect(mayBeSplit(user({ trace: burst() }))).toBe(true);
    expect(mayBeSplit(user({ trace: trace({ expected: null, wrongReplies: wrong }) }))).toBe(false);
    expect(judged(burst(), stored(2700))).toMatchObject({ clean: true, wrongReplies: 0, splitByIntake: 1 });
    // Stored within the window, yet split: wrong. No storage times: wrong.
    expect(judged(burst(), stored(2400))).toMatchObject({ clean: false, wrongReplies: 1 });
    expect(judged(burst())).toMatchObject({ wrongReplies: 1 });
    // A line the generator could not send is the script's fault, split or not.
    const unsendable = ['step 3: cannot send "3": no menu'];
    expect(judged(burst({ wrongReplies: unsendable }), stored(2700))).toMatchObject({ wrongReplies: 1 });
    expect(mayBeSplit(user({ trace: burst({ wrongReplies: unsendable }) }))).toBe(false);
  });

  it("a step prompted under two versions has its storage times read, as a split burst's may (QA83-F2)", () => {
    expect(mayBeSplit(user())).toBe(false);
    const twice = [...REPLIES, reply('baton:order:choose_product:3')];
    expect(
      mayBeSplit(user({ replies: twice, trace: trace({ completed: false, missingReplies: ['x'] }) })),
    ).toBe(true);
    // A stale notice or a second message of one change is no second prompt.
    const notTwice = [
      ...REPLIES,
      reply('baton:order:choose_product:2#2'),
      reply('baton:order:choose_product:4:w9'),
    ];
    expect(mayBeSplit(user({ replies: notTwice }))).toBe(false);
  });

  it('a message in two records, or a reply sent twice, is duplicated', () => {
    const twice = [...LOG, { version: 5, kind: 'stale_input', message_ids: ['w4'] }];
    expect(judge([user({ transitions: twice })], new Set())).toMatchObject({ reprocessed: 1, duplicated: 1 });
    const resent = [...REPLIES, reply('baton:order:completed:5', 6_000)];
    expect(judge([user({ replies: resent })], new Set())).toMatchObject({ resent: 1, duplicated: 1 });
    // Told that workers are killed: one repeat is a crash's allowance (SPEC 1.6), a third copy is not.
    expect(judge([user({ replies: resent })], new Set(), { crashes: true })).toMatchObject({
      clean: true,
      resent: 0,
      crashResends: 1,
    });
    // Nor a copy within a second of the first: no holder takes a session over that fast
    // (outside test QA84-F1: a relay doubling replies at once passed as crash resends).
    const atOnce = [...REPLIES, reply('baton:order:completed:5', 40)];
    expect(judge([user({ replies: atOnce })], new Set(), { crashes: true })).toMatchObject({
      clean: false,
      resent: 1,
      crashResends: 0,
    });
    // Nor a copy Baton did not make: its record says it attempted the send once (outside test
    // QA88-F1: a relay delivering replies twice, 1.5 s apart, passed as crash resends).
    const once = new Map([['baton:order:completed:5', 1]]);
    const relayed = judge([user({ replies: resent, claims: once })], new Set(), { crashes: true });
    expect(relayed).toMatchObject({ clean: false, resent: 1, crashResends: 0 });
    expect(relayed.problems.join('\n')).toContain('Baton made 1 send attempt(s) of it');
    const claimedTwice = new Map([['baton:order:completed:5', 2]]);
    expect(
      judge([user({ replies: resent, claims: claimedTwice })], new Set(), { crashes: true }),
    ).toMatchObject({
      clean: true,
      resent: 0,
      crashResends: 1,
    });
    expect(gotAReplyTwice(user({ replies: resent }))).toBe(true);
    expect(gotAReplyTwice(user())).toBe(false);
    const thrice = [...resent, reply('baton:order:completed:5', 9_000)];
    expect(judge([user({ replies: thrice })], new Set(), { crashes: true })).toMatchObject({
      clean: false,
      resent: 1,
      crashResends: 1,
    });
  });

  it('a reply for a step and version the log does not have is uncommitted, with --crashes too (QA79-F3)', () => {
    // Sent before its commit, and that commit lost: its repeat looks like a crash's resend.
    const early = [...REPLIES, reply('baton:order:completed:6'), reply('baton:order:completed:6', 7_000)];
    expect(judge([user({ replies: early })], new Set(), { crashes: true })).toMatchObject({
      clean: false,
      uncommittedReplies: 2,
      crashResends: 1,
    });
    // Where the log names steps, the step must match too: version 3 left the session elsewhere.
    const steps = ['ask_name', 'choose_product', 'collect_shipping_address', 'confirm_order', 'completed'];
    const named = LOG.map((t, i) => ({ ...t, to_step: steps[i]! }));
    expect(judge([user({ transitions: named })], new Set())).toMatchObject({
      clean: true,
      uncommittedReplies: 0,
    });
    const elsewhere = [...REPLIES, reply('baton:order:confirm_order:3')];
    const v = judge([user({ transitions: named, replies: elsewhere })], new Set(), { crashes: true });
    expect(v).toMatchObject({ clean: false, uncommittedReplies: 1 });
    expect(v.problems.join('\n')).toContain('names step "confirm_order" at version 3');
    // A second message of one state change (`#2`) and a stale notice name their version too.
    const more = [...REPLIES, reply('baton:order:completed:5#2'), reply('baton:order:completed:5:wamid.Z')];
    expect(judge([user({ transitions: named, replies: more })], new Set())).toMatchObject({
      uncommittedReplies: 0,
    });
    // An agent's message to a session an agent reset (at no step) names the flow's start: its
    // version is in the log (outside test QA133-F2: each was an uncommitted send).
    const reset = [...named, { version: 6, kind: 'admin_reset', message_ids: [], to_step: null }];
    const agent = [...REPLIES, reply('baton:order:ask_name:6:agent-7')];
    expect(judge([user({ transitions: reset, replies: agent })], new Set())).toMatchObject({
      uncommittedReplies: 0,
    });
    // The bot's own reply at that version is no agent's: still judged by its step.
    const bot = [...REPLIES, reply('baton:order:ask_name:6')];
    expect(judge([user({ transitions: reset, replies: bot })], new Set())).toMatchObject({
      uncommittedReplies: 1,
    });
  });

  it('an expiry record naming the message that restarts the session is no duplicate', () => {
    const log: TransitionEvidence[] = [
      { version: 1, kind: 'expired', message_ids: ['w1'] },
      { version: 2, kind: 'advance', message_ids: ['w1'] },
    ];
    const v = judge(
      [
        user({
          trace: trace({ ackedIds: new Set(['w1']), completed: false }),
          transitions: log,
          session: null,
        }),
      ],
      new Set(),
    );
    expect(v.reprocessed).toBe(0);
  });

  it('a step prompted under two versions is a duplicate prompt; a stale notice is not', () => {
    const again = [...REPLIES, reply('baton:order:choose_product:3')];
    expect(judge([user({ replies: again })], new Set())).toMatchObject({ duplicatePrompts: 1, clean: false });
    const notice = [...REPLIES, reply('baton:order:completed:5:wamid.X')];
    expect(judge([user({ replies: notice })], new Set())).toMatchObject({ clean: true, staleNotices: 1 });
    // A notice a crash resent is one notice (outside test QA84-F6).
    const resentNotice = [...notice, reply('baton:order:completed:5:wamid.X', 6_000)];
    expect(judge([user({ replies: resentNotice })], new Set(), { crashes: true })).toMatchObject({
      clean: true,
      staleNotices: 1,
      crashResends: 1,
    });
  });

  it('a completed order that says something else than the user sent is out of order', () => {
    const wrong = {
      current_step: 'completed',
      data: { ...DATA, customer_name: 'hi' },
      metadata: { version: 5 },
    };
    expect(judge([user({ session: wrong })], new Set())).toMatchObject({ outOfOrder: 1, clean: false });
    const extraKey = { current_step: 'completed', data: { ...DATA, x: 1 }, metadata: { version: 5 } };
    expect(judge([user({ session: extraKey })], new Set())).toMatchObject({ outOfOrder: 1 });
    const notDone = { current_step: 'confirm_order', data: DATA, metadata: { version: 5 } };
    expect(judge([user({ session: notDone })], new Set())).toMatchObject({ outOfOrder: 1 });
  });

  it('with --crashes, a burst an outage split (its older part recorded late, SPEC 1.5) is counted apart, not out of order', () => {
    // The address came as two texts; the outage made the generator store them 1.9 s apart, so
    // the newer one was applied and the older one recorded late.
    const split = {
      current_step: 'completed',
      data: { ...DATA, shipping_address: 'Springfield' },
      metadata: { version: 5 },
    };
    const log = [...LOG, { version: 5, kind: 'late', message_ids: ['w3b'] }];
    expect(judge([user({ session: split, transitions: log })], new Set(), { crashes: true })).toMatchObject({
      clean: true,
      outOfOrder: 0,
      splitByOutage: 1,
    });
    // Without a late record, or without --crashes, it is out of order.
    expect(judge([user({ session: split })], new Set(), { crashes: true })).toMatchObject({
      outOfOrder: 1,
      splitByOutage: 0,
    });
    expect(judge([user({ session: split, transitions: log })], new Set())).toMatchObject({
      outOfOrder: 1,
      clean: false,
    });
  });

  it('with --crashes, a reply an outage split left owed by nobody is counted apart, not lost (QA66-F6)', () => {
    // hi, then the name in two texts; the outage stored "Sato" first (a new session: the name
    // prompt), "hi" and "Ana" a second later (late). The product prompt the user waits for never
    // comes: nobody owes it.
    const log: TransitionEvidence[] = [
      { version: 1, kind: 'advance', message_ids: ['w2b'] },
      { version: 1, kind: 'late', message_ids: ['w1', 'w2'] },
    ];
    const stranded = user({
      trace: trace({
        completed: false,
        missingReplies: ['choose_product'],
        sentIds: ['w1', 'w2', 'w2b'],
        ackedIds: new Set(['w1', 'w2', 'w2b']),
      }),
      replies: [reply('baton:order:ask_name:1')],
      session: { current_step: 'ask_name', data: {}, metadata: { version: 1 } },
      transitions: log,
    });
    expect(judge([stranded], new Set(), { crashes: true })).toMatchObject({
      clean: true,
      lost: 0,
      splitByOutage: 1,
    });
    // Without --crashes, or without a late record, the reply is lost.
    expect(judge([stranded], new Set())).toMatchObject({ clean: false, lostReplies: 1 });
    const noLate = user({
      ...stranded,
      transitions: [log[0]!, { version: 2, kind: 'advance', message_ids: ['w1', 'w2'] }],
    });
    expect(judge([noLate], new Set(), { crashes: true })).toMatchObject({
      clean: false,
      lostReplies: 1,
      splitByOutage: 0,
    });
  });

  it('a burst Baton stored further apart than its window (SPEC 1.5) is split by intake, not out of order (QA62-F3)', () => {
    // The address came as two texts, w3 and w4; a starved intake stored them 700 ms apart, so
    // they were two batches and the session kept the second half only.
    const split = {
      current_step: 'completed',
      data: { ...DATA, shipping_address: 'Porto' },
      metadata: { version: 5 },
    };
    const log = LOG.map((t) => ({ ...t, at: at(t.version * 1000), fencing_token: 7 }));
    const burst = trace({ bursts: [['w3', 'w4']] });
    const judged = (over: Partial<UserEvidence>, bufferMs: number | null = 500) =>
      judge([user({ trace: burst, session: split, transitions: log, ...over })], new Set(), {
        ...(bufferMs !== null ? { bufferMs } : {}),
      });
    expect(judged({ storedAt: stored(2700) })).toMatchObject({
      clean: true,
      outOfOrder: 0,
      splitByIntake: 1,
    });
    // Stored within the first half's window, yet a batch of its own: out of order.
    expect(judged({ storedAt: stored(2400) })).toMatchObject({
      clean: false,
      outOfOrder: 1,
      splitByIntake: 0,
    });
    // A longer window than the storage gap: out of order.
    expect(judged({ storedAt: stored(2700) }, 800)).toMatchObject({ outOfOrder: 1, splitByIntake: 0 });
    // Nothing to show the split allowed: no storage times, no window, a time missing, batches
    // not told apart (no write time).
    expect(judged({})).toMatchObject({ outOfOrder: 1 });
    expect(judged({ storedAt: stored(2700) }, null)).toMatchObject({ outOfOrder: 1 });
    const missing = stored(2700);
    missing.delete('w4');
    expect(judged({ storedAt: missing })).toMatchObject({ outOfOrder: 1 });
    expect(judged({ storedAt: stored(2700), transitions: LOG })).toMatchObject({ outOfOrder: 1 });
    // Records of one batch (one write time, one fence) are one batch: w3 and w4 together, so the
    // burst was never split and the wrong address is out of order whatever the times.
    const together = log.map((t) => (t.version === 4 ? { ...t, at: at(3000) } : t));
    expect(judged({ storedAt: stored(2700), transitions: together })).toMatchObject({ outOfOrder: 1 });
    const otherFence = together.map((t) => (t.version === 4 ? { ...t, fencing_token: 8 } : t));
    expect(judged({ storedAt: stored(2700), transitions: otherFence })).toMatchObject({ splitByIntake: 1 });
    // Messages sent one by one, each answered, were never a burst: nothing split.
    expect(judged({ trace: trace(), storedAt: stored(2700) })).toMatchObject({ outOfOrder: 1 });
  });

  it("a split burst's second part, a retry where the first part led, owes its prompt: no duplicate (QA77-F1)", () => {
    // The address came as two texts, w3 and w4, stored 700 ms apart (a 500 ms window): w3 was the
    // address, and w4 came at the confirmation, a retry there (a new version), which sends the
    // confirmation's prompt again (SPEC 1.6).
    const log: TransitionEvidence[] = [
      { version: 1, kind: 'advance', message_ids: ['w1'] },
      { version: 2, kind: 'advance', message_ids: ['w2'] },
      { version: 3, kind: 'advance', message_ids: ['w3'] },
      { version: 4, kind: 'retry', message_ids: ['w4'] },
      { version: 5, kind: 'advance', message_ids: ['w5'] },
    ].map((t) => ({ ...t, at: at(t.version * 1000), fencing_token: 7 }));
    const replies = [
      'baton:order:ask_name:1',
      'baton:order:choose_product:2',
      'baton:order:confirm_order:3',
      'baton:order:confirm_order:4',
      'baton:order:completed:5',
    ].map(reply);
    const session = {
      current_step: 'completed',
      data: { ...DATA, shipping_address: '1 Main St' },
      metadata: { version: 5 },
    };
    const judged = (over: Partial<UserEvidence>) =>
      judge(
        [
          user({
            trace: trace({ bursts: [['w3', 'w4']] }),
            replies,
            session,
            transitions: log,
            storedAt: stored(2700),
            ...over,
          }),
        ],
        new Set(),
        { bufferMs: 500 },
      );
    expect(judged({})).toMatchObject({ clean: true, duplicatePrompts: 0, splitByIntake: 1 });
    // Stored within the first part's window: the split is not allowed, and neither is the prompt.
    expect(judged({ storedAt: stored(2400) })).toMatchObject({
      clean: false,
      outOfOrder: 1,
      duplicatePrompts: 1,
    });
    // No burst was sent: a retry in the order scenario is a prompt too many.
    expect(judged({ trace: trace() })).toMatchObject({ clean: false, duplicatePrompts: 1 });
    // The step prompted again at a version that is no retry: a duplicate whatever the split.
    const advanced = log.map((t) => (t.version === 4 ? { ...t, kind: 'advance' } : t));
    expect(judged({ transitions: advanced })).toMatchObject({ clean: false, duplicatePrompts: 1 });
  });

  it('a reply owed for a message recorded late in a split SPEC 1.5 allows is counted apart, not lost (QA78-F3)', () => {
    // hi (w1), then the name sent as w2 and w2b, shuffled: "Sato" (w2b) was stored first, alone
    // in its window (a 5 ms buffer); w2 came 700 ms later, older, and was recorded late. The
    // product prompt the user waits for is owed by nobody.
    const log: TransitionEvidence[] = [
      { version: 1, kind: 'advance', message_ids: ['w1'], at: at(1000), fencing_token: 7 },
      { version: 2, kind: 'advance', message_ids: ['w2b'], at: at(2000), fencing_token: 7 },
      { version: 2, kind: 'late', message_ids: ['w2'], at: at(3000), fencing_token: 7 },
    ];
    const times = (w2: number) =>
      new Map([
        ['w1', 0],
        ['w2b', 1000],
        ['w2', w2],
      ]);
    const stranded = (over: Partial<UserEvidence> = {}) =>
      user({
        trace: trace({
          completed: false,
          missingReplies: ['choose_product'],
          sentIds: ['w1', 'w2', 'w2b'],
          ackedIds: new Set(['w1', 'w2', 'w2b']),
          bursts: [['w2', 'w2b']],
        }),
        replies: [reply('baton:order:ask_name:1')],
        session: {
          current_step: 'choose_product',
          data: { customer_name: 'Sato' },
          metadata: { version: 2 },
        },
        transitions: log,
        storedAt: times(1700),
        ...over,
      });
    expect(judge([stranded()], new Set(), { bufferMs: 5 })).toMatchObject({
      clean: true,
      lostReplies: 0,
      splitByIntake: 1,
    });
    // Stored within the window, yet split: the reply is lost.
    expect(judge([stranded({ storedAt: times(1004) })], new Set(), { bufferMs: 5 })).toMatchObject({
      clean: false,
      lostReplies: 1,
      splitByIntake: 0,
    });
    // No late record: nothing excuses the missing reply.
    const noLate = log.map((t) => (t.kind === 'late' ? { ...t, version: 3, kind: 'advance' } : t));
    expect(judge([stranded({ transitions: noLate })], new Set(), { bufferMs: 5 })).toMatchObject({
      clean: false,
      lostReplies: 1,
    });
    // No window given: the split cannot be shown allowed.
    expect(judge([stranded()], new Set())).toMatchObject({ clean: false, lostReplies: 1 });
  });

  it('a version gap or fork is a version error', () => {
    const gap = LOG.map((t) => (t.version === 5 ? { ...t, version: 6 } : t));
    const session = { current_step: 'completed', data: DATA, metadata: { version: 6 } };
    expect(judge([user({ transitions: gap, session })], new Set())).toMatchObject({
      versionErrors: 1,
      clean: false,
    });
    const fork = [...LOG.slice(0, 2), { version: 2, kind: 'advance', message_ids: ['w3'] }, ...LOG.slice(3)];
    expect(judge([user({ transitions: fork })], new Set())).toMatchObject({ versionErrors: 1 });
  });

  it('acknowledged messages Baton still holds pending are reported pending, not lost (the run is still not clean)', () => {
    // Baton stored w4 and w5 but has not processed them: its queue still holds 2 messages.
    const log = LOG.slice(0, 3);
    const t = trace({ missingReplies: ['confirm_order'], completed: false });
    const session = { current_step: 'collect_shipping_address', data: {}, metadata: { version: 3 } };
    const v = judge(
      [user({ trace: t, transitions: log, session, replies: REPLIES.slice(0, 2) })],
      new Set(),
      {
        pendingInBaton: 2,
      },
    );
    expect(v).toMatchObject({
      clean: false,
      lost: 0,
      lostMessages: 0,
      lostReplies: 0,
      pendingMessages: 2,
      waitingReplies: 1,
    });
    expect(v.problems.join('\n')).toMatch(/w4 was acknowledged and is still pending in Baton/);
    expect(v.problems.join('\n')).not.toMatch(/lost|no transition record or dead letter/);
    // More missing than Baton holds: the difference is lost.
    const w = judge([user({ trace: t, transitions: log, session })], new Set(), { pendingInBaton: 1 });
    expect(w).toMatchObject({ clean: false, pendingMessages: 1, lostMessages: 1, lostReplies: 1 });
  });

  it('with the admin API unreachable, judges only what the load generator saw', () => {
    const t = trace({
      ackedIds: new Set(['w1', 'w2']),
      rejected: [{ id: 'w3', status: 0, detail: 'connect ECONNREFUSED' }],
      missingReplies: ['collect_shipping_address'],
      completed: false,
    });
    const v = judge([{ trace: t, replies: REPLIES.slice(0, 1), session: null, transitions: [] }], new Set(), {
      adminUnreachable: 'http://127.0.0.1:9/admin/api/stats: connect ECONNREFUSED',
    });
    expect(v).toMatchObject({
      clean: false,
      lostMessages: 0,
      lostReplies: 1,
      outOfOrder: 0,
      versionErrors: 0,
      adminUnreachable: 'http://127.0.0.1:9/admin/api/stats: connect ECONNREFUSED',
    });
    expect(v.problems[0]).toMatch(/admin API .*unreachable/);
    // A user who got every reply is no evidence either way without the log: not clean.
    const done = judge([user({ session: null, transitions: [] })], new Set(), { adminUnreachable: 'x' });
    expect(done).toMatchObject({ clean: false, lostMessages: 0, outOfOrder: 0 });
  });

  it('a rejected webhook makes the verdict dirty', () => {
    const t = trace({ rejected: [{ id: 'w2', status: 503, detail: 'unavailable' }] });
    expect(judge([user({ trace: t })], new Set())).toMatchObject({ clean: false, messages: { rejected: 1 } });
  });
});

describe('parseCallback', () => {
  it('reads prompts and notices', () => {
    expect(parseCallback('baton:order:ask_name:1')).toEqual({ flow: 'order', step: 'ask_name', version: 1 });
    expect(parseCallback('baton:order:ask_name:3:wamid.A')).toMatchObject({
      version: 3,
      inReplyTo: 'wamid.A',
    });
    expect(parseCallback('baton:order_status:tracking:7#2')).toEqual({
      flow: 'order_status',
      step: 'tracking',
      version: 7,
    });
    expect(parseCallback('other:x')).toBeNull();
    expect(parseCallback(undefined)).toBeNull();
  });
});
