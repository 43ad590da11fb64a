/**
 * Addresses that recently delivered a webhook Baton stored (signed, when an app secret is set).
 * A webhook from one of them holds batches back from the moment its headers arrive (its body may
 * follow on a slow link, and a burst must not split meanwhile); one from any other address only
 * once its body is complete, so a client that sends headers and then trickles its body (a slow
 * client, or an attacker without the secret) delays nobody's batch.
 * @module
 */

/** How long an address stays known after its last stored webhook. */
const KNOWN_FOR_MS = 10 * 60_000;
/** Most addresses remembered (the oldest is forgotten first). */
const MAX_KNOWN = 4096;

export class KnownSenders {
  /** Address -> when it last delivered a stored webhook; in that order (oldest first). */
  private readonly seen = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  /** `address` delivered a webhook that was stored. */
  delivered(address: string): void {
    this.seen.delete(address);
    this.seen.set(address, this.now());
    if (this.seen.size > MAX_KNOWN) this.seen.delete(this.seen.keys().next().value!);
  }

  /** Whether `address` delivered a stored webhook in the last 10 minutes. */
  has(address: string): boolean {
    const at = this.seen.get(address);
    return at !== undefined && this.now() - at < KNOWN_FOR_MS;
  }
}
