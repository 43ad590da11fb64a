import { createServer } from 'node:http';
/** `[/vXX.X]/{phoneNumberId}/messages`; group 1 is the (URL-encoded) phone number id. */
export const GRAPH_ROUTE = /^(?:\/v\d+(?:\.\d+)?)?\/([^/]+)\/messages$/;
/** Answers `status` with `body` as JSON. */
export function answerJson(res, status, body, headers = {}) {
    const text = JSON.stringify(body);
    res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        ...headers,
    });
    res.end(text);
}
/**
 * Graph's answer to an accepted send: the recipient as the request named it (`to`: a phone
 * number, echoed as `wa_id` without its `+`; `recipient`: a business-scoped user id) and the
 * new message's id.
 */
export function graphAccepted(id, address) {
    const contact = 'to' in address
        ? { input: address.to, wa_id: address.to.replace(/^\+/, '') }
        : { input: address.recipient, user_id: address.recipient };
    return { messaging_product: 'whatsapp', contacts: [contact], messages: [{ id }] };
}
/** A Graph error body: `{error: {message, type: 'OAuthException', code, error_data, fbtrace_id}}`. */
export function graphError(message, parts = {}) {
    const { code, details, trace } = parts;
    return {
        error: {
            message,
            type: 'OAuthException',
            ...(code === undefined ? {} : { code }),
            ...(details === undefined ? {} : { error_data: { messaging_product: 'whatsapp', details } }),
            ...(trace === undefined ? {} : { fbtrace_id: trace }),
        },
    };
}
/**
 * Starts an HTTP server that calls `handle` with each request's whole body.
 *
 * @example
 * ```ts
 * const stub = await startStubServer((_req, res) => answerJson(res, 200, { ok: true }));
 * await stub.close();
 * ```
 */
export async function startStubServer(handle, options = {}) {
    const sockets = new Set();
    const server = createServer((req, res) => {
        const chunks = [];
        req.on('data', (chunk) => chunks.push(chunk));
        req.on('end', () => handle(req, res, Buffer.concat(chunks)));
    });
    if (options.keepAliveTimeoutMs !== undefined)
        server.keepAliveTimeout = options.keepAliveTimeoutMs;
    server.on('connection', (socket) => {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
    });
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
            server.off('error', reject);
            resolve();
        });
    });
    const address = server.address();
    if (address === null || typeof address === 'string')
        throw new Error('stub server: not listening on TCP');
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return {
        url: `http://${host}:${address.port}`,
        port: address.port,
        close: () => new Promise((resolve) => {
            server.close(() => resolve());
            for (const socket of sockets)
                socket.destroy();
        }),
    };
}
