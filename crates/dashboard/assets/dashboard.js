// cityhub live dashboard: statistics from `stats`, events from
// `activityEvents` over graphql-transport-ws (spoken here directly), filters
// in the URL, resume from the last cursor kept in localStorage.

const FIELDS = ["CRAFTS_AND_FOLK_ART", "DESIGN", "FILM", "GASTRONOMY", "LITERATURE", "MEDIA_ARTS", "MUSIC", "ARCHITECTURE"];
const KINDS = ["ANNUAL_MEETING", "INTERNATIONAL_CONFERENCE", "MEMBER_MEETING", "SUB_NETWORK_COLLABORATION",
  "WORKSHOP", "EXHIBITION", "FESTIVAL", "RESIDENCY", "OTHER"];
const CURSOR_KEY = "cityhub-dashboard:cursor";
const TOKEN_KEY = "cityhub-dashboard:token";
const FEED_LIMIT = 200;
const SEEN_LIMIT = 5000;
const SVG = "http://www.w3.org/2000/svg";

const STATS_QUERY = `query Stats($filter: ActivityFilter) { stats(filter: $filter) {
  total cityCount byField { field count } byKind { kind count } byCountry { country count } byYear { year count } } }`;
const EVENTS_QUERY = `subscription Events($filter: ActivityFilter, $after: String) {
  activityEvents(filter: $filter, after: $after) { cursor type occurredAt
    actor { name }
    activity { slug title status venueCity { name } hosts { name } } } }`;

const $ = (id) => document.getElementById(id);
const label = (value) => value.toLowerCase().replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());

const state = {
  filter: readFilter(),
  token: sessionStorage.getItem(TOKEN_KEY),
  cursor: localStorage.getItem(CURSOR_KEY),
  seen: new Set(),
  socket: null,
  attempt: 0,
  subscription: 0,
  reconnectTimer: null,
  statsTimer: null,
  statsLoading: false,
  statsAgain: false,
};

/** The filter in the URL: ?city=lyon&field=MUSIC&kind=FESTIVAL&country=FR (repeatable). */
function readFilter() {
  const params = new URLSearchParams(location.search);
  return {
    city: params.get("city") || "",
    field: params.get("field") || "",
    kind: params.get("kind") || "",
    country: (params.get("country") || "").toUpperCase(),
  };
}

/** The GraphQL ActivityFilter for the current filter (and token). */
function graphqlFilter(forStats) {
  const f = {};
  if (state.filter.city) f.cities = [state.filter.city];
  if (state.filter.field) f.fields = [state.filter.field];
  if (state.filter.kind) f.kinds = [state.filter.kind];
  if (state.filter.country) f.countries = [state.filter.country];
  if (forStats && state.token) f.statuses = ["PUBLISHED", "DRAFT"];
  return f;
}

function setConnection(kind, text) {
  const el = $("connection");
  el.dataset.state = kind;
  el.textContent = text;
}

// ---- statistics over HTTP ----

async function loadStats() {
  if (state.statsLoading) {
    state.statsAgain = true;
    return;
  }
  state.statsLoading = true;
  try {
    const headers = { "Content-Type": "application/json", Accept: "application/graphql-response+json, application/json" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    const response = await fetch("/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify({ query: STATS_QUERY, variables: { filter: graphqlFilter(true) } }),
    });
    const body = await response.json();
    if (body.errors) {
      const code = body.errors[0]?.extensions?.code;
      if (code === "UNAUTHENTICATED" && state.token) {
        forgetToken("The token was refused (expired or revoked): back to published data.");
        return;
      }
      throw new Error(body.errors[0]?.message || "stats failed");
    }
    renderStats(body.data.stats);
  } catch (error) {
    $("total").textContent = "—";
    setConnection(state.socket?.readyState === WebSocket.OPEN ? "live" : "error", `Statistics unavailable: ${error.message}`);
    scheduleStats(3000);
  } finally {
    state.statsLoading = false;
    if (state.statsAgain) {
      state.statsAgain = false;
      scheduleStats(0);
    }
  }
}

/** Reloads statistics soon, once for a burst of events. */
function scheduleStats(delay = 250) {
  clearTimeout(state.statsTimer);
  state.statsTimer = setTimeout(loadStats, delay);
}

function fillTable(id, rows, key, named) {
  const body = $(id).tBodies[0];
  const fresh = document.createDocumentFragment();
  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.dataset.key = row[key];
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = named ? label(row[key]) : row[key];
    const count = document.createElement("td");
    count.textContent = String(row.count);
    if (row.count === 0) count.className = "zero";
    tr.append(name, count);
    fresh.append(tr);
  }
  body.replaceChildren(fresh);
}

function renderStats(stats) {
  $("total").textContent = String(stats.total);
  $("city-count").textContent = String(stats.cityCount);
  $("country-count").textContent = String(stats.byCountry.length);
  fillTable("by-field", [...stats.byField].sort((a, b) => b.count - a.count), "field", true);
  fillTable("by-kind", [...stats.byKind].sort((a, b) => b.count - a.count), "kind", true);
  fillTable("by-country", stats.byCountry.slice(0, 10), "country", false);
  renderYears(stats.byYear);
}

/** Activities per year as SVG bars, every year from the first to the last. */
function renderYears(byYear) {
  const svg = $("years");
  const width = 640, height = 220, bottom = 20, top = 16;
  const nodes = [];
  if (byYear.length === 0) {
    svg.replaceChildren();
    $("years-desc").textContent = "No dated activity.";
    return;
  }
  const counts = new Map(byYear.map((y) => [y.year, y.count]));
  const first = byYear[0].year, last = byYear[byYear.length - 1].year;
  const years = [];
  for (let y = first; y <= last; y++) years.push(y);
  const max = Math.max(...byYear.map((y) => y.count));
  const step = width / years.length;
  const labelEvery = Math.ceil(years.length / 12);
  years.forEach((year, i) => {
    const count = counts.get(year) || 0;
    const h = max ? ((height - bottom - top) * count) / max : 0;
    const bar = document.createElementNS(SVG, "rect");
    bar.setAttribute("class", "bar");
    bar.setAttribute("x", String(i * step + step * 0.1));
    bar.setAttribute("y", String(height - bottom - h));
    bar.setAttribute("width", String(step * 0.8));
    bar.setAttribute("height", String(h));
    bar.dataset.year = String(year);
    bar.dataset.count = String(count);
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${year}: ${count}`;
    bar.append(title);
    nodes.push(bar);
    if (i % labelEvery === 0 || i === years.length - 1) {
      const text = document.createElementNS(SVG, "text");
      text.setAttribute("x", String(i * step + step / 2));
      text.setAttribute("y", String(height - 5));
      text.setAttribute("text-anchor", "middle");
      text.textContent = String(year);
      nodes.push(text);
    }
  });
  const axis = document.createElementNS(SVG, "line");
  axis.setAttribute("class", "axis");
  axis.setAttribute("x1", "0");
  axis.setAttribute("x2", String(width));
  axis.setAttribute("y1", String(height - bottom));
  axis.setAttribute("y2", String(height - bottom));
  nodes.push(axis);
  svg.replaceChildren(...nodes);
  const peak = byYear.reduce((a, b) => (b.count > a.count ? b : a));
  $("years-desc").textContent = `${years.length} years from ${first} to ${last}; most activities in ${peak.year} (${peak.count}).`;
}

// ---- events over graphql-transport-ws ----

function wsUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
}

function send(socket, message) {
  if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function connect() {
  clearTimeout(state.reconnectTimer);
  const old = state.socket;
  state.socket = null;
  if (old) old.close(1000);
  setConnection(state.attempt ? "reconnecting" : "connecting", state.attempt ? `Reconnecting (attempt ${state.attempt})…` : "Connecting…");
  const socket = new WebSocket(wsUrl(), "graphql-transport-ws");
  state.socket = socket;
  socket.addEventListener("open", () => {
    send(socket, { type: "connection_init", payload: state.token ? { authorization: `Bearer ${state.token}` } : {} });
  });
  socket.addEventListener("message", (message) => {
    if (socket !== state.socket) return;
    let msg;
    try {
      msg = JSON.parse(message.data);
    } catch {
      return;
    }
    switch (msg.type) {
      case "connection_ack":
        state.attempt = 0;
        setConnection("live", state.cursor ? "Live (resumed)" : "Live");
        subscribe();
        // Whatever changed while we were away is in the statistics now.
        scheduleStats(0);
        break;
      case "ping":
        send(socket, { type: "pong" });
        break;
      case "next":
        if (msg.id !== `events-${state.subscription}`) return;
        if (msg.payload?.errors?.length) onErrors(msg.payload.errors);
        else if (msg.payload?.data?.activityEvents) onEvent(msg.payload.data.activityEvents);
        break;
      case "error":
        if (msg.id === `events-${state.subscription}`) onErrors(msg.payload);
        break;
      case "complete":
        // The server ended the stream (e.g. shutting down): resume from the cursor.
        if (msg.id === `events-${state.subscription}`) setTimeout(subscribe, 1000);
        break;
    }
  });
  socket.addEventListener("close", (event) => {
    if (socket !== state.socket) return;
    state.socket = null;
    if (event.code === 4403 && state.token) {
      forgetToken("The token was refused (expired or revoked): back to published data.");
      return;
    }
    reconnectLater();
  });
}

function reconnectLater() {
  state.attempt += 1;
  const delay = Math.min(15000, 500 * 2 ** Math.min(state.attempt, 5)) * (0.75 + Math.random() / 2);
  setConnection(navigator.onLine === false ? "offline" : "reconnecting",
    `Connection lost; reconnecting in ${Math.ceil(delay / 1000)} s (attempt ${state.attempt})`);
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(connect, delay);
}

/** Subscribes (again) from the last cursor received, so nothing is missed. */
function subscribe() {
  const socket = state.socket;
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  if (state.subscription) send(socket, { id: `events-${state.subscription}`, type: "complete" });
  state.subscription += 1;
  const variables = { filter: graphqlFilter(false), after: state.cursor };
  send(socket, { id: `events-${state.subscription}`, type: "subscribe", payload: { query: EVENTS_QUERY, variables } });
}

function onErrors(errors) {
  const code = errors?.[0]?.extensions?.code;
  if (code === "CURSOR_EXPIRED") {
    // The log no longer reaches back to our cursor: start over from now.
    state.cursor = null;
    localStorage.removeItem(CURSOR_KEY);
    loadStats();
    subscribe();
  } else if (code === "UNAUTHENTICATED" || code === "FORBIDDEN") {
    forgetToken("The token was refused: back to published data.");
  } else {
    // RATE_LIMITED (fell behind) or anything else: resume from the cursor.
    setConnection("reconnecting", `Stream interrupted (${code || "error"}); resuming…`);
    setTimeout(() => {
      setConnection("live", "Live (resumed)");
      subscribe();
    }, 1000);
  }
}

function onEvent(event) {
  if (state.seen.has(event.cursor)) return;
  state.seen.add(event.cursor);
  if (state.seen.size > SEEN_LIMIT) state.seen.delete(state.seen.values().next().value);
  state.cursor = event.cursor;
  localStorage.setItem(CURSOR_KEY, event.cursor);
  addToFeed(event);
  scheduleStats();
}

function addToFeed(event) {
  const a = event.activity;
  const li = document.createElement("li");
  li.className = "new";
  li.dataset.cursor = event.cursor;
  li.dataset.type = event.type;
  li.dataset.slug = a.slug;
  const type = document.createElement("span");
  type.className = `type type-${event.type}`;
  type.textContent = label(event.type);
  const what = document.createElement("span");
  const title = document.createElement("strong");
  title.className = "title";
  title.textContent = a.title;
  const where = document.createElement("span");
  where.className = "where";
  const cities = [a.venueCity?.name, ...a.hosts.map((h) => h.name)].filter(Boolean);
  const place = [...new Set(cities)].join(", ") || event.actor?.name || "the secretariat";
  where.textContent = ` · ${place}${a.status === "DRAFT" ? " · draft" : ""}`;
  what.append(title, where);
  const time = document.createElement("time");
  time.dateTime = event.occurredAt;
  time.textContent = new Date(event.occurredAt).toLocaleString();
  li.append(type, what, time);
  const feed = $("feed");
  feed.prepend(li);
  while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
  $("feed-empty").hidden = true;
}

// ---- filters, token, start ----

function fillSelect(id, values, selected) {
  const select = $(id);
  for (const value of values) select.add(new Option(label(value), value, false, value === selected));
}

function showFilter() {
  $("f-city").value = state.filter.city;
  $("f-field").value = state.filter.field;
  $("f-kind").value = state.filter.kind;
  $("f-country").value = state.filter.country;
}

function applyFilter(filter) {
  state.filter = filter;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(filter)) if (value) params.set(key, value);
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
  $("feed").replaceChildren();
  $("feed-empty").hidden = false;
  loadStats();
  subscribe();
}

function forgetToken(message) {
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("token").value = "";
  $("token-state").textContent = message;
  loadStats();
  connect();
}

async function loadCities() {
  const list = $("city-list");
  let after = null;
  for (let page = 0; page < 5; page++) {
    const response = await fetch("/graphql", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        query: "query($after: String) { cities(first: 100, after: $after) { nodes { slug name } pageInfo { hasNextPage endCursor } } }",
        variables: { after },
      }),
    });
    const body = await response.json();
    const cities = body.data?.cities;
    if (!cities) return;
    for (const c of cities.nodes) list.append(new Option(c.name, c.slug));
    if (!cities.pageInfo.hasNextPage) return;
    after = cities.pageInfo.endCursor;
  }
}

function start() {
  fillSelect("f-field", FIELDS, state.filter.field);
  fillSelect("f-kind", KINDS, state.filter.kind);
  showFilter();
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilter({
      city: $("f-city").value.trim().toLowerCase(),
      field: $("f-field").value,
      kind: $("f-kind").value,
      country: $("f-country").value.trim().toUpperCase(),
    });
  });
  $("f-clear").addEventListener("click", () => {
    applyFilter({ city: "", field: "", kind: "", country: "" });
    showFilter();
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim().replace(/^Bearer\s+/i, "");
    if (!token) return;
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("token-state").textContent = "Using a token: its city's drafts are included.";
    loadStats();
    connect();
  });
  $("token-forget").addEventListener("click", () => forgetToken("Anonymous: published activities only."));
  if (state.token) $("token-state").textContent = "Using a token: its city's drafts are included.";
  window.addEventListener("online", () => {
    if (!state.socket) connect();
  });
  window.addEventListener("offline", () => setConnection("offline", "Offline: waiting for the network…"));
  loadStats();
  connect();
  loadCities().catch(() => {});
}

start();
