/**
 * Inputs for the pure transition in unit tests: a transition environment and stored messages
 * numbered in order (an event's id `ev:<n>`, a message's `m<n>`).
 */
import type { ResolvedMessage, TransitionEnv } from '../../src/flow/transition.ts';
import type { MessageContent } from '../../src/model/message.ts';

export function transitionEnv(channel = 'ch'): TransitionEnv {
  return {
    key: { channel, user: 'u1' },
    nowMs: 1_000_000,
    worker: 'w',
    fence: 1,
    sessionTtlSec: 86_400,
    maxRetries: 3,
  };
}

/** A numbering of messages for one user on `channel`, from `provider`. */
export function messages(channel = 'ch', provider: ResolvedMessage['provider'] = 'cloud-api') {
  let seq = 0;
  return (content: MessageContent, timestamp: number): ResolvedMessage => {
    seq += 1;
    const id = content.type === 'event' ? `ev:${seq}` : `m${seq}`;
    return { id, provider, channel, user: 'u1', timestamp, seq, storedAt: 0, content };
  };
}
