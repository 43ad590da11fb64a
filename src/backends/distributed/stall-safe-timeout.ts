/**
 * Command timeouts that a stalled process does not turn into false failures.
 *
 * ioredis arms each command's timeout (`commandTimeout`) with a timer, and Node runs timers
 * before the poll phase that reads sockets. A process that stalls for longer than the timeout
 * (a long garbage collection, a CPU it shares with busier processes) thus rejected, as it woke
 * up, commands whose replies were already waiting in its socket: commands Redis had run. Baton
 * then took a commit, a release or a ready-queue write that had been made for one that had
 * failed (measured: a 3.5 s stall rejects a `SET` that Redis applied).
 *
 * Installed once per process, the timeout fires as before, then lets one poll phase read the
 * socket before it rejects: a reply already there settles the command first. A timer that fires
 * more than the timeout late (the process stalled for longer than the timeout) gives the command
 * the timeout once more from then: its write may have left only as the process woke. A Redis that
 * does not answer is still given up on, at most one timeout (and one event-loop turn) later.
 * @module
 */
import { Command } from 'ioredis';

let installed = false;

/** The timer field ioredis clears when a command settles (`Command#_clearTimers`). */
interface TimedCommand {
  _commandTimeoutTimer?: NodeJS.Timeout;
  readonly isSettled: boolean;
}

export function installStallSafeCommandTimeout(): void {
  if (installed) return;
  installed = true;
  const arm = Object.getOwnPropertyDescriptor(Command.prototype, 'setTimeout')?.value as (
    this: Command,
    ms: number,
  ) => void;
  Command.prototype.setTimeout = function stallSafeTimeout(this: Command, ms: number): void {
    const command = this as unknown as TimedCommand;
    if (command._commandTimeoutTimer) return;
    // Kept where ioredis keeps its own, so a command that settles clears it. When it fires: the
    // check phase (after this turn's poll), then ioredis's own timeout at 0 ms, which rejects
    // the command if it is still unsettled.
    const armedAt = performance.now();
    const expire = (): void => {
      setImmediate(() => {
        if (command.isSettled) return;
        delete command._commandTimeoutTimer;
        arm.call(this, 0);
      });
    };
    command._commandTimeoutTimer = setTimeout(() => {
      // Woken more than the timeout late, the process stalled: the command itself may have left
      // only as it woke (Baton's connections write once per event-loop turn, see coalesce.ts), so
      // Redis gets the whole timeout again from now, as it would have had without the stall.
      if (performance.now() - armedAt > 2 * ms) command._commandTimeoutTimer = setTimeout(expire, ms);
      else expire();
    }, ms);
  };
}
