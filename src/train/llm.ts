import OpenAI from 'openai';
import type { Logger } from '../util/log.js';

export interface LlmOptions {
  baseURL: string;
  model: string;
  apiKey?: string;
  concurrency: number;
  /** Attempts per request (first try included). */
  maxAttempts?: number;
  /** First backoff delay; doubles per attempt with ±50 % jitter. */
  backoffMs?: number;
  /** Price per million tokens, for the cost line in the job report (0 = unknown/free, e.g. a local server). */
  pricePerMTokIn?: number;
  pricePerMTokOut?: number;
  timeoutMs?: number;
}

export interface LlmUsage {
  requests: number;
  failures: number;
  retries: number;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
}

/** At most `n` tasks at a time, FIFO. (p-limit does the same; not worth a dependency for 12 lines.) */
export function limiter(n: number) {
  let active = 0;
  const queue: (() => void)[] = [];
  return async function run<T>(fn: () => Promise<T>): Promise<T> {
    if (active >= n) await new Promise<void>((r) => queue.push(r));
    active++;
    try {
      return await fn();
    } finally {
      active--;
      queue.shift()?.();
    }
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One generated line per non-empty output line, list markers and quotes stripped. */
export function parseLines(text: string, max: number): string[] {
  return text
    .split('\n')
    .map((l) =>
      l
        .replace(/^\s*(?:[-*•]|\d+[.)])\s*/, '')
        .replace(/^["'“]|["'”]$/g, '')
        .trim(),
    )
    .filter((l) => l.length >= 3 && l.length <= 400)
    .slice(0, max);
}

/**
 * Mines training anchors with any OpenAI-compatible chat endpoint: questions a user would ask that a
 * passage answers, and paraphrases of real logged queries (so the encoder sees the traffic's wording).
 * The client's own retries are off: ours also retry answers that parse to nothing, and count every try.
 */
export class LlmMiner {
  private readonly client: OpenAI;
  private readonly run: ReturnType<typeof limiter>;
  readonly usage: LlmUsage = { requests: 0, failures: 0, retries: 0, promptTokens: 0, completionTokens: 0, costUsd: 0 };

  constructor(
    private readonly opts: LlmOptions,
    private readonly log?: Logger,
  ) {
    this.client = new OpenAI({ baseURL: opts.baseURL, apiKey: opts.apiKey || 'none', maxRetries: 0, timeout: opts.timeoutMs ?? 60_000 });
    this.run = limiter(opts.concurrency);
  }

  private async complete(system: string, user: string, max: number): Promise<string[]> {
    const attempts = this.opts.maxAttempts ?? 4;
    let delay = this.opts.backoffMs ?? 500;
    let lastErr: unknown;
    // Not p-retry: an answer that parses to nothing is retried like an error, every try is counted in
    // `usage`, and running out of tries yields [] rather than an exception.
    for (let a = 1; a <= attempts; a++) {
      try {
        this.usage.requests++;
        const res = await this.client.chat.completions.create({
          model: this.opts.model,
          temperature: 0.7,
          messages: [
            { role: 'system', content: system },
            { role: 'user', content: user },
          ],
        });
        const u = res.usage;
        if (u) {
          this.usage.promptTokens += u.prompt_tokens;
          this.usage.completionTokens += u.completion_tokens;
          this.usage.costUsd +=
            (u.prompt_tokens * (this.opts.pricePerMTokIn ?? 0) + u.completion_tokens * (this.opts.pricePerMTokOut ?? 0)) / 1e6;
        }
        const lines = parseLines(res.choices[0]?.message?.content ?? '', max);
        if (lines.length > 0) return lines;
        lastErr = new Error('the model returned no usable lines');
      } catch (err) {
        lastErr = err;
        // Client errors other than rate limits will not get better by retrying.
        const status = err instanceof OpenAI.APIError ? err.status : undefined;
        if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) break;
      }
      if (a < attempts) {
        this.usage.retries++;
        await sleep(delay * (0.5 + Math.random()));
        delay *= 2;
      }
    }
    this.usage.failures++;
    this.log?.warn('llm request failed', { err: String(lastErr) });
    return [];
  }

  /** `perPassage` questions for each passage; failures yield nothing for that passage, never an exception. */
  questionsFor(passages: { id: string; text: string }[], perPassage = 2): Promise<{ id: string; question: string }[][]> {
    const system = 'You write search queries. Reply with one query per line, nothing else.';
    return Promise.all(
      passages.map((p) =>
        this.run(async () => {
          const lines = await this.complete(
            system,
            `Write ${perPassage} different short questions or search queries that this passage answers:\n\n${p.text.slice(0, 2000)}`,
            perPassage,
          );
          return lines.map((question) => ({ id: p.id, question }));
        }),
      ),
    );
  }

  paraphrases(queries: string[], perQuery = 2): Promise<{ query: string; paraphrase: string }[][]> {
    const system = 'You rewrite search queries. Reply with one rewrite per line, nothing else.';
    return Promise.all(
      queries.map((q) =>
        this.run(async () => {
          const lines = await this.complete(
            system,
            `Rewrite this search query ${perQuery} different ways, keeping its meaning:\n\n${q}`,
            perQuery,
          );
          return lines.filter((l) => l.toLowerCase() !== q.toLowerCase()).map((paraphrase) => ({ query: q, paraphrase }));
        }),
      ),
    );
  }
}
