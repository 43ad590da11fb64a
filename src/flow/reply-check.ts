/**
 * The reply checks flow loading and prompt building use: WhatsApp's limits, from `replies.ts`.
 * @module
 */
export { replyProblems } from './replies.ts';
