import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

// A real OpenAI-compatible chat-completions endpoint on a local port (the tests' LLM): the `openai`
// client talks to it over HTTP exactly as it would to a hosted model.
export interface Fake {
  server: Server;
  url: string;
  calls: number;
  maxInFlight: number;
  prompts: string[];
}

/** An OpenAI-compatible /v1/chat/completions: the first `failFirst` calls get 500s, then echo-style answers. */
export async function startLlm(failFirst = 0): Promise<Fake> {
  const fake: Fake = { server: undefined as unknown as Server, url: '', calls: 0, maxInFlight: 0, prompts: [] };
  let inFlight = 0;
  fake.server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const callNo = ++fake.calls;
      inFlight++;
      fake.maxInFlight = Math.max(fake.maxInFlight, inFlight);
      setTimeout(() => {
        inFlight--;
        if (req.url !== '/v1/chat/completions' || req.method !== 'POST') {
          res.writeHead(404).end();
          return;
        }
        if (callNo <= failFirst) {
          res
            .writeHead(500, { 'content-type': 'application/json' })
            .end(JSON.stringify({ error: { message: 'overloaded', type: 'server_error' } }));
          return;
        }
        const j = JSON.parse(body) as { model: string; messages: { role: string; content: string }[] };
        const user = j.messages.find((m) => m.role === 'user')!.content;
        fake.prompts.push(user);
        const subject = user.split('\n\n')[1]!.split(/\s+/).slice(0, 4).join(' ');
        const content = user.startsWith('Rewrite')
          ? `1. which ${subject} exactly\n2. ${subject} meaning`
          : `- what is ${subject}?\n- define ${subject}`;
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            id: 'c1',
            object: 'chat.completion',
            created: 0,
            model: j.model,
            choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
            usage: { prompt_tokens: 40, completion_tokens: 12, total_tokens: 52 },
          }),
        );
      }, 15);
    });
  });
  await new Promise<void>((r) => fake.server.listen(0, '127.0.0.1', () => r()));
  fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}/v1`;
  return fake;
}
