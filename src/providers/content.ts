/**
 * Normalised message content as every gateway's parser builds it: optional fields are left
 * out, not set to `undefined`, when the gateway did not send them.
 * @module
 */
import { createHash } from 'node:crypto';
import type { MediaType, MessageContent } from '../model/message.ts';
import type { JsonObject } from './json.ts';
import { wellFormedDeep } from './screen.ts';

/**
 * The id of a message a gateway sent without one: the same for every delivery of the same
 * JSON, so a redelivery is recognised like any other. Such a message is stored as unsupported
 * (visible, recorded): it is still the user's. The JSON hashed is cut at the depth Baton keeps
 * ({@link wellFormedDeep}): serialising a signed body thousands of levels deep overflowed the
 * stack, and the whole webhook was answered 500 on every delivery (outside test QA54-F1).
 */
export function missingId(raw: JsonObject): string {
  const bytes = JSON.stringify(wellFormedDeep(raw));
  return `baton.noid.${createHash('sha256').update(bytes).digest('hex').slice(0, 40)}`;
}

/** Content Baton does not read; `originalType` names what the gateway sent. */
export function unsupported(originalType: string, reason: string): MessageContent {
  return { type: 'unsupported', originalType, reason };
}

/** The optional fields of media content, as read from a webhook. */
export interface MediaFields {
  readonly mimeType: string | undefined;
  readonly caption: string | undefined;
  readonly url: string | undefined;
  readonly filename: string | undefined;
}

/** A downloadable image, video, audio, document or sticker. */
export function mediaContent(mediaType: MediaType, mediaId: string, fields: MediaFields): MessageContent {
  const { mimeType, caption, url, filename } = fields;
  return {
    type: 'media',
    mediaType,
    mediaId,
    ...(mimeType === undefined ? {} : { mimeType }),
    ...(caption === undefined ? {} : { caption }),
    ...(url === undefined ? {} : { url }),
    ...(filename === undefined ? {} : { filename }),
  };
}

/** A shared location, with its place name and address when given. */
export function locationContent(
  latitude: number,
  longitude: number,
  name: string | undefined,
  address: string | undefined,
): MessageContent {
  return {
    type: 'location',
    latitude,
    longitude,
    ...(name === undefined ? {} : { name }),
    ...(address === undefined ? {} : { address }),
  };
}

/** A reaction to `messageId`; no `emoji` means the reaction was removed. */
export function reactionContent(messageId: string, emoji: string | undefined): MessageContent {
  return emoji === undefined ? { type: 'reaction', messageId } : { type: 'reaction', messageId, emoji };
}
