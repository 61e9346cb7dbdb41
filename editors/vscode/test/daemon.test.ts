// Integration: a Node client on vscode-jsonrpc drives the real daemon
// (GHOSTD_BIN, else ../../build/ghostd) through initialize, didOpen,
// inlineCompletion, shutdown and exit, with the bundled model.

import assert from 'node:assert/strict';
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';

const repoRoot = path.resolve(__dirname, '../../../..');
const bin = process.env.GHOSTD_BIN || path.join(repoRoot, 'build/ghostd');
const model = process.env.GHOSTD_MODEL || path.join(repoRoot, 'models/qwen2-code-small');
const skip = fs.existsSync(bin) ? false : `no daemon: set GHOSTD_BIN (looked for ${bin})`;

const kSource = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n        return n\n    return ';

test('the daemon serves an inline completion over stdio', { skip, timeout: 120_000 }, async () => {
  const child = cp.spawn(bin, ['serve', '--log-level', 'warn'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const conn = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  const progress: string[] = [];
  const errors: string[] = [];
  let ready!: () => void;
  const modelReady = new Promise<void>((resolve) => (ready = resolve));
  conn.onRequest('window/workDoneProgress/create', () => null);
  conn.onNotification('$/progress', (p: { token: string; value: { kind: string } }) => {
    progress.push(p.value.kind);
    if (p.value.kind === 'end') ready();
  });
  conn.onNotification('window/logMessage', (p: { type: number; message: string }) => {
    if (p.type === 1) errors.push(p.message);
  });
  conn.listen();
  try {
    const init = await conn.sendRequest<{ capabilities: Record<string, unknown>; serverInfo?: { name: string } }>('initialize', {
      processId: process.pid,
      rootUri: null,
      capabilities: {
        window: { workDoneProgress: true },
        general: { positionEncodings: ['utf-16'] },
        textDocument: { inlineCompletion: { dynamicRegistration: false } },
      },
      initializationOptions: { model, maxTokens: 24, deadlineMs: 10_000, maxLines: 4 },
    });
    assert.ok(init.capabilities.inlineCompletionProvider, 'inlineCompletionProvider advertised');
    await conn.sendNotification('initialized', {});
    // No progress at all is fine too: the model was loaded before `initialized`.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([modelReady, new Promise((r) => (timer = setTimeout(r, 60_000)))]);
    clearTimeout(timer);
    assert.deepEqual(errors, []);

    const uri = 'file:///tmp/ghostd-it/fib.py';
    await conn.sendNotification('textDocument/didOpen', {
      textDocument: { uri, languageId: 'python', version: 1, text: kSource },
    });
    const lines = kSource.split('\n');
    const position = { line: lines.length - 1, character: lines[lines.length - 1].length };
    const t0 = performance.now();
    const result = await conn.sendRequest<{ items: { insertText: string }[] } | { insertText: string }[] | null>(
      'textDocument/inlineCompletion',
      { textDocument: { uri }, position, context: { triggerKind: 2 } },
    );
    const ms = performance.now() - t0;
    const items = Array.isArray(result) ? result : (result?.items ?? []);
    console.log(`inline completion in ${ms.toFixed(0)} ms: ${JSON.stringify(items[0]?.insertText)}; progress ${progress.join(',')}`);
    assert.ok(items.length > 0, 'at least one item');
    assert.equal(typeof items[0].insertText, 'string');
    assert.ok(items[0].insertText.length > 0, 'non-empty insertText');

    assert.equal(await conn.sendRequest('shutdown'), null);
    await conn.sendNotification('exit');
    assert.equal(await exited, 0, `exit code 0 after shutdown/exit (stderr: ${stderr.slice(-2000)})`);
  } finally {
    conn.dispose();
    if (child.exitCode === null) child.kill();
  }
});
