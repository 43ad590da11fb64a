/**
 * A Baton intake consumer that takes webhooks and never finishes storing them, for the test that
 * SIGKILLs it: `node --import tsx test/support/amqp-hold-consumer.ts <AMQP_URL> <queue>`.
 * Prints `consuming` once it consumes and `holding` for each webhook it takes.
 */
import pino from 'pino';
import { AmqpIntake } from '../../src/ingress/amqp-intake.ts';

const [url, queue] = process.argv.slice(2);
if (url === undefined || queue === undefined) throw new Error('usage: amqp-hold-consumer <url> <queue>');
const intake = new AmqpIntake({ url, queue, logger: pino({ level: 'silent' }) });
await intake.ready();
intake.consume(
  async () => {
    process.stdout.write('holding\n');
    return new Promise<never>(() => undefined);
  },
  { healthy: async () => true },
);
process.stdout.write('consuming\n');
