import assert from 'node:assert/strict';
import { test } from 'node:test';
import { initializationOptions, kDefaultEnable, languageEnabled, readSettings, resolvePath, serverCommand } from '../src/settings';

function settings(values: Record<string, unknown>) {
  return readSettings((key) => values[key]);
}

test('defaults send only the language map, so the daemon defaults hold', () => {
  const s = settings({});
  assert.deepEqual(initializationOptions(s), { enable: kDefaultEnable });
  assert.deepEqual(serverCommand(s, ''), { command: 'ghostd', args: ['serve'] });
});

test('every setting maps onto its initializationOptions key', () => {
  const s = settings({
    model: 'models/qwen2-code-small',
    useDraft: false,
    maxTokens: 32,
    deadlineMs: 800,
    maxLines: 4,
    enable: { '*': false, python: true },
  });
  assert.deepEqual(initializationOptions(s, '/ws'), {
    model: '/ws/models/qwen2-code-small',
    useDraft: false,
    maxTokens: 32,
    deadlineMs: 800,
    maxLines: 4,
    enable: { '*': false, python: true },
  });
});

// The daemon drops the whole object for one bad key: bad values never reach it.
const badValues: [string, unknown][] = [
  ['maxTokens', 0],
  ['maxTokens', 4097],
  ['maxTokens', 1.5],
  ['maxTokens', '64'],
  ['deadlineMs', 0],
  ['deadlineMs', 600001],
  ['maxLines', -1],
  ['maxLines', null],
];
for (const [key, value] of badValues) {
  test(`out-of-range ${key}=${JSON.stringify(value)} is left out`, () => {
    assert.equal(key in initializationOptions(settings({ [key]: value })), false);
  });
}

test('path, metrics log and extra args go on the command line; no draft model (not supported yet)', () => {
  const s = settings({ path: 'build/ghostd', draftModel: 'd', args: ['--threads', '2', 7] });
  assert.deepEqual(serverCommand(s, '/logs/metrics.jsonl', '/ws'), {
    command: '/ws/build/ghostd',
    args: ['serve', '--metrics-log', '/logs/metrics.jsonl', '--threads', '2'],
  });
});

test('resolvePath keeps absolute and empty paths', () => {
  assert.equal(resolvePath('/a/b', '/ws'), '/a/b');
  assert.equal(resolvePath('', '/ws'), '');
  assert.equal(resolvePath('a', undefined), 'a');
});

const languageCases: [Record<string, boolean>, string, boolean][] = [
  [kDefaultEnable, 'python', true],
  [kDefaultEnable, 'plaintext', false],
  [kDefaultEnable, 'markdown', false],
  [{ '*': false, python: true }, 'python', true],
  [{ '*': false, python: true }, 'rust', false],
  [{ rust: false }, 'python', true],
];
for (const [enable, lang, want] of languageCases) {
  test(`languageEnabled(${JSON.stringify(enable)}, ${lang}) is ${want}`, () => {
    assert.equal(languageEnabled(enable, lang), want);
  });
}

test('a malformed enable setting falls back to the defaults', () => {
  assert.deepEqual(settings({ enable: ['python'] }).enable, kDefaultEnable);
  assert.deepEqual(settings({ enable: { python: 'yes' } }).enable, kDefaultEnable);
});
