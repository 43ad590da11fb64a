/**
 * `baton flow graph <flowId> --format mermaid|svg|png [--output file] [--flows module]`.
 * @module
 */
import { writeFileSync } from 'node:fs';
import { loadFlows } from '../app.ts';
import { BatonError } from '../errors.ts';
import { flowGraph, flowMermaid, renderFlowSvg } from '../graph/index.ts';

export const GRAPH_FORMATS = ['mermaid', 'svg', 'png'] as const;
export type GraphFormat = (typeof GRAPH_FORMATS)[number];

/** The format a file name's extension asks for (`.svg`, `.png`, `.mmd`), if any. */
export function formatOfFile(file: string | undefined): GraphFormat | undefined {
  const ext = /\.([a-z]+)$/i.exec(file ?? '')?.[1]?.toLowerCase();
  if (ext === 'svg' || ext === 'png') return ext;
  return ext === 'mmd' || ext === 'mermaid' ? 'mermaid' : undefined;
}

export interface GraphFlags {
  readonly format: string;
  readonly output?: string;
  /** The module the flow is in (`BATON_FLOWS` otherwise). */
  readonly flows?: string;
}

/** Draws one flow of `flowModule` (BATON_FLOWS) in `format`; text goes to `out`, PNG bytes to the file or stdout. */
export async function runFlowGraph(
  flowId: string,
  flags: GraphFlags,
  flowModule: string | undefined,
  io: { out: (s: string) => void; err?: (s: string) => void; writeStdout?: (b: Buffer) => void },
): Promise<number> {
  const format = flags.format as GraphFormat;
  const flows = await loadFlows(flowModule, flags.flows === undefined ? 'BATON_FLOWS' : '--flows');
  const flow = flows.find((f) => f.id === flowId);
  if (!flow) {
    // Only the reference bot was looked in: say how to name the author's module.
    const own = flowModule === undefined ? '; draw a flow of your own with --flows <module>' : '';
    throw new BatonError(
      'BATON_ERR_NOT_FOUND',
      `no flow "${flowId}" (have: ${flows.map((f) => f.id).join(', ')}${own})`,
    );
  }
  // What looks like a mistake goes to stderr, whatever the format: the drawing stays clean.
  const err = io.err ?? ((line: string) => void process.stderr.write(`${line}\n`));
  for (const hint of flowGraph(flow).hints) err(`baton: hint: flow ${flow.id}: ${hint}`);
  if (format === 'png') {
    const { renderSvgToPng } = await import('../graph/png.ts');
    const png = await renderSvgToPng(renderFlowSvg(flow));
    if (flags.output) writeOutput(flags.output, png);
    else (io.writeStdout ?? ((b: Buffer) => process.stdout.write(b)))(png);
    return 0;
  }
  const text = format === 'svg' ? renderFlowSvg(flow) : flowMermaid(flow);
  if (flags.output) writeOutput(flags.output, text);
  else io.out(text.trimEnd());
  return 0;
}

/** Writes the drawing to `--output`, or says in one line why it cannot (not a bare ENOENT). */
function writeOutput(path: string, data: string | Buffer): void {
  try {
    writeFileSync(path, data);
  } catch (err) {
    // "ENOENT: no such file or directory, open 'x/flow.svg'": the reason without code and call.
    const why = (err as Error).message.replace(/^E[A-Z]+: /, '').replace(/, \w+ '.*'$/, '');
    throw new Error(`cannot write --output "${path}": ${why}`);
  }
}
