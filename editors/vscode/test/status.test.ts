import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyServerMessage, kProgressToken, StatusModel, unauthorizedMessage } from '../src/status';

const progress = (value: Record<string, unknown>, token = kProgressToken) => ({
  jsonrpc: '2.0',
  method: '$/progress',
  params: { token, value },
});

test('model load: starting, loading with percentage, ready, then latency', () => {
  const s = new StatusModel();
  assert.match(s.view().text, /loading~spin\) ghostd$/);
  s.applyMessage(progress({ kind: 'begin', title: 'ghostd: loading model', percentage: 0, message: 'loading m' }));
  assert.equal(s.phase, 'loading');
  s.applyMessage(progress({ kind: 'report', percentage: 45, message: 'weights' }));
  assert.equal(s.view().text, '$(loading~spin) ghostd 45%');
  assert.match(s.view().tooltip, /45%: weights/);
  s.applyMessage(progress({ kind: 'end', message: 'model ready' }));
  assert.equal(s.phase, 'ready');
  assert.equal(s.view().text, '$(sparkle) ghostd');
  s.apply({ kind: 'completion', latencyMs: 123.4, items: 1 });
  assert.equal(s.view().text, '$(sparkle) ghostd 123 ms');
  assert.match(s.view().tooltip, /last completion 123 ms, 1 item/);
});

test('a load failure is an error that outlives the progress end', () => {
  const s = new StatusModel();
  s.applyMessage(progress({ kind: 'begin', percentage: 0 }));
  s.applyMessage({ jsonrpc: '2.0', method: 'window/logMessage', params: { type: 1, message: 'model failed to load: x: no such file' } });
  s.applyMessage(progress({ kind: 'end', message: 'x: no such file' }));
  assert.equal(s.phase, 'error');
  assert.equal(s.view().severity, 'error');
  assert.match(s.view().tooltip, /model failed to load/);
});

test('warnings and other tokens do not change the state', () => {
  const s = new StatusModel();
  assert.equal(s.applyMessage({ method: 'window/logMessage', params: { type: 2, message: 'ignoring initializationOptions' } }), false);
  assert.equal(s.applyMessage(progress({ kind: 'begin' }, 'other')), false);
  assert.equal(s.applyMessage({ id: 1, result: null }), false);
  assert.equal(s.applyMessage(null), false);
  assert.equal(s.phase, 'starting');
});

test('no progress after initialized means the model was already loaded', () => {
  const s = new StatusModel();
  s.apply({ kind: 'initialized' });
  assert.equal(s.phase, 'ready');
  const e = new StatusModel();
  e.apply({ kind: 'error', message: 'boom' });
  e.apply({ kind: 'initialized' });
  assert.equal(e.phase, 'error');
});

test('completions off shows in the item; a stopped daemon is a warning', () => {
  const s = new StatusModel();
  s.apply({ kind: 'initialized' });
  s.enabled = false;
  assert.equal(s.view().text, '$(circle-slash) ghostd off');
  s.apply({ kind: 'stopped' });
  assert.equal(s.view().severity, 'warning');
  s.apply({ kind: 'starting' });
  assert.equal(s.phase, 'starting');
});

test('a non-empty completion marks the model ready even without progress', () => {
  const s = new StatusModel();
  s.apply({ kind: 'completion', latencyMs: 5, items: 0 });
  assert.equal(s.phase, 'starting');
  s.apply({ kind: 'completion', latencyMs: 5, items: 2 });
  assert.equal(s.phase, 'ready');
});

test('classifyServerMessage reads progress and errors only', () => {
  assert.deepEqual(classifyServerMessage(progress({ kind: 'report', percentage: 10 })), {
    kind: 'progress-report',
    percentage: 10,
    message: undefined,
  });
  assert.deepEqual(classifyServerMessage({ method: 'window/showMessage', params: { type: 1, message: 'm' } }), {
    kind: 'error',
    message: 'm',
  });
  assert.equal(classifyServerMessage(progress({ kind: 'weird' })), undefined);
});

test('a refused token is told apart from other errors', () => {
  const refusal = { jsonrpc: '2.0', id: 0, error: { code: -32001, message: 'authentication failed: unknown token' } };
  assert.equal(unauthorizedMessage(refusal), 'authentication failed: unknown token');
  assert.equal(unauthorizedMessage({ jsonrpc: '2.0', id: 0, error: { code: -32001 } }), 'authentication failed');
  assert.equal(unauthorizedMessage({ jsonrpc: '2.0', id: 1, error: { code: -32602, message: 'invalid params' } }), undefined);
  assert.equal(unauthorizedMessage({ jsonrpc: '2.0', id: 1, result: null }), undefined);
  assert.equal(unauthorizedMessage({ jsonrpc: '2.0', method: 'window/logMessage', params: { type: 1, message: 'x' } }), undefined);
  assert.equal(unauthorizedMessage(null), undefined);
});
