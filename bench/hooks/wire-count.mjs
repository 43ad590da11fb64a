/**
 * A preload for bench child processes (`node --import ./bench/hooks/wire-count.mjs ...`): counts
 * what this process writes to Redis and PostgreSQL on the wire, so the bench can report round
 * trips, commands and statements per message without touching Baton's code and without reading
 * the shared servers' global counters (other clients use them too).
 *
 * It wraps `net.Socket.prototype.write` and, for sockets whose remote port is the Redis or the
 * PostgreSQL port, parses the bytes written:
 * - Redis (RESP): every top-level array is one command; every flush to the socket (`_writeGeneric`:
 *   one `write` or, for a corked socket, one `writev` of everything written meanwhile) is one
 *   round trip (a client waits for the replies of what it flushed together; pipelined
 *   and auto-pipelined commands share one);
 * - PostgreSQL (frontend protocol): `Q` (simple query) and `E` (execute) messages are
 *   statements; `S` (sync) and `Q` end a round trip.
 *
 * Every 250 ms (and at exit) it writes its totals as JSON to
 * `$BENCH_WIRE_COUNT_DIR/<pid>-<threadId>.json`. Without that variable it does nothing.
 * Environment: `BENCH_WIRE_COUNT_DIR`, `BENCH_REDIS_PORT` (6379), `BENCH_PG_PORT` (5432).
 * @module
 */
import { renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';

const dir = process.env.BENCH_WIRE_COUNT_DIR;
const redisPort = Number(process.env.BENCH_REDIS_PORT ?? 6379);
const pgPort = Number(process.env.BENCH_PG_PORT ?? 5432);

/** Totals of this thread. */
const totals = {
  redisWrites: 0,
  redisCommands: 0,
  pgWrites: 0,
  pgStatements: 0,
  pgRoundTrips: 0,
  /** Redis commands by name; EVALSHA as `evalsha:<sha>`. */
  redisByCommand: {},
};

/**
 * Counts RESP commands in a stream of written chunks. State survives chunk boundaries.
 * @param onCommand called with each command's name in lower case (`evalsha:<sha>` for EVALSHA)
 * @returns a function taking each chunk and returning how many commands it completed
 */
export function respCounter(onCommand) {
  // 'top': expecting '*N\r\n'; 'len': expecting '$L\r\n'; 'bulk': skipping L+2 bytes.
  let mode = 'top';
  let line = '';
  let args = 0;
  let skip = 0;
  // Which argument of the current command the bulk string is, and the first two arguments.
  let arg = 0;
  let name = '';
  let second = '';
  const finish = () => {
    if (onCommand !== undefined) onCommand(name === 'evalsha' ? `evalsha:${second}` : name);
  };
  return (buf) => {
    let done = 0;
    let i = 0;
    while (i < buf.length) {
      if (mode === 'bulk') {
        const n = Math.min(skip, buf.length - i);
        if (arg < 2 && onCommand !== undefined) {
          const text = buf
            .subarray(i, i + n)
            .toString('latin1')
            .replace(/\r?\n?$/, '');
          if (arg === 0) name = (name + text).slice(0, 40).toLowerCase();
          else second = (second + text).slice(0, 40);
        }
        i += n;
        skip -= n;
        if (skip === 0) {
          args -= 1;
          arg += 1;
          mode = 'len';
          if (args === 0) {
            done += 1;
            finish();
            mode = 'top';
          }
        }
        continue;
      }
      const c = buf[i];
      i += 1;
      if (c !== 10) {
        if (c !== 13) line += String.fromCharCode(c);
        continue;
      }
      const value = Number(line.slice(1));
      const kind = line[0];
      line = '';
      if (mode === 'top') {
        if (kind === '*' && value > 0) {
          args = value;
          arg = 0;
          name = '';
          second = '';
          mode = 'len';
        } else if (kind !== '*') done += 1; // an inline command
      } else if (kind === '$') {
        skip = value + 2;
        mode = 'bulk';
      }
    }
    return done;
  };
}

/**
 * Counts PostgreSQL frontend messages in a stream of written chunks (the first message, the
 * startup or SSL request, has no type byte).
 * @returns a function taking each chunk and returning { statements, roundTrips } it completed
 */
export function pgCounter() {
  let started = false;
  let header = [];
  let skip = 0;
  return (buf) => {
    let statements = 0;
    let roundTrips = 0;
    let i = 0;
    while (i < buf.length) {
      if (skip > 0) {
        const n = Math.min(skip, buf.length - i);
        i += n;
        skip -= n;
        continue;
      }
      header.push(buf[i]);
      i += 1;
      const need = started ? 5 : 4;
      if (header.length < need) continue;
      const type = started ? String.fromCharCode(header[0]) : '';
      const o = started ? 1 : 0;
      const len = ((header[o] << 24) | (header[o + 1] << 16) | (header[o + 2] << 8) | header[o + 3]) >>> 0;
      skip = len - 4;
      header = [];
      if (!started) {
        // An SSLRequest (8 bytes, code 80877103) is followed by the real startup message.
        started = true;
        continue;
      }
      if (type === 'Q') {
        statements += 1;
        roundTrips += 1;
      } else if (type === 'E') statements += 1;
      else if (type === 'S') roundTrips += 1;
    }
    return { statements, roundTrips };
  };
}

if (dir !== undefined && dir !== '') {
  const counters = new WeakMap();
  const original = net.Socket.prototype.write;
  net.Socket.prototype.write = function write(chunk, ...rest) {
    try {
      const port = this.remotePort;
      if ((port === redisPort || port === pgPort) && chunk !== undefined && chunk !== null) {
        const buf =
          typeof chunk === 'string'
            ? Buffer.from(chunk)
            : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        let count = counters.get(this);
        if (count === undefined) {
          count =
            port === redisPort
              ? respCounter((cmd) => {
                  totals.redisByCommand[cmd] = (totals.redisByCommand[cmd] ?? 0) + 1;
                })
              : pgCounter();
          counters.set(this, count);
        }
        if (port === redisPort) {
          totals.redisCommands += count(buf);
        } else {
          const r = count(buf);
          totals.pgStatements += r.statements;
          totals.pgRoundTrips += r.roundTrips;
        }
      }
    } catch {
      // counting must never break the process
    }
    return original.call(this, chunk, ...rest);
  };
  // Flushes are counted where the socket really writes: a corked socket's writes leave together.
  const generic = net.Socket.prototype._writeGeneric;
  net.Socket.prototype._writeGeneric = function writeGeneric(...args) {
    try {
      const port = this.remotePort;
      if (port === redisPort) totals.redisWrites += 1;
      else if (port === pgPort) totals.pgWrites += 1;
    } catch {
      // counting must never break the process
    }
    return generic.apply(this, args);
  };
  const file = join(dir, `${process.pid}-${threadId}.json`);
  const flush = () => {
    try {
      // Written aside, then renamed over: a reader never sees a file half written (it used to
      // skip one caught mid-write, and a run's counts came out negative).
      writeFileSync(`${file}.tmp`, JSON.stringify(totals));
      renameSync(`${file}.tmp`, file);
    } catch {
      // the directory may be gone at shutdown
    }
  };
  setInterval(flush, 250).unref();
  process.on('exit', flush);
}
