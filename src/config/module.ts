/**
 * Imports a module named by configuration (`BATON_FLOWS`) or a development tool (`loadgen/`).
 * Compiled Baton runs on plain Node, which cannot import TypeScript: a `.ts` module is then
 * loaded through tsx when it is installed (a checkout of Baton, or an author's project that has
 * it), and otherwise refused with a clear message.
 * @module
 */

/**
 * Imports `url` (a `file:` URL), registering tsx first if the module is TypeScript and this
 * Baton is compiled. First, not on failure: Node keeps a failed import of a URL failed for the
 * life of the process, so a retry after registering would fail again.
 */
export async function importModule(url: string): Promise<Record<string, unknown>> {
  const typescript = /\.[cm]?tsx?$/.test(new URL(url).pathname);
  // Running from the sources means a TypeScript loader is already in place.
  if (typescript && !import.meta.url.endsWith('.ts')) await registerTsx();
  return (await import(url)) as Record<string, unknown>;
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
