// A real headless browser for the console tests: Debian's chromium (/usr/bin/chromium, installed by
// .ci/run) driven by puppeteer-core. Nothing is downloaded; the profile is a fresh temporary directory.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer, { type Browser, type ConsoleMessage, type Page } from 'puppeteer-core';
import { REPO, tempDir } from '../helpers.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);
export const SHOTS = join(REPO, '.tmp/console-screenshots');

export interface Console {
  browser: Browser;
  /** Console errors, uncaught exceptions and failed requests of every page opened through newPage(). */
  problems: { page: string; text: string }[];
  newPage(width?: number, height?: number): Promise<Page>;
  /** A PNG under .tmp/console-screenshots (gitignored); `full` captures the whole page, not just the viewport. */
  shot(page: Page, name: string, full?: boolean): Promise<string>;
  close(): Promise<void>;
}

export async function launchConsole(): Promise<Console> {
  const profile = tempDir('chromium-');
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
      `--user-data-dir=${profile}`,
    ],
    protocolTimeout: 60_000,
  });
  mkdirSync(SHOTS, { recursive: true });
  const problems: Console['problems'] = [];
  return {
    browser,
    problems,
    async newPage(width = 1280, height = 800) {
      const page = await browser.newPage();
      await page.setViewport({ width, height });
      page.on('console', (m: ConsoleMessage) => {
        if (m.type() === 'error') problems.push({ page: page.url(), text: `${m.text()} ${m.location()?.url ?? ''}`.trim() });
      });
      page.on('pageerror', (err) => problems.push({ page: page.url(), text: `uncaught: ${String(err)}` }));
      page.on('requestfailed', (r) =>
        problems.push({ page: page.url(), text: `request failed: ${r.url()} ${r.failure()?.errorText ?? ''}` }),
      );
      page.on('dialog', (d) => void d.accept());
      return page;
    },
    async shot(page, name, full = false) {
      const path = join(SHOTS, `${name}.png`);
      await page.screenshot({ path: path as `${string}.png`, fullPage: full });
      return path;
    },
    async close() {
      await browser.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
