/**
 * `.env` files, read with Node's own parser, and checked: a line that sets nothing is an error
 * naming it. Node's parser reads such a line and the next as one odd name, so a note
 * `WHATSAPP_APP_SECRET is set below` above `BATON_BUFFER_MS=-1` set neither, silently (outside
 * test QA32-F1), and a secret written without its `=` would leave signatures unchecked.
 * @module
 */
import { parseEnv } from 'node:util';
import { ConfigError } from '../errors.ts';

/** A variable's name as `.env` may set it. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** The settings of a `.env` file's text; throws ConfigError (`.env`) naming a line that sets nothing. */
export function parseDotEnv(file: string): Record<string, string> {
  // Windows editors save a byte order mark, which Node's parser took into the first name
  // (`\uFEFFADMIN_TOKEN`, read by nothing: outside test QA54-F3).
  const text = file.startsWith('\uFEFF') ? file.slice(1) : file;
  const parsed = parseEnv(text);
  // The lines of a quoted value that spans lines are part of it, not settings.
  const inValues = new Set(
    Object.values(parsed).flatMap((v) =>
      v?.includes('\n') === true ? v.split('\n').map((l) => l.trim()) : [],
    ),
  );
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || inValues.has(line.replace(/["'`]$/, '').trim())) return;
    const name = /^(?:export\s+)?([^=]*?)\s*=/.exec(line)?.[1];
    if (name !== undefined && ENV_NAME.test(name)) return;
    const shown = line.length > 60 ? `${line.slice(0, 60)}…` : line;
    throw new ConfigError('.env', `line ${i + 1} is not NAME=value: "${shown}"`);
  });
  const settings: Record<string, string> = {};
  for (const [name, value] of Object.entries(parsed)) if (value !== undefined) settings[name] = value;
  return settings;
}
