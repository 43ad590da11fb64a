/**
 * Builders shared by the provider tests.
 * @module
 */
import { expect } from 'vitest';
import { SendError } from '../../src/errors.ts';
import type { OutboundBody, OutboundRecord } from '../../src/model/session.ts';

/** An outbound record as the outbox would hand it to a sender. */
export function outbound(body: OutboundBody, overrides: Partial<OutboundRecord> = {}): OutboundRecord {
  return {
    id: '106540352242922:15550001111:3:0',
    seq: 0,
    channel: '106540352242922',
    user: '15550001111',
    flow: 'order',
    step: 'choose_product',
    version: 3,
    to: '15550001111',
    body,
    callbackData: 'baton:order:choose_product:3',
    isPrompt: true,
    status: 'pending',
    attempts: 0,
    createdAt: 0,
    ...overrides,
  };
}

/** The SendError a send rejected with; fails the test if it resolved or threw something else. */
export async function sendError(promise: Promise<unknown>): Promise<SendError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(SendError);
    return err as SendError;
  }
  throw new Error('expected the send to fail');
}
