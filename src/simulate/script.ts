/**
 * Script mode: a conversation file says what to type at each step and which replies must come
 * back. `runScript` types each line, waits for the replies and compares them in order.
 *
 * ```json
 * { "steps": [
 *   { "send": "hi", "expect": ["what is your name"] },
 *   { "send": "Jane", "expect": [{ "text": "which product", "choices": ["Trail Shoe", "Rain Jacket", "Day Pack"] }] },
 *   { "send": "2", "expect": ["ship"] }
 * ] }
 * ```
 * A string expectation is a case-insensitive substring of the reply's text; `match` is a
 * regular expression; `choices` lists the titles of its buttons or rows, in order; `kind` is
 * the message type as rendered (`text`, `interactive:button`, `image`...). `expect: []` means no
 * reply may come.
 * @module
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { BotReply, Simulator } from './simulator.ts';

const Expectation = z.union([
  z.string(),
  z
    .object({
      text: z.string().optional(),
      match: z.string().optional(),
      choices: z.array(z.string()).optional(),
      kind: z.string().optional(),
    })
    .strict(),
]);

export const ConversationScript = z
  .object({
    /** How long to wait for a step's replies (default 5000 ms). */
    timeoutMs: z.number().int().positive().optional(),
    /** How long to keep listening after the last expected reply for unexpected ones (default 300 ms). */
    settleMs: z.number().int().nonnegative().optional(),
    steps: z
      .array(
        z
          .object({
            send: z.string(),
            expect: z.array(Expectation).default([]),
            /** This step's own wait for its replies (a slow effect's step), instead of the script's. */
            timeoutMs: z.number().int().positive().optional(),
            /** This step's own listening for unexpected replies, instead of the script's. */
            settleMs: z.number().int().nonnegative().optional(),
          })
          .strict(),
      )
      .min(1),
    /**
     * Where the session must end (`baton load` checks it through the admin API): its step, and
     * when given, the value of each data key `data` names (keys it does not name are not
     * checked). Strings may use the placeholders `baton load` fills in.
     */
    end: z
      .object({ step: z.string(), data: z.record(z.string(), z.unknown()).optional() })
      .strict()
      .optional(),
    /** Stubs `baton load --start` runs for the flow: `shop` (the order-status shop API). */
    stubs: z.array(z.enum(['shop'])).optional(),
  })
  .strict();

export type ConversationScript = z.infer<typeof ConversationScript>;
export type ScriptExpectation = z.infer<typeof Expectation>;

/** Reads and validates a conversation file; throws an Error with one line on a problem. */
export function readScript(path: string): ConversationScript {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read script ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const parsed = ConversationScript.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`script ${path}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return parsed.data;
}

/**
 * Fills `{{n}}` (the user's index), `{{n4}}`/`{{n5}}` (the index as 4 or 5 digits) and `{{user}}`
 * (the wa_id) in: under load each user's words are their own; in the simulator, user 1's.
 */
export function fill(text: string, index: number, waId: string): string {
  return text
    .replaceAll('{{n}}', String(index))
    .replaceAll('{{n5}}', String(index).padStart(5, '0'))
    .replaceAll('{{n4}}', String(index).padStart(4, '0'))
    .replaceAll('{{user}}', waId);
}

/** {@link fill} in every string of `v`. */
export function fillDeep(v: unknown, index: number, waId: string): unknown {
  if (typeof v === 'string') return fill(v, index, waId);
  if (Array.isArray(v)) return v.map((x) => fillDeep(x, index, waId));
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fillDeep(x, index, waId)]));
  }
  return v;
}

/** Why `reply` does not meet `e`, or undefined when it does. */
export function mismatch(e: ScriptExpectation, reply: Pick<BotReply, 'rendered'>): string | undefined {
  const text = reply.rendered.lines.join('\n');
  const spec = typeof e === 'string' ? { text: e } : e;
  if (spec.text !== undefined && !text.toLowerCase().includes(spec.text.toLowerCase()))
    return `expected text containing "${spec.text}"`;
  if (spec.match !== undefined && !new RegExp(spec.match, 'i').test(text))
    return `expected text matching /${spec.match}/i`;
  if (spec.kind !== undefined && reply.rendered.kind !== spec.kind)
    return `expected a ${spec.kind} message, got ${reply.rendered.kind}`;
  if (spec.choices !== undefined) {
    const got = reply.rendered.picks.map((p) => p.title);
    if (JSON.stringify(got) !== JSON.stringify(spec.choices))
      return `expected choices ${JSON.stringify(spec.choices)}, got ${JSON.stringify(got)}`;
  }
  return undefined;
}

export interface ScriptResult {
  readonly ok: boolean;
  readonly stepsPassed: number;
  readonly failures: readonly string[];
}

/** Plays `script` through `sim`; reports the first failing step and stops there. */
export async function runScript(
  sim: Simulator,
  given: ConversationScript,
  log: (line: string) => void = () => undefined,
): Promise<ScriptResult> {
  // A script written for `baton load` plays here as its user 1 (outside test QA70-F9: "ORD-{{n4}}2"
  // was sent as typed).
  const script = fillDeep(given, 1, sim.currentUser) as ConversationScript;
  const timeoutMs = script.timeoutMs ?? 5000;
  const settleMs = script.settleMs ?? 300;
  const inbox: BotReply[] = [];
  let wake: (() => void) | undefined;
  sim.onReply((r) => {
    inbox.push(r);
    wake?.();
  });
  const waitFor = async (n: number, ms: number): Promise<void> => {
    const deadline = Date.now() + ms;
    while (inbox.length < n && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, deadline - Date.now());
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = undefined;
    }
  };

  for (const [i, step] of script.steps.entries()) {
    const label = `step ${i + 1} (${JSON.stringify(step.send)})`;
    inbox.length = 0;
    const res = await sim.handleLine(step.send);
    for (const line of res.info) log(`  ${line}`);
    // A webhook is taken with 200, an event (`/event`) with 202.
    if (res.posted.some((s) => s < 200 || s > 299)) {
      const why = res.info.length > 0 ? res.info.join('; ') : `answered ${res.posted.join(', ')}`;
      return { ok: false, stepsPassed: i, failures: [`${label}: ${why}`] };
    }
    if (res.posted.length === 0 && res.info.length > 0 && !/^now talking as/.test(res.info[0]!)) {
      return { ok: false, stepsPassed: i, failures: [`${label}: ${res.info.join('; ')}`] };
    }
    await waitFor(step.expect.length, step.timeoutMs ?? timeoutMs);
    await waitFor(Number.MAX_SAFE_INTEGER, step.settleMs ?? settleMs);
    const mine = inbox.filter((r) => r.user === sim.currentUser);
    const failures: string[] = [];
    step.expect.forEach((e, j) => {
      const reply = mine[j];
      if (!reply) {
        failures.push(`${label}: reply ${j + 1} of ${step.expect.length} never came (${JSON.stringify(e)})`);
        return;
      }
      const why = mismatch(e, reply);
      if (why) failures.push(`${label}: reply ${j + 1}: ${why}; got: ${reply.rendered.lines.join(' / ')}`);
    });
    for (const extra of mine.slice(step.expect.length)) {
      failures.push(`${label}: unexpected reply: ${extra.rendered.lines.join(' / ')}`);
    }
    if (failures.length > 0) return { ok: false, stepsPassed: i, failures };
  }
  return { ok: true, stepsPassed: script.steps.length, failures: [] };
}
