import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signMetaBody, verifyMetaSignature } from '../../src/providers/cloud-api/signature.ts';

const SECRET = 'app-secret-for-tests';

describe('verifyMetaSignature', () => {
  const body = Buffer.from('{"object":"whatsapp_business_account","entry":[]}');

  it('accepts the signature Meta would send', () => {
    const header = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
    expect(signMetaBody(body, SECRET)).toBe(header);
    expect(verifyMetaSignature(body, header, SECRET)).toBe(true);
  });

  it('accepts upper-case hex and surrounding whitespace', () => {
    const header = signMetaBody(body, SECRET);
    expect(verifyMetaSignature(body, `sha256=${header.slice(7).toUpperCase()}`, SECRET)).toBe(true);
    expect(verifyMetaSignature(body, ` ${header} `, SECRET)).toBe(true);
  });

  it('refuses another secret, another body, or a truncated body', () => {
    const header = signMetaBody(body, SECRET);
    expect(verifyMetaSignature(body, header, 'other-secret')).toBe(false);
    expect(verifyMetaSignature(Buffer.from(`${body.toString()} `), header, SECRET)).toBe(false);
    expect(verifyMetaSignature(body.subarray(0, body.length - 1), header, SECRET)).toBe(false);
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['without prefix', createHmac('sha256', SECRET).update('x').digest('hex')],
    ['sha1 prefix', `sha1=${createHmac('sha1', SECRET).update('x').digest('hex')}`],
    ['short hex', 'sha256=abcd'],
    ['long hex', `sha256=${'a'.repeat(66)}`],
    ['non-hex', `sha256=${'z'.repeat(64)}`],
    ['prefix only', 'sha256='],
  ])('is false for a %s header', (_what, header) => {
    expect(verifyMetaSignature(body, header, SECRET)).toBe(false);
  });

  it('is false with an empty secret, even for a header made with it', () => {
    expect(verifyMetaSignature(body, signMetaBody(body, ''), '')).toBe(false);
  });

  describe('non-ASCII bodies', () => {
    // Meta escapes non-ASCII as \uXXXX; the signature covers those exact bytes.
    const escaped = Buffer.from('{"text":{"body":"Ol\\u00e1 \\ud83d\\ude00"}}', 'utf8');
    const literal = Buffer.from(JSON.stringify(JSON.parse(escaped.toString('utf8'))), 'utf8');

    it('verifies the raw escaped bytes', () => {
      expect(verifyMetaSignature(escaped, signMetaBody(escaped, SECRET), SECRET)).toBe(true);
    });

    it('fails once the JSON has been parsed and re-serialised', () => {
      expect(literal.toString('utf8')).toContain('Olá 😀');
      expect(verifyMetaSignature(literal, signMetaBody(escaped, SECRET), SECRET)).toBe(false);
    });

    it('verifies UTF-8 multibyte bodies byte for byte', () => {
      expect(verifyMetaSignature(literal, signMetaBody(literal, SECRET), SECRET)).toBe(true);
      expect(signMetaBody(literal.toString('utf8'), SECRET)).toBe(signMetaBody(literal, SECRET));
    });
  });
});
