import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Config } from '../config.js';
import { PACKAGE_ROOT } from '../config.js';

interface TrainerProgress {
  [k: string]: unknown;
}

interface TrainerRun {
  bundle: string;
  out: string;
  timeoutSeconds: number;
  onProgress(p: TrainerProgress): void;
  /** Aborting kills the trainer (server shutdown). */
  signal?: AbortSignal;
}

interface TrainerResult {
  wallSeconds: number;
  /** Last JSON progress line, if any (the trainer's final summary). */
  last?: TrainerProgress;
}

export class TrainerError extends Error {
  constructor(
    message: string,
    readonly stderrTail: string[],
    readonly exitCode: number | null,
    readonly timedOut: boolean,
  ) {
    super(message);
    this.name = 'TrainerError';
  }
}

export interface TrainerBackend {
  readonly name: 'local' | 'command';
  train(run: TrainerRun): Promise<TrainerResult>;
}

const TAIL_LINES = 20;

/** Single-quotes a path for sh (bundle/out paths are ours, but a data dir may contain spaces). */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Runs a trainer process: JSON lines on stdout are progress, anything else on stdout/stderr is kept as a
 * tail for the failure message. The child gets its own process group so a timeout kills the whole tree
 * (sh → python → dataloader workers), not just the shell.
 */
function runTrainerProcess(
  cmd: string,
  args: string[],
  opts: { cwd: string; env?: NodeJS.ProcessEnv } & TrainerRun,
): Promise<TrainerResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, PYTHONUNBUFFERED: '1', ...opts.env },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const tail: string[] = [];
    const keep = (line: string) => {
      if (!line.trim()) return;
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
    };
    let last: TrainerProgress | undefined;
    let timedOut = false;
    let aborted = false;
    const kill = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, opts.timeoutSeconds * 1000);
    const onAbort = () => {
      aborted = true;
      kill();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const s = line.trim();
      if (s.startsWith('{')) {
        try {
          const obj: unknown = JSON.parse(s);
          if (obj !== null && typeof obj === 'object' && !Array.isArray(obj)) {
            last = obj as TrainerProgress;
            opts.onProgress(last);
            return;
          }
        } catch {
          /* not JSON: treat as log output */
        }
      }
      keep(line);
    });
    createInterface({ input: child.stderr! }).on('line', keep);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new TrainerError(`trainer could not start: ${err.message}`, tail, null, false));
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      const wallSeconds = (performance.now() - t0) / 1000;
      if (timedOut)
        return reject(
          new TrainerError(`trainer timed out after ${opts.timeoutSeconds}s (TRAINER_TIMEOUT_SECONDS) and was killed`, tail, code, true),
        );
      if (aborted) return reject(new TrainerError('trainer was killed: the server is shutting down', tail, code, false));
      if (code !== 0) return reject(new TrainerError(`trainer exited with ${code ?? sig}`, tail, code, false));
      resolve({ wallSeconds, last });
    });
  });
}

/** `${TRAINER_PYTHON} -m trainer train BUNDLE OUT` on this host (uses its GPU), cwd = the repo root. */
function localBackend(cfg: Pick<Config, 'TRAINER_PYTHON'>, root = PACKAGE_ROOT): TrainerBackend {
  return {
    name: 'local',
    train: (run) => runTrainerProcess(cfg.TRAINER_PYTHON, ['-m', 'trainer', 'train', run.bundle, run.out], { cwd: root, ...run }),
  };
}

/**
 * A user-given template run by sh with {bundle} and {out} substituted (shell-quoted): a K8s Job, ssh to a
 * GPU box, a batch system. It must leave a model artifact in {out} and exit 0.
 */
function commandBackend(template: string, root = PACKAGE_ROOT): TrainerBackend {
  if (!template.includes('{out}')) throw new Error('TRAINER_COMMAND must contain the {out} placeholder (and usually {bundle})');
  return {
    name: 'command',
    train: (run) => {
      const cmd = template.replaceAll('{bundle}', shellQuote(run.bundle)).replaceAll('{out}', shellQuote(run.out));
      return runTrainerProcess('sh', ['-c', cmd], { cwd: root, ...run });
    },
  };
}

export function trainerFromConfig(cfg: Config): TrainerBackend {
  if (cfg.TRAINER_BACKEND === 'command') {
    if (!cfg.TRAINER_COMMAND) throw new Error('TRAINER_BACKEND=command needs TRAINER_COMMAND (with {bundle} and {out})');
    return commandBackend(cfg.TRAINER_COMMAND);
  }
  return localBackend(cfg);
}

/** What a usable artifact must hold before the server tries to load it. */
export function missingArtifactFiles(dir: string): string[] {
  const need = ['config.json', 'tokenizer.json', 'tokenizer_config.json'];
  const missing = need.filter((f) => !existsSync(join(dir, f)));
  if (!existsSync(join(dir, 'onnx/model.onnx')) && !existsSync(join(dir, 'onnx/model_quantized.onnx'))) missing.push('onnx/model.onnx');
  return missing;
}
