import { describe, expect, it } from 'vitest';
import { statusAllowed, statusLastError } from '../../src/model/message.ts';
import type { OutboundStatus } from '../../src/model/session.ts';

const ALL: readonly OutboundStatus[] = [
  'pending',
  'sending',
  'sent',
  'delivered',
  'read',
  'played',
  'failed',
];

// Rows: the current status; columns (in ALL's order): whether each next status may replace it.
const TABLE: ReadonlyArray<[OutboundStatus, string]> = [
  ['pending', 'yyyyyyy'],
  ['sending', 'yyyyyyy'],
  ['sent', 'nnyyyyy'],
  ['delivered', 'nnnyyyn'],
  ['read', 'nnnnyyn'],
  ['played', 'nnnnnyn'],
  // A late `sent` does not hide a failure; delivered and read replace it.
  ['failed', 'yynyyyy'],
];

describe('statusAllowed', () => {
  it.each(TABLE)('from %s: %s', (cur, row) => {
    const got = ALL.map((next) => (statusAllowed(cur, next) ? 'y' : 'n')).join('');
    expect(got).toBe(row);
  });

  it('covers every status', () => {
    expect(TABLE.map(([cur]) => cur)).toEqual(ALL);
  });
});

describe('statusLastError', () => {
  it.each([
    [
      { status: 'failed' as const, errors: [{ code: 131026, message: 'm', title: 't' }, { code: 1 }] },
      '131026: m',
    ],
    [
      { status: 'failed' as const, errors: [{ code: 131047, title: 'Re-engagement message' }] },
      '131047: Re-engagement message',
    ],
    [{ status: 'failed' as const, errors: [{ code: 131000 }] }, '131000:'],
    [{ status: 'failed' as const }, null],
    [{ status: 'delivered' as const, errors: [{ code: 1, message: 'x' }] }, null],
  ])('%j -> %j', (update, want) => {
    expect(statusLastError(update)).toBe(want);
  });
});
