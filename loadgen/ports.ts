/**
 * A free TCP port, for the processes the load generator, the bench and the tests start.
 *
 * The port comes from below the kernel's ephemeral range where there is room: a port the OS
 * hands out for `listen(0)` comes from the same range as the source ports of outgoing
 * connections, so between the probe and the child's bind a connection to Redis or PostgreSQL
 * could take it (a CI run found a worker's health port "already in use" that way). Below the
 * range only another listener can, and the probe sees those.
 * @module
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** The lowest port a random pick may take (below are well-known and registered services). */
const LOWEST = 10_000;

/** Tries at a random port before falling back to one the OS picks. */
const TRIES = 20;

/** The kernel's first ephemeral port (Linux), or null where it cannot be read. */
function ephemeralStart(): number | null {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const n = Number(low);
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/** Binds `port` on 127.0.0.1 (0: the OS picks) and releases it; resolves with it, or null if taken. */
function probe(port: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', (err: NodeJS.ErrnoException) =>
      err.code === 'EADDRINUSE' || err.code === 'EACCES' ? resolve(null) : reject(err),
    );
    srv.listen(port, '127.0.0.1', () => {
      const addr = srv.address();
      const bound = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(bound));
    });
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago (released at once: the caller binds it). */
export async function freePort(): Promise<number> {
  const top = ephemeralStart();
  if (top !== null && top - LOWEST >= 1_000) {
    for (let i = 0; i < TRIES; i++) {
      const port = await probe(LOWEST + Math.floor(Math.random() * (top - LOWEST)));
      if (port !== null) return port;
    }
  }
  const port = await probe(0);
  if (port === null) throw new Error('no free TCP port on 127.0.0.1');
  return port;
}

/**
 * A free port whose `port + offset` is free too, both below the ephemeral range where it can: a
 * Redis Cluster node listens on its port and on its cluster bus port, its port plus 10000, which
 * for a port picked anywhere below the range landed in it (a CI run: "Failed listening on port
 * 35140 (cluster)", an outgoing connection had it).
 */
export async function freePortWith(offset: number): Promise<number> {
  const top = ephemeralStart();
  if (top !== null && top - offset - LOWEST >= 1_000) {
    for (let i = 0; i < TRIES; i++) {
      const port = await probe(LOWEST + Math.floor(Math.random() * (top - offset - LOWEST)));
      if (port !== null && (await probe(port + offset)) !== null) return port;
    }
  }
  for (let i = 0; i < TRIES; i++) {
    const port = await freePort();
    if (port + offset <= 65_535 && (await probe(port + offset)) !== null) return port;
  }
  throw new Error(`no free pair of TCP ports ${offset} apart on 127.0.0.1`);
}
