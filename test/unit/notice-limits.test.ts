/**
 * A flow's notices are texts like any reply (outside test QA138-F5): a 5,000-character `stale`,
 * `handoff` or `error` notice loaded and went to the Graph API, which refuses it, so the user never
 * heard of the hand-off or of the error. A static one is refused at load; a computed one where it
 * is built (`BATON_ERR_FLOW_REPLY`); an error notice that breaks a limit falls back to the default.
 */
import { describe, expect, it } from 'vitest';
import { FlowDefinitionError, FlowRuntimeError } from '../../src/errors.ts';
import { defineFlow, errorNotice, FLOW_ERROR_NOTICE } from '../../src/flow/define.ts';
import { testFlow } from '../../src/index.ts';

const long = 'n'.repeat(5000);

const flowWith = (notices: Record<string, unknown>) =>
  defineFlow({
    id: 'clinic',
    start: 'ask',
    handoffKeywords: ['human'],
    notices: notices,
    steps: {
      ask: {
        say: 'Name?',
        accepts: 'text',
        to: [],
        on: (_i, c) => c.retry(),
      },
    },
  });

describe("a flow's notices and WhatsApp's limits", () => {
  it('a static notice over the limit, or blank, is refused at load, naming it', () => {
    for (const name of ['stale', 'handoff', 'error']) {
      expect(() => flowWith({ [name]: long }), name).toThrow(FlowDefinitionError);
      expect(() => flowWith({ [name]: long }), name).toThrow(new RegExp(`notices\\.${name}: .*4,?096`));
    }
    expect(() => flowWith({ stale: '  ' })).toThrow(/notices\.stale: text is empty/);
    expect(() => flowWith({ handoff: 'A person will answer.' })).not.toThrow();
  });

  it('a computed one is refused as it is built; an error notice falls back to the default', async () => {
    const t = testFlow(flowWith({ handoff: () => long }));
    await t.send('hi');
    const err = await t.send('human').then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FlowRuntimeError);
    expect(err).toMatchObject({ code: 'BATON_ERR_FLOW_REPLY', flow: 'clinic' });
    expect(String((err as Error).message)).toMatch(/notice/);

    expect(errorNotice(flowWith({ error: () => long }), {})).toBe(FLOW_ERROR_NOTICE);
    expect(errorNotice(flowWith({ error: () => 'Sorry!' }), {})).toBe('Sorry!');
  });
});
