// Client behaviour against a fake WebSocket; client/js/e2e.test.js runs it
// against a real relayd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from './relayd.js';
import { encodeTransfer, encodeLogin, decodeFrame, utf8 } from './frame.js';

class FakeWS extends EventTarget {
  static last;
  readyState = 0;
  sent = [];
  constructor(url) {
    super();
    this.url = url;
    FakeWS.last = this;
    queueMicrotask(() => this.open());
  }
  open() { this.readyState = 1; this.dispatchEvent(new Event('open')); }
  send(b) { this.sent.push(decodeFrame(b)); }
  receive(data) { const e = new Event('message'); e.data = data; this.dispatchEvent(e); }
  close(code = 1005, reason = '') { this.serverClose(code, reason); }
  serverClose(code, reason = '') {
    this.readyState = 3;
    const e = new Event('close');
    Object.assign(e, { code, reason, wasClean: code !== 1006 });
    this.dispatchEvent(e);
  }
}

class RefusedWS extends FakeWS {
  open() { this.readyState = 3; this.dispatchEvent(new Event('error')); }
}

const opts = { WebSocket: FakeWS, heartbeat: 0 };

test('connect logs in, send sends transfers', async () => {
  const c = await connect('ws://x/relay', 'alice', opts);
  const ws = FakeWS.last;
  assert.equal(utf8(ws.sent[0].id), 'alice');
  c.send('bob', 'hello');
  c.send('bob', new Uint8Array([1, 2]));
  assert.equal(utf8(ws.sent[1].from), 'alice');
  assert.equal(utf8(ws.sent[1].to), 'bob');
  assert.equal(utf8(ws.sent[1].payload), 'hello');
  assert.deepEqual([...ws.sent[2].payload], [1, 2]);
  assert.equal(c.id, 'alice');
});

test('received frames come out of the async iterator, in order, until close', async () => {
  const c = await connect('ws://x/relay', 'bob', opts);
  const ws = FakeWS.last;
  ws.receive(encodeTransfer('alice', 'bob', 'one').buffer);
  ws.receive(encodeTransfer(new Uint8Array([0xff]), 'bob', 'two').buffer);
  setTimeout(() => ws.receive(encodeTransfer('carol', 'bob', 'three').buffer), 5);
  setTimeout(() => ws.serverClose(1000), 10);
  const got = [];
  for await (const { from, fromBytes, payload } of c) got.push([from, [...fromBytes], utf8(payload)]);
  assert.deepEqual(got, [['alice', [97, 108, 105, 99, 101], 'one'], [null, [0xff], 'two'], ['carol', [99, 97, 114, 111, 108], 'three']]);
  const why = await c.closed;
  assert.equal(why.code, 1000);
  assert.match(why.message, /closed by server \(kicked by a newer login/);
  assert.throws(() => c.send('x', 'y'), /not connected/);
});

test('onframe receives frames instead of the iterator', async () => {
  const c = await connect('ws://x/relay', 'bob', opts);
  const got = [];
  c.onframe = (from, payload) => got.push([from, utf8(payload)]);
  FakeWS.last.receive(encodeTransfer('alice', 'bob', 'hi').buffer);
  assert.deepEqual(got, [['alice', 'hi']]);
});

test('heartbeats go out on their own', async () => {
  const c = await connect('ws://x/relay', 'alice', { WebSocket: FakeWS, heartbeat: 5 });
  const ws = FakeWS.last;
  await new Promise((r) => setTimeout(r, 30));
  const beats = ws.sent.filter((f) => f.to && f.to.length === 0);
  assert.ok(beats.length >= 2, `${beats.length} heartbeats in 30ms at 5ms`);
  assert.equal(utf8(beats[0].from), 'alice');
  c.close();
  const n = ws.sent.length;
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(ws.sent.length, n, 'no heartbeat after close');
  assert.equal((await c.closed).message, 'closed by client');
});

test('a frame that is not RELY closes the connection as a protocol error', async () => {
  const c = await connect('ws://x/relay', 'alice', opts);
  FakeWS.last.receive(new Uint8Array([1, 2, 3]).buffer);
  const why = await c.closed;
  assert.equal(why.code, 1002);
  FakeWS.last.receive(encodeLogin('x').buffer); // ignored after close
});

test('clear errors', async () => {
  await assert.rejects(connect('ws://x/relay', '', opts), /client ID must not be empty/);
  await assert.rejects(connect('ws://x/relay', 'x'.repeat(256), opts), /more than 255/);
  await assert.rejects(connect('ws://x/relay', 'a', { WebSocket: RefusedWS }), /cannot connect to ws:\/\/x\/relay/);
  await assert.rejects(connect('ws://x/relay', 'a', { WebSocket: null }), /--experimental-websocket/);
  const c = await connect('ws://x/relay', 'alice', opts);
  assert.throws(() => c.send('', 'x'), /must not be empty/);
  assert.throws(() => c.send('b'.repeat(256), 'x'), /256 bytes/);
  assert.throws(() => c.send('b', 42), /payload must be a string/);
});
