// End to end against a real relayd: examples/web's Go tests start one with a
// websocket and a TCP listener and run `node --test client/js/` with
// RELAYD_WS_URL and RELAYD_TCP_ADDR set. Without them these tests skip.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { connect } from './relayd.js';
import { encodeLogin, encodeTransfer, utf8 } from './frame.js';

const url = process.env.RELAYD_WS_URL;
const tcpAddr = process.env.RELAYD_TCP_ADDR;
const skip = !url || !tcpAddr ? 'RELAYD_WS_URL and RELAYD_TCP_ADDR are not set (run by examples/web\'s Go tests)' : false;
const run = `${process.pid}-${Date.now()}`; // IDs unique to this run
const opts = { heartbeat: 1000 };

// next returns the next frame from the client's iterator, within ms.
async function next(it, ms = 5000) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no frame within ${ms}ms`)), ms); });
  try {
    const r = await Promise.race([it.next(), timeout]);
    assert.ok(!r.done, 'the connection ended');
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}

// tcpClient is a raw RELY client over TCP: the same bytes relayd-client sends.
function tcpClient(id) {
  const [host, port] = [tcpAddr.slice(0, tcpAddr.lastIndexOf(':')), Number(tcpAddr.slice(tcpAddr.lastIndexOf(':') + 1))];
  const sock = net.connect({ host, port });
  let buf = Buffer.alloc(0);
  const waiters = [];
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 7) return;
      const from = buf[6];
      if (buf.length < 8 + from) return;
      const to = buf[7 + from];
      const head = 8 + from + to + 4;
      if (buf.length < head) return;
      const total = head + buf.readUInt32BE(head - 4);
      if (buf.length < total) return;
      const frame = buf.subarray(0, total);
      buf = buf.subarray(total);
      waiters.shift()?.(frame);
    }
  });
  const closed = new Promise((resolve) => sock.on('close', resolve));
  sock.write(encodeLogin(id));
  return {
    send: (to, payload) => sock.write(encodeTransfer(id, to, payload)),
    frame: () => new Promise((resolve) => waiters.push(resolve)),
    closed,
    end: () => sock.destroy(),
  };
}

// online waits until a frame to id arrives, i.e. its login has registered:
// RELY has no login answer. One it.next() stays pending across the probes:
// an abandoned next() would take the frame that answers a later probe.
async function online(sendProbe, it) {
  const pending = it.next();
  for (let i = 0; i < 100; i++) {
    sendProbe();
    let timer;
    const tick = new Promise((resolve) => { timer = setTimeout(() => resolve(null), 100); });
    const r = await Promise.race([pending, tick]);
    clearTimeout(timer);
    if (r !== null) {
      assert.ok(!r.done, 'the connection ended');
      return r.value;
    }
  }
  throw new Error('peer never came online');
}

test('two WebSocket clients exchange frames both ways', { skip, timeout: 20000 }, async () => {
  const alice = await connect(url, `alice-${run}`, opts);
  const bob = await connect(url, `bob-${run}`, opts);
  const ai = alice[Symbol.asyncIterator]();
  const bi = bob[Symbol.asyncIterator]();
  await online(() => alice.send(`bob-${run}`, 'probe'), bi);
  alice.send(`bob-${run}`, 'hello bob');
  let f = await next(bi);
  while (utf8(f.payload) === 'probe') f = await next(bi);
  assert.equal(f.from, `alice-${run}`);
  assert.equal(utf8(f.payload), 'hello bob');
  const binary = new Uint8Array(100000).map((_, i) => (i * 7) & 0xff);
  bob.send(`alice-${run}`, binary);
  f = await next(ai);
  assert.equal(f.from, `bob-${run}`);
  assert.deepEqual(f.payload, binary);
  alice.close();
  bob.close();
  assert.equal((await alice.closed).message, 'closed by client');
});

test('a WebSocket client and a TCP client exchange frames', { skip, timeout: 20000 }, async () => {
  const web = await connect(url, `web-${run}`, opts);
  const it = web[Symbol.asyncIterator]();
  const tcp = tcpClient(`tcp-${run}`);
  await online(() => tcp.send(`web-${run}`, 'probe'), it);
  web.send(`tcp-${run}`, 'from the web');
  const frame = await tcp.frame();
  assert.deepEqual(frame, Buffer.from(encodeTransfer(`web-${run}`, `tcp-${run}`, 'from the web')), 'forwarded byte for byte');
  tcp.send(`web-${run}`, 'from tcp ✓');
  let f = await next(it);
  while (utf8(f.payload) === 'probe') f = await next(it);
  assert.equal(f.from, `tcp-${run}`);
  assert.equal(utf8(f.payload), 'from tcp ✓');
  tcp.end();
  web.close();
});

test('a newer login kicks the connection, and closed says so', { skip, timeout: 20000 }, async () => {
  const first = await connect(url, `kick-${run}`, opts);
  const tcp = tcpClient(`kicker-${run}`);
  await online(() => tcp.send(`kick-${run}`, 'probe'), first[Symbol.asyncIterator]());
  const second = await connect(url, `kick-${run}`, opts);
  const why = await first.closed;
  assert.equal(why.code, 1000);
  assert.equal(why.byClient, false);
  assert.match(why.message, /kicked by a newer login/);
  assert.throws(() => first.send('x', 'y'), /not connected/);
  second.close();
  tcp.end();
});

test('a text message is a protocol error', { skip, timeout: 20000 }, async () => {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  ws.send('not binary');
  const ev = await new Promise((resolve) => { ws.onclose = resolve; });
  assert.equal(ev.code, 1003);
});

test('connecting to a wrong path fails clearly', { skip, timeout: 20000 }, async () => {
  await assert.rejects(connect(url.replace(/\/[^/]*$/, '/nope'), 'x'), /cannot connect/);
});
