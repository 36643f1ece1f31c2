// The drift monitor end to end over a real SQLite store: windows from the query log, statistics in a
// worker thread, thresholds, the stored report, gauges, the retrain trigger and its cooldown.
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createMetrics } from '../../src/metrics.js';
import { DriftMonitor, type DriftMetrics } from '../../src/monitor/drift.js';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/types.js';
import { createLogger } from '../../src/util/log.js';
import { tempDir } from '../helpers.js';
import { hashEmbed, logRow, rng } from './helpers.js';

const BP = [
  'cell cycle',
  'apoptotic process',
  'signal transduction',
  'dna repair',
  'cell migration',
  'immune response',
  'autophagy',
  'glycolysis',
  'translation',
  'transcription',
  'cell division',
  'neurogenesis',
];
const MF = [
  'kinase activity',
  'atp binding',
  'zinc ion binding',
  'receptor activity',
  'oxidoreductase activity',
  'transporter activity',
  'protein binding',
  'hydrolase activity',
  'nucleotide binding',
  'gtpase activator',
];

function queries(vocab: string[], n: number, seed: number): string[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => `${vocab[Math.floor(r() * vocab.length)]} ${vocab[Math.floor(r() * vocab.length)]} regulation`);
}

describe('DriftMonitor', () => {
  let dir: string;
  let store: Store;
  const version = 'base-v1';
  const config = loadConfig({}, { DRIFT_WINDOW: 150, DRIFT_MIN_QUERIES: 50, DRIFT_COOLDOWN_SECONDS: 3600, AUTO_RETRAIN: true });
  const metrics = createMetrics();
  const triggered: { collection: string; m: DriftMetrics }[] = [];
  let monitor: DriftMonitor;

  beforeAll(async () => {
    dir = tempDir('drift-');
    store = await openStore({ dataDir: dir });
    await store.upsertModelVersion({ version, parentVersion: null, source: 'dir:/nowhere', dim: 64, status: 'champion', card: {} });
    const p = await store.promote(version);
    const t = p.changedAt + 1;
    // "stable": the same traffic throughout; "shifted": BP traffic, then MF traffic with lower scores.
    // Vector-only searches (no text to re-embed) come first and must be read past, not counted.
    await store.insertQueryLogs(Array.from({ length: 400 }, (_, i) => ({ ...logRow('stable', 'x', t + i / 1000, version), query: null })));
    await store.insertQueryLogs(
      queries(BP, 300, 1).map((q, i) => logRow('stable', q, t + 1 + i * 10, version, [0.8 + (i % 7) * 0.01, 0.7])),
    );
    await store.insertQueryLogs([
      ...queries(BP, 150, 2).map((q, i) => logRow('shifted', q, t + i * 10, version, [0.8 + (i % 7) * 0.01, 0.7])),
      ...queries(MF, 150, 3).map((q, i) => logRow('shifted', q, t + 5000 + i * 10, version, [0.55 + (i % 7) * 0.01, 0.5])),
    ]);
    monitor = new DriftMonitor(
      {
        store,
        config,
        metrics,
        log: createLogger('silent'),
        embed: async (texts) => ({ vectors: hashEmbed(texts), model: version }),
        servingVersion: () => version,
        // A real job row: the cooldown reads the job history.
        onDrift: async (collection, m) => {
          triggered.push({ collection, m });
          const job = await store.insertJob({
            id: `job-${triggered.length}`,
            collection,
            trigger: 'drift',
            state: 'queued',
            progress: {},
            timings: {},
            parentVersion: version,
            candidateVersion: null,
            error: null,
          });
          return job.id;
        },
      },
      { permutations: 100 },
    );
  });

  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports no drift when traffic keeps its distribution', async () => {
    const { report, metrics: m } = await monitor.check('stable');
    expect(m.status).toBe('ok');
    expect(m.reference.n).toBe(150);
    expect(m.current.n).toBe(150);
    expect(Math.abs(m.domainAuc! - 0.5)).toBeLessThan(0.12);
    expect(m.mmd!.pValue).toBeGreaterThan(0.01);
    expect(m.top1Score!.pValue).toBeGreaterThan(0.05);
    expect(report.drifted).toBe(false);
    expect(report.jobId).toBeNull();
    expect(triggered).toHaveLength(0);
  });

  it('fires on a shift, stores the report with the job it created, and exports gauges', async () => {
    const { report, metrics: m } = await monitor.check('shifted');
    expect(m.domainAuc!).toBeGreaterThan(0.9);
    expect(m.mmd!.pValue).toBeLessThan(0.02);
    expect(m.centroidDistance!).toBeGreaterThan(0.1);
    expect(m.top1Score!.statistic).toBeGreaterThan(0.9);
    expect(m.top1Score!.curMean).toBeLessThan(m.top1Score!.refMean);
    expect(report.drifted).toBe(true);
    expect(report.jobId).toBe('job-1');
    expect(triggered.map((t) => t.collection)).toEqual(['shifted']);
    const stored = await store.listDriftReports('shifted', 5);
    expect(stored[0]!.id).toBe(report.id);
    expect(stored[0]!.jobId).toBe('job-1');
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/drift_score\{collection="shifted",metric="domain_auc"\} (0\.9\d*|1)\n/);
    expect(text).toMatch(/drift_detected_total\{collection="shifted"\} 1/);
  });

  it('respects the cooldown: drift is reported again but no second job is created', async () => {
    const { report, metrics: m } = await monitor.check('shifted');
    expect(report.drifted).toBe(true);
    expect(m.cooldown).toBe(true);
    expect(report.jobId).toBeNull();
    expect(triggered).toHaveLength(1);
  });

  it('no retrain storm: the cooldown runs from the last job (its history, not the drift reports), and a running job blocks another', async () => {
    // The job ended: still within DRIFT_COOLDOWN_SECONDS of its end → no job.
    await store.updateJob('job-1', { state: 'done' });
    const again = await monitor.check('shifted');
    expect(again.report.drifted).toBe(true);
    expect(again.metrics.cooldown).toBe(true);
    expect(again.metrics.reasons.join(' ')).toMatch(/cooldown: job job-1 ended/);
    // Only one job was ever created.
    expect(triggered).toHaveLength(1);
  });

  it('says "insufficient_data" rather than guessing on a short log', async () => {
    await store.insertQueryLogs(queries(BP, 20, 9).map((q, i) => logRow('short', q, Date.now() + i, version)));
    const { report, metrics: m } = await monitor.check('short');
    expect(m.status).toBe('insufficient_data');
    expect(report.drifted).toBe(false);
    expect(m.domainAuc).toBeNull();
  });

  it('a configured baseline moves the reference window', async () => {
    const all = await store.queryLogWindow('shifted', { limit: 1000 });
    const mfStart = all.find((r) => MF.some((w) => r.query!.startsWith(w)))!.createdAt;
    const { metrics: m } = await new DriftMonitor(
      {
        store,
        config: { ...config, DRIFT_WINDOW: 70 },
        metrics,
        log: createLogger('silent'),
        embed: async (texts) => ({ vectors: hashEmbed(texts), model: version }),
        servingVersion: () => version,
      },
      { inline: true, permutations: 50 },
    ).check('shifted', { referenceSince: mfStart });
    // Both windows are now MF traffic.
    expect(m.reference.basis).toBe('baseline');
    expect(m.domainAuc!).toBeLessThan(0.7);
  });
});
