/**
 * The configuration schema. Every object is strict so a typo'd key is a
 * startup error that names it, never a silently ignored setting.
 */
import { z } from 'zod';
import { stageDefinitions, stageSchema } from '../stages/catalog.js';
import { unknownRuleEvents } from '../fds/event-catalog.js';
import { headerNameSchema, regexSchema } from './common.js';
import { identityConfigSchema } from '../identity/config.js';
import { fdsConfigSchema } from '../fds/config.js';
import { passportConfigSchema } from '../passport/config.js';

const port = z.number().int().min(0).max(65535);
const headerName = headerNameSchema;

export const failureMode = z.enum(['closed', 'open']);
export type FailureMode = z.infer<typeof failureMode>;

/** WWW-Authenticate on 401 answers when a gateway names none. */
export const DEFAULT_CHALLENGE = 'Bearer realm="passgate"';

export const GATEWAY_KINDS = ['app', 'public', 'secure', 'ssr', 'internal', 'egress'] as const;
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'CONNECT', 'TRACE'] as const;

const regex = regexSchema;
const absolutePath = z.string().startsWith('/', 'must start with "/"');

/** Opt-in per route: compare the path ignoring ASCII case (for backends on case-insensitive file systems). */
const caseInsensitive = z.boolean().optional();
const pathMatch = z.union(
  [
    z.strictObject({ exact: absolutePath, caseInsensitive }),
    z.strictObject({ prefix: absolutePath, caseInsensitive }),
    z.strictObject({ regex, caseInsensitive }),
  ],
  { error: 'must be exactly one of {exact: "/p"}, {prefix: "/p"} or {regex: "^/p"}' },
);

const headerMatch = z
  .strictObject({
    name: headerName,
    present: z.boolean().optional(),
    exact: z.string().optional(),
    prefix: z.string().optional(),
    regex: regex.optional(),
  })
  .refine((h) => [h.present, h.exact, h.prefix, h.regex].filter((v) => v !== undefined).length <= 1, {
    message: 'set at most one of present, exact, prefix, regex',
  });

const hostPattern = z
  .string()
  .min(1)
  .regex(/^(\*\.)?[a-z0-9.-]+$|^\*$/, 'must be a lowercase host name, "*.domain" or "*"');

export const routeMatch = z.strictObject({
  hosts: z.array(hostPattern).optional(),
  path: pathMatch.optional(),
  methods: z.array(z.enum(HTTP_METHODS)).min(1).optional(),
  headers: z.array(headerMatch).optional(),
});

const stages = z.array(stageSchema).min(1, 'a route needs at least one stage');

export const routeSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'use letters, digits, _ . : -'),
  match: routeMatch.prefault({}),
  failureMode: failureMode.optional(),
  stages,
});

const gatewaySchema = z.strictObject({
  kind: z.enum(GATEWAY_KINDS),
  /** How a Check is attributed to this gateway when context_extensions.gateway is absent. */
  select: z
    .strictObject({
      hosts: z.array(hostPattern).default([]),
      ports: z.array(port.min(1)).default([]),
    })
    .prefault({}),
  /** Only mTLS gateways believe x-forwarded-client-cert. */
  mtls: z.boolean().optional(),
  failureMode: failureMode.default('closed'),
  /** WWW-Authenticate value on 401 answers. */
  challenge: z.string().min(1).default(DEFAULT_CHALLENGE),
  routes: z.array(routeSchema).default([]),
  /** The chain for requests no route matches; by default a 404 `no_route`. */
  defaultRoute: z.strictObject({ failureMode: failureMode.optional(), stages }).optional(),
});

const listen = (defaultPort: number, defaultHost: string) =>
  z.strictObject({ host: z.string().min(1).default(defaultHost), port: port.default(defaultPort) }).prefault({});

export const configSchema = z
  .strictObject({
    server: z
      .strictObject({
        grpc: listen(9001, '0.0.0.0'),
        /** Loopback unless set: the admin port serves the FDS admin API and metrics; k8s sets 0.0.0.0 for probes and scraping. */
        admin: listen(9090, '127.0.0.1'),
        /** Longest time SIGTERM waits for in-flight Checks before exiting. */
        shutdownGraceMs: z.number().int().min(0).max(600_000).default(10_000),
        /**
         * After SIGTERM, health reports NOT_SERVING but Checks keep being answered this long, so
         * load balancers and endpoints stop sending before the listener closes; then the drain.
         */
        drainDelayMs: z.number().int().min(0).max(600_000).default(0),
        /** Deadline assumed when the caller sends none (Envoy's default is 200 ms). */
        defaultDeadlineMs: z.number().int().min(1).max(60_000).default(200),
        /** Answer this many ms before the deadline, so the reply still reaches Envoy in time. */
        deadlineMarginMs: z.number().int().min(0).max(1_000).default(5),
        /** Reject gRPC messages larger than this (bytes). */
        maxMessageBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
      })
      .prefault({}),
    logging: z
      .strictObject({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
        audit: z.boolean().default(true),
      })
      .prefault({}),
    headers: z
      .strictObject({
        /** Headers only the gateway may set: always removed from client requests. */
        internal: z.array(headerName).default(['x-passport']),
        internalPrefixes: z.array(headerName).default(['x-passgate-']),
        degraded: headerName.default('x-passgate-degraded'),
      })
      .prefault({}),
    gateways: z.record(z.string().regex(/^[a-z][a-z0-9-]*$/, 'gateway names are lowercase'), gatewaySchema).refine(
      (g) => Object.keys(g).length > 0,
      { message: 'define at least one gateway' },
    ),
    /** Gateway used when nothing else selects one; unset means an unknown gateway is denied. */
    defaultGateway: z.string().optional(),
    /** Identity sources (mTLS mapping rules, ...). */
    identity: identityConfigSchema,
    /** Fraud detection: Redis, block lists, detection rules. */
    fds: fdsConfigSchema,
    /** Passport issuing: keys, sources, TTL. */
    passport: passportConfigSchema,
  })
  .superRefine((config, ctx) => {
    // Whatever the routes: a Passport header a client could send itself would be believed upstream.
    const ph = config.passport?.header;
    if (ph !== undefined && !config.headers.internal.includes(ph) && !config.headers.internalPrefixes.some((p) => ph.startsWith(p))) {
      ctx.addIssue({
        code: 'custom',
        path: ['passport', 'header'],
        message: `"${ph}" is not an internal header: list it in headers.internal (or use a headers.internalPrefixes prefix) so it is stripped from every client request`,
      });
    }
    // FDS rules may only count events some stage type declares it can report.
    for (const u of unknownRuleEvents(config.fds?.rules ?? [], stageDefinitions())) {
      ctx.addIssue({
        code: 'custom',
        path: ['fds', 'rules', u.index, 'events', u.eventIndex],
        message: `no stage type reports "${u.event}"; known events: ${u.known.join(', ')}`,
      });
    }
    const names = Object.keys(config.gateways);
    if (config.defaultGateway !== undefined && !names.includes(config.defaultGateway)) {
      ctx.addIssue({
        code: 'custom',
        path: ['defaultGateway'],
        message: `names no gateway; defined gateways: ${names.join(', ')}`,
      });
    }
    const hostOwner = new Map<string, string>();
    const portOwner = new Map<number, string>();
    for (const [name, gw] of Object.entries(config.gateways)) {
      gw.select.hosts.forEach((h, i) => {
        const owner = hostOwner.get(h);
        if (owner !== undefined)
          ctx.addIssue({ code: 'custom', path: ['gateways', name, 'select', 'hosts', i], message: `host "${h}" already selects gateway "${owner}"` });
        hostOwner.set(h, name);
      });
      gw.select.ports.forEach((p, i) => {
        const owner = portOwner.get(p);
        if (owner !== undefined)
          ctx.addIssue({ code: 'custom', path: ['gateways', name, 'select', 'ports', i], message: `port ${p} already selects gateway "${owner}"` });
        portOwner.set(p, name);
      });
      const seen = new Set<string>();
      gw.routes.forEach((r, i) => {
        if (seen.has(r.name))
          ctx.addIssue({ code: 'custom', path: ['gateways', name, 'routes', i, 'name'], message: `duplicate route name "${r.name}" in gateway "${name}"` });
        seen.add(r.name);
      });
    }
  });

export type PassgateConfig = z.infer<typeof configSchema>;
export type GatewayConfig = PassgateConfig['gateways'][string];
export type RouteConfig = z.infer<typeof routeSchema>;
export type RouteMatchConfig = z.infer<typeof routeMatch>;
