/**
 * One flush per event-loop turn on a store connection.
 *
 * On loopback a socket write costs tens of microseconds on each side (the system call, and
 * the server's read and wake-up), often more than the command it carries. A worker runs many
 * sessions at once, and an ingress many requests: each issues its own pipeline or query, so
 * each paid for its own write. Here the first write of a turn corks the socket, and it is
 * uncorked once the turn's callbacks have run (`setImmediate`): everything written meanwhile
 * leaves as one `writev`. Order is the socket's own; nothing else changes.
 * @module
 */
import { Socket } from 'node:net';

const coalescing = new WeakSet<Socket>();

/** Makes `socket`'s writes within one event-loop turn leave as one flush. Idempotent. */
export function coalesceWrites(socket: unknown): void {
  if (!(socket instanceof Socket) || coalescing.has(socket)) return;
  coalescing.add(socket);
  const write = socket.write.bind(socket);
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  socket.write = function coalescedWrite(this: Socket, ...args: Parameters<Socket['write']>): boolean {
    if (!corked) {
      corked = true;
      this.cork();
      setImmediate(uncork);
    }
    return write(...args);
  } as Socket['write'];
}
