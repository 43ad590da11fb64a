/**
 * Meta's send-message schema (test/fixtures/meta-send-schema, MIT) as one Ajv validator per
 * message `type`: each `allOf` of `BaseMessageProperties` and a type's own branch merged into
 * one object schema (validating the branches separately would reject every body, as each sets
 * `additionalProperties: false`), the branch picked by `type` as the spec's `discriminator` says.
 * The liberties taken are listed in the fixture's README and named below.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';

const FIXTURE = path.resolve(import.meta.dirname, '../fixtures/meta-send-schema/message-schemas.json');

type Schema = Record<string, unknown>;

/** The schemas exactly as Meta published them. */
export function publishedSchemas(): Record<string, Schema> {
  return JSON.parse(readFileSync(FIXTURE, 'utf8')) as Record<string, Schema>;
}

/** Liberty 1: the callback data every Baton send carries, as the Cloud API docs define it. */
const CALLBACK_DATA = { type: 'string', maxLength: 512 };

/** Liberty 2: Meta's docs number template buttons 0 to 9; the published pattern rejects "0". */
function fixTemplateButtonIndex(schemas: Record<string, Schema>): void {
  const props = schemas.TemplateComponent?.properties as Record<string, Schema> | undefined;
  if (props?.index === undefined) throw new Error('TemplateComponent.index is gone: revisit liberty 2');
  props.index = { ...props.index, pattern: '^[0-9]$' };
}

export interface MetaSendSchema {
  /** Ajv's errors for a body (empty when it is valid), found by its `type`. */
  errors(body: unknown): ErrorObject[];
  /** The message types the schema knows. */
  readonly types: readonly string[];
}

/**
 * Builds the validators.
 * @param options.published - skip liberty 2 (to show the published pattern's defect).
 */
export function metaSendSchema(options: { published?: boolean } = {}): MetaSendSchema {
  const schemas = publishedSchemas();
  if (options.published !== true) fixTemplateButtonIndex(schemas);
  const message = schemas.Message as { discriminator: { mapping: Record<string, string> } };
  const base = schemas.BaseMessageProperties as { properties: Schema; required: string[] };

  const merged: Record<string, Schema> = {};
  for (const [type, ref] of Object.entries(message.discriminator.mapping)) {
    const name = ref.replace('#/components/schemas/', '');
    const allOf = (schemas[name] as { allOf: Schema[] }).allOf;
    const own = allOf.find((s) => s.$ref === undefined) as {
      properties: Schema;
      required?: string[];
      additionalProperties?: boolean;
    };
    if (allOf.length !== 2 || allOf[0]?.$ref !== '#/components/schemas/BaseMessageProperties')
      throw new Error(`${name} is no longer BaseMessageProperties + one branch`);
    merged[type] = {
      type: 'object',
      required: [...new Set([...base.required, ...(own.required ?? [])])],
      properties: { ...base.properties, ...own.properties, biz_opaque_callback_data: CALLBACK_DATA },
      ...(own.additionalProperties === undefined ? {} : { additionalProperties: own.additionalProperties }),
    };
  }

  const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false, strictRequired: false });
  ajv.addKeyword({ keyword: 'example' });
  ajv.addKeyword({ keyword: 'discriminator' });
  // The schemas sit where OpenAPI puts them, so their `$ref`s resolve as written.
  ajv.addKeyword({ keyword: 'components' });
  // A link as it is sent: spaces, controls and `"<>\^`{|}` only percent-encoded (RFC 3986), as the
  // `url` format of Meta's own validators reads it (outside test QA73-F1).
  const httpUrl = (s: string): boolean =>
    URL.canParse(s) && /^https?:$/.test(new URL(s).protocol) && !/[\s\p{Cc}"<>\\^`{|}]/u.test(s);
  ajv.addFormat('url', httpUrl);
  ajv.addFormat('uri', (s: string) => URL.canParse(s));
  ajv.addFormat('email', /^[^\s@]+@[^\s@]+\.[^\s@]+$/);
  ajv.addFormat('date', /^\d{4}-\d{2}-\d{2}$/);
  ajv.addSchema({ $id: 'meta', components: { schemas: { ...schemas, ...prefixed(merged) } } });

  const validators = new Map<string, ValidateFunction>();
  for (const type of Object.keys(merged)) {
    validators.set(type, ajv.getSchema(`meta#/components/schemas/Baton_${type}`)!);
  }
  return {
    types: [...validators.keys()],
    errors(body: unknown): ErrorObject[] {
      const b = body as Record<string, unknown>;
      const validate = typeof b.type === 'string' ? validators.get(b.type) : undefined;
      if (validate === undefined) throw new Error(`no schema for message type ${String(b.type)}`);
      // Liberty 3: the v23.0 schema predates BSUIDs; `recipient` stands where `to` would.
      const { recipient, ...rest } = b;
      const candidate = recipient !== undefined && b.to === undefined ? { ...rest, to: recipient } : b;
      return validate(candidate) ? [] : [...(validate.errors ?? [])];
    },
  };
}

function prefixed(merged: Record<string, Schema>): Record<string, Schema> {
  return Object.fromEntries(Object.entries(merged).map(([type, s]) => [`Baton_${type}`, s]));
}
