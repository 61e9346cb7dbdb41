import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { StreamMessageReader } from 'vscode-jsonrpc/node';
import { TapReader } from '../src/tap_reader';

function frame(msg: unknown): string {
  const body = JSON.stringify(msg);
  return `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

test('the observer sees each message before the client, and a throwing observer is contained', async () => {
  const stream = new PassThrough();
  const order: string[] = [];
  let calls = 0;
  const reader = new TapReader(new StreamMessageReader(stream), (m) => {
    calls += 1;
    order.push(`tap:${(m as unknown as { method: string }).method}`);
    if (calls === 2) throw new Error('observer bug');
  });
  const got = new Promise<void>((resolve) => {
    reader.listen((m) => {
      order.push(`client:${(m as unknown as { method: string }).method}`);
      if (order.length === 4) resolve();
    });
  });
  stream.write(frame({ jsonrpc: '2.0', method: 'a' }));
  stream.write(frame({ jsonrpc: '2.0', method: 'b' }));
  await got;
  assert.deepEqual(order, ['tap:a', 'client:a', 'tap:b', 'client:b']);
  reader.dispose();
});
