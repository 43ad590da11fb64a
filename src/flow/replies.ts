/**
 * Reply bodies for flows: small builders for every kind of {@link OutboundBody}, and
 * {@link replyProblems}, which checks a body against WhatsApp's limits before it is ever sent.
 *
 * Lengths are counted in characters (Unicode code points), as Meta's schema counts them.
 * Limits: https://developers.facebook.com/docs/whatsapp/cloud-api/messages/interactive-reply-buttons-messages,
 * .../interactive-list-messages, .../text-messages, .../location-messages, .../template-messages.
 *
 * @example
 * ```ts
 * import { buttons, replyProblems } from 'baton';
 * const body = buttons('Which product?', [{ id: 'sku_550e', title: 'Trail Shoe' }], { footer: 'Free returns' });
 * replyProblems(body); // []
 * ```
 * @module
 */
import { isIP } from 'node:net';
import type {
  InteractiveHeader,
  ListRow,
  ListSection,
  MediaRef,
  OutboundBody,
  OutboundBodyType,
  TemplateComponent,
  TemplateParameter,
} from '../model/session.ts';

/** The variant of {@link OutboundBody} whose `type` is `T`. */
export type OutboundBodyOf<T extends OutboundBodyType> = Extract<OutboundBody, { type: T }>;

/** WhatsApp's limits, as {@link replyProblems} applies them. */
export const WHATSAPP_LIMITS = {
  textBody: 4096,
  interactiveBody: 1024,
  headerText: 60,
  footer: 60,
  caption: 1024,
  buttons: 3,
  buttonTitle: 20,
  buttonId: 256,
  listButton: 20,
  listRows: 10,
  listSections: 10,
  sectionTitle: 24,
  rowTitle: 24,
  rowId: 200,
  rowDescription: 72,
  templateName: 512,
  templateButtonIndex: 9,
} as const;

/**
 * `value` shortened to at most `max` characters (code points), ending with "…" when cut, and
 * cut between characters as the user sees them (an emoji sequence or a flag is never split). For what users wrote, or an API returned, shown inside a
 * reply with a limit ({@link WHATSAPP_LIMITS}): a long name must not make a prompt too long to
 * send.
 */
export function clip(value: string, max: number): string {
  if (codePointsWithin(value, max)) return value;
  if (max <= 0) return '';
  return `${value.slice(0, wholeCharactersWithin(value, max - 1)).trimEnd()}…`;
}

/**
 * The length (UTF-16 units) of the longest start of `value` made of whole user-perceived
 * characters (an emoji sequence, a flag, a letter with its marks) and at most `max` code points:
 * where `value` may be cut without splitting one.
 */
export function wholeCharactersWithin(value: string, max: number): number {
  if (codePointsWithin(value, max)) return value.length;
  // Segmented from a prefix that holds them: V8's segmenter costs the whole string's length per
  // step (40 ms a step on 2 MB), and its last segment, perhaps cut short, is not taken.
  const prefix = value.slice(0, 2 * max + PREFIX_SLACK);
  const segments = [...GRAPHEMES.segment(prefix)];
  if (prefix.length < value.length) segments.pop();
  let end = 0;
  let used = 0;
  for (const { segment } of segments) {
    const n = [...segment].length;
    if (used + n > max) break;
    end += segment.length;
    used += n;
  }
  if (end > 0 || max <= 0) return end;
  // The first character alone is longer than `max` (a letter under thousands of combining marks):
  // cut inside it, between code points, rather than keep nothing.
  let units = 0;
  for (let n = 0; n < max; n += 1) units += value.codePointAt(units)! > 0xffff ? 2 : 1;
  return units;
}

const GRAPHEMES = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** Unicode's explicit directional formatting characters (embeddings, overrides, isolates). */
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/;
const BIDI_CONTROLS_ALL = /[\u202A-\u202E\u2066-\u2069]/g;

/**
 * `value` ready to quote inside a reply's own words: when it holds explicit directional
 * formatting characters (embeddings, overrides, isolates), they are dropped from this copy and it
 * is wrapped in a first-strong isolate (U+2068 ... U+2069), so what a user typed into their name
 * cannot turn the rest of the prompt around (outside test QA50-F2: "Ann \u202Etxt.exe" reversed
 * the whole product prompt). Dropping them all is what makes that hold: an isolate opener left
 * in the value would take the closing U+2069 for its own and free an override before it
 * (QA51-F1). Text without them is returned as it is. Clip first, then isolate:
 * `isolated(clip(value, max))` (a clip after would cut the closing character off).
 */
export function isolated(value: string): string {
  if (!BIDI_CONTROLS.test(value)) return value;
  return `\u2068${value.replace(BIDI_CONTROLS_ALL, '')}\u2069`;
}

/**
 * JSON text with explicit directional formatting characters written as `\uXXXX` escapes: the same
 * value, but an override inside one string can no longer turn the rest of the line around where
 * the text is shown (the dashboard's data view).
 */
export function bidiSafeJson(json: string): string {
  return json.replace(BIDI_CONTROLS_ALL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** UTF-16 units segmented beyond the two per code point a clip keeps: the cut's grapheme and more. */
const PREFIX_SLACK = 64;

/**
 * Whether `value` has at most `max` code points, reading no further than that: a name joined from
 * a thousand long texts (megabytes) is not spread into an array of its characters on every prompt
 * (part of 1.5 s a prompt on such a name cost: outside test QA30-F1).
 */
function codePointsWithin(value: string, max: number): boolean {
  if (value.length <= max) return true; // a code point is one or two UTF-16 units
  let n = 0;
  for (const _ of value) if (++n > max) return false;
  return true;
}

/** Media given as a link (a string) or as `{ link }` / `{ id }`. */
export type MediaInput = string | MediaRef;

/** Header and footer of a buttons or list message; a string header is a text header. */
export interface InteractiveOptions {
  readonly header?: string | InteractiveHeader;
  readonly footer?: string;
}

function mediaRef(media: MediaInput): MediaRef {
  if (typeof media === 'string') return { link: media };
  // Both (untyped code can pass them): kept, so that replyProblems says so, not one dropped.
  const both = media as { link?: string; id?: string };
  if (both.link !== undefined && both.id !== undefined)
    return { link: both.link, id: both.id } as unknown as MediaRef;
  return media.link === undefined ? { id: media.id } : { link: media.link };
}

function interactiveExtras(options: InteractiveOptions): {
  header?: InteractiveHeader;
  footer?: string;
} {
  const { header, footer } = options;
  return {
    ...(header === undefined
      ? {}
      : { header: typeof header === 'string' ? { type: 'text', text: header } : header }),
    ...(footer === undefined ? {} : { footer }),
  };
}

/**
 * A text message.
 * @example
 * ```ts
 * text('Track it at https://example.com/t/123', { previewUrl: true });
 * ```
 */
export function text(body: string, options: { readonly previewUrl?: boolean } = {}): OutboundBodyOf<'text'> {
  return options.previewUrl === undefined
    ? { type: 'text', text: body }
    : { type: 'text', text: body, previewUrl: options.previewUrl };
}

/**
 * An image (JPEG or PNG, up to 5 MB), by link or uploaded media id, with an optional caption.
 * @example
 * ```ts
 * image('https://example.com/shoe.jpg', { caption: 'Trail Shoe' });
 * image({ id: '1234567890' });
 * ```
 */
export function image(
  media: MediaInput,
  options: { readonly caption?: string } = {},
): OutboundBodyOf<'image'> {
  return { type: 'image', ...mediaRef(media), ...withCaption(options.caption) };
}

/**
 * A video (MP4 or 3GPP, up to 16 MB), with an optional caption.
 * @example
 * ```ts
 * video('https://example.com/how-to.mp4', { caption: 'How to lace it' });
 * ```
 */
export function video(
  media: MediaInput,
  options: { readonly caption?: string } = {},
): OutboundBodyOf<'video'> {
  return { type: 'video', ...mediaRef(media), ...withCaption(options.caption) };
}

/**
 * A document (up to 100 MB), with an optional caption and the file name the user sees.
 * @example
 * ```ts
 * document('https://example.com/invoice-123.pdf', { filename: 'invoice-123.pdf' });
 * ```
 */
export function document(
  media: MediaInput,
  options: { readonly caption?: string; readonly filename?: string } = {},
): OutboundBodyOf<'document'> {
  return {
    type: 'document',
    ...mediaRef(media),
    ...withCaption(options.caption),
    ...(options.filename === undefined ? {} : { filename: options.filename }),
  };
}

/**
 * An audio message (AAC, MP3, OGG/Opus...; up to 16 MB). WhatsApp allows no caption on audio.
 * @example
 * ```ts
 * audio({ id: '1234567890' });
 * ```
 */
export function audio(media: MediaInput): OutboundBodyOf<'audio'> {
  return { type: 'audio', ...mediaRef(media) };
}

/**
 * A sticker (WebP: 100 KB static, 500 KB animated).
 * @example
 * ```ts
 * sticker('https://example.com/thanks.webp');
 * ```
 */
export function sticker(media: MediaInput): OutboundBodyOf<'sticker'> {
  return { type: 'sticker', ...mediaRef(media) };
}

function withCaption(caption: string | undefined): { caption?: string } {
  return caption === undefined ? {} : { caption };
}

/**
 * A location pin.
 * @example
 * ```ts
 * location(52.52, 13.405, { name: 'Baton Store', address: 'Alexanderplatz 1, Berlin' });
 * ```
 */
export function location(
  latitude: number,
  longitude: number,
  options: { readonly name?: string; readonly address?: string } = {},
): OutboundBodyOf<'location'> {
  return {
    type: 'location',
    latitude,
    longitude,
    ...(options.name === undefined ? {} : { name: options.name }),
    ...(options.address === undefined ? {} : { address: options.address }),
  };
}

/**
 * Up to 3 reply buttons under a body text, with an optional header (text or media) and footer.
 * @example
 * ```ts
 * buttons('Confirm your order?', [
 *   { id: 'confirm', title: 'Confirm' },
 *   { id: 'cancel', title: 'Cancel' },
 * ], { header: 'Trail Shoe, size 42', footer: 'Free returns' });
 * ```
 */
export function buttons(
  body: string,
  choices: ReadonlyArray<{ readonly id: string; readonly title: string }>,
  options: InteractiveOptions = {},
): OutboundBodyOf<'buttons'> {
  return {
    type: 'buttons',
    text: body,
    buttons: choices.map((b) => ({ id: b.id, title: b.title })),
    ...interactiveExtras(options),
  };
}

/**
 * A list: a button that opens up to 10 rows in all, given as rows (one section without a title)
 * or as sections (each with a title when there are several).
 * @example
 * ```ts
 * list('Pick a size', 'Sizes', [
 *   { title: 'EU', rows: [{ id: 'eu42', title: '42' }, { id: 'eu43', title: '43' }] },
 *   { title: 'US', rows: [{ id: 'us9', title: '9', description: 'Fits 27 cm' }] },
 * ], { footer: 'Half sizes on request' });
 * ```
 */
export function list(
  body: string,
  button: string,
  content: ReadonlyArray<ListSection> | ReadonlyArray<ListRow>,
  options: { readonly header?: string; readonly footer?: string } = {},
): OutboundBodyOf<'list'> {
  const sections: ListSection[] = isSections(content)
    ? content.map((s) => ({ ...(s.title === undefined ? {} : { title: s.title }), rows: s.rows.map(row) }))
    : [{ rows: content.map(row) }];
  return { type: 'list', text: body, button, sections, ...interactiveExtras(options) };
}

function isSections(
  content: ReadonlyArray<ListSection> | ReadonlyArray<ListRow>,
): content is ReadonlyArray<ListSection> {
  return content.length === 0 || content.some((item) => 'rows' in item);
}

function row(r: ListRow): ListRow {
  return r.description === undefined
    ? { id: r.id, title: r.title }
    : { id: r.id, title: r.title, description: r.description };
}

/** Values for {@link template}'s placeholders. */
export interface TemplateOptions {
  /** Body placeholders: in order (`{{1}}`, `{{2}}`...) or by name (`{{order_id}}`). */
  readonly body?: ReadonlyArray<string> | Readonly<Record<string, string>>;
  /** The header's placeholder: a text, or an image, video or document. */
  readonly header?: TemplateParameter;
  /** Payloads of the template's quick-reply buttons, by button position from 0. */
  readonly quickReplies?: ReadonlyArray<string>;
  /** Further components, appended as given. */
  readonly components?: ReadonlyArray<TemplateComponent>;
  /** The template as the user would read it, for gateways that cannot send templates (WASender). */
  readonly text?: string;
}

/**
 * An approved message template: the only kind of message WhatsApp delivers to a user who has
 * not written in the last 24 hours.
 * @example
 * ```ts
 * template('order_shipped', 'en_US', {
 *   body: ['Ana', '#123'],
 *   quickReplies: ['track_123'],
 *   text: 'Hi Ana, your order #123 has shipped.',
 * });
 * ```
 */
export function template(
  name: string,
  language: string,
  options: TemplateOptions = {},
): OutboundBodyOf<'template'> {
  const components: TemplateComponent[] = [];
  if (options.header !== undefined) components.push({ type: 'header', parameters: [options.header] });
  if (options.body !== undefined) {
    const parameters: TemplateParameter[] = Array.isArray(options.body)
      ? // An array is positional; a `{name, text}` in it (untyped code) stays named, so that
        // replyProblems says the body mixes named and positional parameters.
        (options.body as readonly unknown[]).map((t) =>
          typeof t === 'object' && t !== null && 'name' in t
            ? ({ type: 'text', ...t } as TemplateParameter)
            : { type: 'text', text: t as string },
        )
      : Object.entries(options.body).map(([key, t]) => ({ type: 'text', text: t, name: key }));
    components.push({ type: 'body', parameters });
  }
  (options.quickReplies ?? []).forEach((payload, index) => {
    components.push({
      type: 'button',
      subType: 'quick_reply',
      index,
      parameters: [{ type: 'payload', payload }],
    });
  });
  components.push(...(options.components ?? []));
  return {
    type: 'template',
    name,
    language,
    ...(components.length === 0 ? {} : { components }),
    ...(options.text === undefined ? {} : { text: options.text }),
  };
}

// ---------------------------------------------------------------------------------------------
// Limits

/** The array, or an empty one when a body built without types holds something else. */
function items<T>(value: ReadonlyArray<T> | undefined): ReadonlyArray<T> {
  return Array.isArray(value) ? (value as ReadonlyArray<T>) : [];
}

/** Length in characters (code points), so an emoji counts once. */
function chars(s: string): number {
  return Array.from(s).length;
}

class Problems {
  readonly list: string[] = [];

  add(problem: string): void {
    this.list.push(problem);
  }

  /** A required string: present, not blank, within `max` characters. */
  required(what: string, value: unknown, max?: number): void {
    if (typeof value !== 'string') {
      this.add(`${what} is missing`);
      return;
    }
    if (value.trim() === '') {
      this.add(`${what} is empty`);
      return;
    }
    if (max !== undefined) this.max(what, value, max);
  }

  /** An optional string: absent, or not blank and within `max` characters. */
  optional(what: string, value: unknown, max?: number): void {
    if (value !== undefined) this.required(what, value, max);
  }

  max(what: string, value: string, max: number): void {
    const n = chars(value);
    if (n > max) this.add(`${what} is ${n} characters; WhatsApp allows ${max}`);
  }

  /** Each id once: reports the second and later uses of an id. */
  unique(what: (i: number) => string, ids: ReadonlyArray<unknown>, label = 'id'): void {
    const seen = new Map<string, number>();
    ids.forEach((id, i) => {
      if (typeof id !== 'string' || id === '') return;
      const first = seen.get(id);
      if (first === undefined) seen.set(id, i);
      else
        this.add(`${what(i)} ${label} "${id}" repeats ${what(first)}'s; each must be unique in the message`);
    });
  }
}

/**
 * What in a reply body WhatsApp would refuse (or cut): an empty array when the body is within
 * Meta's limits. Each problem is one sentence naming the part and the limit, e.g.
 * `button 2 title is 23 characters; WhatsApp allows 20`.
 *
 * @example
 * ```ts
 * replyProblems(buttons('Pick', [{ id: 'a', title: 'A really long button title' }]));
 * // ['button 1 title is 26 characters; WhatsApp allows 20']
 * ```
 */
export function replyProblems(body: OutboundBody): string[] {
  // From JavaScript, or past the types: `say: () => 42` read as a reply whose type is "undefined"
  // (outside test QA103-F3).
  if (typeof body !== 'object' || body === null) {
    const shown = typeof body === 'string' ? JSON.stringify(body) : String(body);
    return [
      `a reply is a text or a reply body (text(), buttons(), list(), image()...), not ${body === null ? 'null' : `a ${typeof body}`} (${shown.slice(0, 40)})`,
    ];
  }
  const p = new Problems();
  const loose = body as unknown as Readonly<Record<string, unknown>>;
  switch (body.type) {
    case 'text':
      p.required('text', body.text, WHATSAPP_LIMITS.textBody);
      if (body.previewUrl !== undefined && typeof body.previewUrl !== 'boolean')
        p.add('previewUrl must be true or false');
      break;
    case 'buttons':
      checkButtons(p, body);
      break;
    case 'list':
      checkList(p, body);
      break;
    case 'image':
    case 'video':
    case 'document':
      checkMedia(p, body.type, body);
      p.optional(`${body.type} caption`, body.caption, WHATSAPP_LIMITS.caption);
      if (body.type === 'document') p.optional('document filename', body.filename);
      break;
    case 'audio':
    case 'sticker':
      checkMedia(p, body.type, body);
      if (loose.caption !== undefined) p.add(`${body.type} cannot carry a caption`);
      break;
    case 'location':
      checkCoordinate(p, 'latitude', body.latitude, 90);
      checkCoordinate(p, 'longitude', body.longitude, 180);
      p.optional('location name', body.name);
      p.optional('location address', body.address);
      break;
    case 'template':
      checkTemplate(p, body);
      break;
    default:
      p.add(`reply type "${String(loose.type)}" is not one Baton can send`);
  }
  return p.list;
}

function checkButtons(p: Problems, body: OutboundBodyOf<'buttons'>): void {
  p.required('body text', body.text, WHATSAPP_LIMITS.interactiveBody);
  const list = items(body.buttons);
  if (list.length === 0)
    p.add(`buttons message has no buttons; WhatsApp needs 1 to ${WHATSAPP_LIMITS.buttons}`);
  if (list.length > WHATSAPP_LIMITS.buttons)
    p.add(`buttons message has ${list.length} buttons; WhatsApp allows ${WHATSAPP_LIMITS.buttons}`);
  list.forEach((b, i) => {
    p.required(`button ${i + 1} id`, b.id, WHATSAPP_LIMITS.buttonId);
    p.required(`button ${i + 1} title`, b.title, WHATSAPP_LIMITS.buttonTitle);
  });
  const name = (i: number): string => `button ${i + 1}`;
  p.unique(
    name,
    list.map((b) => b.id),
  );
  p.unique(
    name,
    list.map((b) => b.title),
    'title',
  );
  checkHeader(p, body.header, true);
  p.optional('footer', body.footer, WHATSAPP_LIMITS.footer);
}

function checkList(p: Problems, body: OutboundBodyOf<'list'>): void {
  p.required('body text', body.text, WHATSAPP_LIMITS.interactiveBody);
  p.required('list button label', body.button, WHATSAPP_LIMITS.listButton);
  const sections = items(body.sections);
  if (sections.length === 0) p.add('list has no sections; WhatsApp needs at least one row');
  if (sections.length > WHATSAPP_LIMITS.listSections)
    p.add(`list has ${sections.length} sections; WhatsApp allows ${WHATSAPP_LIMITS.listSections}`);
  const rows: ListRow[] = [];
  sections.forEach((s, i) => {
    const what = `section ${i + 1} title`;
    if (sections.length > 1 && (typeof s.title !== 'string' || s.title.trim() === ''))
      p.add(`${what} is missing; WhatsApp needs a title on every section when there are several`);
    else p.optional(what, s.title, WHATSAPP_LIMITS.sectionTitle);
    const own = items(s.rows);
    if (own.length === 0 && sections.length > 1) p.add(`section ${i + 1} has no rows`);
    rows.push(...own);
  });
  if (sections.length > 0 && rows.length === 0) p.add('list has no rows; WhatsApp needs at least one');
  if (rows.length > WHATSAPP_LIMITS.listRows)
    p.add(`list has ${rows.length} rows in all; WhatsApp allows ${WHATSAPP_LIMITS.listRows}`);
  rows.forEach((r, i) => {
    p.required(`row ${i + 1} id`, r.id, WHATSAPP_LIMITS.rowId);
    p.required(`row ${i + 1} title`, r.title, WHATSAPP_LIMITS.rowTitle);
    p.optional(`row ${i + 1} description`, r.description, WHATSAPP_LIMITS.rowDescription);
  });
  p.unique(
    (i) => `row ${i + 1}`,
    rows.map((r) => r.id),
  );
  checkHeader(p, body.header, false);
  p.optional('footer', body.footer, WHATSAPP_LIMITS.footer);
}

function checkHeader(p: Problems, header: InteractiveHeader | undefined, mediaAllowed: boolean): void {
  if (header === undefined) return;
  if (header.type === 'text') {
    p.required('header text', header.text, WHATSAPP_LIMITS.headerText);
    return;
  }
  if (!['image', 'video', 'document'].includes(header.type)) {
    p.add(`header type "${String(header.type)}" is not text, image, video or document`);
    return;
  }
  if (!mediaAllowed) {
    p.add(`list header is ${article(header.type)}; WhatsApp allows only a text header on lists`);
    return;
  }
  checkMedia(p, `header ${header.type}`, header);
  if (header.type === 'document') p.optional('header document filename', header.filename);
}

function article(type: string): string {
  return `${/^[aeiou]/.test(type) ? 'an' : 'a'} ${type}`;
}

function checkMedia(p: Problems, what: string, media: MediaRef): void {
  const { link, id } = media as { link?: unknown; id?: unknown };
  if (link !== undefined && id !== undefined) {
    p.add(`${what} has both a link and a media id; give one`);
    return;
  }
  if (link === undefined && id === undefined) {
    p.add(`${what} has neither a link nor a media id`);
    return;
  }
  if (id !== undefined) {
    p.required(`${what} media id`, id);
    return;
  }
  if (typeof link !== 'string' || !isHttpUrl(link))
    p.add(`${what} link ${JSON.stringify(link)} is not an http(s) URL`);
  else if (UNENCODED.test(link))
    // Named by its origin only: the rest may be built from what the user wrote (outside test
    // QA74-F6: the whole link, in an error line and a dead letter's reason).
    p.add(
      `${what} link on ${new URL(link).origin} holds a space or one of "<>\\^\`{|} unencoded, which Meta refuses; percent-encode it (mediaLink(url) does)`,
    );
}

/**
 * What a URL never holds as it is (RFC 3986): white space, control characters and `"<>\^`{|}`.
 * `URL` reads such a link by encoding some of them, but the link is sent as written, and Meta's
 * schema (format `url`) refuses it (outside test QA73-F1: a map link with a space).
 */
const UNENCODED = /[\s\p{Cc}"<>\\^`{|}]/u;
const UNENCODED_ALL = new RegExp(UNENCODED.source, 'gu');

/**
 * `url` as a media link may be sent: each space, control character and `"<>\^`{|}` it holds
 * percent-encoded, nothing else changed (a `%` already there stays: `encodeURI` would encode it
 * again, and `new URL(url).href` leaves `|^{}` and the backtick in a query as they are, outside
 * test QA74-F4).
 *
 * ```ts
 * image(mediaLink('https://maps.example/static map.png?markers=a|b'))
 * // https://maps.example/static%20map.png?markers=a%7Cb
 * ```
 */
export function mediaLink(url: string): string {
  return url.replace(UNENCODED_ALL, encodeURIComponent);
}

/**
 * What a reply WhatsApp takes may still do wrong, said as advice (a flow's hints): a media link
 * on this machine or a private network, which Meta's servers fetch and cannot reach (the
 * simulator can), and a document without a file name, which the user sees unnamed (outside
 * test QA103-F5). Nothing for a body `replyProblems` refuses.
 * @example
 * replyNotes(image('http://localhost:8080/menu.png'));
 * // ['image link on http://localhost:8080 is on this machine or a private network: …']
 */
export function replyNotes(body: OutboundBody): string[] {
  const notes: string[] = [];
  const media: { what: string; ref: Partial<MediaRef>; filename?: string | undefined }[] = [];
  if (body.type === 'image' || body.type === 'video' || body.type === 'audio' || body.type === 'sticker')
    media.push({ what: body.type, ref: body });
  else if (body.type === 'document')
    media.push({ what: 'document', ref: body, filename: body.filename ?? '' });
  else if (
    (body.type === 'buttons' || body.type === 'list') &&
    body.header !== undefined &&
    body.header.type !== 'text'
  )
    media.push({
      what: `${body.header.type} header`,
      ref: body.header,
      ...(body.header.type === 'document' ? { filename: body.header.filename ?? '' } : {}),
    });
  for (const { what, ref, filename } of media) {
    const link = (ref as { link?: unknown }).link;
    const url = typeof link === 'string' && isHttpUrl(link) ? new URL(link) : undefined;
    if (url !== undefined && privateHost(url.hostname))
      notes.push(
        `${what} link on ${url.origin} is on this machine or a private network: Meta's servers fetch media links and cannot reach it (the simulator can)`,
      );
    if (filename === '') notes.push(`${what} has no filename: the user sees the file unnamed`);
  }
  return notes;
}

/** Whether `hostname` names this machine or a private network (what the internet cannot reach). */
function privateHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || /\.(localhost|local|internal|lan|home\.arpa)$/.test(host)) return true;
  if (isIP(host) === 4) {
    const [a, b] = host.split('.').map(Number) as [number, number];
    return (
      a === 0 ||
      a === 10 ||
      a === 127 ||
      (a === 169 && b === 254) ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168)
    );
  }
  if (isIP(host) === 6)
    return host === '::1' || host === '::' || /^f[cd]/.test(host) || /^fe[89ab]/.test(host);
  return !host.includes('.'); // a bare name (`http://shop/...`) resolves only on a private network
}

function isHttpUrl(s: string): boolean {
  if (!URL.canParse(s)) return false;
  const { protocol } = new URL(s);
  return protocol === 'https:' || protocol === 'http:';
}

function checkCoordinate(p: Problems, what: string, value: unknown, bound: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value)) p.add(`${what} is not a number`);
  else if (value < -bound || value > bound)
    p.add(`${what} ${value} is out of range; it must be between -${bound} and ${bound}`);
}

const TEMPLATE_NAME = /^[a-z0-9_]+$/;
const LANGUAGE_CODE = /^[a-z]{2,3}(_[A-Za-z]{2,4})?$/;

function checkTemplate(p: Problems, body: OutboundBodyOf<'template'>): void {
  p.required('template name', body.name, WHATSAPP_LIMITS.templateName);
  if (typeof body.name === 'string' && body.name !== '' && !TEMPLATE_NAME.test(body.name))
    p.add(`template name "${body.name}" may hold only lowercase letters, digits and underscores`);
  p.required('template language', body.language);
  if (typeof body.language === 'string' && body.language !== '' && !LANGUAGE_CODE.test(body.language))
    p.add(`template language "${body.language}" is not a language code such as en or en_US`);
  p.optional('template text', body.text, WHATSAPP_LIMITS.textBody);
  const components = body.components ?? [];
  const seen = new Set<string>();
  components.forEach((c, i) => {
    const what = `template component ${i + 1} (${c.type})`;
    const parameters = items(c.parameters);
    if (c.type === 'button') {
      const key = `button ${c.index}`;
      if (!Number.isInteger(c.index) || c.index < 0 || c.index > WHATSAPP_LIMITS.templateButtonIndex)
        p.add(
          `${what} index ${c.index} is out of range; WhatsApp allows 0 to ${WHATSAPP_LIMITS.templateButtonIndex}`,
        );
      else if (seen.has(key)) p.add(`${what} repeats button index ${c.index}`);
      seen.add(key);
      if (c.subType !== 'quick_reply' && c.subType !== 'url')
        p.add(`${what} subType "${String(c.subType)}" is not quick_reply or url`);
      if (parameters.length !== 1) p.add(`${what} has ${parameters.length} parameters; a button takes one`);
      parameters.forEach((param, j) => {
        const want = c.subType === 'quick_reply' ? 'payload' : 'text';
        if (param.type !== want)
          p.add(`${what} parameter ${j + 1} is ${param.type}; a ${c.subType} button takes ${want}`);
        else checkTemplateParameter(p, `${what} parameter ${j + 1}`, param);
      });
      return;
    }
    if (c.type !== 'header' && c.type !== 'body') {
      p.add(`${what} is not header, body or button`);
      return;
    }
    if (seen.has(c.type)) p.add(`template has more than one ${c.type} component`);
    seen.add(c.type);
    if (parameters.length === 0) p.add(`${what} has no parameters`);
    if (c.type === 'header' && parameters.length > 1)
      p.add(`${what} has ${parameters.length} parameters; a header takes one`);
    const named = parameters.filter((param) => param.type === 'text' && param.name !== undefined).length;
    if (named > 0 && named < parameters.length) p.add(`${what} mixes named and positional parameters`);
    parameters.forEach((param, j) => {
      if (param.type === 'payload') p.add(`${what} parameter ${j + 1} is a payload; only buttons take one`);
      else if (c.type === 'body' && param.type !== 'text')
        p.add(`${what} parameter ${j + 1} is ${article(param.type)}; a body takes text`);
      else checkTemplateParameter(p, `${what} parameter ${j + 1}`, param);
    });
  });
}

function checkTemplateParameter(p: Problems, what: string, param: TemplateParameter): void {
  switch (param.type) {
    case 'text':
      p.required(what, param.text);
      if (param.name !== undefined && !/^[a-z0-9_]+$/.test(param.name))
        p.add(`${what} name "${param.name}" may hold only lowercase letters, digits and underscores`);
      break;
    case 'payload':
      p.required(`${what} payload`, param.payload);
      break;
    case 'image':
    case 'video':
    case 'document':
      checkMedia(p, `${what} ${param.type}`, param);
      break;
    default:
      p.add(
        `${what} type "${String((param as { type?: unknown }).type)}" is not text, image, video, document or payload`,
      );
  }
}
