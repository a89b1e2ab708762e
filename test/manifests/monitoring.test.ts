/**
 * k8s/monitoring: the alert rules pass `promtool check rules` and their unit
 * tests (`promtool test rules`), every alert has a firing unit test, the
 * PrometheusRule CR carries exactly the rule file's groups, and every metric
 * the rules and the dashboard query is one Passgate exports. Broken copies
 * are caught. promtool comes from Debian's `prometheus` package (.ci/run).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { ROOT } from '../../istio/checks/load.js';

const DIR = join(ROOT, 'k8s', 'monitoring');
const RULES = join(DIR, 'rules', 'passgate-alerts.yaml');
const UNIT = join(DIR, 'tests', 'passgate-alerts.test.yaml');

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
}
interface Groups {
  groups: Array<{ name: string; rules: Rule[] }>;
}

function promtool(args: string[], cwd = DIR): { ok: boolean; out: string } {
  const r = spawnSync('promtool', args, { cwd, encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error('promtool is not installed: apt-get install prometheus (Debian; .ci/run does it), or put promtool on PATH');
  }
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

/** Every metric name Passgate registers (`name: 'passgate_...'` in its source). */
function exportedMetrics(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (f.endsWith('.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/name: '(passgate_[a-z0-9_]+)'/g)) names.add(m[1]!);
    }
  };
  walk(join(ROOT, 'ext-authz', 'src'));
  return names;
}

/** Metric names an expression reads (histogram series map to their histogram). */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\b(passgate_[a-z0-9_]+)\b/g)].map((m) => m[1]!.replace(/_(bucket|sum|count)$/, ''));
}

function unknownMetrics(exprs: string[], known: Set<string>): string[] {
  return [...new Set(exprs.flatMap(metricsIn))].filter((m) => !known.has(m));
}

function dashboardExprs(json: string): string[] {
  const d = JSON.parse(json) as { panels: Array<{ targets?: Array<{ expr: string }> }>; templating: { list: Array<{ query?: unknown }> } };
  return [
    ...d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
    ...d.templating.list.map((t) => t.query).filter((q): q is string => typeof q === 'string'),
  ];
}

describe('monitoring (promtool, offline)', function () {
  this.timeout(60_000);
  const rules = parse(readFileSync(RULES, 'utf8')) as Groups;
  const alerts = rules.groups.flatMap((g) => g.rules).filter((r) => r.alert);
  const known = exportedMetrics();

  it('promtool check rules passes on the rule file and on the PrometheusRule groups', () => {
    const r = promtool(['check', 'rules', RULES]);
    assert.ok(r.ok, r.out);
    const cr = parse(readFileSync(join(DIR, 'prometheusrule.yaml'), 'utf8')) as { kind: string; spec: Groups };
    assert.equal(cr.kind, 'PrometheusRule');
    const tmp = join(mkdtempSync(join(tmpdir(), 'passgate-rules-')), 'cr.yaml');
    writeFileSync(tmp, stringify(cr.spec));
    const c = promtool(['check', 'rules', tmp]);
    assert.ok(c.ok, c.out);
  });

  it('the PrometheusRule carries exactly the rule file groups', () => {
    const cr = parse(readFileSync(join(DIR, 'prometheusrule.yaml'), 'utf8')) as { spec: Groups };
    assert.deepEqual(cr.spec.groups, rules.groups);
  });

  it('covers deny spikes, fds_unavailable, Check latency, reload failures and the open breaker', () => {
    const exprs = rules.groups.flatMap((g) => g.rules).map((r) => r.expr).join('\n');
    for (const needle of ['decision="deny"', 'fds_unavailable', 'passgate_check_duration_seconds_bucket', 'result="rejected"', 'passgate_passport_source_circuit_open']) {
      assert.ok(exprs.includes(needle), needle);
    }
  });

  it('promtool test rules: every alert has a unit test in which it fires', () => {
    const r = promtool(['test', 'rules', UNIT]);
    assert.ok(r.ok, r.out);
    const unit = parse(readFileSync(UNIT, 'utf8')) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }> };
    const firing = new Set(unit.tests.flatMap((t) => t.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname));
    for (const a of alerts) assert.ok(firing.has(a.alert!), `${a.alert} has no unit test where it fires`);
  });

  it('the rules and the dashboard query only metrics Passgate exports', () => {
    assert.ok(known.has('passgate_checks_total') && known.has('passgate_fds_degraded_decisions_total'), 'metric names found in source');
    const records = new Set(rules.groups.flatMap((g) => g.rules).map((r) => r.record).filter(Boolean));
    assert.deepEqual(unknownMetrics(rules.groups.flatMap((g) => g.rules).map((r) => r.expr), known), []);
    const dash = readFileSync(join(DIR, 'grafana', 'passgate-dashboard.json'), 'utf8');
    assert.deepEqual(unknownMetrics(dashboardExprs(dash), known), []);
    assert.ok(records.size > 0);
  });

  it('renders with kubectl kustomize: the PrometheusRule and the dashboard ConfigMap', () => {
    const out = execFileSync('kubectl', ['kustomize', DIR], { encoding: 'utf8' });
    const docs = out.split(/^---$/m).map((d) => parse(d) as { kind: string; metadata: { labels?: Record<string, string> }; data?: Record<string, string> });
    assert.deepEqual(docs.map((d) => d.kind).sort(), ['ConfigMap', 'PrometheusRule']);
    const cm = docs.find((d) => d.kind === 'ConfigMap')!;
    assert.equal(cm.metadata.labels?.['grafana_dashboard'], '1');
    assert.equal((JSON.parse(cm.data!['passgate.json']!) as { uid: string }).uid, 'passgate');
  });

  describe('broken copies are caught', () => {
    it('a rule with a PromQL error fails promtool check rules', () => {
      const broken = structuredClone(rules);
      broken.groups[0]!.rules.find((r) => r.alert)!.expr = 'sum(rate(passgate_checks_total[5m])';
      const tmp = join(mkdtempSync(join(tmpdir(), 'passgate-rules-')), 'broken.yaml');
      writeFileSync(tmp, stringify(broken));
      assert.equal(promtool(['check', 'rules', tmp]).ok, false);
    });

    it('a changed threshold fails the unit tests', () => {
      const dir = mkdtempSync(join(tmpdir(), 'passgate-rules-'));
      const broken = readFileSync(RULES, 'utf8').replace('[5m]))) > 0.05', '[5m]))) > 0.5');
      assert.notEqual(broken, readFileSync(RULES, 'utf8'));
      writeFileSync(join(dir, 'rules.yaml'), broken);
      const unit = readFileSync(UNIT, 'utf8').replace('../rules/passgate-alerts.yaml', 'rules.yaml');
      writeFileSync(join(dir, 'unit.yaml'), unit);
      const r = promtool(['test', 'rules', 'unit.yaml'], dir);
      assert.equal(r.ok, false);
      assert.match(r.out, /PassgateCheckLatencyHigh/);
    });

    it('a misspelt metric in a rule or the dashboard is reported', () => {
      assert.deepEqual(unknownMetrics(['rate(passgate_check_total[5m])'], known), ['passgate_check_total']);
      const dash = readFileSync(join(DIR, 'grafana', 'passgate-dashboard.json'), 'utf8').replace('passgate_fds_blocks_active', 'passgate_fds_block_active');
      assert.deepEqual(unknownMetrics(dashboardExprs(dash), known), ['passgate_fds_block_active']);
    });

    it('a PrometheusRule that drifted from the rule file is caught', () => {
      const cr = parse(readFileSync(join(DIR, 'prometheusrule.yaml'), 'utf8')) as { spec: Groups };
      cr.spec.groups[0]!.rules.pop();
      assert.throws(() => assert.deepEqual(cr.spec.groups, rules.groups));
    });
  });
});
