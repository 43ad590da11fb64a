/**
 * The flow map's picture: `renderFlowSvg` from `src/graph/` (contract 2), with live counts and
 * a link per step to the list of its sessions.
 * @module
 */
import type { Flow } from '../flow/define.ts';
import { renderFlowSvg, type StepCount } from '../graph/index.ts';
import { html, raw, type Html } from './html.ts';

/** The picture of `flow` with `counts`; each step links to `href(step)`. */
export function flowPicture(
  flow: Flow,
  counts: Readonly<Record<string, StepCount>>,
  href: (step: string) => string,
): Html {
  // Baton's own SVG: every label in it (step ids, inputs, counts) is XML-escaped by the renderer.
  return html`<div class="flow-picture" id="flow-picture">
    ${raw(renderFlowSvg(flow, { counts, href }))}
  </div>`;
}
