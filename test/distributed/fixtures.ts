/**
 * Builders for backend-level tests: messages, snapshots, records and batches.
 */
import type { BatchCommit, LeaseGrant } from '../../src/backends/types.ts';
import type { InboundMessage, SessionKey } from '../../src/model/message.ts';
import {
  SNAPSHOT_FORMAT,
  type OutboundRecord,
  type SessionSnapshot,
  type TransitionRecord,
} from '../../src/model/session.ts';

let n = 0;

export function uid(): string {
  return `${Date.now().toString(36)}${(n++).toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function newKey(channel = '106540352242922'): SessionKey {
  return { channel, user: `1777${Math.floor(Math.random() * 1e9)}${n++}` };
}

export function text(
  key: SessionKey,
  body: string,
  id = `wamid.${uid()}`,
  timestamp = 1_750_000_000,
): InboundMessage {
  return { ...key, id, provider: 'cloud-api', waId: key.user, timestamp, content: { type: 'text', body } };
}

export function snapshot(
  key: SessionKey,
  version: number,
  extra: Partial<SessionSnapshot> = {},
): SessionSnapshot {
  return {
    format: SNAPSHOT_FORMAT,
    ...key,
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

export function record(lease: LeaseGrant, version: number, messageIds: string[]): TransitionRecord {
  return {
    version,
    from_step: version === 1 ? null : 'ask_name',
    to_step: 'ask_name',
    kind: 'advance',
    message_ids: messageIds,
    at: '2025-06-15T12:00:00Z',
    worker: lease.holder,
    fencing_token: lease.fence,
  };
}

export function outbound(key: SessionKey, version: number, i: number): OutboundRecord {
  return {
    ...key,
    id: `${key.channel}:${key.user}:${version}:${i}`,
    seq: version * 10 + i,
    flow: 'order',
    step: 'ask_name',
    version,
    to: key.user,
    body: { type: 'text', text: `reply ${version}.${i}` },
    callbackData: `baton:order:ask_name:${version}`,
    isPrompt: true,
    status: 'pending',
    attempts: 0,
    createdAt: 1_750_000_000_000,
  };
}

/** The next batch of a session: version + 1, consuming `consumed`, one record. */
export function nextBatch(
  lease: LeaseGrant,
  expectedVersion: number,
  consumed: string[] = [],
  part: Partial<BatchCommit> = {},
): BatchCommit {
  const version = expectedVersion + 1;
  return {
    expectedVersion,
    snapshot: snapshot(lease, version),
    records: [record(lease, version, consumed)],
    outbound: [],
    consumed,
    deadLetters: [],
    ...part,
  };
}

/** Polls until `fn` returns non-null. */
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
