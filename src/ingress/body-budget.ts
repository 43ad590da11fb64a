/**
 * A bound on the large request bodies a process receives at once. A webhook's signature can only
 * be checked once its whole body is in (it signs the raw bytes), so until then a body costs
 * memory and event-loop time whoever sent it: 200 unsigned 4 MiB posts at a time from loopback
 * held 1.4 GB and delayed every signed webhook's answer by 17 s (outside test QA76-F1). Real
 * webhooks are small (Meta's few are large: up to 3 MB), so bodies declared over
 * {@link LARGE_BODY} bytes (or of no declared length) share {@link LARGE_BODIES_BUDGET}: one that
 * would take more is answered 503 at once, before any of its body is read, and its connection is
 * closed (Meta sends it again later). Small bodies are never refused for it.
 * @module
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply } from 'fastify';

/** A body over this many bytes is large (a webhook of a few messages is a few KiB). */
export const LARGE_BODY = 256 * 1024;

/**
 * Bytes of large bodies received at once (declared lengths; no length counts as the limit), and
 * taken in per second on average. Over loopback a flood completes bodies as fast as it sends
 * them: a bound on those at once alone still let 370 MB a second in (signed webhooks' answers at
 * p99 7 s); with the rate too, p99 191 ms and 195 MB held.
 */
export const LARGE_BODIES_BUDGET = 32 * 1024 * 1024;

/** A large body still coming this long after its headers may be cut off for one that needs room. */
export const SLOW_LARGE_BODY_MS = 2_000;

/**
 * The bytes a request will make this process read: its Content-Length (one over `bodyLimit` is
 * refused as too large, and read and dropped up to `drainLimit` so that its sender gets the
 * answer), or `bodyLimit` when it declares none (chunked).
 */
function toRead(
  headers: Record<string, string | string[] | undefined>,
  bodyLimit: number,
  drainLimit: number,
): number {
  const length = headers['content-length'];
  if (typeof length === 'string') {
    const n = Number(length) || 0;
    return n > drainLimit ? 0 : n;
  }
  return headers['transfer-encoding'] !== undefined ? bodyLimit : 0;
}

/** What a refused request is answered: `tooLarge` when it declares more than the body limit. */
export type Refuse = (reply: FastifyReply, tooLarge: boolean) => void;

/**
 * Refuses a large body (`refuse`: 503, or 413 at once for one declared over the body limit) while
 * large bodies of `budget` bytes in all are being received (each one's share is given back when
 * its answer is done or its connection closes), or when more than `budget` bytes a second of
 * them came lately. Its body is never read, and its connection is closed.
 */
export function limitLargeBodies(
  app: FastifyInstance,
  limits: { readonly bodyLimit: number; readonly drainLimit: number; readonly budget: number },
  refuse: Refuse,
): void {
  const { bodyLimit, drainLimit, budget } = limits;
  /** The large bodies being received (by answer): their connections, bytes and when their headers came. */
  const receiving = new Map<
    ServerResponse,
    { readonly socket: Socket; readonly bytes: number; readonly since: number }
  >();
  let inFlight = 0;
  // Bytes that may still be taken in now: refilled at `budget` a second, up to `budget`.
  let credit = budget;
  let creditAt = performance.now();
  /**
   * Frees the budget held by bodies still coming {@link SLOW_LARGE_BODY_MS} after their headers,
   * closing their connections, oldest first, until `bytes` fit: a few uploads trickling a byte a
   * second held all of it for the request timeout, and every real large webhook was refused
   * meanwhile (outside test QA78-F1). A real one is in well within that.
   */
  const evictSlow = (bytes: number, now: number): void => {
    for (const [res, r] of receiving) {
      if (inFlight + bytes <= budget || now - r.since < SLOW_LARGE_BODY_MS) return;
      receiving.delete(res);
      inFlight -= r.bytes;
      r.socket.destroy();
    }
  };
  app.addHook('onRequest', (req, reply, done) => {
    const bytes = toRead(req.headers, bodyLimit, drainLimit);
    if (bytes <= LARGE_BODY || req.raw.complete) {
      done();
      return;
    }
    const now = performance.now();
    credit = Math.min(budget, credit + ((now - creditAt) / 1000) * budget);
    creditAt = now;
    if (inFlight + bytes > budget) evictSlow(bytes, now);
    if (inFlight + bytes > budget || bytes > credit) {
      void reply.header('connection', 'close');
      refuse(reply, Number(req.headers['content-length']) > bodyLimit);
      return;
    }
    const res = reply.raw;
    inFlight += bytes;
    credit -= bytes;
    receiving.set(res, { socket: req.raw.socket, bytes, since: now });
    // (Not if cut off already: its share went then.)
    res.once('close', () => {
      if (receiving.delete(res)) inFlight -= bytes;
    });
    done();
  });
}
