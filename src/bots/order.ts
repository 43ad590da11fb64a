/**
 * The reference bot, flow `order` (SPEC section 5). Step ids, data keys and button ids
 * are pinned by the SPEC; the wording is ours.
 * @module
 */
import { z } from 'zod';
import { defineFlow } from '../flow/define.ts';
import { clip, isolated } from '../flow/replies.ts';
import { blank } from '../providers/screen.ts';

export const PRODUCTS = [
  { id: 'sku_550e', title: 'Trail Shoe' },
  { id: 'sku_551a', title: 'Rain Jacket' },
  { id: 'sku_777b', title: 'Day Pack' },
] as const;

type ProductId = (typeof PRODUCTS)[number]['id'];

function isProduct(id: string): id is ProductId {
  return PRODUCTS.some((p) => p.id === id);
}

/**
 * The longest name and address quoted back in a prompt (they are stored whole): a prompt with
 * buttons may hold 1,024 characters, and a user may write 4,096.
 */
const NAME_SHOWN = 200;
const ADDRESS_SHOWN = 600;

/** What the user wrote, quoted back in a prompt: clipped, and isolated from the prompt's own words. */
function quoted(value: unknown, max: number): string {
  return isolated(clip(String(value), max));
}

/** The session's data (SPEC 5: exactly these keys), typed for authors who import the flow. */
export const OrderData = z.object({
  customer_name: z.string().optional(),
  // One of the catalogue's: an agent's handback cannot set a product that does not exist (outside
  // tests X11, D4: a user was asked to confirm an order for "sku_nope").
  product_id: z.enum(PRODUCTS.map((p) => p.id) as [ProductId, ...ProductId[]]).optional(),
  shipping_address: z.string().optional(),
});
export type OrderData = z.infer<typeof OrderData>;

export const orderFlow = defineFlow({
  id: 'order',
  version: 1,
  data: OrderData,
  start: 'ask_name',
  steps: {
    ask_name: {
      say: 'Hi! Let us get your order started. What is your name?',
      accepts: 'text',
      to: ['choose_product'],
      // Joined and trimmed, a text of blanks (or of invisible characters alone, such as a
      // zero-width space: outside test QA42-F9) is no name: a retry.
      on: (input, c) =>
        input.type === 'text' && visible(input.text)
          ? c.goto('choose_product', { customer_name: input.text })
          : c.retry(),
    },
    choose_product: {
      needs: ['customer_name'],
      say: (d) => `Thanks, ${quoted(d.customer_name, NAME_SHOWN)}. Which product would you like?`,
      choices: PRODUCTS,
      to: ['collect_shipping_address'],
      on: (input, c) =>
        input.type === 'choice' && isProduct(input.id)
          ? c.goto('collect_shipping_address', { product_id: input.id })
          : c.retry(),
    },
    collect_shipping_address: {
      needs: ['customer_name', 'product_id'],
      say: 'Where should we ship it? Please send the full address.',
      accepts: 'text',
      to: ['confirm_order'],
      on: (input, c) =>
        input.type === 'text' && visible(input.text)
          ? c.goto('confirm_order', { shipping_address: input.text })
          : c.retry(),
    },
    confirm_order: {
      needs: ['customer_name', 'product_id', 'shipping_address'],
      say: (d) => {
        const product = PRODUCTS.find((p) => p.id === d.product_id)?.title ?? String(d.product_id);
        const name = quoted(d.customer_name, NAME_SHOWN);
        return `Please confirm: ${product} for ${name}, shipped to ${quoted(d.shipping_address, ADDRESS_SHOWN)}.`;
      },
      choices: [
        { id: 'confirm', title: 'Confirm' },
        { id: 'cancel', title: 'Cancel' },
      ],
      to: ['completed', 'cancelled'],
      on: (input, c) => {
        if (input.type !== 'choice') return c.retry();
        return input.id === 'confirm' ? c.goto('completed') : c.goto('cancelled');
      },
    },
    completed: {
      // Its prompt tells the user their order is confirmed: only their own `confirm` leads here,
      // never an agent's hand-back (nor to `cancelled`).
      handback: false,
      say: 'Your order is confirmed. Thank you! Send any message to start a new order.',
      accepts: 'any',
      to: ['ask_name'],
      on: (_input, c) => c.restart('ask_name'),
    },
    cancelled: {
      handback: false,
      say: 'Your order was cancelled. Send any message to start a new order.',
      accepts: 'any',
      to: ['ask_name'],
      on: (_input, c) => c.restart('ask_name'),
    },
  },
});

/** Whether a text shows anything: not only blanks and invisible format characters (U+200B...). */
function visible(text: string): boolean {
  return !blank(text);
}
