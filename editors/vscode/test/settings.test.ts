import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  initializationOptions,
  kDefaultEnable,
  languageEnabled,
  parseServer,
  readSettings,
  resolvePath,
  serverCommand,
} from '../src/settings';

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

test('ghostd.server: tls anywhere, tcp only to loopback, anything else a clear error', () => {
  assert.deepEqual(parseServer('tls://gpu.example.com:7777'), { tls: true, host: 'gpu.example.com', port: 7777 });
  assert.deepEqual(parseServer('tcp://127.0.0.1:7777'), { tls: false, host: '127.0.0.1', port: 7777 });
  assert.deepEqual(parseServer('tls://[::1]:9'), { tls: true, host: '::1', port: 9 });
  assert.match(parseServer('tcp://10.0.0.5:7777') as string, /not loopback; use tls:\/\//);
  assert.match(parseServer('gpu:7777') as string, /expected tls:\/\/HOST:PORT/);
  assert.match(parseServer('tls://gpu:99999') as string, /out of range/);
});

test('with ghostd.server the model is a name and the token goes in initializationOptions', () => {
  const s = settings({ server: 'tls://gpu:7777', model: 'coder-1.5b' });
  assert.deepEqual(initializationOptions(s, '/ws', 'secret-token'), {
    model: 'coder-1.5b',
    token: 'secret-token',
    enable: kDefaultEnable,
  });
  // A local daemon never gets the token, and its model stays a path.
  assert.deepEqual(initializationOptions(settings({ model: 'm' }), '/ws', 'secret-token'), {
    model: '/ws/m',
    enable: kDefaultEnable,
  });
});
