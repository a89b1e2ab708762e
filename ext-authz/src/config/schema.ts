/**
 * The configuration schema. Every object is strict so a typo'd key is a
 * startup error that names it, never a silently ignored setting.
 *
 * This file holds the core sections (server, logging, headers, gateways)
 * and builds the root schema from what the composition hands it: each
 * capability's section and stage option schemas (see capabilities/index.ts).
 * It imports no capability, so loading it loads no Redis client.
 */
import { z } from 'zod';
import { headerNameSchema, issueMessage, regexSchema } from './common.js';

/**
 * Capability sections, typed by the capability that owns them
 * (`declare module '../config/schema.js' { interface ConfigSections { fds?: ... } }`).
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface ConfigSections {}

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
  .regex(/^(\*\.)?[a-z0-9.-]+$|^\*$/, 'must be a lowercase host name, "*.domain" or "*"')
  .refine((h) => h === '*' || (!h.endsWith('.') && !h.includes('..')), 'must not end in "." or hold an empty label: requests are compared without the dot of an absolute name');

export const routeMatch = z.strictObject({
  hosts: z.array(hostPattern).optional(),
  path: pathMatch.optional(),
  methods: z.array(z.enum(HTTP_METHODS)).min(1).optional(),
  headers: z.array(headerMatch).optional(),
});

export type StageConfig = { type: string } & Record<string, unknown>;

/**
 * `- allow` is shorthand for `- type: allow`; an unknown `type` names the known ones.
 */
function stageSchemaOf(stageSchemas: readonly z.ZodType[]): z.ZodType<StageConfig> {
  const known = stageSchemas.map((s) => String(((s as z.ZodObject<any>).shape as { type: z.ZodLiteral<string> }).type.value));
  const union = z.discriminatedUnion('type', stageSchemas as unknown as [z.ZodObject<any>, ...z.ZodObject<any>[]], {
    error: (issue) => (issue.code === 'invalid_union' ? `unknown stage type; known types: ${known.join(', ')}` : undefined),
  });
  return z.unknown().transform((raw, ctx) => {
    let value = typeof raw === 'string' ? { type: raw } : raw;
    // `shadow` is the pipeline's, valid on every stage type (docs/operators.md), so it is taken off before the type's strict schema.
    let shadow: true | undefined;
    if (value !== null && typeof value === 'object' && 'shadow' in value) {
      const { shadow: s, ...rest } = value as Record<string, unknown>;
      if (typeof s !== 'boolean') {
        ctx.addIssue({ code: 'custom', message: 'shadow must be true or false', path: ['shadow'] });
        return z.NEVER;
      }
      if (s) shadow = true;
      value = rest;
    }
    const result = union.safeParse(value);
    if (result.success) return (shadow ? { ...result.data, shadow } : result.data) as StageConfig;
    for (const issue of result.error.issues) {
      ctx.addIssue({ code: 'custom', message: issueMessage(issue), path: issue.path as PropertyKey[] });
    }
    return z.NEVER;
  }) as unknown as z.ZodType<StageConfig>;
}

function coreObject(stageSchemas: readonly z.ZodType[]) {
const stages = z.array(stageSchemaOf(stageSchemas)).min(1, 'a route needs at least one stage');

const routeSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'use letters, digits, _ . : -'),
  match: routeMatch.prefault({}),
  failureMode: failureMode.optional(),
  /** Dry-run the route: decide, audit and count as usual, but answer allow (docs/operators.md). */
  shadow: z.boolean().optional(),
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
  /** Whether x-forwarded-client-cert from the proxy in front is believed (default: only `secure` gateways). */
  trustXfcc: z.boolean().optional(),
  /** The old name of trustXfcc: refused with a hint, since "mtls" read like "this gateway requires client certificates". */
  mtls: z.unknown().optional().refine((v) => v === undefined, { message: 'renamed: use trustXfcc (it says whether x-forwarded-client-cert is believed)' }),
  failureMode: failureMode.default('closed'),
  /** WWW-Authenticate value on 401 answers. */
  challenge: z.string().min(1).default(DEFAULT_CHALLENGE),
  routes: z.array(routeSchema).default([]),
  /** The chain for requests no route matches; by default a 404 `no_route`. */
  defaultRoute: z.strictObject({ failureMode: failureMode.optional(), shadow: z.boolean().optional(), stages }).optional(),
});

const listen = (defaultPort: number, defaultHost: string) =>
  z.strictObject({ host: z.string().min(1).default(defaultHost), port: port.default(defaultPort) }).prefault({});

return z
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
        /**
         * Longest time start spends warming up before health says SERVING: the first Redis script
         * load, the first Passport signature, the Check codecs' JIT (so the first real Check after a
         * deploy is not 30–80 ms). 0 turns it off; a warm-up that fails or overruns is only logged.
         */
        warmupMs: z.number().int().min(0).max(60_000).default(2_000),
        /**
         * The gRPC transport: `h2`, Passgate's lean server on node:http2 (issue 18; docs/scaling.md),
         * or `grpc-js`, the @grpc/grpc-js server it replaced, kept as a fallback. Both host the same
         * services (Check, health, reflection, capabilities' streams).
         */
        transport: z.enum(['h2', 'grpc-js']).default('h2'),
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
  });
}

function crossChecks(config: { gateways: Record<string, { select: { hosts: string[]; ports: number[] }; routes: Array<{ name: string }> }>; defaultGateway?: string | undefined }, ctx: z.RefinementCtx): void {
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
}

type CoreConfig = z.infer<ReturnType<typeof coreObject>>;
export type PassgateConfig = CoreConfig & ConfigSections;
export type GatewayConfig = PassgateConfig['gateways'][string];
export type RouteConfig = GatewayConfig['routes'][number];
export type RouteMatchConfig = z.infer<typeof routeMatch>;

/**
 * The root schema: the core sections, plus one optional section per
 * capability (`sections`), with stages drawn from `stageSchemas`.
 */
/** A problem a cross-section check found: where (a key path) and what. */
export interface ConfigIssue {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/** A check over the whole parsed config (a capability's rule that spans sections). */
export type ConfigCheck = (config: PassgateConfig) => readonly ConfigIssue[];

export function buildConfigSchema(
  sections: ReadonlyArray<{ readonly key: string; readonly schema: z.ZodType }>,
  stageSchemas: readonly z.ZodType[],
  checks: readonly ConfigCheck[] = [],
): z.ZodType<PassgateConfig> {
  const extra: Record<string, z.ZodType> = {};
  for (const s of sections) extra[s.key] = s.schema;
  return coreObject(stageSchemas)
    .extend(extra)
    .superRefine((config, ctx) => {
      crossChecks(config as never, ctx);
      for (const check of checks) {
        for (const issue of check(config as unknown as PassgateConfig)) ctx.addIssue({ code: 'custom', path: [...issue.path], message: issue.message });
      }
    }) as unknown as z.ZodType<PassgateConfig>;
}
