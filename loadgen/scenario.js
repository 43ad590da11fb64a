import { buttonTap, textMessage, webhookBody } from "./payloads.js";
import { shuffled } from "./stats.js";
/** The products of the reference bot (SPEC section 5). */
export const ORDER_PRODUCTS = [
    { id: 'sku_550e', title: 'Trail Shoe' },
    { id: 'sku_551a', title: 'Rain Jacket' },
    { id: 'sku_777b', title: 'Day Pack' },
];
const FIRST = ['Ana', 'Ben', 'Chloe', 'Dev', 'Eun', 'Farah', 'Goran', 'Hana', 'Ivo', 'Jun'];
const LAST = ['Silva', 'Okafor', 'Novak', 'Haddad', 'Kim', 'Moreau', 'Rossi', 'Sato', 'Weber', 'Yilmaz'];
const STREETS = ['Main St', 'Harbour Rd', 'Elm Ave', 'Kingsway', 'Rue Verte'];
const CITIES = ['Springfield', 'Porto', 'Osaka', 'Lagos', 'Leeds'];
/**
 * Plans user `index`'s conversation. `wamid` makes fresh message ids; `baseTs` is the Unix
 * second of the user's first message.
 */
export function planUser(index, waId, baseTs, chaos, channel, rnd, wamid) {
    let ts = baseTs;
    const dup = () => {
        if (chaos.duplicates <= 0 || rnd() >= chaos.duplicates)
            return null;
        const r = rnd();
        return r < 0.4 ? 'together' : r < 0.8 ? 'after-ack' : 'after-reply';
    };
    const text = (body) => {
        const id = wamid();
        const at = ts++;
        return { id, ts: at, duplicate: dup(), build: () => textMessage(waId, id, at, body) };
    };
    const tap = (button) => {
        const id = wamid();
        const at = ts++;
        return {
            id,
            ts: at,
            duplicate: dup(),
            build: (contextId) => buttonTap(channel, waId, id, at, button, contextId),
        };
    };
    const first = `${FIRST[index % FIRST.length]}${index}`;
    const last = LAST[Math.floor(index / FIRST.length) % LAST.length];
    const street = `${1 + (index % 97)} ${STREETS[index % STREETS.length]}`;
    const city = CITIES[Math.floor(rnd() * CITIES.length)];
    const product = ORDER_PRODUCTS[Math.floor(rnd() * ORDER_PRODUCTS.length)];
    const cancel = rnd() < 0.1;
    const retap = chaos.retaps > 0 && rnd() < chaos.retaps;
    const other = ORDER_PRODUCTS[(ORDER_PRODUCTS.indexOf(product) + 1) % ORDER_PRODUCTS.length];
    const stages = [
        {
            due: 'choose_product',
            messages: [text('hi'), ...(chaos.splitTexts ? [text(first), text(last)] : [text(`${first} ${last}`)])],
        },
        { due: 'collect_shipping_address', messages: [tap(product)] },
        // An old button: another product, tapped on the product prompt the user has moved past.
        ...(retap ? [{ due: 'stale notice', messages: [tap(other)], tapsReplyOf: 0, stale: true }] : []),
        {
            due: 'confirm_order',
            messages: chaos.splitTexts ? [text(street), text(city)] : [text(`${street} ${city}`)],
        },
        {
            due: cancel ? 'cancelled' : 'completed',
            messages: [tap(cancel ? { id: 'cancel', title: 'Cancel' } : { id: 'confirm', title: 'Confirm' })],
        },
    ];
    return {
        waId,
        expected: {
            step: cancel ? 'cancelled' : 'completed',
            data: {
                customer_name: `${first} ${last}`,
                product_id: product.id,
                shipping_address: `${street} ${city}`,
            },
        },
        stages,
    };
}
/** Runs one user's plan against Baton, recording what happened. */
export async function runUser(plan, ctx, rnd) {
    const { client, sink, chaos, counters } = ctx;
    const trace = {
        waId: plan.waId,
        expected: plan.expected,
        sentIds: [],
        ackedIds: new Set(),
        rejected: [],
        missingReplies: [],
        completed: false,
        plannedMessages: plan.stages.reduce((n, s) => n + s.messages.length, 0),
    };
    const record = (m, r) => {
        counters.deliveries += 1;
        ctx.ackMs.push(r.ms);
        if (r.status === 200) {
            if (!trace.ackedIds.has(m.id))
                counters.acked += 1;
            trace.ackedIds.add(m.id);
        }
        else {
            trace.rejected.push({ id: m.id, status: r.status, detail: r.detail.slice(0, 200) });
        }
    };
    const deliver = async (m) => {
        const r = await client.post(webhookBody(ctx.channel, [m]));
        record(m, r);
        return r.sentAt;
    };
    const planned = (p) => {
        trace.sentIds.push(p.id);
        counters.sent += 1;
    };
    /** Sends one message and any duplicate due with it; resolves with the original's send time. */
    const sendOne = async (p, m) => {
        planned(p);
        if (p.duplicate === 'together') {
            const [at] = await Promise.all([deliver(m), deliver(m)]);
            return at;
        }
        const at = await deliver(m);
        if (p.duplicate === 'after-ack')
            await deliver(m);
        return at;
    };
    /** Fires a whole burst at once (duplicates due "together" included); resolves with send times. */
    const sendBurst = async (burst) => {
        const wire = burst.flatMap(({ p, m }) => (p.duplicate === 'together' ? [m, m] : [m]));
        for (const { p } of burst)
            planned(p);
        const results = await client.postAll(wire.map((m) => webhookBody(ctx.channel, [m])));
        results.forEach((r, i) => record(wire[i], r));
        for (const { p, m } of burst)
            if (p.duplicate === 'after-ack')
                await deliver(m);
        return results.map((r) => r.sentAt);
    };
    const replies = [];
    for (const [index, stage] of plan.stages.entries()) {
        if (ctx.signal?.aborted)
            break;
        const cursor = sink.callsTo(plan.waId).length;
        const contextId = replies[stage.tapsReplyOf ?? index - 1]?.providerMessageId;
        const built = stage.messages.map((p) => ({ p, m: p.build(contextId) }));
        const ids = new Set(built.map(({ p }) => p.id));
        const order = chaos.shuffle ? shuffled(built, rnd) : built;
        let sentAt;
        if (chaos.concurrentBursts) {
            sentAt = await sendBurst(order);
        }
        else {
            sentAt = [];
            for (const { p, m } of order)
                sentAt.push(await sendOne(p, m));
        }
        // The reply is due once the burst's last message is in.
        const triggerAt = Math.max(...sentAt);
        const reply = await sink.waitFor(plan.waId, (c) => c.callback !== null &&
            (stage.stale
                ? c.callback.inReplyTo !== undefined && ids.has(c.callback.inReplyTo)
                : c.callback.inReplyTo === undefined && c.callback.step === stage.due), cursor, ctx.replyTimeoutMs, ctx.signal);
        if (reply === null) {
            trace.missingReplies.push(stage.due);
            break;
        }
        counters.replies += 1;
        const latency = Math.max(0, reply.at - triggerAt);
        ctx.replyMs.push(latency);
        let byStep = ctx.replyMsByStep.get(stage.due);
        if (byStep === undefined)
            ctx.replyMsByStep.set(stage.due, (byStep = []));
        byStep.push(latency);
        ctx.lastReplyAt = Math.max(ctx.lastReplyAt, reply.at);
        replies[index] = reply;
        for (const { p, m } of built)
            if (p.duplicate === 'after-reply')
                await deliver(m);
    }
    trace.completed = trace.missingReplies.length === 0 && !ctx.signal?.aborted;
    counters.usersDone += 1;
    return trace;
}
