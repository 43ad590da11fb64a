/**
 * Journal copies that may wait a little: an outbound record's status change (a reply sent, a
 * delivery or read reported by the provider) is durable in Redis once journaled, and nothing
 * waits for its PostgreSQL copy. Copied at once, each costs its own journal read, trim and rows
 * in a group; usually the session's next commit follows within moments and its copy would take
 * the entry anyway. So the change waits up to `delayMs`, and a copy whose journal read was sent
 * after the change was journaled settles it first.
 *
 * Marks make "after" exact: `defer` gives each change a new mark; a reader takes `mark(member)`
 * just before it sends its journal read (on the connection the change's reply came back on,
 * so the read sees the entry) and, once its entries are in PostgreSQL, `covered(member, mark)`
 * drops the wait only if no newer change came meanwhile.
 * @module
 */
export class DeferredCopies {
  /** member -> the mark of its latest change not yet covered by a copy. */
  private readonly waiting = new Map<string, number>();
  private marks = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    /** Starts copies of these sessions' journals (not awaited; it handles its own failures). */
    private readonly copy: (members: readonly string[]) => void,
    private delayMs: number,
  ) {}

  /** Changes journaled from now on wait at most `ms` (those waiting keep their timer). */
  setDelay(ms: number): void {
    this.delayMs = ms;
  }

  /** A change of `member`'s was journaled (its reply came back): copy it within `delayMs`. */
  defer(member: string): void {
    this.waiting.set(member, ++this.marks);
    if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), this.delayMs);
      this.timer.unref();
    }
  }

  /** What a journal read of `member` sent now will cover (undefined: nothing waits). */
  mark(member: string): number | undefined {
    return this.waiting.get(member);
  }

  /** A read taken at `mark` is in PostgreSQL: the changes up to it no longer wait. */
  covered(member: string, mark: number | undefined): void {
    if (mark !== undefined && this.waiting.get(member) === mark) this.waiting.delete(member);
  }

  /** Starts the copies of everything waiting, now (the timer, and close). */
  flush(): void {
    const members = this.take();
    if (members.length > 0) this.copy(members);
  }

  /** Everything waiting, for a caller that copies it itself (and waits for the copies). */
  take(): string[] {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const members = [...this.waiting.keys()];
    this.waiting.clear();
    return members;
  }

  /** How many sessions have a change waiting, for tests. */
  get size(): number {
    return this.waiting.size;
  }
}
