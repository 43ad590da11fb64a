/**
 * The monitoring files under deploy/: the Prometheus rules pass `promtool check rules` and their
 * unit tests (`promtool test rules`), and both they and the Grafana dashboard only name metrics
 * Baton exports. promtool comes from Debian's `prometheus` package: missing under CI=true fails,
 * elsewhere the promtool checks are skipped with a loud notice.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/metrics.ts';

const DEPLOY = resolve(import.meta.dirname, '../../deploy');
const RULES = resolve(DEPLOY, 'prometheus/alerts.yml');

function which(cmd: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

const promtool = which('promtool');
if (promtool === null) {
  const line = 'promtool not found (Debian package `prometheus`: apt-get install -y prometheus)';
  if (process.env.CI === 'true') throw new Error(`${line} (CI=true: failing)`);
  console.warn(`\n${'!'.repeat(100)}\n!! SKIPPED promtool checks: ${line}\n${'!'.repeat(100)}\n`);
}

/** Every `baton_*` metric name Baton's registry exports (histograms add _bucket, _sum, _count). */
async function exported(): Promise<Set<string>> {
  const m = new Metrics();
  const names = new Set<string>();
  for (const metric of await m.registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (metric.type.toString() === 'histogram')
      for (const s of ['_bucket', '_sum', '_count']) names.add(metric.name + s);
  }
  return names;
}

function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bbaton_[a-z_]+\b/g)].map((m) => m[0]);
}

describe('GET /metrics', () => {
  it.skipIf(promtool === null)(
    'passes promtool check metrics, default process metrics included',
    async () => {
      const m = new Metrics({ defaultMetrics: true });
      m.webhooks.inc({ provider: 'cloud-api', outcome: 'stored' });
      const text = await m.registry.metrics();
      expect(text).toContain('baton_process_cpu_seconds_total');
      // Which build serves (outside test QA66-F3): the version and the commit.
      expect(text).toMatch(
        /^baton_build_info\{version="\d+\.\d+\.\d+",commit="([0-9a-f]{12}|unknown)"\} 1$/m,
      );
      // Exit 0 and no lint line (a gauge named `_total` is one).
      const out = execFileSync(promtool!, ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(out.trim()).toBe('');
    },
  );
});

describe('deploy/prometheus/alerts.yml', () => {
  it.skipIf(promtool === null)('passes promtool check rules', () => {
    const out = execFileSync(promtool!, ['check', 'rules', RULES], { encoding: 'utf8' });
    expect(out).toContain('SUCCESS');
    expect(out).toMatch(/\b10 rules found/);
  });

  it.skipIf(promtool === null)('passes its unit tests (promtool test rules)', () => {
    const out = execFileSync(promtool!, ['test', 'rules', 'alerts.test.yml'], {
      cwd: resolve(DEPLOY, 'prometheus'),
      encoding: 'utf8',
    });
    expect(out).toContain('SUCCESS');
  });

  it('watches queue depth, oldest pending age and live workers, with metrics Baton exports', async () => {
    const text = readFileSync(RULES, 'utf8');
    const names = await exported();
    const used = metricNames(text);
    for (const n of ['baton_queue_depth', 'baton_oldest_pending_seconds', 'baton_live_workers'])
      expect(used).toContain(n);
    for (const n of used) expect(names, `${n} is not a Baton metric`).toContain(n);
  });
});

describe('deploy/grafana/baton.json', () => {
  interface Panel {
    id: number;
    title: string;
    gridPos: { x: number; y: number; w: number; h: number };
    targets: Array<{ expr: string; refId: string }>;
  }
  const dash = JSON.parse(readFileSync(resolve(DEPLOY, 'grafana/baton.json'), 'utf8')) as {
    uid: string;
    title: string;
    panels: Panel[];
  };

  it('is a dashboard whose panels query only metrics Baton exports', async () => {
    expect(dash.uid).toBe('baton-overview');
    const names = await exported();
    const ids = dash.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const used = new Set<string>();
    for (const p of dash.panels) {
      expect(p.targets.length).toBeGreaterThan(0);
      expect(p.gridPos.w).toBeGreaterThan(0);
      for (const t of p.targets) for (const n of metricNames(t.expr)) used.add(n);
    }
    for (const n of used) expect(names, `${n} is not a Baton metric`).toContain(n);
    for (const n of [
      'baton_queue_depth',
      'baton_oldest_pending_seconds',
      'baton_live_workers',
      'baton_messages_total',
    ])
      expect(used).toContain(n);
  });
});
