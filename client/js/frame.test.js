// Run with: node --test client/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeLogin, encodeTransfer, encodeHeartbeat, decodeFrame, FrameError, utf8, bytes, CMD_LOGIN, CMD_TRANSFER,
} from './frame.js';

const hex = (b) => Buffer.from(b).toString('hex');

test('login is byte-compatible with the Go encoder', () => {
  // protocol.AppendLogin(nil, "alice")
  assert.equal(hex(encodeLogin('alice')), hex(Buffer.from('RELY\x01\x01\x05alice', 'latin1')));
});

test('transfer is byte-compatible with the Go encoder', () => {
  // protocol.AppendTransfer(nil, "alice", "bob", []byte("hi"))
  const want = Buffer.concat([Buffer.from('RELY\x01\x09\x05alice\x03bob', 'latin1'), Buffer.from([0, 0, 0, 2]), Buffer.from('hi')]);
  assert.equal(hex(encodeTransfer('alice', 'bob', 'hi')), hex(want));
});

test('heartbeat has ToClientIDLen 0 and no payload', () => {
  assert.equal(hex(encodeHeartbeat('a')), hex(Buffer.from('RELY\x01\x09\x01a\x00\x00\x00\x00\x00', 'latin1')));
});

test('strings are UTF-8 encoded', () => {
  const f = decodeFrame(encodeTransfer('élan', 'bob', 'ünïcode ✓'));
  assert.equal(utf8(f.from), 'élan');
  assert.equal(utf8(f.payload), 'ünïcode ✓');
});

test('round trip of binary IDs and payloads', () => {
  const from = new Uint8Array([0xff, 0x00, 0x80]);
  const payload = new Uint8Array(70000).map((_, i) => i & 0xff);
  const f = decodeFrame(encodeTransfer(from, 'x'.repeat(255), payload).buffer);
  assert.equal(f.cmd, CMD_TRANSFER);
  assert.deepEqual(f.from, from);
  assert.equal(utf8(f.from), null, 'invalid UTF-8 gives null');
  assert.equal(utf8(f.to), 'x'.repeat(255));
  assert.deepEqual(f.payload, payload);
  const l = decodeFrame(encodeLogin(from));
  assert.equal(l.cmd, CMD_LOGIN);
  assert.deepEqual(l.id, from);
});

test('decodeFrame accepts a view into a larger buffer', () => {
  const f = encodeTransfer('a', 'b', 'payload');
  const big = new Uint8Array(f.length + 10);
  big.set(f, 5);
  assert.equal(utf8(decodeFrame(big.subarray(5, 5 + f.length)).payload), 'payload');
});

test('bad IDs and payloads are refused with a clear error', () => {
  assert.throws(() => encodeLogin(''), /client ID must not be empty/);
  assert.throws(() => encodeLogin('x'.repeat(256)), /256 bytes, more than 255/);
  assert.throws(() => encodeLogin('é'.repeat(128)), /256 bytes/, 'length counts UTF-8 bytes');
  assert.throws(() => encodeTransfer('', 'b'), /from client ID must not be empty/);
  assert.throws(() => encodeTransfer('a', 'b'.repeat(256)), /to client ID is 256 bytes/);
  assert.throws(() => encodeTransfer('a', 'b', 42), /payload must be a string/);
  assert.throws(() => encodeTransfer('a', 'b', { length: 2 ** 32 }), TypeError);
});

test('malformed frames are refused', () => {
  const good = encodeTransfer('alice', 'bob', 'hi');
  const cases = {
    empty: new Uint8Array(0),
    short: good.subarray(0, good.length - 1),
    trailing: Uint8Array.from([...good, 0]),
    magic: Uint8Array.from([0x58, ...good.subarray(1)]),
    version: Uint8Array.from([...good.subarray(0, 4), 2, ...good.subarray(5)]),
    command: Uint8Array.from([...good.subarray(0, 5), 7, ...good.subarray(6)]),
    'empty id': Uint8Array.from([...good.subarray(0, 6), 0]),
  };
  for (const [name, b] of Object.entries(cases)) {
    assert.throws(() => decodeFrame(b), FrameError, name);
  }
});

test('bytes views typed arrays without copying', () => {
  const u16 = new Uint16Array([1, 2]);
  const b = bytes(u16);
  assert.equal(b.buffer, u16.buffer);
  assert.equal(b.length, 4);
});
