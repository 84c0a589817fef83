// Peer: a Node `ws` server (npm ws, pinned in package.json), in one of two modes.
//
//   single   one tick per WebSocket message, as users usually write a broadcast: each tick is
//            encoded once, then `client.send(text)` for every client subscribed to its symbol;
//   batched  the same batching as tickwire's gateway: per batch of the tick source, each
//            symbol's ticks are encoded once into a Buffer piece, and each client gets one
//            message {"type":"ticks","ticks":[...]} spliced from the pieces of its symbols with
//            Buffer.concat (clients with the same symbol set share one Buffer).
//
// The tick source is the same as bench/fanout_peers/ticksource.py (tickwire's simulator in load
// mode): a wake-up at each 100 ms (--step-ms) wall-clock boundary emits floor(rate x elapsed) ticks in total,
// their times spread evenly over the elapsed range, symbols round-robin, per-symbol q, global o.
// Times are nanoseconds written as integers (JSON.stringify cannot write them exactly, so the
// tick text is a template string with the native protocol's keys in order).
//
// A client sends {"action":"subscribe","symbols":[...]} and gets {"type":"ack"}.
//
//   node node_ws.js --port P --rate R --mode single|batched --symbols EURUSD,... [--step-ms 100] [--wait-go]
'use strict';

const { WebSocketServer } = require('ws');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) {
    if (fallback === undefined) throw new Error(`--${name} is required`);
    return fallback;
  }
  return process.argv[i + 1];
}

const port = Number(arg('port'));
const rate = BigInt(arg('rate'));
const mode = arg('mode', 'batched');
const symbols = arg('symbols').split(',');
const waitGo = process.argv.includes('--wait-go'); // start the ticks on SIGUSR2
const STEP = BigInt(Math.round(Number(arg('step-ms', '100')) * 1e6));
if (mode !== 'single' && mode !== 'batched') throw new Error(`unknown mode ${mode}`);

// wall clock in ns, microsecond resolution
const nowNs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;

const epoch = nowNs() / 1_000_000_000n;
const mids = symbols.map((_, i) => 1.0 + 0.37 * (i % 7) + Math.random());
const seqs = symbols.map(() => 0);
let nextSym = 0;
let offset = 0;

function gauss() {
  let u = 0;
  while (u === 0) u = Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * Math.random());
}

// the ticks of [start, end): [symbol index, text]
function makeTicks(start, end, n) {
  const dur = end - start;
  const bn = BigInt(n);
  const out = new Array(n);
  for (let k = 0; k < n; k++) {
    const sym = nextSym;
    const mid = mids[sym] * (1 + 2e-5 * gauss());
    mids[sym] = mid;
    seqs[sym] += 1;
    offset += 1;
    const bid = Math.round(mid * 0.99999 * 1e5) / 1e5;
    const ask = Math.round(mid * 1.00001 * 1e5) / 1e5;
    const t = start + (BigInt(k) * dur) / bn;
    out[k] = [sym, `{"s":"${symbols[sym]}","b":${bid},"a":${ask},"t":${t},"e":${epoch},"o":${offset},"q":${seqs[sym]}}`];
    nextSym = sym + 1 < symbols.length ? sym + 1 : 0;
  }
  return out;
}

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, backlog: 4096 });

wss.on('connection', (ws) => {
  ws.syms = null;
  ws.on('message', (data) => {
    let request;
    try {
      request = JSON.parse(data);
    } catch {
      return;
    }
    if (request && request.action === 'subscribe') {
      const wanted = new Set(request.symbols || []);
      ws.syms = wanted;
      ws.order = symbols.map((s, i) => (wanted.has(s) ? i : -1)).filter((i) => i >= 0);
      ws.key = ws.order.join(',');
      ws.send(JSON.stringify({ type: 'ack', id: request.id === undefined ? null : request.id }));
    }
  });
  ws.on('error', () => {});
});

function publishSingle(ticks) {
  for (const [sym, text] of ticks) {
    const name = symbols[sym];
    for (const client of wss.clients) {
      if (client.readyState === 1 && client.syms !== null && client.syms.has(name)) {
        client.send(text);
      }
    }
  }
}

const HEAD = Buffer.from('{"type":"ticks","ticks":[');
const COMMA = Buffer.from(',');
const TAIL = Buffer.from(']}');

function publishBatched(ticks) {
  const grouped = new Array(symbols.length);
  for (const [sym, text] of ticks) {
    if (grouped[sym] === undefined) grouped[sym] = [text];
    else grouped[sym].push(text);
  }
  // each symbol's ticks encoded once; frames are spliced from these bytes, never re-encoded
  const pieces = grouped.map((list) => (list === undefined ? undefined : Buffer.from(list.join(','))));
  const frames = new Map();
  for (const client of wss.clients) {
    if (client.readyState !== 1 || client.syms === null) continue;
    let frame = frames.get(client.key);
    if (frame === undefined) {
      const parts = [HEAD];
      for (const i of client.order) {
        if (pieces[i] === undefined) continue;
        if (parts.length > 1) parts.push(COMMA);
        parts.push(pieces[i]);
      }
      parts.push(TAIL);
      frame = parts.length > 2 ? Buffer.concat(parts) : null;
      frames.set(client.key, frame);
    }
    if (frame !== null) client.send(frame, { binary: false });
  }
}

const publish = mode === 'single' ? publishSingle : publishBatched;
let start = 0n;
let last = 0n;
let emitted = 0n;

function go() {
  start = nowNs();
  last = start;
  wake();
}

function wake() {
  const now = nowNs();
  const end = now > last ? now : last;
  const due = (rate * (end - start)) / 1_000_000_000n;
  const n = Number(due - emitted);
  if (n > 0) {
    emitted = due;
    const ticks = makeTicks(last, end, n);
    last = end;
    publish(ticks);
  } else {
    last = end;
  }
  const boundary = (last / STEP + 1n) * STEP;
  const wait = Number(boundary - nowNs()) / 1e6;
  setTimeout(wake, wait > 0 ? wait : 0);
}

wss.on('listening', () => {
  console.log('listening');
  if (waitGo) process.once('SIGUSR2', go);
  else go();
});

process.on('SIGTERM', () => process.exit(0));
