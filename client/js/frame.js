// RELY v1 frames (see SPEC §2): encoding and decoding, no dependencies.
//
//   login:    "RELY" 0x01 0x01 | IDLen u8 (1–255) | ID
//   transfer: "RELY" 0x01 0x09 | FromLen u8 (1–255) | From | ToLen u8 (0–255) | To
//             | PayloadLen u32 big-endian | Payload
//
// A transfer with ToLen 0 is a heartbeat. Over WebSocket each binary message
// carries exactly one frame.

export const CMD_LOGIN = 0x01;
export const CMD_TRANSFER = 0x09;
export const HEADER_LEN = 6;
export const MAX_ID_LEN = 255;
export const MAX_PAYLOAD = 0xffffffff;

const MAGIC = [0x52, 0x45, 0x4c, 0x59]; // "RELY"
const VERSION = 0x01;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/** bytes returns data as a Uint8Array: strings are UTF-8 encoded. */
export function bytes(data, what = 'data') {
  if (typeof data === 'string') return encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`${what} must be a string, a Uint8Array, an ArrayBuffer or a typed array, not ${typeof data}`);
}

/** utf8 decodes b as UTF-8, or returns null when it is not valid UTF-8. */
export function utf8(b) {
  try {
    return strictDecoder.decode(b);
  } catch {
    return null;
  }
}

function checkID(id, what, emptyOK) {
  if (id.length === 0 && !emptyOK) throw new RangeError(`${what} must not be empty`);
  if (id.length > MAX_ID_LEN) throw new RangeError(`${what} is ${id.length} bytes, more than ${MAX_ID_LEN}`);
}

function header(out, cmd) {
  out.set(MAGIC, 0);
  out[4] = VERSION;
  out[5] = cmd;
}

/** encodeLogin returns the login frame for id (a string or bytes, 1–255 bytes). */
export function encodeLogin(id) {
  const idb = bytes(id, 'client ID');
  checkID(idb, 'client ID', false);
  const out = new Uint8Array(HEADER_LEN + 1 + idb.length);
  header(out, CMD_LOGIN);
  out[HEADER_LEN] = idb.length;
  out.set(idb, HEADER_LEN + 1);
  return out;
}

/**
 * encodeTransfer returns a transfer frame from → to carrying payload. An
 * empty to makes a heartbeat.
 */
export function encodeTransfer(from, to, payload = new Uint8Array(0)) {
  const f = bytes(from, 'from client ID');
  const t = bytes(to, 'to client ID');
  const p = bytes(payload, 'payload');
  checkID(f, 'from client ID', false);
  checkID(t, 'to client ID', true);
  if (p.length > MAX_PAYLOAD) throw new RangeError(`payload of ${p.length} bytes does not fit a uint32 length`);
  const head = HEADER_LEN + 1 + f.length + 1 + t.length + 4;
  const out = new Uint8Array(head + p.length);
  header(out, CMD_TRANSFER);
  let o = HEADER_LEN;
  out[o++] = f.length;
  out.set(f, o);
  o += f.length;
  out[o++] = t.length;
  out.set(t, o);
  o += t.length;
  new DataView(out.buffer).setUint32(o, p.length);
  out.set(p, head);
  return out;
}

/** encodeHeartbeat returns a heartbeat from id: a transfer to nobody. */
export function encodeHeartbeat(id) {
  return encodeTransfer(id, new Uint8Array(0));
}

/**
 * decodeFrame parses exactly one frame from b (a Uint8Array or ArrayBuffer).
 * It returns {cmd, id} for a login and {cmd, from, to, payload} (Uint8Arrays
 * viewing b) for a transfer, and throws a FrameError when b is not exactly
 * one valid frame.
 */
export function decodeFrame(b) {
  b = bytes(b, 'frame');
  const need = (n) => {
    if (b.length < n) throw new FrameError(`frame of ${b.length} bytes is cut short (at least ${n} needed)`);
  };
  need(HEADER_LEN + 1);
  for (let i = 0; i < 4; i++) if (b[i] !== MAGIC[i]) throw new FrameError('bad magic (not a RELY frame)');
  if (b[4] !== VERSION) throw new FrameError(`unsupported version ${b[4]}`);
  const cmd = b[5];
  const idLen = b[HEADER_LEN];
  if (idLen === 0) throw new FrameError('zero-length client ID');
  let end;
  let frame;
  if (cmd === CMD_LOGIN) {
    end = HEADER_LEN + 1 + idLen;
    need(end);
    frame = { cmd, id: b.subarray(HEADER_LEN + 1, end) };
  } else if (cmd === CMD_TRANSFER) {
    const toOff = HEADER_LEN + 1 + idLen;
    need(toOff + 1);
    const toLen = b[toOff];
    const head = toOff + 1 + toLen + 4;
    need(head);
    const plen = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(head - 4);
    end = head + plen;
    need(end);
    frame = {
      cmd,
      from: b.subarray(HEADER_LEN + 1, toOff),
      to: b.subarray(toOff + 1, toOff + 1 + toLen),
      payload: b.subarray(head, end),
    };
  } else {
    throw new FrameError(`unknown command 0x${cmd.toString(16).padStart(2, '0')}`);
  }
  if (end !== b.length) throw new FrameError(`${b.length - end} bytes after the frame`);
  return frame;
}

/** FrameError is a message that is not exactly one valid RELY frame. */
export class FrameError extends Error {
  constructor(message) {
    super(message);
    this.name = 'FrameError';
  }
}
