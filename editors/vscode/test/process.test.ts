import assert from 'node:assert/strict';
import * as cp from 'node:child_process';
import { test } from 'node:test';
import { endProcess, hasExited } from '../src/process';

// A child that, like the daemon after `exit`, needs a moment to finish and
// writes its last line on the way out.
function spawnNode(script: string): { child: cp.ChildProcess; stdout: () => string } {
  const child = cp.spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, stdout: () => out };
}

const spawned = (child: cp.ChildProcess) => new Promise<void>((resolve) => child.once('spawn', () => resolve()));
const closed = (child: cp.ChildProcess) => new Promise<void>((resolve) => child.once('close', () => resolve()));

test('a process that ends within the grace time is not killed and finishes its exit', async () => {
  const { child, stdout } = spawnNode("setTimeout(() => { process.stdout.write('last summary\\n'); process.exit(0); }, 300)");
  await spawned(child);
  const done = closed(child);
  assert.equal(await endProcess(child, 5000), true);
  await done;
  assert.equal(child.signalCode, null);
  assert.equal(child.exitCode, 0);
  assert.equal(stdout(), 'last summary\n');
});

test('a process still there after the grace time is killed', async () => {
  const { child } = spawnNode('setInterval(() => {}, 1000)');
  await spawned(child);
  const done = closed(child);
  const t0 = performance.now();
  assert.equal(await endProcess(child, 200), false);
  assert.ok(performance.now() - t0 >= 190, 'waited for the grace time');
  await done;
  assert.equal(child.signalCode, 'SIGTERM');
});

test('no grace time: killed at once (a daemon that did not answer shutdown)', async () => {
  const { child } = spawnNode('setInterval(() => {}, 1000)');
  await spawned(child);
  const done = closed(child);
  assert.equal(await endProcess(child, 0), false);
  await done;
  assert.equal(child.signalCode, 'SIGTERM');
});

test('a process that has already ended, or never started, returns at once', async () => {
  const { child } = spawnNode('process.exit(3)');
  await closed(child);
  assert.ok(hasExited(child));
  assert.equal(await endProcess(child, 60_000), true);
  assert.equal(child.exitCode, 3);

  const missing = cp.spawn('/nonexistent/ghostd', ['serve']);
  await new Promise<void>((resolve) => missing.once('error', () => resolve()));
  assert.equal(await endProcess(missing, 60_000), true);
});
