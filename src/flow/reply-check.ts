/**
 * Stand-in for `replyProblems` from `src/flow/replies.ts` (the replies work, not merged yet):
 * the few WhatsApp limits the bodies known today can break. Once `replies.ts` lands, this
 * file re-exports its `replyProblems` instead.
 * @module
 */
import type { OutboundBody } from '../model/session.ts';

/** Empty when `body` is within WhatsApp's limits; otherwise one line per problem. */
export function replyProblems(body: OutboundBody): string[] {
  const out: string[] = [];
  const ids = new Set<string>();
  const id = (v: string): void => {
    if (v === '') out.push('a choice has an empty id');
    if (ids.has(v)) out.push(`duplicate choice id "${v}"`);
    ids.add(v);
  };
  switch (body.type) {
    case 'text':
      if (body.text.length > 4096) out.push('text is too long (4,096 characters at most)');
      if (body.text.trim() === '') out.push('text is empty');
      break;
    case 'buttons':
      if (body.text.length > 1024) out.push('body text is too long (1,024 characters at most)');
      if (body.buttons.length === 0 || body.buttons.length > 3) out.push('1 to 3 buttons');
      for (const b of body.buttons) {
        id(b.id);
        if (b.title.length > 20) out.push(`button "${b.id}" title is too long (20 characters at most)`);
      }
      break;
    case 'list': {
      if (body.text.length > 1024) out.push('body text is too long (1,024 characters at most)');
      if (body.button.length > 20) out.push('list button label is too long (20 characters at most)');
      const rows = body.sections.flatMap((s) => s.rows);
      if (rows.length === 0 || rows.length > 10) out.push('1 to 10 list rows');
      for (const r of rows) {
        id(r.id);
        if (r.title.length > 24) out.push(`row "${r.id}" title is too long (24 characters at most)`);
        if ((r.description?.length ?? 0) > 72)
          out.push(`row "${r.id}" description is too long (72 characters at most)`);
      }
      break;
    }
  }
  return out;
}
