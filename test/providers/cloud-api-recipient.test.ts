/**
 * Whom a Cloud API send is addressed to (outside test QA35-F4). Meta asks for `to` as `+E164`:
 * without the `+`, Graph prepends the business number's country code, which can misroute the
 * message. A user's wa_id is digits only, so the sender gives it its `+`; a user known only by a
 * business-scoped id (BSUID) is still addressed through `recipient`.
 *
 * Graph names the user of an accepted send by wa_id (`contacts: [{input: '+4477…', wa_id:
 * '4477…'}]`), and so do the local stand-ins for it: the simulator's fake Graph and the load
 * generator's reply sink record the wa_id as the recipient, and keep the body as it was sent.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startReplySink } from '../../loadgen/sink.ts';
import { text } from '../../src/flow/replies.ts';
import { buildCloudApiMessage, CloudApiSender } from '../../src/providers/cloud-api/send.ts';
import { startFakeGraphApi } from '../../src/simulate/fake-graph.ts';
import type { FakeGraph } from '../support/fake-graph.ts';
import { startFakeGraph } from '../support/fake-graph.ts';
import { metaSendSchema } from '../support/meta-send-schema.ts';
import { outbound } from './outbound.ts';

const TOKEN = 'test-access-token';
const UK = '447700900123';
const BSUID = 'US.13491208655302741918';
const forUser = (user: string) => ({ user, to: user, id: `106540352242922:${user}:3:0` });

describe('the Cloud API sender addresses the user as Meta asks (outside test QA35-F4)', () => {
  let fake: FakeGraph;
  let sender: CloudApiSender;

  beforeAll(async () => {
    fake = await startFakeGraph({ accessToken: TOKEN });
    sender = new CloudApiSender({ baseUrl: `${fake.url}/v21.0`, accessToken: TOKEN });
  });
  afterEach(() => fake.reset());
  afterAll(() => fake.close());

  it(`sends a reply to wa_id ${UK} with "to": "+${UK}"`, async () => {
    await sender.send(outbound(text('Hi'), forUser(UK)));
    const [call] = fake.sent;
    expect(call?.raw).toContain(`"to":"+${UK}"`);
    expect(call?.body).toEqual({
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: `+${UK}`,
      type: 'text',
      text: { body: 'Hi' },
      biz_opaque_callback_data: 'baton:order:choose_product:3',
    });
    expect(metaSendSchema().errors(call?.body)).toEqual([]);
  });

  it('still addresses a BSUID user through `recipient`, with no `to`', async () => {
    await sender.send(outbound(text('Hi'), forUser(BSUID)));
    const [call] = fake.sent;
    expect(call?.body.recipient).toBe(BSUID);
    expect(call?.body).not.toHaveProperty('to');
    expect(call?.raw).not.toContain('"to"');
  });

  it('leaves a number already written +E164 as it is (no second plus)', () => {
    const body = buildCloudApiMessage(outbound(text('Hi'), { to: `+${UK}` }));
    expect(body.to).toBe(`+${UK}`);
    expect(body).not.toHaveProperty('recipient');
  });
});

describe('the stand-ins for Graph name the user by wa_id, as Graph does (outside test QA35-F4)', () => {
  const post = async (url: string, body: unknown): Promise<unknown> => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    return res.json();
  };
  const wire = buildCloudApiMessage(outbound(text('Hi'), forUser(UK)));

  it('the test fake answers contacts [{input: as sent, wa_id: digits}]', async () => {
    const fake = await startFakeGraph();
    try {
      const json = await post(`${fake.url}/v21.0/PNID/messages`, wire);
      expect(json).toMatchObject({ contacts: [{ input: `+${UK}`, wa_id: UK }] });
      expect(fake.sent[0]?.body.to).toBe(`+${UK}`);
    } finally {
      await fake.close();
    }
  });

  it("the test fake's scripted failure for a wa_id meets the send to its +E164", async () => {
    const fake = await startFakeGraph({ accessToken: TOKEN });
    try {
      const sender = new CloudApiSender({ baseUrl: fake.url, accessToken: TOKEN });
      fake.failNext(1, { status: 400, graphCode: 131047, to: '15550009999' });
      fake.failNext(1, { status: 400, graphCode: 131047, to: UK });
      await expect(sender.send(outbound(text('Hi'), forUser(UK)))).rejects.toMatchObject({
        providerCode: 131047,
      });
      expect(fake.requests.map((c) => [c.body.to, c.status])).toEqual([[`+${UK}`, 400]]);
    } finally {
      await fake.close();
    }
  });

  it("the simulator's fake Graph records the wa_id as `to` and keeps the body as sent", async () => {
    const graph = await startFakeGraphApi();
    try {
      const json = await post(`${graph.url}/PNID/messages`, wire);
      expect(json).toMatchObject({ contacts: [{ input: `+${UK}`, wa_id: UK }] });
      expect(graph.sends[0]?.to).toBe(UK);
      expect(graph.sends[0]?.body.to).toBe(`+${UK}`);
      await post(`${graph.url}/PNID/messages`, buildCloudApiMessage(outbound(text('Hi'), forUser(BSUID))));
      expect(graph.sends[1]?.to).toBe(BSUID);
    } finally {
      await graph.close();
    }
  });

  it("the load generator's reply sink files a reply under the wa_id and keeps the body as sent", async () => {
    const sink = await startReplySink();
    try {
      const json = await post(`${sink.url}/v21.0/PNID/messages`, wire);
      expect(json).toMatchObject({ contacts: [{ input: `+${UK}`, wa_id: UK }] });
      expect(sink.callsTo(UK)).toHaveLength(1);
      expect(sink.callsTo(`+${UK}`)).toHaveLength(0);
      expect(sink.calls[0]?.to).toBe(UK);
      expect(sink.calls[0]?.body.to).toBe(`+${UK}`);
      await post(`${sink.url}/PNID/messages`, buildCloudApiMessage(outbound(text('Hi'), forUser(BSUID))));
      expect(sink.callsTo(BSUID)).toHaveLength(1);
    } finally {
      await sink.close();
    }
  });
});
