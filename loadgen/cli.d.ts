/**
 * `baton load`: the load and chaos generator (SPEC section 6) from the command line; loaded
 * lazily by `src/cli/load.ts`, so a Baton that never runs `load` never loads it. Drives
 * simulated users through the reference bot against a running Baton, shows a progress bar on
 * stderr and prints a closing verdict. Exit code 0 when the verdict is clean, 1 when it is not
 * (or the target cannot be reached), 2 on a usage error.
 *
 * The target Baton must send its replies to the generator's sink, so start it with
 * `WHATSAPP_API_BASE_URL=http://127.0.0.1:<sink-port>` (default port 4010), the same
 * `WHATSAPP_APP_SECRET` as `--secret` and the same `ADMIN_TOKEN` as `--admin-token`.
 *
 * @example
 * ```sh
 * WHATSAPP_API_BASE_URL=http://127.0.0.1:4010 WHATSAPP_APP_SECRET=s ADMIN_TOKEN=t npx baton start &
 * npx baton load --url http://127.0.0.1:3000 --secret s --admin-token t --users 200 --chaos
 * ```
 * @module
 */
import { type LoadFlags } from '../src/cli/load.ts';
import { type LoadProgress, type LoadReport } from './index.ts';
/** Where the command writes. */
export interface LoadIO {
    readonly out: (line: string) => void;
    readonly err: (text: string) => void;
    /** Whether `err` is a terminal (the progress bar redraws in place). */
    readonly tty: boolean;
    readonly env: Readonly<Record<string, string | undefined>>;
}
/** One progress line: a bar over messages sent, then replies and users. */
export declare function progressLine(p: LoadProgress, width?: number): string;
/** The closing report, as lines. */
export declare function formatReport(r: LoadReport, chaosLabel: string): string[];
/**
 * Runs `baton load` with parsed commander flags; returns the exit code.
 *
 * @example
 * ```ts
 * const code = await runLoadCommand({ url: 'http://127.0.0.1:3000', adminToken: 't', users: '10' });
 * ```
 */
export declare function runLoadCommand(flags: LoadFlags, given?: Partial<LoadIO>): Promise<number>;
