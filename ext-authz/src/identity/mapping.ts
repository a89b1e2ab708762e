/**
 * Maps a certificate's SANs to an identity with the `identity.mtls.rules`
 * config: first rule whose field matches wins; regex named captures, `{san}`,
 * `{rest}`, `{serial}` and `{fingerprint}` fill the subject, attribute and
 * group templates. Rules are compiled once per config load; templates are
 * checked then, so an unknown `{name}` is a startup error, not a silent ''.
 */
import { ConfigError } from '../config/errors.js';
import type { Identity } from '../pipeline/context.js';
import type { CertificateFacts } from './certificate.js';
import { SAN_FIELDS, type MappingRuleConfig, type SanField, type StringMatchConfig } from './config.js';

const BUILTINS = ['san', 'rest', 'serial', 'fingerprint'] as const;

type Captures = Readonly<Record<string, string | undefined>>;

/** A template split into literal text and placeholder names at compile time. */
type TemplatePart = string | { readonly name: string };

interface CompiledMatcher {
  /** Returns the captures on a match, undefined otherwise. */
  match(value: string): Captures | undefined;
  readonly names: readonly string[];
}

export interface CompiledRule {
  readonly name: string;
  readonly field: SanField;
  readonly matcher: CompiledMatcher;
  readonly subject: readonly TemplatePart[];
  readonly kind: 'user' | 'service' | 'developer';
  readonly attributes: ReadonlyArray<readonly [string, readonly TemplatePart[]]>;
  readonly groups: ReadonlyArray<readonly TemplatePart[]>;
}

/** Named capture groups of a regex source (empty when none). */
export function captureNames(source: string): string[] {
  try {
    // The empty alternative always matches, and `groups` lists every named group.
    const m = new RegExp(`(?:${source})|`).exec('');
    return m?.groups ? Object.keys(m.groups) : [];
  } catch {
    return [];
  }
}

function compileMatcher(m: StringMatchConfig): CompiledMatcher {
  if ('exact' in m) {
    const want = m.exact;
    const caps: Captures = Object.freeze({ rest: '' });
    return { names: [], match: (v) => (v === want ? caps : undefined) };
  }
  if ('prefix' in m) {
    const p = m.prefix;
    return { names: [], match: (v) => (v.startsWith(p) ? { rest: v.slice(p.length) } : undefined) };
  }
  if ('suffix' in m) {
    const s = m.suffix;
    return { names: [], match: (v) => (v.endsWith(s) ? { rest: v.slice(0, v.length - s.length) } : undefined) };
  }
  // Anchored: a rule must describe the whole SAN, never a substring of an attacker-chosen one.
  const re = new RegExp(`^(?:${m.regex})$`);
  const names = captureNames(m.regex);
  const none: Captures = Object.freeze({});
  return {
    names,
    match(v) {
      const r = re.exec(v);
      if (r === null) return undefined;
      return r.groups ?? none;
    },
  };
}

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

function compileTemplate(t: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  let last = 0;
  for (const m of t.matchAll(PLACEHOLDER)) {
    if (m.index > last) parts.push(t.slice(last, m.index));
    parts.push({ name: m[1]! });
    last = m.index + m[0].length;
  }
  if (last < t.length) parts.push(t.slice(last));
  return parts;
}

function placeholders(parts: readonly TemplatePart[]): string[] {
  return parts.filter((p): p is { name: string } => typeof p !== 'string').map((p) => p.name);
}


/** Compiles the rules; throws a ConfigError listing every `path: problem`. */
export function compileRules(rules: readonly MappingRuleConfig[], path: string): CompiledRule[] {
  const problems: string[] = [];
  const out: CompiledRule[] = [];
  rules.forEach((rule, i) => {
    const at = `${path}[${i}]`;
    const field = SAN_FIELDS.find((f) => rule[f] !== undefined)!;
    const matcher = compileMatcher(rule[field]!);
    const available = new Set<string>([...BUILTINS, ...matcher.names]);
    const check = (parts: TemplatePart[], where: string) => {
      for (const n of placeholders(parts)) {
        if (!available.has(n)) problems.push(`${at}.${where}: unknown placeholder {${n}}; available: ${[...available].map((a) => `{${a}}`).join(', ')}`);
      }
      return parts;
    };
    out.push({
      name: rule.name ?? `rules[${i}]`,
      field,
      matcher,
      subject: check(compileTemplate(rule.identity.subject), 'identity.subject'),
      kind: rule.identity.kind,
      attributes: Object.entries(rule.identity.attributes).map(([k, t]) => [k, check(compileTemplate(t), `identity.attributes.${k}`)] as const),
      groups: rule.identity.groups.map((g, j) => check(compileTemplate(g), `identity.groups[${j}]`)),
    });
  });
  if (problems.length > 0) throw new ConfigError('identity.mtls.rules', problems);
  return out;
}

function render(parts: readonly TemplatePart[], caps: Captures, san: string, facts: CertificateFacts | undefined): string {
  if (parts.length === 1 && typeof parts[0] === 'string') return parts[0];
  let s = '';
  for (const p of parts) {
    if (typeof p === 'string') {
      s += p;
      continue;
    }
    switch (p.name) {
      case 'san':
        s += san;
        break;
      case 'serial':
        s += facts?.serial ?? '';
        break;
      case 'fingerprint':
        s += facts?.fingerprint ?? '';
        break;
      default:
        s += caps[p.name] ?? '';
    }
  }
  return s;
}

/** The SAN values (or subject) a field names. */
export interface SanSource {
  readonly uri: readonly string[];
  readonly dns: readonly string[];
  readonly email: readonly string[];
  readonly ip: readonly string[];
  readonly subject: string;
}

export function sanSourceOf(facts: CertificateFacts): SanSource {
  return { uri: facts.sans.uri, dns: facts.sans.dns, email: facts.sans.email, ip: facts.sans.ip, subject: facts.subject };
}

export interface MappingResult {
  readonly identity: Identity;
  readonly rule: string;
  /** The SAN (or subject) the rule matched. */
  readonly matched: string;
}

/** First rule that matches one of the certificate's values; undefined when none does. */
/** `facts` is undefined when only SAN strings are known (peer principal, XFCC without Cert). */
export function mapIdentity(rules: readonly CompiledRule[], src: SanSource, facts: CertificateFacts | undefined): MappingResult | undefined {
  for (const rule of rules) {
    const values = rule.field === 'subject' ? (src.subject === '' ? [] : [src.subject]) : src[rule.field];
    for (const value of values) {
      const caps = rule.matcher.match(value);
      if (caps === undefined) continue;
      const subject = render(rule.subject, caps, value, facts);
      // A template that renders empty (an optional capture that did not take part) is no identity.
      if (subject === '') continue;
      const attributes: Record<string, string> = {};
      for (const [k, t] of rule.attributes) attributes[k] = render(t, caps, value, facts);
      const groups = rule.groups.map((g) => render(g, caps, value, facts)).filter((g) => g !== '');
      return {
        identity: Object.freeze({
          subject,
          kind: rule.kind,
          source: 'mtls',
          attributes: Object.freeze(attributes),
          groups: Object.freeze(groups),
        }),
        rule: rule.name,
        matched: value,
      };
    }
  }
  return undefined;
}
