/**
 * The admin token throttle (admin/auth.ts): ten different wrong tokens per address per minute;
 * an IPv6 client counts by its /64; a flood of other addresses cannot lift a lockout.
 */
import { describe, expect, it } from 'vitest';
import { SIGN_IN_ATTEMPTS, SignInThrottle } from '../../src/admin/auth.ts';

describe('SignInThrottle', () => {
  const lockOut = (t: SignInThrottle, address: string): void => {
    for (let i = 0; i < SIGN_IN_ATTEMPTS; i++) t.failed(address, `guess-${i}`);
  };

  it('counts different tokens only, and lets the minute run out', () => {
    let now = 1_000_000;
    const t = new SignInThrottle(() => now);
    for (let i = 0; i < 50; i++) t.failed('10.0.0.1', 'old-token');
    expect(t.waitMs('10.0.0.1')).toBe(0);
    lockOut(t, '10.0.0.1');
    expect(t.waitMs('10.0.0.1')).toBeGreaterThan(0);
    now += 60_001;
    expect(t.waitMs('10.0.0.1')).toBe(0);
  });

  it('counts an IPv6 client by its /64', () => {
    const t = new SignInThrottle(() => 1_000_000);
    for (let i = 0; i < SIGN_IN_ATTEMPTS; i++) t.failed(`2001:db8:1:2::${i + 1}`, `guess-${i}`);
    expect(t.waitMs('2001:db8:1:2::ffff')).toBeGreaterThan(0);
    expect(t.waitMs('2001:db8:1:3::1')).toBe(0);
  });

  it('a flood of other addresses does not lift a lockout', () => {
    const t = new SignInThrottle(() => 1_000_000);
    lockOut(t, '10.0.0.1');
    for (let i = 0; i < 10_050; i++) t.failed(`10.1.${i >> 8}.${i & 255}`, 'x');
    expect(t.waitMs('10.0.0.1')).toBeGreaterThan(0);
  });
});
