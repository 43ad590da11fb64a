/**
 * Builders for backend-level tests (the conformance suite and the distributed suites):
 * session keys, messages, snapshots, records, batches and statuses, plus polling.
 */
import type { BatchCommit, LeaseGrant } from '../../src/backends/types.ts';
import type { InboundMessage, MessageContent, SessionKey, StatusUpdate } from '../../src/model/message.ts';
import {
  SNAPSHOT_FORMAT,
  type OutboundRecord,
  type SessionSnapshot,
  type TransitionKind,
  type TransitionRecord,
} from '../../src/model/session.ts';

let counter = 0;

export function uid(): string {
  return `${Date.now().toString(36)}${(counter++).toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A session key no other test uses. */
export function newKey(channel = '106540352242922'): SessionKey {
  return { channel, user: `1555${Math.floor(Math.random() * 1e9)}${counter++}` };
}

/** A Cloud API message of `key`'s user with a fresh wamid. */
function message(key: SessionKey, content: MessageContent, timestamp: number): InboundMessage {
  return {
    channel: key.channel,
    user: key.user,
    id: `wamid.${uid()}`,
    provider: 'cloud-api',
    waId: key.user,
    timestamp,
    content,
  };
}

export function text(key: SessionKey, body: string, timestamp = 1_750_000_000): InboundMessage {
  return message(key, { type: 'text', body }, timestamp);
}

/** A tap on a reply button. */
export function button(
  key: SessionKey,
  id: string,
  title: string,
  timestamp = 1_750_000_000,
): InboundMessage {
  return message(key, { type: 'choice', source: 'button_reply', id, title }, timestamp);
}

/** `key` may be a lease: only its channel and user are taken. */
export function snapshot(
  key: SessionKey,
  version: number,
  extra: Partial<SessionSnapshot> = {},
): SessionSnapshot {
  return {
    format: SNAPSHOT_FORMAT,
    channel: key.channel,
    user: key.user,
    flow: 'order',
    flowVersion: 1,
    step: 'ask_name',
    data: {},
    version,
    visitVersion: version,
    lastInteraction: 1_750_000_000,
    lastMessageId: null,
    retryCount: 0,
    needsAgent: false,
    createdAt: 1_750_000_000_000,
    outboundSeq: 0,
    waId: key.user,
    ...extra,
  };
}

export function record(
  lease: LeaseGrant,
  version: number,
  kind: TransitionKind,
  messageIds: string[],
  from: string | null = null,
  to: string | null = 'ask_name',
): TransitionRecord {
  return {
    version,
    from_step: from,
    to_step: to,
    kind,
    message_ids: messageIds,
    at: '2025-06-15T12:00:00Z',
    worker: lease.holder,
    fencing_token: lease.fence,
  };
}

/** The `n`th reply of `version` (by default `seq` = version * 10 + n). */
export function outbound(
  key: SessionKey,
  version: number,
  n: number,
  seq = version * 10 + n,
  isPrompt = true,
): OutboundRecord {
  return {
    channel: key.channel,
    user: key.user,
    id: `${key.channel}:${key.user}:${version}:${n}`,
    seq,
    flow: 'order',
    step: 'ask_name',
    version,
    to: key.user,
    body: { type: 'text', text: `prompt ${n}` },
    callbackData: `baton:order:ask_name:${version}`,
    isPrompt,
    status: 'pending',
    attempts: 0,
    claims: 1,
    createdAt: 1_750_000_000_000 + n,
  };
}

/** A batch taking `key` from `expectedVersion` to `version`, with nothing in it but `part`. */
export function batch(
  key: SessionKey,
  expectedVersion: number,
  version: number,
  part: Partial<BatchCommit> = {},
): BatchCommit {
  return {
    expectedVersion,
    snapshot: snapshot(key, version),
    records: [],
    outbound: [],
    consumed: [],
    deadLetters: [],
    ...part,
  };
}

/** The next batch of a session: version + 1, consuming `consumed`, one `advance` record. */
export function nextBatch(
  lease: LeaseGrant,
  expectedVersion: number,
  consumed: string[] = [],
  part: Partial<BatchCommit> = {},
): BatchCommit {
  const version = expectedVersion + 1;
  const from = version === 1 ? null : 'ask_name';
  return batch(lease, expectedVersion, version, {
    records: [record(lease, version, 'advance', consumed, from)],
    consumed,
    ...part,
  });
}

export function status(
  key: SessionKey,
  messageId: string,
  s: StatusUpdate['status'],
  extra: Partial<StatusUpdate> = {},
): StatusUpdate {
  return {
    provider: 'cloud-api',
    channel: key.channel,
    messageId,
    status: s,
    timestamp: 1_750_000_100,
    recipient: key.user,
    ...extra,
  };
}

/** Polls `fn` until it returns a non-null value, or fails after `timeoutMs`. */
export async function eventually<T>(
  fn: () => Promise<T | null>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
