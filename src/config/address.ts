/**
 * Where a service URL points, for messages and logs: `host:port` without credentials, each URL
 * of a comma-separated list (a Redis Cluster's seeds).
 * @module
 */

/**
 * `host:port` of each URL in `url` (comma-separated), the port left out when the URL has none
 * and no `defaultPort` is given; `an unreadable URL` for one that does not parse.
 *
 * @example
 * ```ts
 * serviceAddress('redis://:secret@10.0.0.7:6390/2'); // '10.0.0.7:6390'
 * serviceAddress('amqp://guest:guest@mq', '5672'); // 'mq:5672'
 * ```
 */
export function serviceAddress(url: string, defaultPort?: string): string {
  return url
    .split(',')
    .map((one) => {
      try {
        const u = new URL(one.trim());
        const port = u.port || defaultPort;
        return port ? `${u.hostname}:${port}` : u.hostname;
      } catch {
        return 'an unreadable URL';
      }
    })
    .join(', ');
}
