// The chat page: one relayd connection, lines to one peer, a log of what
// comes in. ?server=, ?id= and ?peer= prefill the fields.
import { connect } from './client/js/relayd.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
// Served by `go run ./examples/web` (port 8081), relayd is on 8080 of the
// same host; served from relayd's own host behind a proxy, on /relay.
const defaultServer = location.port === '8081'
  ? `${scheme}://${location.hostname}:8080/relay`
  : `${scheme}://${location.host}/relay`;
$('server').value = params.get('server') ?? defaultServer;
if (params.has('id')) $('id').value = params.get('id');
if (params.has('peer')) $('peer').value = params.get('peer');

let client = null;

function log(cls, text) {
  const line = document.createElement('div');
  line.className = cls;
  line.textContent = text;
  $('log').append(line);
  line.scrollIntoView({ block: 'nearest' });
}

function setConnected(on, status) {
  $('status').textContent = status;
  $('status').className = on ? 'connected' : 'closed';
  for (const id of ['server', 'id', 'connect']) $(id).disabled = on;
  for (const id of ['disconnect', 'message', 'send']) $(id).disabled = !on;
}

const decoder = new TextDecoder();

$('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const url = $('server').value.trim();
  const id = $('id').value.trim();
  $('status').textContent = 'connecting…';
  try {
    client = await connect(url, id);
  } catch (err) {
    setConnected(false, 'not connected');
    log('sys', `error: ${err.message}`);
    return;
  }
  const c = client;
  setConnected(true, `connected as ${id}`);
  log('sys', `connected to ${url} as ${id}`);
  c.onframe = (from, payload, frame) => {
    const who = frame.from ?? `0x${[...frame.fromBytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
    log('in', `${who}: ${decoder.decode(payload)}`);
  };
  const why = await c.closed;
  if (client === c) client = null;
  setConnected(false, `closed: ${why.message}`);
  log('sys', `connection closed: ${why.message}`);
});

$('disconnect').addEventListener('click', () => client?.close());

$('chat').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = $('message').value;
  if (!client || text === '') return;
  const peer = $('peer').value.trim();
  try {
    client.send(peer, text);
    log('out', `me → ${peer}: ${text}`);
    $('message').value = '';
  } catch (err) {
    log('sys', `error: ${err.message}`);
  }
});
