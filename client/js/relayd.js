// relayd.js: a relayd client over WebSocket, for browsers and Node ≥ 20.
// An ES module with no build step and no dependencies.
//
//   import { connect } from './relayd.js';
//   const client = await connect('wss://relay.example.com/relay', 'alice');
//   client.send('bob', 'hello');                 // a string (UTF-8) or bytes
//   for await (const { from, payload } of client) console.log(from, payload);
//   console.log((await client.closed).message);
//
// Node 20 has WebSocket only with --experimental-websocket (Node 22 has it
// built in); or pass a constructor: connect(url, id, { WebSocket }).

import { encodeLogin, encodeTransfer, encodeHeartbeat, decodeFrame, bytes, utf8, CMD_TRANSFER, MAX_ID_LEN } from './frame.js';

export { encodeLogin, encodeTransfer, decodeFrame, FrameError } from './frame.js';

/** Why a connection ended, by WebSocket close code. */
const closeReasons = {
  1000: 'closed by server (kicked by a newer login, timed out, or the server stopped)',
  1001: 'server going away (shutting down or draining)',
  1002: 'closed by server: protocol error (a frame it refused)',
  1003: 'closed by server: it accepts only binary messages',
  1005: 'closed by server without a status (kicked by a newer login, timed out, or the server stopped)',
  1006: 'connection lost (closed without a close frame: kicked, timed out, server stopped, or the network failed)',
  1008: 'closed by server: over a connection limit (max_connections_per_ip)',
  1009: "closed by server: message larger than its max_payload",
};

/**
 * connect opens a WebSocket to url, logs in as id, and resolves with a
 * Client once the login is sent. RELY has no login answer: a refused login
 * shows as client.closed resolving.
 *
 * Options: heartbeat (ms between heartbeats, 0 for none; default 30000,
 * well within relayd's default idle_timeout of 2m), WebSocket (a
 * constructor, for Node 20 without --experimental-websocket or tests).
 */
export async function connect(url, id, { heartbeat = 30000, WebSocket: WS = globalThis.WebSocket } = {}) {
  const login = encodeLogin(id); // throws on a bad id before anything opens
  if (typeof WS !== 'function') {
    throw new Error('no WebSocket here: in Node 20 run with --experimental-websocket, or pass connect(url, id, { WebSocket })');
  }
  return new Promise((resolve, reject) => {
    let ws;
    try {
      ws = new WS(url);
    } catch (err) {
      reject(new Error(`cannot connect to ${url}: ${err.message}`));
      return;
    }
    ws.binaryType = 'arraybuffer';
    const onOpenError = () => reject(new Error(`cannot connect to ${url} (refused, wrong path, or an Origin the server does not allow)`));
    ws.addEventListener('error', onOpenError, { once: true });
    ws.addEventListener('close', onOpenError, { once: true });
    ws.addEventListener('open', () => {
      ws.removeEventListener('error', onOpenError);
      ws.removeEventListener('close', onOpenError);
      ws.send(login);
      resolve(new Client(ws, bytes(id), heartbeat));
    }, { once: true });
  });
}

/** Client is one logged-in connection. */
export class Client {
  #ws;
  #id;
  #queue = [];       // frames received while nobody waits in the iterator
  #waiting = [];     // iterator calls waiting for a frame
  #timer = null;
  #closedByUs = false;
  #done = false;
  #resolveClosed;

  /**
   * onframe, when set, is called with (from, payload, frame) for every
   * frame received, instead of queueing it for the async iterator.
   */
  onframe = null;

  constructor(ws, id, heartbeat) {
    this.#ws = ws;
    this.#id = id;
    /** closed resolves, once, with {code, reason, wasClean, byClient, message}. */
    this.closed = new Promise((resolve) => { this.#resolveClosed = resolve; });
    ws.addEventListener('message', (ev) => this.#onMessage(ev));
    ws.addEventListener('close', (ev) => this.#onClose(ev));
    if (heartbeat > 0) {
      const hb = encodeHeartbeat(id);
      this.#timer = setInterval(() => {
        if (ws.readyState === 1) ws.send(hb);
      }, heartbeat);
      this.#timer.unref?.(); // Node: heartbeats alone do not keep a process alive
    }
  }

  /** id is the ClientID this connection logged in with, as a string when it is valid UTF-8. */
  get id() { return utf8(this.#id) ?? this.#id; }

  /** connected is true until the connection closes. */
  get connected() { return !this.#done && this.#ws.readyState === 1; }

  /**
   * send sends payload (a string, UTF-8 encoded, or bytes) to the client
   * logged in as to. Frames to an ID that is offline are dropped by the
   * server, silently.
   */
  send(to, payload = new Uint8Array(0)) {
    const t = bytes(to, 'to client ID');
    if (t.length === 0) throw new RangeError('to client ID must not be empty (an empty one is a heartbeat)');
    if (t.length > MAX_ID_LEN) throw new RangeError(`to client ID is ${t.length} bytes, more than ${MAX_ID_LEN}`);
    const frame = encodeTransfer(this.#id, t, payload);
    if (!this.connected) throw new Error('not connected: the connection is closed (see client.closed)');
    this.#ws.send(frame);
  }

  /** close closes the connection; client.closed then resolves. */
  close(code = 1000, reason = '') {
    this.#closedByUs = true;
    if (this.#ws.readyState <= 1) this.#ws.close(code, reason);
  }

  /** The async iterator yields {from, fromBytes, to, payload} until the connection closes. */
  [Symbol.asyncIterator]() {
    return {
      next: () => {
        if (this.#queue.length > 0) return Promise.resolve({ value: this.#queue.shift(), done: false });
        if (this.#done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.#waiting.push(resolve));
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  #onMessage(ev) {
    let f;
    try {
      if (typeof ev.data === 'string') throw new Error('text message');
      f = decodeFrame(ev.data);
    } catch {
      this.close(1002, 'not a RELY frame'); // relayd sends only whole transfer frames
      return;
    }
    if (f.cmd !== CMD_TRANSFER) return;
    const msg = { from: utf8(f.from), fromBytes: f.from, to: f.to, payload: f.payload };
    if (this.onframe) {
      this.onframe(msg.from ?? msg.fromBytes, msg.payload, msg);
    } else if (this.#waiting.length > 0) {
      this.#waiting.shift()({ value: msg, done: false });
    } else {
      this.#queue.push(msg);
    }
  }

  #onClose(ev) {
    this.#done = true;
    clearInterval(this.#timer);
    for (const resolve of this.#waiting.splice(0)) resolve({ value: undefined, done: true });
    const byClient = this.#closedByUs;
    let message;
    if (byClient) message = 'closed by client';
    else if (ev.reason) message = `closed by server (${ev.code}): ${ev.reason}`;
    else message = closeReasons[ev.code] ?? `closed by server with code ${ev.code}`;
    this.#resolveClosed({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean, byClient, message });
  }
}
