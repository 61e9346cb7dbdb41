// Drives code-server in Chromium: opens the Python file, types a function
// header, waits for ghostd's ghost text, accepts it with Tab, saves, and
// checks the file on disk. Writes screenshots to --out.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`missing --${name}`);
  return process.argv[i + 1];
}

const url = arg('url');
const file = arg('file');
const out = arg('out');
const executablePath = arg('chromium');
const kTyped = 'def circumference(radius):';
const kGhostTimeoutMs = 90_000;

const t0 = Date.now();
const log = (msg) => console.log(`[e2e.js +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);

// Ghost text is rendered as decorations (same line) and view zones (lines below).
async function ghostText(page) {
  return page.evaluate(() => {
    const parts = [...document.querySelectorAll('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text')];
    return parts.map((e) => e.textContent || '').join('').replace(/\u00a0/g, ' ');
  });
}

async function statusText(page) {
  const item = page.locator('.statusbar-item', { hasText: 'ghostd' }).first();
  return (await item.count()) ? ((await item.getAttribute('aria-label')) || (await item.innerText())) : '(no ghostd item)';
}

async function main() {
  const before = fs.readFileSync(file, 'utf8');
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(60_000);
  try {
    await page.goto(url);
    await page.locator('.monaco-workbench').waitFor();
    log('workbench rendered');

    await page.getByRole('treeitem', { name: 'main.py' }).click();
    const editor = page.locator('.editor-instance .monaco-editor').first();
    await editor.waitFor();
    await page.locator('.editor-instance .view-lines').first().click();
    log('main.py open');

    // The daemon starts on activation; wait for the status item to leave "loading".
    const statusItem = page.locator('.statusbar-item', { hasText: 'ghostd' }).first();
    await statusItem.waitFor({ timeout: 60_000 });
    const readyBy = Date.now() + 60_000;
    while (Date.now() < readyBy && /loading|starting/i.test(await statusText(page))) await page.waitForTimeout(250);
    log(`status: ${await statusText(page)}`);

    await page.keyboard.press('Control+End');
    await page.keyboard.type(kTyped, { delay: 20 });
    await page.keyboard.press('Enter'); // Python's on-enter rule indents the body
    await page.keyboard.type('return ', { delay: 20 });

    // Inline suggestions trigger on typing; ask again explicitly if none shows.
    let ghost = '';
    const deadline = Date.now() + kGhostTimeoutMs;
    let nextTrigger = Date.now() + 5_000;
    while (Date.now() < deadline) {
      ghost = await ghostText(page);
      if (ghost.trim().length > 0) break;
      if (Date.now() > nextTrigger) {
        await page.keyboard.press('Alt+Backslash'); // editor.action.inlineSuggest.trigger
        nextTrigger = Date.now() + 5_000;
      }
      await page.waitForTimeout(100);
    }
    await page.screenshot({ path: path.join(out, 'vscode-ghost-text.png') });
    if (ghost.trim().length === 0) throw new Error(`no ghost text within ${kGhostTimeoutMs} ms (status: ${await statusText(page)})`);
    log(`ghost text: ${JSON.stringify(ghost)}; status: ${await statusText(page)}`);

    await page.keyboard.press('Tab');
    // Accepting moves the cursor; the extension may at once offer the next
    // completion there, which Escape dismisses before saving.
    await page.waitForTimeout(300);
    await page.keyboard.press('Escape');
    await page.keyboard.press('Control+S');
    const savedBy = Date.now() + 15_000;
    let after = before;
    while (Date.now() < savedBy && after === before) {
      await page.waitForTimeout(100);
      after = fs.readFileSync(file, 'utf8');
    }
    await page.screenshot({ path: path.join(out, 'vscode-accepted.png') });

    const typedPrefix = before + kTyped + '\n    return ';
    if (!after.startsWith(typedPrefix)) {
      throw new Error(`saved file does not start with the typed text:\n${JSON.stringify(after)}`);
    }
    const accepted = after.slice(typedPrefix.length);
    const squash = (t) => t.replace(/\s+/g, '');
    if (accepted.trim().length === 0 || !squash(accepted).startsWith(squash(ghost).slice(0, 8))) {
      throw new Error(`the accepted text ${JSON.stringify(accepted)} does not hold the ghost text ${JSON.stringify(ghost)}`);
    }
    log(`accepted with Tab, file now ends: ${JSON.stringify(after.slice(before.length))}`);
    log(`status: ${await statusText(page)}`);
  } catch (err) {
    await page.screenshot({ path: path.join(out, 'vscode-failure.png') }).catch(() => {});
    throw err;
  } finally {
    await browser.close();
  }
}

main().then(
  () => log('PASS'),
  (err) => {
    console.error(`e2e.vscode FAIL: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);
