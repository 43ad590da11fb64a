/**
 * The map of a flow as data (`flowGraph`), as a standalone SVG picture (`renderFlowSvg`)
 * and as Mermaid text (`flowMermaid`). The layout is dagre's; the SVG is written here, with
 * no fonts, scripts, images or links to anything outside the file (an `href` is added only
 * when the caller asks for one). The console's flow map and `baton flow graph` both use it.
 *
 * Edge labels come from the flow itself: a step's handler is pure, so for a choice step
 * each choice is offered to it and the step it goes to is recorded; a text step's edges are
 * labelled `text` and an `any` step's `any`.
 * @module
 */
import dagre from '@dagrejs/dagre';
import { choicesOf, translator } from '../flow/define.ts';
import { replyNotes } from '../flow/replies.ts';
import type { OutboundBody } from '../model/session.ts';
import type { Choice, EventContext, Flow, Outcome, StepContext, StepDef, Translate } from '../flow/define.ts';

/** One step of the flow. */
export interface FlowGraphNode {
  readonly id: string;
  /** What the step accepts: `text`, `choice` or `any`. */
  readonly accepts: string;
  /** The flow's first step. */
  readonly start: boolean;
  /** A step the conversation ends at: no outgoing edges, or only ones that start it over. */
  readonly terminal: boolean;
  /** A step that starts an effect (work outside Baton whose result comes back as input). */
  readonly effect: boolean;
  /** A step that may hand the session to a person. */
  readonly handoff: boolean;
}

/** One declared transition, labelled by the inputs that take it. */
export interface FlowGraphEdge {
  readonly from: string;
  readonly to: string;
  /** Choice titles for a choice step (when the handler names them), else `text` or `any`. */
  readonly label: string;
  /** The edge starts the conversation over (data cleared). */
  readonly restart: boolean;
}

/** One of the flow's events (what the bot's own systems post), with the steps it may lead to. */
export interface FlowGraphEvent {
  readonly name: string;
  readonly to: readonly string[];
  /** The event may hand the session to a person (its handler, tried without a payload, said so). */
  readonly handoff: boolean;
}

export interface FlowGraph {
  readonly flow: string;
  readonly version: number;
  readonly start: string;
  readonly nodes: readonly FlowGraphNode[];
  readonly edges: readonly FlowGraphEdge[];
  readonly events: readonly FlowGraphEvent[];
  /**
   * What looks like a mistake: a step of choices whose `on`, asked with each choice (and the
   * session's data empty), goes to none of some step its `to` lists: a misspelt choice id in `on`
   * (outside test QA22-F2), or a branch on data the probe did not have.
   */
  readonly hints: readonly string[];
}

/** Live figures for one step, drawn as a badge on its node. */
export interface StepCount {
  readonly sessions: number;
  /** Age in milliseconds of the oldest session waiting at the step. */
  readonly oldestMs?: number;
}

export interface RenderFlowSvgOptions {
  readonly counts?: Readonly<Record<string, StepCount>>;
  /** When given, each node links to `href(step)`. */
  readonly href?: (step: string) => string;
}

/** The part of dagre's graph this module uses (its bundled typings do not resolve under NodeNext). */
interface Point {
  readonly x: number;
  readonly y: number;
}
interface LaidNode {
  width: number;
  height: number;
  x?: number;
  y?: number;
}
interface LaidEdge {
  width?: number;
  height?: number;
  labelpos?: 'l' | 'c' | 'r';
  minlen?: number;
  weight?: number;
  points?: Point[];
  x?: number;
  y?: number;
}
interface LayoutGraph {
  setGraph(label: Record<string, number | string>): void;
  setDefaultEdgeLabel(fn: () => LaidEdge): void;
  setNode(id: string, label: LaidNode): void;
  setEdge(v: string, w: string, label: LaidEdge, name: string): void;
  node(id: string): LaidNode;
  edge(e: { v: string; w: string; name: string }): LaidEdge;
  graph(): { width?: number; height?: number };
}
const layoutLib = dagre as unknown as {
  graphlib: { Graph: new (opts: { multigraph: boolean }) => LayoutGraph };
  layout(g: LayoutGraph): void;
};

type Probe =
  | { readonly kind: 'goto'; readonly to: string; readonly restart: boolean }
  | { readonly kind: 'retry' }
  | { readonly kind: 'handoff' };

/** Outcome builders that only record what a handler decided. */
function probeContext(t: Translate): StepContext<string> {
  return {
    data: {},
    t,
    goto: (to, set) => ({ kind: 'goto', step: to, ...(set ? { set } : {}) }),
    restart: (to, set) => ({ kind: 'goto', step: to, clear: true, ...(set ? { set } : {}) }),
    retry: () => ({ kind: 'retry' }),
    handoff: (reason) => ({ kind: 'handoff', reason }),
    startOver: () => ({ kind: 'start_over' }),
  };
}

/**
 * Runs one of a step's pure handlers on a made-up input and reports what it decided; undefined
 * when it cannot tell (the handler threw, needs data it does not have, went nowhere declared).
 */
function probe(step: StepDef, start: string, run: () => Outcome | undefined): Probe | undefined {
  let outcome: Outcome | undefined;
  try {
    outcome = run();
  } catch {
    return undefined;
  }
  if (outcome === undefined || outcome === null || typeof outcome !== 'object') return undefined;
  switch (outcome.kind) {
    case 'retry':
      return { kind: 'retry' };
    case 'handoff':
      return { kind: 'handoff' };
    case 'start_over':
      // Allowed from any step, whatever its `to` says (outside test QA105-F1: it was no edge).
      return { kind: 'goto', to: start, restart: true };
    case 'goto':
      return step.to.includes(outcome.step)
        ? { kind: 'goto', to: outcome.step, restart: outcome.clear === true }
        : undefined;
    default:
      return undefined;
  }
}

/** The label of an edge the start step's `first` may take (on what a new user typed). */
const FIRST = 'first message';

/** A step property the flow DSL may add (effects, hand-off); read without assuming its shape. */
function has(step: StepDef, key: string): boolean {
  const value = (step as unknown as Record<string, unknown>)[key];
  return value !== undefined && value !== null && value !== false;
}

/**
 * The flow's steps and transitions as plain data.
 * @example
 * const g = flowGraph(orderFlow);
 * g.nodes.find((n) => n.start)?.id; // 'ask_name'
 */
export function flowGraph(flow: Flow): FlowGraph {
  const nodes: FlowGraphNode[] = [];
  const edges: FlowGraphEdge[] = [];
  // Labels in the flow's default language.
  const t: Translate = (key, vars) => {
    try {
      return translator(flow, {})(key, vars);
    } catch {
      return key;
    }
  };
  const ctx = probeContext(t);
  const hints: string[] = [];
  for (const step of flow.steps.values()) {
    const labels = new Map<string, string[]>();
    const restarts = new Set<string>();
    let unknown = false;
    let handoff = has(step, 'handoff');
    const note = (p: Probe | undefined, label: string | undefined): void => {
      if (p === undefined) unknown = true;
      else if (p.kind === 'handoff') handoff = true;
      else if (p.kind === 'goto') {
        if (label !== undefined && !(labels.get(p.to) ?? []).includes(label))
          labels.set(p.to, [...(labels.get(p.to) ?? []), label]);
        if (p.restart) restarts.add(p.to);
      }
    };
    const on = step.on;
    if (step.accepts === 'choice') {
      let choices: readonly Choice[] = [];
      try {
        choices = choicesOf(step, {}, { t });
      } catch {
        unknown = true;
      }
      // Choices made from the session's data (a list of free slots) are none with empty data:
      // nothing was asked, so nothing can be said of where they lead (outside test QA41-F6).
      if (choices.length === 0) unknown = true;
      for (const c of choices) {
        note(
          on &&
            probe(step, flow.start, () =>
              on({ type: 'choice', id: c.id, title: c.title, messageIds: [] }, ctx),
            ),
          c.title,
        );
      }
    } else if (on) {
      const p = probe(step, flow.start, () => on({ type: 'text', text: 'hello', messageIds: [] }, ctx));
      if (p?.kind === 'goto' && p.restart) restarts.add(p.to);
      if (p?.kind === 'handoff') handoff = true;
    }
    // The start step's `first` decides on a new session's first message: it may jump ahead to
    // steps no choice leads to, on what the user typed (outside test QA101-F3: those edges were
    // labelled "choice" and hinted at as a misspelt choice id).
    const first = step.first;
    if (first) {
      // What it does with a text the probe makes up says little: only a jump it made is noted.
      const p = probe(step, flow.start, () => first({ type: 'text', text: 'hello', messageIds: [] }, ctx));
      if (p?.kind === 'goto') note(p, FIRST);
    }
    const fx = step.effect;
    if (fx) {
      note(
        probe(step, flow.start, () => fx.onResult({}, ctx)),
        'result',
      );
      note(
        probe(step, flow.start, () => fx.onFailure({ error: 'probe', attempts: 1 }, ctx)),
        'failure',
      );
    }
    // Replies WhatsApp takes that will still go wrong (a media link Meta cannot reach), in a
    // prompt written out. A computed `say` is not run: it is the author's code, run at each
    // visit (a `say` counting its calls, or failing on no data, saw one more run at start).
    const said = typeof step.say === 'function' || step.say === undefined ? [] : [step.say].flat();
    const bodies = said.filter((r): r is OutboundBody => typeof r === 'object' && r !== null);
    for (const note of new Set(bodies.flatMap(replyNotes))) hints.push(`step "${step.id}": ${note}`);
    if (step.accepts === 'choice' && !fx && on && !unknown) {
      for (const to of step.to)
        if (!labels.has(to) && !first)
          hints.push(
            `step "${step.id}": none of its choices leads to "${to}" (asked with each choice id and empty data): a misspelt choice id in its "on"?`,
          );
    }
    // A start over from a step whose `to` does not name the start step is an edge still.
    const beyondTo = [...restarts].filter((to) => !step.to.includes(to));
    for (const to of [...step.to, ...beyondTo]) {
      const found = labels.get(to);
      let label: string;
      if (fx) label = found ? found.join(' / ') : 'result';
      else if (step.accepts === 'choice')
        // Reached by no choice with empty data: by `first` on what a user typed, or by a choice
        // on data the probe had not; which one, the probe cannot tell (outside test QA103-F7).
        label = found && !unknown ? found.join(' / ') : first && !unknown ? `choice / ${FIRST}` : 'choice';
      else label = step.accepts;
      edges.push({ from: step.id, to, label, restart: restarts.has(to) });
    }
    nodes.push({
      id: step.id,
      accepts: step.accepts,
      start: step.id === flow.start,
      terminal: false,
      effect: fx !== undefined,
      handoff,
    });
  }
  // An end: nowhere to go, or only back to the start, whatever the user sends.
  const terminal = (n: FlowGraphNode): boolean => {
    const out = edges.filter((e) => e.from === n.id);
    if (out.length === 0) return true;
    if (n.accepts !== 'any' || n.effect) return false;
    return out.every((e) => e.restart || (e.to === flow.start && n.id !== flow.start && out.length === 1));
  };
  const events = [...flow.events].map(([name, e]): FlowGraphEvent => {
    let handoff = false;
    try {
      const ectx: EventContext = { ...ctx, step: null };
      handoff = e.on(undefined, ectx)?.kind === 'handoff';
    } catch {
      // A handler that needs its payload: nothing more to tell.
    }
    return { name, to: [...e.to], handoff };
  });
  return {
    flow: flow.id,
    version: flow.version,
    start: flow.start,
    nodes: nodes.map((n) => ({ ...n, terminal: terminal(n) })),
    edges,
    events,
    hints,
  };
}

/**
 * Ids for the flow's events on a picture, apart from its steps': `event_<name>`, with `_`
 * added while a step has that id.
 */
function eventIds(graph: FlowGraph): Map<string, string> {
  const taken = new Set(graph.nodes.map((n) => n.id));
  const ids = new Map<string, string>();
  for (const e of graph.events) {
    let id = `event_${e.name}`;
    while (taken.has(id)) id += '_';
    taken.add(id);
    ids.set(e.name, id);
  }
  return ids;
}

/** Escapes text for XML content and attribute values. */
export function xmlEscape(s: string): string {
  return s
    .replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
    .replace(
      // Characters XML 1.0 forbids outright.
      // eslint-disable-next-line no-control-regex
      /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g,
      '',
    );
}

const FONT = 'font-family="Helvetica, Arial, sans-serif"';
const NODE_FONT = 13;
const LABEL_FONT = 11;
/** Rough text width: no font metrics without a browser, so a generous average advance. */
const textWidth = (s: string, size: number): number => Math.ceil([...s].length * size * 0.62);

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

const fmt = (n: number): string => String(Math.round(n * 10) / 10);

interface XY {
  readonly x: number;
  readonly y: number;
}

/** A smooth path through every one of dagre's points (Catmull-Rom, so labels stay on their edge). */
function curve(points: readonly XY[]): string {
  const at = (p: XY): string => `${fmt(p.x)},${fmt(p.y)}`;
  if (points.length < 3) return points.map((p, i) => `${i === 0 ? 'M' : 'L'}${at(p)}`).join(' ');
  const parts = [`M${at(points[0]!)}`];
  for (let i = 0; i < points.length - 1; i++) {
    const p0 = points[Math.max(0, i - 1)]!;
    const p1 = points[i]!;
    const p2 = points[i + 1]!;
    const p3 = points[Math.min(points.length - 1, i + 2)]!;
    const c1 = { x: p1.x + (p2.x - p0.x) / 6, y: p1.y + (p2.y - p0.y) / 6 };
    const c2 = { x: p2.x - (p3.x - p1.x) / 6, y: p2.y - (p3.y - p1.y) / 6 };
    parts.push(`C${at(c1)} ${at(c2)} ${at(p2)}`);
  }
  return parts.join(' ');
}

function nodeSubtitle(n: FlowGraphNode): string {
  const marks = [n.effect ? 'effect' : n.accepts];
  if (n.handoff) marks.push('hand-off');
  if (n.terminal) marks.push('end');
  return marks.join(' · ');
}

/**
 * Draws the flow as a standalone SVG document: one `<g class="node" data-step="<id>">` per
 * step, edges labelled by their input, start, terminal, effect and hand-off steps marked,
 * and, when `counts` is given, the number of sessions at each step. Each event is a
 * `<g class="event" data-event="<name>">`, with dashed edges to the steps it may lead to.
 * @example
 * writeFileSync('order.svg', renderFlowSvg(orderFlow, { counts: { ask_name: { sessions: 3 } } }));
 */
export function renderFlowSvg(flow: Flow, opts: RenderFlowSvgOptions = {}): string {
  const graph = flowGraph(flow);
  const g = new layoutLib.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: 'TB', nodesep: 40, ranksep: 56, edgesep: 16, marginx: 24, marginy: 24 });
  g.setDefaultEdgeLabel(() => ({}));
  const START = '\u0000start';
  g.setNode(START, { width: 14, height: 14 });
  for (const n of graph.nodes) {
    const count = opts.counts?.[n.id];
    const w = Math.max(
      textWidth(n.id, NODE_FONT),
      textWidth(nodeSubtitle(n), LABEL_FONT),
      count ? textWidth(countText(count), LABEL_FONT) + 12 : 0,
    );
    g.setNode(n.id, { width: w + 28, height: count ? 62 : 46 });
  }
  const evIds = eventIds(graph);
  const eventSubtitle = (e: FlowGraphEvent): string => (e.handoff ? 'event · hand-off' : 'event');
  for (const e of graph.events) {
    const w = Math.max(textWidth(e.name, NODE_FONT), textWidth(eventSubtitle(e), LABEL_FONT));
    g.setNode(evIds.get(e.name)!, { width: w + 28, height: 46 });
  }
  graph.events.forEach((e) =>
    e.to.forEach((to, j) =>
      g.setEdge(evIds.get(e.name)!, to, { width: 0, height: 0, minlen: 1, weight: 1 }, `ev-${e.name}-${j}`),
    ),
  );
  g.setEdge(START, graph.start, { width: 0, height: 0, weight: 10 }, 'start');
  graph.edges.forEach((e, i) => {
    g.setEdge(
      e.from,
      e.to,
      {
        width: textWidth(e.label, LABEL_FONT) + 8,
        height: LABEL_FONT + 6,
        labelpos: 'c',
        minlen: 1,
        weight: e.restart ? 0 : 1,
      },
      `e${i}`,
    );
  });
  layoutLib.layout(g);
  const size = g.graph();
  const width = Math.ceil(size.width ?? 0);
  const height = Math.ceil(size.height ?? 0);

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="baton-flow" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${xmlEscape(`flow ${graph.flow} v${graph.version}`)}">`,
    `<title>${xmlEscape(`flow ${graph.flow} (version ${graph.version})`)}</title>`,
    '<defs><marker id="baton-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
  );

  // Edges first, so nodes are drawn over them.
  graph.edges.forEach((e, i) => {
    const laid = g.edge({ v: e.from, w: e.to, name: `e${i}` });
    const pts = laid.points ?? [];
    if (pts.length === 0) return;
    const d = curve(pts);
    out.push(
      `<g class="edge${e.restart ? ' restart' : ''}" data-from="${xmlEscape(e.from)}" data-to="${xmlEscape(e.to)}">`,
      `<path d="${d}" fill="none" stroke="#555" stroke-width="1.4"${e.restart ? ' stroke-dasharray="5 4"' : ''} marker-end="url(#baton-arrow)"/>`,
    );
    if (laid.x !== undefined && laid.y !== undefined) {
      const lw = textWidth(e.label, LABEL_FONT) + 8;
      out.push(
        `<rect x="${fmt(laid.x - lw / 2)}" y="${fmt(laid.y - 9)}" width="${lw}" height="17" rx="3" fill="#ffffff" fill-opacity="0.9"/>`,
        `<text x="${fmt(laid.x)}" y="${fmt(laid.y + 4)}" text-anchor="middle" font-size="${LABEL_FONT}" ${FONT} fill="#333">${xmlEscape(e.label)}</text>`,
      );
    }
    out.push('</g>');
  });
  // Events: dashed, from a node of their own to each step they may lead to.
  for (const e of graph.events) {
    e.to.forEach((to, j) => {
      const pts = g.edge({ v: evIds.get(e.name)!, w: to, name: `ev-${e.name}-${j}` }).points ?? [];
      if (pts.length === 0) return;
      out.push(
        `<g class="edge event" data-event="${xmlEscape(e.name)}" data-to="${xmlEscape(to)}">`,
        `<path d="${curve(pts)}" fill="none" stroke="#6c3483" stroke-width="1.2" stroke-dasharray="3 3" marker-end="url(#baton-arrow)"/>`,
        '</g>',
      );
    });
  }
  const startEdge = g.edge({ v: START, w: graph.start, name: 'start' });
  const startNode = g.node(START);
  if (startNode.x !== undefined && startNode.y !== undefined) {
    const pts = startEdge.points ?? [];
    const d = pts.map((p, j) => `${j === 0 ? 'M' : 'L'}${fmt(p.x)},${fmt(p.y)}`).join(' ');
    out.push(
      '<g class="start-marker">',
      `<circle cx="${fmt(startNode.x)}" cy="${fmt(startNode.y)}" r="7" fill="#222"/>`,
      pts.length > 0
        ? `<path d="${d}" fill="none" stroke="#222" stroke-width="1.4" marker-end="url(#baton-arrow)"/>`
        : '',
      '</g>',
    );
  }

  for (const n of graph.nodes) {
    const laid = g.node(n.id);
    const x = (laid.x ?? 0) - laid.width / 2;
    const y = (laid.y ?? 0) - laid.height / 2;
    const count = opts.counts?.[n.id];
    const classes = ['node'];
    if (n.start) classes.push('start');
    if (n.terminal) classes.push('terminal');
    if (n.effect) classes.push('effect');
    if (n.handoff) classes.push('handoff');
    const fill = n.handoff ? '#fdecea' : n.effect ? '#fff6dd' : n.terminal ? '#eef1f4' : '#e8f5ee';
    const stroke = n.handoff ? '#c0392b' : n.effect ? '#b7791f' : n.terminal ? '#6b7785' : '#1e8449';
    out.push(`<g class="${classes.join(' ')}" data-step="${xmlEscape(n.id)}">`);
    const href = opts.href?.(n.id);
    if (href !== undefined) out.push(`<a href="${xmlEscape(href)}">`);
    out.push(
      `<rect x="${fmt(x)}" y="${fmt(y)}" width="${fmt(laid.width)}" height="${fmt(laid.height)}" rx="9" fill="${fill}" stroke="${stroke}" stroke-width="${n.start ? 2.4 : 1.4}"${n.effect ? ' stroke-dasharray="6 3"' : ''}/>`,
    );
    if (n.terminal) {
      out.push(
        `<rect x="${fmt(x + 3)}" y="${fmt(y + 3)}" width="${fmt(laid.width - 6)}" height="${fmt(laid.height - 6)}" rx="7" fill="none" stroke="${stroke}" stroke-width="1"/>`,
      );
    }
    const cx = laid.x ?? 0;
    out.push(
      `<text x="${fmt(cx)}" y="${fmt(y + 20)}" text-anchor="middle" font-size="${NODE_FONT}" font-weight="bold" ${FONT} fill="#111">${xmlEscape(n.id)}</text>`,
      `<text x="${fmt(cx)}" y="${fmt(y + 36)}" text-anchor="middle" font-size="${LABEL_FONT}" ${FONT} fill="#555">${xmlEscape(nodeSubtitle(n))}</text>`,
    );
    if (count) {
      out.push(
        `<text class="count" x="${fmt(cx)}" y="${fmt(y + 53)}" text-anchor="middle" font-size="${LABEL_FONT}" font-weight="bold" ${FONT} fill="${count.sessions > 0 ? '#0b5394' : '#888'}">${xmlEscape(countText(count))}</text>`,
      );
    }
    out.push(
      `<title>${xmlEscape(`${n.id}: ${nodeSubtitle(n)}${count ? `, ${countText(count)}` : ''}`)}</title>`,
    );
    if (href !== undefined) out.push('</a>');
    out.push('</g>');
  }
  for (const e of graph.events) {
    const laid = g.node(evIds.get(e.name)!);
    const x = (laid.x ?? 0) - laid.width / 2;
    const y = (laid.y ?? 0) - laid.height / 2;
    const cx = laid.x ?? 0;
    out.push(
      `<g class="event" data-event="${xmlEscape(e.name)}">`,
      `<rect x="${fmt(x)}" y="${fmt(y)}" width="${fmt(laid.width)}" height="${fmt(laid.height)}" rx="${fmt(laid.height / 2)}" fill="#f4ecf7" stroke="#6c3483" stroke-width="1.2" stroke-dasharray="4 3"/>`,
      `<text x="${fmt(cx)}" y="${fmt(y + 20)}" text-anchor="middle" font-size="${NODE_FONT}" font-weight="bold" ${FONT} fill="#4a235a">${xmlEscape(e.name)}</text>`,
      `<text x="${fmt(cx)}" y="${fmt(y + 36)}" text-anchor="middle" font-size="${LABEL_FONT}" ${FONT} fill="#555">${xmlEscape(eventSubtitle(e))}</text>`,
      `<title>${xmlEscape(`event ${e.name}${e.to.length > 0 ? ` → ${e.to.join(', ')}` : ''}${e.handoff ? ' (hand-off)' : ''}`)}</title>`,
      '</g>',
    );
  }
  out.push('</svg>');
  return out.filter((l) => l !== '').join('\n') + '\n';
}

function countText(c: StepCount): string {
  const s = `${c.sessions} session${c.sessions === 1 ? '' : 's'}`;
  return c.oldestMs !== undefined && c.sessions > 0 ? `${s} · oldest ${age(c.oldestMs)}` : s;
}

/**
 * A transition label Mermaid reads as written: line breaks become spaces, and the characters
 * its grammar takes for syntax are entity codes (a `:` would start a second label, a `;` end
 * the statement), so "18:00" stays "18:00" on the picture. Step ids need nothing: Mermaid ids
 * allow letters, digits and underscores, and step ids are lower_snake_case already.
 */
const MERMAID_ENTITIES: Record<string, string> = { '#': '#35;', ':': '#58;', ';': '#59;', '"': '#quot;' };
const mermaidLabel = (s: string): string =>
  s.replace(/[\n\r]/g, ' ').replace(/[#:;"]/g, (c) => MERMAID_ENTITIES[c]!);

/**
 * The flow as a Mermaid state diagram, edges labelled by their input; each event a state of
 * its own, with an edge to each step it may lead to.
 * @example
 * console.log(flowMermaid(orderFlow));
 */
export function flowMermaid(flow: Flow): string {
  const graph = flowGraph(flow);
  const lines = ['stateDiagram-v2', `  [*] --> ${graph.start}`];
  for (const e of graph.edges) {
    lines.push(`  ${e.from} --> ${e.to}: ${mermaidLabel(e.restart ? `${e.label} (restart)` : e.label)}`);
  }
  for (const n of graph.nodes) {
    const marks = [n.effect ? 'effect' : '', n.handoff ? 'hand-off' : ''].filter((m) => m !== '');
    if (marks.length > 0) lines.push(`  note right of ${n.id}: ${marks.join(', ')}`);
  }
  for (const n of graph.nodes) if (n.terminal) lines.push(`  ${n.id} --> [*]`);
  // An event is a state of its own, posted from outside: edges to the steps it may lead to.
  const evIds = eventIds(graph);
  for (const e of graph.events) {
    const id = evIds.get(e.name)!;
    lines.push(`  state "${mermaidLabel(`${e.name} (event)`)}" as ${id}`);
    for (const to of e.to) lines.push(`  ${id} --> ${to}: event`);
    if (e.handoff) lines.push(`  note right of ${id}: hand-off`);
  }
  return lines.join('\n') + '\n';
}
