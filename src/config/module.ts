/**
 * Imports a module named by configuration (`BATON_FLOWS`) or a development tool (`loadgen/`).
 * Compiled Baton runs on plain Node, which cannot import TypeScript: a `.ts` module is then
 * loaded through tsx when it is installed (a checkout of Baton, or an author's project that has
 * it), and otherwise refused with a clear message.
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Imports `url` (a `file:` URL), registering tsx first if the module is TypeScript and this
 * Baton is compiled. First, not on failure: Node keeps a failed import of a URL failed for the
 * life of the process, so a retry after registering would fail again.
 */
export async function importModule(url: string): Promise<Record<string, unknown>> {
  const typescript = /\.[cm]?tsx?$/.test(new URL(url).pathname);
  // Running from the sources means a TypeScript loader is already in place.
  if (typescript && !import.meta.url.endsWith('.ts')) {
    await registerTsx();
    const hint = commonJsScope(url);
    if (hint !== null) throw new Error(hint);
  }
  return (await import(url)) as Record<string, unknown>;
}

/**
 * Why a `.ts` module would fail to load as the ES module a flow file is: outside a package with
 * `"type": "module"`, Node takes `.ts` for CommonJS, and the import failed with "Cannot require()
 * ES Module ... in a cycle". Null when it will load (`.mts`, or an ES module package).
 */
function commonJsScope(url: string): string | null {
  const file = fileURLToPath(url);
  if (!/\.tsx?$/.test(file)) return null;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        const type = (JSON.parse(readFileSync(pkg, 'utf8')) as { type?: unknown }).type;
        if (type === 'module') return null;
      } catch {
        // unreadable: Node will read it as CommonJS too
      }
      return `${basename(file)} would load as CommonJS (${pkg} has no "type": "module"): add "type": "module" there, or name the file .mts`;
    }
    if (dirname(dir) === dir)
      return `${basename(file)} would load as CommonJS (no package.json with "type": "module" above it): add one, or name the file .mts`;
  }
}

let registered: Promise<void> | null = null;

function registerTsx(): Promise<void> {
  registered ??= (async () => {
    // A variable specifier: tsx is a development dependency, never bundled or required.
    const specifier = 'tsx/esm/api';
    try {
      const { register } = (await import(specifier)) as { register: () => void };
      register();
    } catch {
      throw new Error('it is TypeScript: compile it to JavaScript, or install tsx to load it as is');
    }
  })();
  return registered;
}
