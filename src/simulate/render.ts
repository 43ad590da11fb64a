/**
 * How WhatsApp shows a message Baton sends, as plain text lines: the Graph API body Baton
 * POSTed to `/{phone_number_id}/messages` in, the lines and the numbered choices out. Covers
 * every message type of Meta's send schema (text, media, location, reaction, contacts,
 * interactive buttons, lists, CTA URL, flows, products, templates). Pure: no I/O.
 * @module
 */
import { terminalSafeText } from '../terminal.ts';

/** A button or list row the user can pick by its number. */
export interface Pickable {
  /** 1-based, as shown. */
  readonly n: number;
  readonly kind: 'button' | 'row';
  readonly id: string;
  readonly title: string;
}

export interface RenderedMessage {
  /** The message's type as sent (`text`, `interactive:button`, `template`...). */
  readonly kind: string;
  readonly lines: readonly string[];
  readonly picks: readonly Pickable[];
}

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const o = (v: unknown): Json => (isObj(v) ? v : {});
const a = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const s = (v: unknown): string | undefined =>
  typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;

/** A media object by link or id, with its caption and file name. */
function media(kind: string, m: Json): string[] {
  const where = s(m.link) ?? (s(m.id) !== undefined ? `media id ${s(m.id)}` : '(no link or id)');
  const lines = [`[${kind}${s(m.filename) ? ` ${s(m.filename)}` : ''}] ${where}`];
  const caption = s(m.caption);
  if (caption) lines.push(...caption.split('\n'));
  return lines;
}

function header(h: Json): string[] {
  const type = s(h.type);
  if (type === 'text') {
    const sub = s(h.sub_text);
    return [`*${s(h.text) ?? ''}*`, ...(sub ? [sub] : [])];
  }
  if (type === 'image' || type === 'video' || type === 'document') return media(type, o(h[type]));
  return [];
}

const footer = (f: unknown): string[] => (s(o(f).text) ? [`_${s(o(f).text)}_`] : []);

function interactive(i: Json): RenderedMessage {
  const type = s(i.type) ?? 'unknown';
  const lines: string[] = [...header(o(i.header))];
  const body = s(o(i.body).text);
  if (body) lines.push(...body.split('\n'));
  lines.push(...footer(i.footer));
  const action = o(i.action);
  const picks: Pickable[] = [];
  if (type === 'button') {
    for (const b of a(action.buttons)) {
      const reply = o(o(b).reply);
      const p: Pickable = {
        n: picks.length + 1,
        kind: 'button',
        id: s(reply.id) ?? '',
        title: s(reply.title) ?? '',
      };
      picks.push(p);
    }
    lines.push(picks.map((p) => `[${p.n}] ${p.title}`).join('   '));
  } else if (type === 'list') {
    lines.push(`≡ ${s(action.button) ?? 'Menu'}`);
    for (const section of a(action.sections)) {
      const title = s(o(section).title);
      if (title) lines.push(`  ${title}`);
      for (const r of a(o(section).rows)) {
        const row = o(r);
        const p: Pickable = {
          n: picks.length + 1,
          kind: 'row',
          id: s(row.id) ?? '',
          title: s(row.title) ?? '',
        };
        picks.push(p);
        const d = s(row.description);
        lines.push(`    ${p.n}. ${p.title}${d ? ` - ${d}` : ''}`);
      }
    }
  } else if (type === 'cta_url') {
    const p = o(action.parameters);
    lines.push(`[↗ ${s(p.display_text) ?? 'Open'}] ${s(p.url) ?? ''}`);
  } else if (type === 'flow') {
    const p = o(action.parameters);
    lines.push(`[▶ ${s(p.flow_cta) ?? 'Open'}] (WhatsApp Flow ${s(p.flow_id) ?? s(p.flow_name) ?? ''})`);
  } else if (type === 'product') {
    lines.push(`[product ${s(action.product_retailer_id) ?? ''} from catalog ${s(action.catalog_id) ?? ''}]`);
  } else if (type === 'product_list') {
    for (const section of a(action.sections)) {
      lines.push(`  ${s(o(section).title) ?? 'Products'}`);
      for (const item of a(o(section).product_items))
        lines.push(`    • ${s(o(item).product_retailer_id) ?? ''}`);
    }
  } else if (type === 'catalog_message') {
    lines.push('[View catalog]');
  } else if (type === 'call_permission_request') {
    lines.push('[Allow calls?]');
  } else {
    lines.push(`[interactive ${type}]`);
  }
  return { kind: `interactive:${type}`, lines, picks };
}

/** A template parameter as WhatsApp fills it in. */
function param(p: Json): string {
  const type = s(p.type) ?? 'text';
  switch (type) {
    case 'text':
      return s(p.text) ?? '';
    case 'payload':
      return s(p.payload) ?? '';
    case 'currency':
      return s(o(p.currency).fallback_value) ?? s(o(p.currency).amount_1000) ?? '';
    case 'date_time':
      return s(o(p.date_time).fallback_value) ?? '';
    case 'image':
    case 'video':
    case 'document':
      return `[${type}] ${s(o(p[type]).link) ?? s(o(p[type]).id) ?? ''}`;
    case 'location': {
      const l = o(p.location);
      return `[location] ${s(l.name) ?? ''} ${s(l.latitude) ?? ''},${s(l.longitude) ?? ''}`.trim();
    }
    default:
      return `[${type}]`;
  }
}

function template(t: Json): RenderedMessage {
  const lang = s(o(t.language).code) ?? '';
  const lines = [`[template ${s(t.name) ?? ''}${lang ? ` (${lang})` : ''}]`];
  const picks: Pickable[] = [];
  for (const c of a(t.components)) {
    const comp = o(c);
    const values = a(comp.parameters).map((p) => param(o(p)));
    const type = s(comp.type) ?? '';
    if (type === 'button') {
      const sub = s(comp.sub_type) ?? '';
      const label = `button ${s(comp.index) ?? '?'} (${sub})`;
      lines.push(`  ${label}: ${values.join(', ')}`);
      if (sub === 'quick_reply') {
        picks.push({ n: picks.length + 1, kind: 'button', id: values[0] ?? '', title: values[0] ?? '' });
      }
    } else {
      lines.push(`  ${type}: ${values.map((v, i) => `{{${i + 1}}}=${v}`).join(' ')}`);
    }
  }
  return { kind: 'template', lines, picks };
}

/**
 * The lines WhatsApp would show for one Graph API send body, and the choices in it numbered.
 * @example
 * renderMessage({ type: 'text', text: { body: 'Hi' } }).lines; // ['Hi']
 */
export function renderMessage(body: unknown): RenderedMessage {
  const shown = renderRaw(body);
  // What a bot sends may quote its users or its own APIs: inert for the terminal (see terminal.ts).
  return { ...shown, lines: shown.lines.map((l) => terminalSafeText(unisolated(l))) };
}

/** An isolate opener (LRI, RLI, FSI), text with no directional formatting, its closer (PDI). */
const CLOSED_ISOLATE = /[\u2066-\u2068]([^\u202A-\u202E\u2066-\u2069]*)\u2069/g;

/**
 * A closed isolate shown as its text, as WhatsApp shows it: what `isolated()` wraps a user's
 * words in moves nothing outside itself, and `\u{2068}Jane\u{2069}` in every prompt that quotes
 * such a name was noise (outside test QA131-F6). Any other directional character stays escaped.
 */
function unisolated(line: string): string {
  return line.replace(CLOSED_ISOLATE, '$1');
}

function renderRaw(body: unknown): RenderedMessage {
  const b = o(body);
  const type = s(b.type) ?? (isObj(b.text) ? 'text' : 'unknown');
  switch (type) {
    case 'text': {
      const text = s(o(b.text).body) ?? '';
      return { kind: 'text', lines: text.split('\n'), picks: [] };
    }
    case 'image':
    case 'video':
    case 'audio':
    case 'document':
    case 'sticker':
      return { kind: type, lines: media(type, o(b[type])), picks: [] };
    case 'location': {
      const l = o(b.location);
      const lines = [`📍 ${s(l.latitude) ?? '?'},${s(l.longitude) ?? '?'}`];
      if (s(l.name)) lines.push(s(l.name)!);
      if (s(l.address)) lines.push(s(l.address)!);
      return { kind: 'location', lines, picks: [] };
    }
    case 'reaction': {
      const r = o(b.reaction);
      const emoji = s(r.emoji);
      return {
        kind: 'reaction',
        lines: [
          emoji
            ? `reacted ${emoji} to ${s(r.message_id) ?? '?'}`
            : `removed a reaction from ${s(r.message_id) ?? '?'}`,
        ],
        picks: [],
      };
    }
    case 'contacts': {
      const lines = a(b.contacts).map((c) => {
        const name = s(o(o(c).name).formatted_name) ?? '?';
        const phones = a(o(c).phones).map((p) => s(o(p).phone) ?? '');
        return `👤 ${name}${phones.length ? ` ${phones.join(', ')}` : ''}`;
      });
      return { kind: 'contacts', lines, picks: [] };
    }
    case 'interactive':
      return interactive(o(b.interactive));
    case 'template':
      return template(o(b.template));
    default:
      return { kind: type, lines: [`[${type} message] ${JSON.stringify(b).slice(0, 200)}`], picks: [] };
  }
}
