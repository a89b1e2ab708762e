/**
 * Echo upstream for the local gateway (development and test tool): answers
 * JSON with what reached it, so a developer (and the e2e tests) can see the
 * headers the gateway forwarded and the Passport it carried.
 *
 * With `x-passport` present the Passport is verified with the consumer
 * library against the service's JWKS when one is configured
 * (`passport.verified: true`, claims, or the verification error); otherwise it
 * is decoded WITHOUT verification and marked `verified: false, unverified: true`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPassportVerifier, type PassportVerifier } from '../../ext-authz/src/passport/consumer/index.js';

export interface EchoOptions {
  readonly host?: string;
  readonly port?: number;
  /** Verify Passports with the consumer library; omit to only decode them. */
  readonly passport?: { readonly jwksUrl: string; readonly issuer: string; readonly audience: string; readonly header?: string };
}

export interface EchoBody {
  readonly method: string;
  readonly path: string;
  readonly httpVersion: string;
  /** Lowercased header names → values (repeated headers as arrays). */
  readonly headers: Record<string, string | string[]>;
  readonly rawHeaders: string[];
  readonly bodyBytes: number;
  /** The body as text when it is JSON or text/* of at most 64 KiB (what an e2ee processor decrypted). */
  readonly bodyText?: string;
  readonly passport?: PassportReport;
}

const TEXT_BODY = /^(application\/(json|[a-z0-9.+-]+\+json)|text\/[a-z0-9.+-]+)\s*(;|$)/i;
const MAX_TEXT_BODY = 64 * 1024;

export type PassportReport =
  | { readonly verified: true; readonly claims: unknown }
  | { readonly verified: false; readonly error: string; readonly code?: string; readonly claims?: unknown; readonly unverified?: true };

function decodeUnverified(token: string): unknown {
  const part = token.split('.')[1];
  if (part === undefined) return undefined;
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

export class EchoUpstream {
  private readonly verifier: PassportVerifier | null;
  private readonly header: string;
  private constructor(
    readonly server: http.Server,
    options: EchoOptions,
  ) {
    this.verifier = options.passport ? createPassportVerifier({ jwksUrl: options.passport.jwksUrl, issuer: options.passport.issuer, audience: options.passport.audience }) : null;
    this.header = options.passport?.header ?? 'x-passport';
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  static async start(options: EchoOptions = {}): Promise<EchoUpstream> {
    const server = http.createServer();
    const echo = new EchoUpstream(server, options);
    server.keepAliveTimeout = 65_000;
    server.on('request', (req, res) => {
      echo.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`echo upstream error: ${String(err)}\n`);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return echo;
  }

  private async passport(value: string | string[]): Promise<PassportReport> {
    if (Array.isArray(value)) return { verified: false, error: `${value.length} ${this.header} headers (exactly one expected)` };
    if (!this.verifier) return { verified: false, unverified: true, error: 'no JWKS configured: decoded without verification', claims: decodeUnverified(value) };
    const r = await this.verifier.verify(value);
    if (r.ok) return { verified: true, claims: r.passport };
    return { verified: false, code: r.error.code, error: r.error.message, claims: decodeUnverified(value), unverified: true };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let bodyBytes = 0;
    const textual = TEXT_BODY.test(req.headers['content-type'] ?? '');
    const chunks: Buffer[] = [];
    for await (const chunk of req) {
      bodyBytes += (chunk as Buffer).length;
      if (textual && bodyBytes <= MAX_TEXT_BODY) chunks.push(chunk as Buffer);
    }
    const headers: Record<string, string | string[]> = {};
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      const k = req.rawHeaders[i]!.toLowerCase();
      const v = req.rawHeaders[i + 1]!;
      const prev = headers[k];
      headers[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    const pp = headers[this.header];
    const body: EchoBody = {
      method: req.method ?? '',
      path: req.url ?? '',
      httpVersion: req.httpVersion,
      headers,
      rawHeaders: req.rawHeaders,
      bodyBytes,
      ...(textual && bodyBytes > 0 && bodyBytes <= MAX_TEXT_BODY ? { bodyText: Buffer.concat(chunks).toString('utf8') } : {}),
      ...(pp !== undefined ? { passport: await this.passport(pp) } : {}),
    };
    const text = `${JSON.stringify(body, null, 2)}\n`;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-echo-upstream': '1' });
    res.end(text);
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
