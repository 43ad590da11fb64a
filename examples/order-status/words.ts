/**
 * Every text of flow `order_status`, in English and Spanish. `t(key)` picks the catalog named by
 * the session's `data.lang`.
 * @module
 */
const en = {
  ask_order: 'Hi! Which order would you like to check? Send its number, like ORD-12345.',
  bad_format: 'That does not look like an order number. It is ORD- and 5 digits, like ORD-12345.',
  looking_up: 'Looking up {order}…',
  not_found: 'We could not find order {order}.',
  status: 'Order {order}: {status}.',
  eta: 'Expected: {eta}.',
  status_unknown: 'We have no details for this order.',
  what_next: 'What would you like to do?',
  options: 'Options',
  track: 'Track it',
  cancel_order: 'Cancel it',
  another: 'Another order',
  human: 'Talk to a person',
  map: 'Where it is now',
  events: 'Order {order}, so far:',
  no_events: '(no events yet)',
  confirm_cancel: 'Cancel order {order}? This cannot be undone.',
  cancel_yes: 'Yes, cancel it',
  cancel_no: 'No, keep it',
  cancelling: 'Cancelling {order}…',
  cancelled: 'Order {order} is cancelled. Send any message to check another order.',
  too_late: 'Order {order} has already shipped, so it can no longer be cancelled.',
  cancel_failed: 'Sorry, we could not cancel it just now. Please try again in a moment.',
  lookup_failed: 'Sorry, our order system is not answering right now.',
  retry_lookup: 'Try again',
  stale: 'That button belongs to an earlier question; this conversation has moved on.',
  sorry: 'Sorry, something went wrong on our side. Our team has been told; please try again later.',
  handoff: 'Thanks for your patience: a member of our team will answer you here shortly.',
};

const es: typeof en = {
  ask_order: '¡Hola! ¿Qué pedido quieres consultar? Envía su número, por ejemplo ORD-12345.',
  bad_format: 'Eso no parece un número de pedido. Es ORD- y 5 cifras, por ejemplo ORD-12345.',
  looking_up: 'Buscando {order}…',
  not_found: 'No encontramos el pedido {order}.',
  status: 'Pedido {order}: {status}.',
  eta: 'Previsto: {eta}.',
  status_unknown: 'No tenemos detalles de este pedido.',
  what_next: '¿Qué quieres hacer?',
  options: 'Opciones',
  track: 'Seguirlo',
  cancel_order: 'Cancelarlo',
  another: 'Otro pedido',
  human: 'Hablar con alguien',
  map: 'Dónde está ahora',
  events: 'Pedido {order}, hasta ahora:',
  no_events: '(aún sin novedades)',
  confirm_cancel: '¿Cancelar el pedido {order}? No se puede deshacer.',
  cancel_yes: 'Sí, cancelarlo',
  cancel_no: 'No, mantenerlo',
  cancelling: 'Cancelando {order}…',
  cancelled: 'El pedido {order} está cancelado. Envía cualquier mensaje para consultar otro.',
  too_late: 'El pedido {order} ya salió, así que no se puede cancelar.',
  cancel_failed: 'Lo sentimos, no pudimos cancelarlo ahora. Inténtalo de nuevo en un momento.',
  lookup_failed: 'Lo sentimos, nuestro sistema de pedidos no responde ahora.',
  retry_lookup: 'Reintentar',
  stale: 'Ese botón es de una pregunta anterior; la conversación ya avanzó.',
  sorry: 'Lo sentimos, algo falló de nuestro lado. Nuestro equipo ya lo sabe; inténtalo más tarde.',
  handoff: 'Gracias por tu paciencia: una persona de nuestro equipo te responderá aquí en breve.',
};

/** The keys `t` takes: a misspelt one fails to compile. */
export type WordKey = keyof typeof en;

export const words = { field: 'lang', default: 'en', catalogs: { en, es } } as const;
