/**
 * `.env` is read with Node's parser and checked line by line: a line that sets nothing stops
 * start-up naming it, instead of swallowing the setting below it (outside test QA32-F1).
 */
import { describe, expect, it } from 'vitest';
import { parseDotEnv } from '../../src/config/dotenv.ts';

describe('.env', () => {
  it('reads settings, comments, export, quotes and values that span lines', () => {
    const text = [
      '# a comment',
      '',
      'PORT=3001',
      'export ADMIN_TOKEN = "s3cret"',
      "BATON_FLOWS='./flows.ts' # where the flows are",
      'KEY="line one',
      'line two"',
      'EMPTY=',
    ].join('\n');
    expect(parseDotEnv(text)).toEqual({
      PORT: '3001',
      ADMIN_TOKEN: 's3cret',
      BATON_FLOWS: './flows.ts',
      KEY: 'line one\nline two',
      EMPTY: '',
    });
    expect(parseDotEnv('A=1\r\nB=2\r\n')).toEqual({ A: '1', B: '2' });
  });

  it('a line that sets nothing is an error naming it, not the next setting lost', () => {
    expect(() => parseDotEnv('WHATSAPP_APP_SECRET is set below\nBATON_BUFFER_MS=-1\n')).toThrow(
      '.env: line 1 is not NAME=value: "WHATSAPP_APP_SECRET is set below"',
    );
    // Last in the file, it would have set nothing at all: a secret without its "=".
    expect(() => parseDotEnv('PORT=3001\nWHATSAPP_APP_SECRET abc123\n')).toThrow(
      '.env: line 2 is not NAME=value: "WHATSAPP_APP_SECRET abc123"',
    );
    expect(() => parseDotEnv('MY VAR=1\n')).toThrow('.env: line 1 is not NAME=value: "MY VAR=1"');
  });

  it('a file saved with a byte order mark sets its first line too (it set "\uFEFFADMIN_TOKEN": QA54-F3)', () => {
    expect(parseDotEnv('\uFEFFADMIN_TOKEN=my-token\nPORT=3001\n')).toEqual({
      ADMIN_TOKEN: 'my-token',
      PORT: '3001',
    });
    expect(parseDotEnv('\uFEFF# a note\r\nBATON_BUFFER_MS=-1\r\n')).toEqual({ BATON_BUFFER_MS: '-1' });
  });
});
