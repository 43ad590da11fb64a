/**
 * The flow map's picture: `renderFlowSvg` from `src/graph/` (contract 2), with live counts and
 * a link per step; until that module is present, a plain list of steps with the same counts
 * and links (so the page works either way).
 * @module
 */
import type { Flow } from '../flow/define.ts';
import { html, raw, type Html } from './html.ts';
import type { StepCount } from './reads.ts';

type RenderFlowSvg = (
  flow: Flow,
  opts?: {
    counts?: Readonly<Record<string, StepCount>>;
    href?: (step: string) => string;
  },
) => string;

let renderer: Promise<RenderFlowSvg | null> | undefined;

/** Loads `renderFlowSvg` once; null when the graph module is not there. */
function loadRenderer(): Promise<RenderFlowSvg | null> {
  const spec = new URL('../graph/index.ts', import.meta.url).href;
  renderer ??= (import(spec) as Promise<{ renderFlowSvg?: RenderFlowSvg }>).then(
    (m) => m.renderFlowSvg ?? null,
    () => null,
  );
  return renderer;
}

function age(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** The picture of `flow` with `counts`; each step links to `href(step)`. */
export async function flowPicture(
  flow: Flow,
  counts: Readonly<Record<string, StepCount>>,
  href: (step: string) => string,
): Promise<Html> {
  const render = await loadRenderer();
  if (render) {
    // Baton's own SVG: every label in it is XML-escaped by the renderer.
    return html`<div class="flow-picture" id="flow-picture">${raw(render(flow, { counts, href }))}</div>`;
  }
  const steps = [...flow.steps.keys()];
  return html`<ol class="flow-picture flow-list" id="flow-picture">
    ${steps.map((id) => {
      const c = counts[id];
      const n = c?.sessions ?? 0;
      const label = `${n} session${n === 1 ? '' : 's'}${c?.oldestMs !== undefined ? ` · oldest ${age(c.oldestMs)}` : ''}`;
      return html`<li class="node" data-step="${id}">
        <a href="${href(id)}"><strong>${id}</strong></a>
        <span class="count">${label}</span>
        ${id === flow.start ? html`<span class="badge">start</span>` : ''}
      </li>`;
    })}
  </ol>`;
}
