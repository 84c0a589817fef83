// tickwire dashboard: a quote board and a candlestick chart.
//
// History comes over REST (/v1/symbols, /v1/market, /v1/bars); live data over the native
// stream (docs/protocol.md): the `ticks` channel for the board, resumed from the last position
// after a dropped connection (no gap, no duplicate, checked by per-symbol seq), and the `bars`
// channel for the forming candle, with the candles missed while disconnected refilled over REST.
// No framework; window.tickwireDashboard exposes the state for tests and curious users.
"use strict";

(() => {
  const BOARD = ["EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCAD", "USDCHF", "EURGBP", "XAUUSD", "BTCUSD"];
  const INTERVALS = {
    "1s": { unit: "second", multiplier: 1, width: 1, live: "1s", limit: 900 },
    "1m": { unit: "minute", multiplier: 1, width: 60, live: "1m", limit: 600 },
    "5m": { unit: "minute", multiplier: 5, width: 300, live: "1m", limit: 600 },
    "15m": { unit: "minute", multiplier: 15, width: 900, live: "1m", limit: 600 },
    "1h": { unit: "hour", multiplier: 1, width: 3600, live: "1m", limit: 600 },
  };
  const MAX_CANDLES = 5000; // the chart keeps at most this many candles in memory
  const PING_EVERY_MS = 5000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const DAY_S = 86400;

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  const state = {
    key: params.get("api_key") || params.get("key") || sessionStorage.getItem("tickwire-key") || "",
    streamUrl: streamUrlFrom(params.get("stream")),
    symbols: new Map(), // code -> {decimals, pip, kind}
    marketOpen: new Map(), // kind -> bool
    chartSymbol: (params.get("symbol") || "EURUSD").toUpperCase(),
    interval: Object.hasOwn(INTERVALS, params.get("interval") ?? "") ? params.get("interval") : "1m",
    // stream
    ws: null,
    connection: "idle", // idle, connecting, replaying, live, lagging, reconnecting, failed
    attempt: 0,
    reconnects: 0,
    heartbeatS: 5,
    lastMessageAt: 0,
    position: null, // {epoch, offset}: the last tick position seen on the ticks channel
    ticksLive: false, // the ticks subscription is live (not replaying): heartbeats are positions
    lastSeq: new Map(), // symbol -> seq
    ticks: 0,
    gaps: 0,
    duplicates: 0,
    lastResume: null, // {status, from, position, replayed}
    barsSub: null, // {symbol, live}: the bars subscription on this connection
    refused: 0, // symbols the server refused in acks (a subscription bookkeeping error)
    subscriptionsLeft: null, // from the last ack
    lastSubscriptions: null, // the last answer to a `subscriptions` request (for tests)
    replayedSinceResume: 0,
    pings: new Map(), // id -> sent time
    pingSeq: 0,
    lastPingAt: -Infinity,
    rttMs: null,
    lastTickT: 0, // ns of the newest tick
    // board
    rows: new Map(), // symbol -> {tr, cells, bid, ask, open, openDay, t}
    dirty: new Set(),
    boardUpdates: 0,
    // chart
    chart: null,
    series: null,
    candles: [], // ascending by time (seconds)
    chartGeneration: 0, // bumped by each selectChart: a load for an older selection is dropped
    chartLoading: 0, // loads on their way
    refillPages: 4, // after a reconnect, at most this many pages of missed candles, else reload
    liveBars: 0,
  };

  // The key goes to the stream URL, so a ?stream= override may only name this page's own host
  // (another port or path, e.g. behind a proxy); anything else falls back to the default.
  function streamUrlFrom(override) {
    if (override) {
      try {
        const url = new URL(override, location.href);
        if ((url.protocol === "ws:" || url.protocol === "wss:") && url.hostname === location.hostname) {
          return url.href;
        }
      } catch {
        // not a URL: use the default
      }
    }
    return defaultStreamUrl();
  }

  function defaultStreamUrl() {
    const port = document.querySelector('meta[name="tickwire-stream-port"]').content;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.hostname}:${port}/v1/stream`;
  }

  // ---------------------------------------------------------------- REST

  class HttpError extends Error {
    constructor(status, body) {
      super((body && body.error && body.error.message) || `HTTP ${status}`);
      this.status = status;
    }
  }

  async function api(path, query = {}) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, String(v));
    for (let tries = 0; ; tries++) {
      const response = await fetch(url, { headers: { "X-API-Key": state.key } });
      if (response.status === 429 && tries < 5) {
        const retryAfter = Number(response.headers.get("Retry-After") || "1");
        const wait = Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : 1; // an HTTP date: 1 s
        await sleep(Math.min(wait, 10) * 1000);
        continue;
      }
      const body = await response.json().catch(() => null);
      if (!response.ok) throw new HttpError(response.status, body);
      return body;
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---------------------------------------------------------------- formatting

  function decimalsOf(symbol) {
    const info = state.symbols.get(symbol);
    return info ? info.decimals : 5;
  }

  function fmtPrice(symbol, price) {
    return price == null ? "–" : price.toFixed(decimalsOf(symbol));
  }

  function fmtTime(ns) {
    return new Date(ns / 1e6).toISOString().slice(11, 23);
  }

  // ---------------------------------------------------------------- board

  function buildBoard() {
    const body = $("board").querySelector("tbody");
    for (const symbol of BOARD) {
      const tr = document.createElement("tr");
      tr.dataset.symbol = symbol;
      const cells = {};
      for (const name of ["symbol", "bid", "ask", "spread", "change", "time"]) {
        const td = document.createElement("td");
        td.className = name;
        tr.appendChild(td);
        cells[name] = td;
      }
      cells.symbol.textContent = symbol;
      for (const name of ["bid", "ask", "spread", "change", "time"]) cells[name].textContent = "–";
      tr.addEventListener("click", () => selectChart(symbol, state.interval));
      body.appendChild(tr);
      state.rows.set(symbol, { tr, cells, bid: null, ask: null, prevBid: null, open: null, openDay: null, t: 0 });
    }
  }

  function applyQuote(symbol, bid, ask, t) {
    const row = state.rows.get(symbol);
    if (!row || t < row.t) return;
    const day = Math.floor(t / 1e9 / DAY_S);
    if (row.openDay !== null && day > row.openDay) {
      row.open = (bid + ask) / 2; // the first tick of a new day opens it
      row.openDay = day;
    }
    row.bid = bid;
    row.ask = ask;
    row.t = t;
    state.dirty.add(symbol);
  }

  function renderBoard() {
    for (const symbol of state.dirty) {
      const row = state.rows.get(symbol);
      const { cells } = row;
      const info = state.symbols.get(symbol);
      const direction = row.prevBid == null || row.bid === row.prevBid ? null : row.bid > row.prevBid ? "up" : "down";
      row.prevBid = row.bid;
      cells.bid.textContent = fmtPrice(symbol, row.bid);
      cells.ask.textContent = fmtPrice(symbol, row.ask);
      const pips = info ? (row.ask - row.bid) / info.pip : null;
      cells.spread.textContent = pips == null ? "–" : pips.toFixed(1);
      if (row.open) {
        const mid = (row.bid + row.ask) / 2;
        const pct = ((mid - row.open) / row.open) * 100;
        cells.change.textContent = `${pct >= 0 ? "+" : ""}${pct.toFixed(3)}%`;
        cells.change.className = `change ${pct > 0 ? "pos" : pct < 0 ? "neg" : ""}`;
      }
      cells.time.textContent = fmtTime(row.t);
      const open = info ? state.marketOpen.get(info.kind) !== false : true;
      cells.time.classList.toggle("closed", !open);
      cells.time.title = open ? "" : "market closed";
      if (direction) {
        flash(cells.bid, direction);
        flash(cells.ask, direction);
      }
      state.boardUpdates++;
    }
    state.dirty.clear();
    requestAnimationFrame(renderBoard);
  }

  function flash(element, direction) {
    element.classList.remove("flash-up", "flash-down");
    void element.offsetWidth; // restart the animation
    element.classList.add(`flash-${direction}`);
  }

  async function loadDailyOpens() {
    await Promise.all(
      BOARD.map(async (symbol) => {
        const body = await api(`/v1/bars/${symbol}`, { unit: "day", limit: 1 });
        const bar = body.bars[body.bars.length - 1];
        const row = state.rows.get(symbol);
        if (bar && row.open === null) {
          row.open = bar.open;
          row.openDay = Math.floor(bar.ts / 1e9 / DAY_S);
          if (row.bid !== null) state.dirty.add(symbol);
        }
      }),
    );
  }

  async function loadBoardQuotes() {
    const body = await api("/v1/quotes", { symbols: BOARD.join(",") });
    for (const q of body.quotes) applyQuote(q.symbol, q.bid, q.ask, q.ts);
  }

  // ---------------------------------------------------------------- chart

  function createChart() {
    const container = $("chart");
    state.chart = LightweightCharts.createChart(container, {
      autoSize: true,
      layout: { background: { color: "#161d25" }, textColor: "#d8dee6" },
      grid: { vertLines: { color: "#1f2833" }, horzLines: { color: "#1f2833" } },
      rightPriceScale: { borderColor: "#263140" },
      timeScale: { borderColor: "#263140", timeVisible: true },
    });
    state.series = state.chart.addSeries(LightweightCharts.CandlestickSeries, {
      upColor: "#26a69a",
      downColor: "#ef5350",
      wickUpColor: "#26a69a",
      wickDownColor: "#ef5350",
      borderVisible: false,
    });
    const group = $("intervals");
    for (const name of Object.keys(INTERVALS)) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = name;
      button.dataset.interval = name;
      button.addEventListener("click", () => selectChart(state.chartSymbol, name));
      group.appendChild(button);
    }
  }

  function bucket(seconds) {
    const width = INTERVALS[state.interval].width;
    return Math.floor(seconds / width) * width;
  }

  function candleOfRest(bar) {
    return { time: Math.round(bar.ts / 1e9), open: bar.open, high: bar.high, low: bar.low, close: bar.close };
  }

  // Insert or replace candles from REST (ascending), keeping the array sorted and bounded: the
  // page replaces the candles of its span, those older than it stay unless `replace`, and those
  // newer than it (live candles formed while the page was on its way) always stay.
  function mergeCandles(incoming, replace) {
    if (!incoming.length) {
      if (replace) state.series.setData(state.candles);
      return;
    }
    const first = incoming[0].time;
    const last = incoming[incoming.length - 1].time;
    const before = replace ? [] : state.candles.filter((c) => c.time < first);
    const after = state.candles.filter((c) => c.time > last);
    state.candles = before.concat(incoming, after).slice(-MAX_CANDLES);
    state.series.setData(state.candles);
  }

  // Fold a live bar (1s or 1m, from the stream) into the chart's candle for its bucket.
  function foldLiveBar(bar) {
    if (bar.s !== state.chartSymbol || bar.i !== INTERVALS[state.interval].live) return;
    state.liveBars++;
    const time = bucket(Math.round(bar.t / 1e9));
    const last = state.candles[state.candles.length - 1];
    if (!last || time > last.time) {
      const candle = { time, open: bar.o, high: bar.h, low: bar.l, close: bar.c };
      state.candles.push(candle);
      if (state.candles.length > MAX_CANDLES) state.candles.shift();
      state.series.update(candle);
    } else if (time === last.time) {
      if (state.interval === bar.i) {
        // same width: the stream's bar is the candle
        Object.assign(last, { open: bar.o, high: bar.h, low: bar.l, close: bar.c });
      } else {
        last.high = Math.max(last.high, bar.h);
        last.low = Math.min(last.low, bar.l);
        last.close = bar.c;
      }
      state.series.update({ ...last });
    } else if (bar.state === "revised") {
      const index = state.candles.findIndex((c) => c.time === time);
      if (index >= 0) {
        const c = state.candles[index];
        c.high = Math.max(c.high, bar.h);
        c.low = Math.min(c.low, bar.l);
        state.series.setData(state.candles);
      }
    }
    $("chart-info").textContent = `${fmtPrice(bar.s, bar.c)} · ${bar.n} ticks in the live ${bar.i} bar`;
  }

  // The latest `limit` candles (fromSeconds null), or those from fromSeconds on: the page after
  // page a reconnect missed, up to state.refillPages of them; a longer gap reloads the latest.
  async function loadChart(fromSeconds) {
    state.chartLoading++;
    try {
      await loadCandles(fromSeconds);
    } finally {
      state.chartLoading--;
    }
  }

  async function loadCandles(fromSeconds) {
    const spec = INTERVALS[state.interval];
    const query = { unit: spec.unit, multiplier: spec.multiplier, limit: spec.limit, side: "mid" };
    if (fromSeconds != null) query.from = fromSeconds * 1000;
    const symbol = state.chartSymbol;
    const generation = state.chartGeneration;
    const candles = [];
    for (let page = 0; ; page++) {
      const body = await api(`/v1/bars/${symbol}`, query);
      if (generation !== state.chartGeneration) return; // another chart was selected meanwhile
      for (const bar of body.bars) candles.push(candleOfRest(bar));
      if (fromSeconds == null || !body.next_cursor) break;
      if (page + 1 >= state.refillPages) return loadCandles(null); // too long a gap: start over
      query.cursor = body.next_cursor;
    }
    mergeCandles(candles, fromSeconds == null);
  }

  async function selectChart(symbol, interval) {
    state.chartGeneration++;
    state.chartSymbol = symbol;
    state.interval = interval;
    $("chart-symbol").textContent = symbol;
    for (const button of $("intervals").children) {
      button.setAttribute("aria-pressed", String(button.dataset.interval === interval));
    }
    for (const [code, row] of state.rows) row.tr.classList.toggle("selected", code === symbol);
    const precision = decimalsOf(symbol);
    state.series.applyOptions({ priceFormat: { type: "price", precision, minMove: 10 ** -precision } });
    state.chart.applyOptions({ timeScale: { secondsVisible: interval === "1s" } });
    const url = new URL(location.href);
    url.searchParams.set("symbol", symbol);
    url.searchParams.set("interval", interval);
    history.replaceState(null, "", url);
    // the chart starts empty: live bars of the new selection may arrive before its history
    state.candles = [];
    state.series.setData([]);
    // switch the live subscription now, not after the load: a later click must see it switched
    if (isOpen()) subscribeBars();
    try {
      await loadChart(null);
    } catch (error) {
      showError(`bars: ${error.message}`);
    }
  }

  // ---------------------------------------------------------------- stream

  function isOpen() {
    return state.ws && state.ws.readyState === WebSocket.OPEN && state.connection !== "connecting";
  }

  function send(message) {
    state.ws.send(JSON.stringify(message));
  }

  function setConnection(connection, text) {
    state.connection = connection;
    $("status").dataset.state = connection;
    $("status-text").textContent = text || connection;
  }

  function connect() {
    setConnection("connecting", state.attempt ? `connecting (attempt ${state.attempt + 1})` : "connecting");
    const ws = new WebSocket(`${state.streamUrl}?api_key=${encodeURIComponent(state.key)}`);
    state.ws = ws;
    state.ticksLive = false;
    state.barsSub = null; // a new connection starts with no subscription
    ws.onmessage = (event) => {
      state.lastMessageAt = performance.now();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      onMessage(message);
    };
    ws.onclose = (event) => {
      if (state.ws !== ws) return;
      state.ws = null;
      onClosed(event.code, event.reason);
    };
  }

  function onClosed(code, reason) {
    if (code === 4001 || code === 4003) {
      setConnection("failed", `refused (${code}): ${reason || "check the key"}`);
      return; // retrying would not help
    }
    state.attempt++;
    state.reconnects++;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (state.attempt - 1));
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2; // capped exponential, with jitter
    setConnection("reconnecting", `disconnected (${code || "no code"}); retrying in ${(delay / 1000).toFixed(1)} s`);
    setTimeout(connect, delay);
  }

  function onMessage(message) {
    switch (message.type) {
      case "welcome":
        onWelcome(message);
        break;
      case "ticks":
        onTicks(message.ticks);
        break;
      case "snapshot":
        if (message.channel === "bars") message.bars.forEach(foldLiveBar);
        else for (const q of message.quotes) onSnapshotQuote(q);
        break;
      case "bar":
        foldLiveBar(message);
        break;
      case "resume":
        onResume(message);
        break;
      case "heartbeat":
        if (state.ticksLive && state.position && message.epoch === state.position.epoch) {
          state.position.offset = Math.max(state.position.offset, message.offset);
        }
        break;
      case "pong": {
        const sent = state.pings.get(message.id);
        if (sent !== undefined) {
          state.rttMs = performance.now() - sent;
          state.pings.delete(message.id);
        }
        break;
      }
      case "lag":
        setConnection("lagging", `lagging: ${message.buffered} of ${message.limit} bytes buffered`);
        break;
      case "error":
        showError(`stream: ${message.code}: ${message.message}`);
        break;
      case "ack":
        state.subscriptionsLeft = message.subscriptions_left;
        state.refused += message.results.filter((r) => r.status === "refused").length;
        break;
      case "subscriptions":
        state.lastSubscriptions = message;
        break;
      default:
        break; // anything newer: nothing to do
    }
  }

  function onWelcome(welcome) {
    state.attempt = 0;
    state.heartbeatS = welcome.heartbeat || 5;
    const position = state.position;
    if (position && position.epoch === welcome.epoch) {
      state.ticksLive = false;
      state.replayedSinceResume = 0;
      setConnection("replaying", `resuming from ${position.epoch}:${position.offset}`);
      send({ action: "subscribe", id: "board", channel: "ticks", symbols: BOARD, from: `${position.epoch}:${position.offset}` });
    } else {
      // first connection, or the server started a new epoch: start over from a snapshot
      state.lastSeq.clear();
      state.position = null;
      send({ action: "subscribe", id: "board", channel: "ticks", symbols: BOARD });
      state.ticksLive = true;
      setConnection("live", "live");
    }
    subscribeBars();
    if (state.candles.length) {
      // candles formed while disconnected: refill from the last one we have
      loadChart(state.candles[state.candles.length - 1].time).catch((error) => showError(`bars: ${error.message}`));
    }
  }

  // Make the connection's one bars subscription the chart's: unsubscribe the old one first.
  function subscribeBars() {
    const want = { symbol: state.chartSymbol, live: INTERVALS[state.interval].live };
    const current = state.barsSub;
    if (current && current.symbol === want.symbol && current.live === want.live) return;
    if (current) {
      send({ action: "unsubscribe", channel: "bars", symbols: [current.symbol], interval: current.live, side: "mid" });
    }
    send({ action: "subscribe", id: "chart", channel: "bars", symbols: [want.symbol], interval: want.live, side: "mid" });
    state.barsSub = want;
  }

  function onResume(message) {
    if (message.status === "replaying") return;
    if (message.status === "live") {
      state.ticksLive = true;
      state.lastResume = { status: "live", from: message.from, position: message.position, replayed: state.replayedSinceResume };
      $("stat-resume").textContent = `from ${message.from}: ${state.replayedSinceResume} ticks replayed`;
      setConnection("live", "live (resumed)");
    } else {
      // too_old or another epoch: the missed ticks are gone from the stream; show the latest
      state.ticksLive = true;
      state.lastSeq.clear();
      state.lastResume = { status: message.status, from: message.from, position: message.position, replayed: 0 };
      $("stat-resume").textContent = `${message.status}: refilled quotes over REST`;
      loadBoardQuotes().catch((error) => showError(`quotes: ${error.message}`));
      setConnection("live", "live (refilled)");
    }
  }

  function onSnapshotQuote(q) {
    state.lastSeq.set(q.s, q.q);
    notePosition(q.e, q.o);
    applyQuote(q.s, q.b, q.a, q.t);
  }

  function notePosition(epoch, offset) {
    if (!state.position || state.position.epoch !== epoch) state.position = { epoch, offset };
    else if (offset > state.position.offset) state.position.offset = offset;
  }

  function onTicks(ticks) {
    for (const tick of ticks) {
      const last = state.lastSeq.get(tick.s);
      if (last !== undefined) {
        if (tick.q <= last) {
          state.duplicates++;
          continue;
        }
        if (tick.q !== last + 1) state.gaps += tick.q - last - 1;
      }
      state.lastSeq.set(tick.s, tick.q);
      notePosition(tick.e, tick.o);
      applyQuote(tick.s, tick.b, tick.a, tick.t);
      if (tick.t > state.lastTickT) state.lastTickT = tick.t;
      state.ticks++;
      if (!state.ticksLive) state.replayedSinceResume++;
    }
  }

  // Every second: ping for the round trip, detect a stalled connection, refresh the figures.
  function tick() {
    const now = performance.now();
    if (isOpen()) {
      if (now - state.lastMessageAt > (state.heartbeatS * 3 + 2) * 1000) {
        state.ws.close(4000, "no heartbeat"); // stalled: reconnect and resume
      } else if (now - state.lastPingAt >= PING_EVERY_MS) {
        const id = `ping-${++state.pingSeq}`;
        state.pings.clear();
        state.pings.set(id, now);
        state.lastPingAt = now;
        send({ action: "ping", id });
      }
    }
    $("stat-rtt").textContent = state.rttMs == null ? "–" : `${state.rttMs.toFixed(1)} ms`;
    $("stat-age").textContent = state.lastTickT ? `${Math.max(0, Date.now() - state.lastTickT / 1e6).toFixed(0)} ms` : "–";
    $("stat-position").textContent = state.position ? `${state.position.epoch}:${state.position.offset}` : "–";
    $("stat-ticks").textContent = String(state.ticks);
    $("stat-reconnects").textContent = String(state.reconnects);
    $("stat-gaps").textContent = state.duplicates ? `${state.gaps} (${state.duplicates} duplicates)` : String(state.gaps);
  }

  // ---------------------------------------------------------------- start

  function showError(text) {
    const element = $("error");
    element.textContent = text;
    element.hidden = false;
  }

  function askForKey(message) {
    $("key-form").hidden = false;
    $("main").hidden = true;
    $("key-error").textContent = message || "";
    $("key-input").value = state.key;
  }

  async function start() {
    try {
      const [symbols, market] = await Promise.all([api("/v1/symbols"), api("/v1/market")]);
      for (const s of symbols.symbols) state.symbols.set(s.code, s);
      for (const [kind, status] of Object.entries(market.markets)) state.marketOpen.set(kind, status.open);
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        sessionStorage.removeItem("tickwire-key");
        askForKey(`The key was refused: ${error.message}`);
        return;
      }
      throw error;
    }
    sessionStorage.setItem("tickwire-key", state.key);
    $("key-form").hidden = true;
    $("main").hidden = false;
    if (!state.symbols.has(state.chartSymbol)) state.chartSymbol = "EURUSD";
    buildBoard();
    createChart();
    requestAnimationFrame(renderBoard);
    setInterval(tick, 1000);
    await selectChart(state.chartSymbol, state.interval);
    connect();
    loadDailyOpens().catch((error) => showError(`daily opens: ${error.message}`));
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("key-input").value.trim();
    start().catch((error) => showError(error.message));
  });

  window.tickwireDashboard = {
    state,
    summary: () => ({
      connection: state.connection,
      ticks: state.ticks,
      gaps: state.gaps,
      duplicates: state.duplicates,
      reconnects: state.reconnects,
      candles: state.candles.length,
      chartLoading: state.chartLoading,
      liveBars: state.liveBars,
      boardUpdates: state.boardUpdates,
      position: state.position && `${state.position.epoch}:${state.position.offset}`,
      lastResume: state.lastResume,
      rttMs: state.rttMs,
      barsSub: state.barsSub && `${state.barsSub.symbol}/${state.barsSub.live}`,
      refused: state.refused,
      subscriptionsLeft: state.subscriptionsLeft,
    }),
  };

  if (state.key) start().catch((error) => showError(error.message));
  else askForKey();
})();
