// cityhub publishing desk: sign-in, the city's activities, the activity
// form with its conflicts, invitations and calendars. Everything goes
// through the public GraphQL API with the city's token, kept in this tab's
// sessionStorage only.

import { h, fill, t, announce, initialLanguage, setLanguage, currentLanguage, languages } from "./dom.js";
import { gql, newKey, withTimes, ApiError, NetworkError, Q } from "./api.js";
import { activityForm, valuesOf, inputOf, patchOf, changedFields, describeValue, explainFailure, KINDS, FIELDS, FORMATS } from "./form.js";

const TOKEN_KEY = "cityhub-desk:token";
const ACTING_KEY = "cityhub-desk:acting-for";
const PAGE_SIZE = 20;
const $ = (id) => document.getElementById(id);

const app = {
  token: null,
  viewer: null,
  cities: [],
  caps: { times: false, sources: false },
  actingFor: sessionStorage.getItem(ACTING_KEY) || "",
  expiryTimer: null,
  /** The open form's guard: true when leaving would lose changes. */
  dirty: () => false,
  /** A navigation the desk makes itself after a save (no question asked). */
  quietNavigation: false,
  lastHash: location.hash,
  signInMessage: "",
  list: { scope: "city", text: "", status: "ALL", kind: "", field: "", cursors: [null], page: 0 },
};

const isSecretariat = () => app.viewer?.role === "SECRETARIAT";
const ownCity = () => app.viewer?.city?.slug || null;
/** The city the desk acts for: the token's, or the one the secretariat chose. */
const cityInScope = () => (isSecretariat() ? app.actingFor || null : ownCity());
const cityName = (slug) => app.cities.find((c) => c.slug === slug)?.name || slug;

function formatDate(iso) {
  if (!iso) return "";
  const date = new Date(iso.length === 10 ? `${iso}T00:00:00Z` : iso);
  const options = iso.length === 10 ? { dateStyle: "medium", timeZone: "UTC" } : { dateStyle: "medium", timeStyle: "short" };
  return new Intl.DateTimeFormat(currentLanguage(), options).format(date);
}

function formatDates(a) {
  if (!a.startDate) return t("dates.none");
  if (a.datePrecision === "YEAR") return a.startDate.slice(0, 4);
  if (a.datePrecision === "MONTH") {
    return new Intl.DateTimeFormat(currentLanguage(), { month: "long", year: "numeric", timeZone: "UTC" })
      .format(new Date(`${a.startDate}T00:00:00Z`));
  }
  return a.endDate && a.endDate !== a.startDate
    ? t("dates.range", { from: formatDate(a.startDate), to: formatDate(a.endDate) })
    : formatDate(a.startDate);
}

// ---- requests ----

/** A request with the session's token; a refused token ends the session. */
async function call(query, variables) {
  try {
    return await gql(query, variables, app.token);
  } catch (error) {
    if (error instanceof ApiError && error.code === "UNAUTHENTICATED" && app.token) {
      signOut(t("signin.expired"));
    }
    throw error;
  }
}

// ---- session ----

async function signIn(token, { fromLink } = {}) {
  token = token.trim();
  if (!token) return t("signin.empty");
  let data;
  try {
    data = await gql(Q.viewer, {}, token);
  } catch (error) {
    if (error instanceof ApiError && error.code === "UNAUTHENTICATED") {
      return fromLink ? t("signin.refused.link") : t("signin.refused");
    }
    return explainFailure(error);
  }
  if (!data.viewer) return t("signin.refused");
  app.token = token;
  app.viewer = data.viewer;
  try {
    await loadContext();
  } catch (error) {
    app.token = null;
    app.viewer = null;
    return explainFailure(error);
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  scheduleExpiry();
  renderChrome();
  announce(t("signin.done", { who: whoText() }));
  return null;
}

async function loadContext() {
  // What the hub can do and its cities, asked together.
  const [caps, cities] = await Promise.all([loadCapabilities(), loadCities()]);
  app.caps = caps;
  withTimes(caps.times);
  app.cities = cities;
  if (isSecretariat() && app.actingFor && !cities.some((c) => c.slug === app.actingFor)) app.actingFor = "";
}

async function loadCapabilities() {
  try {
    const caps = await gql(Q.capabilities, {}, app.token);
    const inputs = new Set((caps.input?.inputFields || []).map((f) => f.name));
    const outputs = new Set((caps.activity?.fields || []).map((f) => f.name));
    const roots = new Set((caps.query?.fields || []).map((f) => f.name));
    // Timed activities and calendars are capabilities of newer hubs: the
    // desk shows their parts only where the API has them.
    return {
      times: ["startTime", "endTime", "timeZone"].every((n) => inputs.has(n) && outputs.has(n)),
      sources: roots.has("sources"),
    };
  } catch {
    // Without introspection the desk shows what every hub has.
    return { times: false, sources: false };
  }
}

async function loadCities() {
  const cities = [];
  let after = null;
  for (let page = 0; page < 50; page += 1) {
    const data = await call(Q.cities, { after });
    cities.push(...data.cities.nodes);
    if (!data.cities.pageInfo.hasNextPage) break;
    after = data.cities.pageInfo.endCursor;
  }
  return cities;
}

function scheduleExpiry() {
  clearTimeout(app.expiryTimer);
  const expires = Date.parse(app.viewer.expiresAt);
  const left = expires - Date.now();
  if (left <= 0) {
    signOut(t("signin.expired"));
    return;
  }
  app.expiryTimer = setTimeout(() => signOut(t("signin.expired")), Math.min(left, 2 ** 31 - 1));
}

function signOut(message) {
  app.token = null;
  app.viewer = null;
  app.dirty = () => false;
  clearTimeout(app.expiryTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ACTING_KEY);
  app.actingFor = "";
  app.signInMessage = message || "";
  renderChrome();
  go("#/signin", { quiet: true });
  render();
}

function whoText() {
  if (!app.viewer) return "";
  return isSecretariat() ? t("session.secretariat") : t("session.city", { city: app.viewer.city?.name || "" });
}

// ---- chrome: header, navigation, language ----

function renderChrome() {
  document.title = t("app.title");
  $("skip").textContent = t("app.skip");
  fill($("brand"), h("span", { class: "brand-name" }, t("app.brand")), " ", h("span", { class: "brand-desk" }, t("app.desk")));
  const switcher = h("div", { class: "language-switch", role: "group", "aria-label": t("language.switch") },
    languages().map(([code, name]) => h("button", {
      type: "button", lang: code, "aria-pressed": code === currentLanguage() ? "true" : "false",
      onclick: () => { setLanguage(code, true); renderChrome(); render(); announce(t("language.changed")); },
    }, name)));
  fill($("language"), switcher);
  const session = $("session");
  if (!app.viewer) {
    fill(session);
    $("nav").hidden = true;
    return;
  }
  const expires = formatDate(app.viewer.expiresAt);
  const parts = [
    h("p", { class: "who", id: "who" }, whoText()),
    h("p", { class: "expires" }, t("session.expires", { when: expires })),
  ];
  if (isSecretariat()) {
    const select = h("select", { id: "acting-for", onchange: () => {
      if (!confirmLeave()) { select.value = app.actingFor; return; }
      app.actingFor = select.value;
      sessionStorage.setItem(ACTING_KEY, app.actingFor);
      app.list.cursors = [null];
      app.list.page = 0;
      renderChrome();
      go("#/activities", { quiet: true });
      render();
      announce(app.actingFor ? t("acting.for", { city: cityName(app.actingFor) }) : t("acting.network"));
    } },
    h("option", { value: "" }, t("acting.none")),
    app.cities.map((c) => h("option", { value: c.slug, selected: c.slug === app.actingFor }, `${c.name} (${c.country})`)));
    parts.push(h("div", { class: "acting" }, h("label", { for: "acting-for" }, t("acting.label")), select));
  }
  parts.push(h("button", { type: "button", class: "secondary", id: "sign-out", onclick: () => {
    if (!confirmLeave()) return;
    signOut(t("signin.signedOut"));
  } }, t("session.signOut")));
  fill(session, parts);
  const links = [["#/activities", t("nav.activities")], ["#/new", t("nav.new")], ["#/invitations", t("nav.invitations")]];
  if (app.caps.sources) links.push(["#/calendars", t("nav.calendars")]);
  const current = route().name;
  fill($("nav"), h("ul", {}, links.map(([href, text]) => h("li", {}, h("a", {
    href, "aria-current": href === `#/${current}` ? "page" : null,
  }, text)))));
  $("nav").setAttribute("aria-label", t("nav.label"));
  $("nav").hidden = false;
}

// ---- routing ----

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, id] = hash.split("/");
  return { name: name || "activities", id: id ? decodeURIComponent(id) : null };
}

function go(hash, { quiet } = {}) {
  if (location.hash === hash) return;
  app.quietNavigation = Boolean(quiet);
  if (quiet) {
    history.replaceState(null, "", `/publish${hash}`);
    app.lastHash = hash;
    app.quietNavigation = false;
  } else {
    location.hash = hash;
  }
}

function confirmLeave() {
  if (!app.dirty()) return true;
  if (window.confirm(t("unsaved.confirm"))) {
    app.dirty = () => false;
    return true;
  }
  return false;
}

window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#token=")) {
    takeTokenFromAddress();
    return;
  }
  if (!app.quietNavigation && !confirmLeave()) {
    history.replaceState(null, "", `/publish${app.lastHash}`);
    return;
  }
  app.quietNavigation = false;
  app.lastHash = location.hash;
  render();
});

window.addEventListener("beforeunload", (event) => {
  if (app.dirty()) {
    event.preventDefault();
    event.returnValue = "";
  }
});

function render() {
  app.dirty = () => false;
  const main = $("main");
  if (!app.viewer) {
    renderSignIn(main);
  } else {
    const { name, id } = route();
    renderChrome();
    if (name === "new") renderEditor(main, null);
    else if (name === "edit" && id) renderEditor(main, id);
    else if (name === "invitations") renderInvitations(main);
    else if (name === "calendars" && app.caps.sources) renderCalendars(main);
    else renderActivities(main);
  }
}

/** A screen's heading, focused so screen readers and keyboards start there. */
function screenTitle(text) {
  const title = h("h1", { tabindex: "-1", id: "screen-title" }, text);
  requestAnimationFrame(() => title.focus());
  return title;
}

/** An alert region for a screen's failures. */
function alertBox() {
  return h("div", { class: "alert", role: "alert", id: "screen-alert" });
}

function showAlert(box, text, kind = "error") {
  box.className = `alert alert-${kind}`;
  box.textContent = text;
}

// ---- sign-in ----

function renderSignIn(main) {
  const id = "token-input";
  const message = h("div", { class: "alert", role: "alert", id: "signin-message" });
  if (app.signInMessage) showAlert(message, app.signInMessage, "info");
  const input = h("input", { id, type: "password", autocomplete: "off", spellcheck: "false", required: true,
    "aria-describedby": "token-hint" });
  const button = h("button", { type: "submit", class: "primary" }, t("signin.submit"));
  const form = h("form", { class: "signin", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    const refused = await signIn(input.value);
    button.disabled = false;
    button.removeAttribute("aria-busy");
    if (refused) {
      showAlert(message, refused);
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } else {
      app.signInMessage = "";
      go("#/activities", { quiet: true });
      render();
    }
  } },
  h("label", { for: id }, t("signin.label")),
  h("p", { class: "hint", id: "token-hint" }, t("signin.hint")),
  input, button);
  fill(main, h("section", { class: "screen signin-screen" }, screenTitle(t("signin.title")), h("p", {}, t("signin.intro")), message, form));
}

/** `/publish#token=<JWT>`: the token is taken out of the address bar at once. */
async function takeTokenFromAddress() {
  const token = decodeURIComponent(location.hash.slice("#token=".length));
  history.replaceState(null, "", "/publish");
  app.lastHash = "";
  const refused = await signIn(token, { fromLink: true });
  if (refused) {
    app.token = null;
    app.viewer = null;
    app.signInMessage = refused;
    renderChrome();
    render();
    $("signin-message")?.setAttribute("data-kind", "refused");
    showAlert($("signin-message"), refused);
    return;
  }
  go("#/activities", { quiet: true });
  render();
}

// ---- the city's activities ----

/** Whether the city is one of the activity's cities: a host, or its accepted venue city. */
function ours(a) {
  return isSecretariat() || (a.hosts || []).some((c) => c.slug === ownCity()) || a.venueCity?.slug === ownCity();
}

function editable(a) {
  return !a.source && ours(a);
}

function deletable(a) {
  return isSecretariat() || a.publishedBy?.slug === ownCity();
}

function statusBadge(status) {
  return h("span", { class: `badge badge-${status.toLowerCase()}` }, t(`status.${status}`));
}

async function renderActivities(main) {
  // A city's staff may look at the whole network, to join other cities'
  // activities as participants.
  const network = !isSecretariat() && app.list.scope === "network";
  const city = network ? null : cityInScope();
  const heading = city ? t("activities.title.city", { city: cityName(city) }) : t("activities.title.network");
  const alert = alertBox();
  const results = h("div", { class: "results", "aria-live": "polite", "aria-busy": "true" });
  const text = h("input", { id: "search-text", type: "search", value: app.list.text, autocomplete: "off" });
  const status = h("select", { id: "search-status" },
    ["ALL", "DRAFT", "PUBLISHED", "CANCELLED"].map((s) => h("option", { value: s, selected: app.list.status === s }, t(`filter.status.${s}`))));
  const kind = h("select", { id: "search-kind" }, h("option", { value: "" }, t("filter.anyKind")),
    KINDS.map((k) => h("option", { value: k, selected: app.list.kind === k }, t(`kind.${k}`))));
  const field = h("select", { id: "search-field" }, h("option", { value: "" }, t("filter.anyField")),
    FIELDS.map((f) => h("option", { value: f, selected: app.list.field === f }, t(`field.${f}`))));
  const scope = isSecretariat() ? null : h("select", { id: "search-scope" },
    ["city", "network"].map((s) => h("option", { value: s, selected: app.list.scope === s }, t(`filter.scope.${s}`))));
  const search = h("form", { class: "filters", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const rescoped = scope && scope.value !== app.list.scope;
    Object.assign(app.list, { text: text.value, status: status.value, kind: kind.value, field: field.value, cursors: [null], page: 0 });
    if (rescoped) {
      app.list.scope = scope.value;
      render();
      return;
    }
    load();
  } },
  scope ? h("div", { class: "field" }, h("label", { for: "search-scope" }, t("filter.scope")), scope) : null,
  h("div", { class: "field" }, h("label", { for: "search-text" }, t("filter.text")), text),
  h("div", { class: "field" }, h("label", { for: "search-status" }, t("filter.status")), status),
  h("div", { class: "field" }, h("label", { for: "search-kind" }, t("filter.kind")), kind),
  h("div", { class: "field" }, h("label", { for: "search-field" }, t("filter.field")), field),
  h("button", { type: "submit" }, t("filter.apply")));
  fill(main, h("section", { class: "screen" },
    h("div", { class: "screen-head" }, screenTitle(heading), h("a", { class: "button primary", href: "#/new" }, t("activities.new"))),
    isSecretariat() && !city ? h("p", { class: "hint" }, t("activities.secretariat.hint")) : null,
    search, alert, results));

  async function load() {
    results.setAttribute("aria-busy", "true");
    const filter = {
      statuses: app.list.status === "ALL" ? ["DRAFT", "PUBLISHED", "CANCELLED"] : [app.list.status],
    };
    if (city) filter.cities = [city];
    if (app.list.text.trim()) filter.text = app.list.text.trim();
    if (app.list.kind) filter.kinds = [app.list.kind];
    if (app.list.field) filter.fields = [app.list.field];
    let data;
    try {
      data = await call(Q.activities, { filter, first: PAGE_SIZE, after: app.list.cursors[app.list.page] });
    } catch (error) {
      results.removeAttribute("aria-busy");
      showAlert(alert, explainFailure(error));
      return;
    }
    const page = data.activities;
    if (page.pageInfo.hasNextPage) app.list.cursors[app.list.page + 1] = page.pageInfo.endCursor;
    const first = app.list.page * PAGE_SIZE + 1;
    const shown = page.nodes.length
      ? t("activities.count", { from: first, to: first + page.nodes.length - 1, total: page.totalCount })
      : t("activities.none");
    const pager = h("div", { class: "pager" },
      h("button", { type: "button", disabled: app.list.page === 0, onclick: () => { app.list.page -= 1; load(); } }, t("pager.previous")),
      h("button", { type: "button", disabled: !page.pageInfo.hasNextPage, onclick: () => { app.list.page += 1; load(); } }, t("pager.next")));
    fill(results, h("p", { class: "count" }, shown),
      h("ul", { class: "cards", id: "activity-list" }, page.nodes.map((a) => activityCard(a, alert, load))),
      page.totalCount > PAGE_SIZE ? pager : null);
    results.removeAttribute("aria-busy");
  }
  load();
}

function activityCard(a, alert, reload) {
  const imported = Boolean(a.source);
  const sourceLink = a.sourceUrl || a.source?.url;
  const titleId = `activity-${a.id}-title`;
  const actions = [];
  if (editable(a)) actions.push(h("a", { class: "button", href: `#/edit/${encodeURIComponent(a.id)}` }, t("action.edit")));
  if (a.status !== "DRAFT") actions.push(h("a", { class: "button secondary", href: `/activities/${encodeURIComponent(a.slug)}` }, t("action.view")));
  const joined = (a.participants || []).some((c) => c.slug === ownCity());
  if (!ours(a) && !isSecretariat() && !joined && a.status === "PUBLISHED") {
    actions.push(h("button", { type: "button", class: "secondary", "aria-describedby": titleId, onclick: async (e) => {
      if (!(await confirmDialog(t("join.title"), t("join.body", { title: a.title }), t("join.confirm")))) return;
      e.target.disabled = true;
      try {
        await call(Q.join, { id: a.id });
        announce(t("join.done", { title: a.title }));
        reload();
      } catch (error) {
        e.target.disabled = false;
        showAlert(alert, explainFailure(error));
      }
    } }, t("action.join")));
  }
  if (!ours(a) && !isSecretariat() && joined) {
    // The city joined it as a participant.
    actions.push(h("button", { type: "button", class: "secondary", "aria-describedby": titleId, onclick: async (e) => {
      if (!(await confirmDialog(t("leave.title"), t("leave.body", { title: a.title }), t("leave.confirm")))) return;
      e.target.disabled = true;
      try {
        await call(Q.leave, { id: a.id });
        announce(t("leave.done", { title: a.title }));
        reload();
      } catch (error) {
        e.target.disabled = false;
        showAlert(alert, explainFailure(error));
      }
    } }, t("action.leave")));
  }
  if (imported && ours(a)) {
    actions.push(h("button", { type: "button", class: "secondary", onclick: async (e) => {
      e.target.disabled = true;
      try {
        await call(Q.detach, { id: a.id });
        announce(t("detach.done", { title: a.title }));
        reload();
      } catch (error) {
        e.target.disabled = false;
        showAlert(alert, explainFailure(error));
      }
    } }, t("action.detach")));
  }
  const pending = (a.invitations || []).filter((i) => i.state === "PENDING");
  return h("li", { class: "card", dataset: { id: a.id, slug: a.slug, status: a.status }, "aria-labelledby": titleId },
    h("h2", { id: titleId, class: "card-title" }, a.title),
    h("p", { class: "meta" }, statusBadge(a.status), " ",
      imported ? h("span", { class: "badge badge-imported" }, t("activities.imported")) : null, " ",
      h("span", {}, formatDates(a)), a.venue ? h("span", {}, ` · ${a.venue}`) : null),
    imported ? h("p", { class: "imported-note" }, t("activities.importedNote"), " ",
      sourceLink ? h("a", { href: sourceLink, rel: "noopener noreferrer", target: "_blank" }, t("activities.source")) : null) : null,
    !editable(a) && !imported ? h("p", { class: "hint" }, t(ours(a) || joined || isSecretariat() ? "activities.readOnly" : "activities.others")) : null,
    pending.length ? h("p", { class: "hint" }, t("activities.pendingInvitations", {
      cities: pending.map((i) => `${i.city.name} (${t(`role.${i.role}`)})`).join(", "),
    })) : null,
    a.cancelReason ? h("p", { class: "hint" }, t("activities.cancelReason", { reason: a.cancelReason })) : null,
    actions.length ? h("div", { class: "actions" }, actions) : null);
}

// ---- the editor ----

async function renderEditor(main, id) {
  const alert = alertBox();
  let activity = null;
  if (id) {
    fill(main, h("section", { class: "screen" }, screenTitle(t("editor.loading"))));
    try {
      activity = (await call(Q.activity, { id })).activity;
    } catch (error) {
      fill(main, h("section", { class: "screen" }, screenTitle(t("editor.title.edit.unknown")), alert));
      showAlert(alert, explainFailure(error));
      return;
    }
    if (!activity) {
      fill(main, h("section", { class: "screen" }, screenTitle(t("editor.title.edit.unknown")), h("p", {}, t("editor.missing")),
        h("a", { href: "#/activities" }, t("nav.activities"))));
      return;
    }
  }
  showEditor(main, activity, valuesOf(activity, app.caps.times), alert);
}

/**
 * The editor for `activity` (null: a new one) with the form showing
 * `values` (its own, or the user's edit reapplied onto a newer version).
 */
function showEditor(main, activity, values, alert) {
  const base = valuesOf(activity, app.caps.times);
  const actingFor = isSecretariat() ? app.actingFor || null : null;
  if (!activity && actingFor && !values.coHosts.includes(actingFor)) {
    values.coHosts = [actingFor, ...values.coHosts];
  }
  const form = activityForm(values, { cities: app.cities, times: app.caps.times, token: app.token, actingFor });
  form.rebase(activity ? base : valuesOf(null, app.caps.times));
  const conflictBox = h("div", { class: "conflict", tabindex: "-1", hidden: true, role: "alert", id: "conflict" });
  // Failures of an action are said beside its buttons, where the user is.
  const actionAlert = h("div", { class: "alert", role: "alert", id: "action-alert" });
  const dirtyNote = h("p", { class: "dirty-note hint", "aria-live": "polite" });
  const updateDirty = () => { dirtyNote.textContent = form.isDirty() ? t("editor.unsaved") : ""; };
  form.onChange(updateDirty);
  updateDirty();
  app.dirty = () => form.isDirty();

  let busy = false;
  let attempt = { key: newKey(), body: "" };
  const buttons = [];
  const button = (text, kind, action, extra = {}) => {
    const b = h("button", { type: "button", class: kind, ...extra, onclick: () => run(b, action) }, text);
    buttons.push(b);
    return b;
  };

  /** One action at a time: a second click while the first runs does nothing. */
  async function run(b, action) {
    if (busy) return;
    busy = true;
    for (const other of buttons) other.disabled = true;
    b.setAttribute("aria-busy", "true");
    actionAlert.textContent = "";
    actionAlert.className = "alert";
    try {
      await action();
    } catch (error) {
      handleFailure(error);
    } finally {
      busy = false;
      for (const other of buttons) other.disabled = false;
      b.removeAttribute("aria-busy");
    }
  }

  function handleFailure(error) {
    if (error instanceof ApiError && error.code === "BAD_USER_INPUT") {
      form.showServerErrors(error);
    } else if (error instanceof ApiError && error.code === "CONFLICT" && error.field === "expectedVersion") {
      // publishDraft's version check: the draft changed since it was opened.
      showAlert(actionAlert, t("editor.changedMeanwhile"));
    } else if (error instanceof ApiError && error.code === "CONFLICT" && error.field) {
      form.showServerErrors(error);
    } else if (error instanceof NetworkError) {
      showAlert(actionAlert, t("error.network.form"));
    } else if (!(error instanceof ApiError && error.code === "UNAUTHENTICATED")) {
      showAlert(actionAlert, explainFailure(error));
    }
  }

  function saved(updated, message) {
    form.rebase(valuesOf(updated, app.caps.times));
    app.dirty = () => false;
    announce(message);
    go(`#/edit/${encodeURIComponent(updated.id)}`, { quiet: true });
    showEditor(main, updated, valuesOf(updated, app.caps.times), alertBox());
    const box = $("screen-alert");
    if (box) showAlert(box, message, "success");
  }

  async function create(draft) {
    if (!form.check()) return;
    const input = inputOf(form.values());
    const body = JSON.stringify({ input, draft });
    // One key per form and content: a double click or a retry after a
    // network error sends the same key and publishes once.
    if (attempt.body && attempt.body !== body) attempt = { key: newKey(), body };
    attempt.body = body;
    const data = await call(Q.publish, { input, draft, key: attempt.key });
    saved(data.publishActivity, draft ? t("editor.savedDraft") : t("editor.published"));
  }

  async function update() {
    if (!form.check()) return null;
    const names = form.changed();
    if (names.length === 0) return activity;
    try {
      const data = await call(Q.update, { id: activity.id, patch: patchOf(form.values(), names), version: activity.version });
      // Saved: the next step (publishing the draft) or a retry starts here.
      activity = data.updateActivity;
      form.rebase(valuesOf(activity, app.caps.times));
      return activity;
    } catch (error) {
      if (error instanceof ApiError && error.code === "CONFLICT" && error.field === "expectedVersion") {
        await showConflict();
        return null;
      }
      throw error;
    }
  }

  /** Someone changed the activity meanwhile: what changed, and the user's choice. */
  async function showConflict() {
    const current = (await call(Q.activity, { id: activity.id })).activity;
    if (!current) {
      showAlert(actionAlert, t("editor.goneMeanwhile"));
      return;
    }
    const base = form.base();
    const theirs = valuesOf(current, app.caps.times);
    const mine = form.values();
    const myNames = form.changed();
    const theirNames = changedFields(base, theirs);
    const stillDifferent = theirNames.filter((n) => JSON.stringify(theirs[n]) !== JSON.stringify(mine[n]));
    const mineLeft = myNames.filter((n) => JSON.stringify(theirs[n]) !== JSON.stringify(mine[n]));
    if (mineLeft.length === 0) {
      // What the user meant is what the activity says now (a retry of a
      // change that went through): nothing to resolve.
      saved(current, t("editor.saved"));
      return;
    }
    const label = (n) => t(`field.label.${n}`);
    fill(conflictBox,
      h("h2", {}, t("conflict.title")),
      h("p", {}, t("conflict.intro", { version: current.version })),
      stillDifferent.length ? h("ul", { class: "conflict-list" }, stillDifferent.map((n) => h("li", { dataset: { field: n } },
        h("strong", {}, label(n)), `: ${describeValue(n, base[n])} → ${describeValue(n, theirs[n])}`,
        myNames.includes(n) ? h("span", { class: "both" }, ` ${t("conflict.yoursToo", { value: describeValue(n, mine[n]) })}`) : null)))
        : h("p", {}, t("conflict.sameFields")),
      h("p", {}, t("conflict.yours", { fields: mineLeft.map(label).join(", ") })),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "primary", id: "conflict-reapply", onclick: () => {
          const merged = { ...theirs };
          for (const n of mineLeft) merged[n] = mine[n];
          showEditor(main, current, merged, alertBox());
          announce(t("conflict.reapplied"));
          requestAnimationFrame(() => $("save")?.click());
        } }, t("conflict.reapply")),
        h("button", { type: "button", class: "secondary", id: "conflict-discard", onclick: () => {
          app.dirty = () => false;
          showEditor(main, current, theirs, alertBox());
          announce(t("conflict.discarded"));
        } }, t("conflict.discard"))));
    conflictBox.hidden = false;
    conflictBox.focus();
  }

  const actions = [];
  if (!activity) {
    actions.push(button(t("action.saveDraft"), "secondary", () => create(true), { id: "save-draft" }));
    actions.push(button(t("action.publish"), "primary", () => create(false), { id: "publish" }));
  } else if (!activity.source) {
    actions.push(button(activity.status === "DRAFT" ? t("action.saveDraft") : t("action.save"), activity.status === "DRAFT" ? "secondary" : "primary", async () => {
      if (!form.isDirty()) { announce(t("editor.nothingToSave")); return; }
      const updated = await update();
      if (updated) saved(updated, t("editor.saved"));
    }, { id: "save" }));
    if (activity.status === "DRAFT") {
      actions.push(button(t("action.publish"), "primary", async () => {
        const updated = await update();
        if (!updated) return;
        const data = await call(Q.publishDraft, { id: updated.id, version: updated.version });
        saved(data.publishDraft, t("editor.published"));
      }, { id: "publish" }));
    }
    if (activity.status === "PUBLISHED") {
      actions.push(button(t("action.cancel"), "danger", async () => {
        const reason = await askCancelReason(activity);
        if (reason === null) return;
        const data = await call(Q.cancel, { id: activity.id, reason: reason || null });
        saved(data.cancelActivity, t("editor.cancelled"));
      }, { id: "cancel-activity" }));
    }
  }
  if (activity && deletable(activity)) {
    actions.push(button(t("action.delete"), "danger", async () => {
      if (!(await confirmDialog(t("delete.title"), t("delete.body", { title: activity.title }), t("delete.confirm")))) return;
      await call(Q.remove, { id: activity.id });
      app.dirty = () => false;
      go("#/activities", { quiet: true });
      render();
      announce(t("editor.deleted", { title: activity.title }));
    }, { id: "delete-activity" }));
  }

  const heading = activity ? t("editor.title.edit", { title: activity.title }) : t("editor.title.new");
  const facts = activity ? h("p", { class: "meta" }, statusBadge(activity.status), " ",
    t("editor.version", { version: activity.version, when: formatDate(activity.updatedAt) }),
    activity.status !== "DRAFT" ? h("span", {}, " · ", h("a", { href: `/activities/${encodeURIComponent(activity.slug)}` }, t("action.view"))) : null) : null;
  const readOnly = activity?.source ? h("div", { class: "alert alert-info" }, t("editor.imported"), " ",
    h("a", { href: activity.sourceUrl || activity.source.url, rel: "noopener noreferrer", target: "_blank" }, t("activities.source"))) : null;
  const forCity = !activity && actingFor ? h("p", { class: "hint" }, t("editor.secretariatFor", { city: cityName(actingFor) })) : null;
  fill(main, h("section", { class: "screen editor" },
    screenTitle(heading), facts, forCity, readOnly, alert, conflictBox,
    activity?.source ? null : form.element,
    actionAlert,
    activity?.source ? null : h("div", { class: "actions sticky" }, actions, dirtyNote),
    activity?.source && actions.length ? h("div", { class: "actions" }, actions) : null));
}

// ---- dialogs ----

function openDialog(title, body, buttonsFor) {
  const dialog = $("dialog");
  return new Promise((resolve) => {
    const titleId = "dialog-title";
    const finish = (value) => { dialog.close(); resolve(value); };
    fill(dialog, h("h2", { id: titleId }, title), body, h("div", { class: "actions" }, buttonsFor(finish)));
    dialog.setAttribute("aria-labelledby", titleId);
    dialog.addEventListener("cancel", () => resolve(null), { once: true });
    dialog.showModal();
  });
}

function confirmDialog(title, text, confirmText) {
  return openDialog(title, h("p", {}, text), (finish) => [
    h("button", { type: "button", class: "danger", id: "dialog-confirm", onclick: () => finish(true) }, confirmText),
    h("button", { type: "button", class: "secondary", id: "dialog-back", autofocus: true, onclick: () => finish(false) }, t("dialog.back")),
  ]).then((v) => v === true);
}

function askCancelReason(activity) {
  const reason = h("textarea", { id: "cancel-reason", rows: 3 });
  return openDialog(t("cancel.title"), h("div", {},
    h("p", {}, t("cancel.body", { title: activity.title })),
    h("label", { for: "cancel-reason" }, t("cancel.reason")), reason), (finish) => [
    h("button", { type: "button", class: "danger", id: "dialog-confirm", onclick: () => finish(reason.value.trim()) }, t("cancel.confirm")),
    h("button", { type: "button", class: "secondary", id: "dialog-back", onclick: () => finish(null) }, t("dialog.back")),
  ]);
}

// ---- invitations ----

async function renderInvitations(main) {
  const alert = alertBox();
  const received = h("section", { class: "panel", "aria-labelledby": "received-title" },
    h("h2", { id: "received-title" }, t("invitations.received")));
  const sent = h("section", { class: "panel", "aria-labelledby": "sent-title" }, h("h2", { id: "sent-title" }, t("invitations.sent")));
  fill(main, h("section", { class: "screen" }, screenTitle(t("invitations.title")), alert, received, sent));

  async function loadReceived() {
    if (isSecretariat()) {
      received.append(h("p", { class: "hint" }, t("invitations.secretariat")));
      return;
    }
    let data;
    try {
      data = await call(Q.invitations, {});
    } catch (error) {
      showAlert(alert, explainFailure(error));
      return;
    }
    const list = data.viewer?.invitations || [];
    const me = ownCity();
    fill(received, h("h2", { id: "received-title" }, t("invitations.received")),
      list.length === 0 ? h("p", {}, t("invitations.noneReceived")) : h("ul", { class: "cards", id: "received-list" }, list.map((a) => {
        const roles = a.invitations.filter((i) => i.city.slug === me && i.state === "PENDING").map((i) => t(`role.${i.role}`));
        const from = a.publishedBy?.name || t("invitations.fromSecretariat");
        const titleId = `inv-${a.id}`;
        const answer = (query, done) => async (e) => {
          for (const b of e.target.parentElement.querySelectorAll("button")) b.disabled = true;
          try {
            await call(query, { id: a.id });
            announce(done);
            showAlert(alert, done, "success");
            loadReceived();
          } catch (error) {
            for (const b of e.target.parentElement.querySelectorAll("button")) b.disabled = false;
            showAlert(alert, explainFailure(error));
          }
        };
        return h("li", { class: "card", dataset: { id: a.id, slug: a.slug }, "aria-labelledby": titleId },
          h("h3", { id: titleId, class: "card-title" }, a.title),
          h("p", { class: "meta" }, statusBadge(a.status), " ", formatDates(a)),
          h("p", {}, t("invitations.from", { city: from, roles: roles.join(", ") })),
          h("div", { class: "actions" },
            h("button", { type: "button", class: "primary", "aria-describedby": titleId, onclick: answer(Q.accept, t("invitations.accepted", { title: a.title })) }, t("invitations.accept")),
            h("button", { type: "button", class: "secondary", "aria-describedby": titleId, onclick: answer(Q.decline, t("invitations.declined", { title: a.title })) }, t("invitations.decline"))));
      })));
  }

  async function loadSent() {
    const city = cityInScope();
    if (!city) {
      sent.append(h("p", { class: "hint" }, t("invitations.chooseCity")));
      return;
    }
    let data;
    try {
      data = await call(Q.activities, { filter: { cities: [city], statuses: ["DRAFT", "PUBLISHED", "CANCELLED"] }, first: 100 });
    } catch (error) {
      showAlert(alert, explainFailure(error));
      return;
    }
    const rows = [];
    for (const a of data.activities.nodes) {
      for (const i of a.invitations || []) {
        if (i.city.slug === city) continue;
        rows.push(h("tr", {}, h("th", { scope: "row" }, a.title), h("td", {}, i.city.name), h("td", {}, t(`role.${i.role}`)),
          h("td", {}, h("span", { class: `badge badge-${i.state.toLowerCase()}` }, t(`invitation.${i.state}`)))));
      }
    }
    sent.append(rows.length === 0 ? h("p", {}, t("invitations.noneSent")) : h("div", { class: "table-wrap" }, h("table", { id: "sent-table" },
      h("thead", {}, h("tr", {}, [t("invitations.col.activity"), t("invitations.col.city"), t("invitations.col.role"), t("invitations.col.state")]
        .map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows))));
  }
  loadReceived();
  loadSent();
}

// ---- calendars ----

async function renderCalendars(main) {
  const alert = alertBox();
  const list = h("div", { class: "sources", "aria-busy": "true" });
  const city = cityInScope();
  const kind = h("select", { id: "source-kind" }, ["ICALENDAR", "JSON_LD"].map((k) => h("option", { value: k }, t(`source.kind.${k}`))));
  const url = h("input", { id: "source-url", type: "url", inputmode: "url", spellcheck: "false", autocomplete: "off", "aria-describedby": "source-url-hint source-url-error" });
  const urlError = h("p", { class: "field-error", id: "source-url-error", hidden: true });
  const defaultKind = h("select", { id: "source-default-kind" }, KINDS.map((k) => h("option", { value: k, selected: k === "OTHER" }, t(`kind.${k}`))));
  const defaultFormat = h("select", { id: "source-default-format" }, FORMATS.map((f) => h("option", { value: f }, t(`format.${f}`))));
  const connectButton = h("button", { type: "submit", class: "primary" }, t("sources.connect"));
  const connect = h("form", { class: "connect", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    urlError.hidden = true;
    url.removeAttribute("aria-invalid");
    connectButton.disabled = true;
    const input = { kind: kind.value, url: url.value.trim(), defaults: { kind: defaultKind.value, format: defaultFormat.value } };
    if (isSecretariat()) input.city = city;
    try {
      const connected = (await call(Q.connectSource, { input })).connectSource;
      url.value = "";
      // Its first import now, so the staff see at once what it brings.
      try {
        await call(Q.syncSource, { id: connected.id });
      } catch {
        // The source is connected; its card shows how the run went.
      }
      announce(t("sources.connected"));
      showAlert(alert, t("sources.connected"), "success");
      load();
    } catch (error) {
      if (error instanceof ApiError && (error.code === "BAD_USER_INPUT" || error.code === "CONFLICT")) {
        urlError.textContent = explainFailure(error);
        urlError.hidden = false;
        url.setAttribute("aria-invalid", "true");
        url.focus();
      } else {
        showAlert(alert, explainFailure(error));
      }
    } finally {
      connectButton.disabled = false;
    }
  } },
  h("h2", {}, t("sources.connectTitle")),
  h("div", { class: "field" }, h("label", { for: "source-kind" }, t("sources.kind")), kind),
  h("div", { class: "field" }, h("label", { for: "source-url" }, t("sources.url")),
    h("p", { class: "hint", id: "source-url-hint" }, t("sources.urlHint")), url, urlError),
  h("div", { class: "field" }, h("label", { for: "source-default-kind" }, t("sources.defaultKind")), defaultKind),
  h("div", { class: "field" }, h("label", { for: "source-default-format" }, t("sources.defaultFormat")), defaultFormat),
  connectButton);
  fill(main, h("section", { class: "screen" }, screenTitle(t("sources.title")), h("p", {}, t("sources.intro")), alert,
    city ? connect : h("p", { class: "hint" }, t("sources.chooseCity")), list));

  async function act(query, variables, done) {
    try {
      await call(query, variables);
      announce(done);
      showAlert(alert, done, "success");
    } catch (error) {
      showAlert(alert, explainFailure(error));
    }
    load();
  }

  async function load() {
    list.setAttribute("aria-busy", "true");
    let data;
    try {
      data = await call(Q.sources, { city: city || null });
    } catch (error) {
      list.removeAttribute("aria-busy");
      showAlert(alert, explainFailure(error));
      return;
    }
    const sources = data.sources;
    fill(list, h("h2", {}, t("sources.listTitle")),
      sources.length === 0 ? h("p", {}, t("sources.none")) : h("ul", { class: "cards", id: "source-list" }, sources.map((s) => {
        const titleId = `source-${s.id}`;
        return h("li", { class: "card", dataset: { id: s.id }, "aria-labelledby": titleId },
          h("h3", { id: titleId, class: "card-title source-url" }, s.url),
          h("p", { class: "meta" }, h("span", { class: `badge badge-${s.lastStatus.toLowerCase()}` }, t(`source.status.${s.lastStatus}`)), " ",
            t(`source.kind.${s.kind}`), isSecretariat() ? ` · ${s.city.name}` : null),
          h("dl", { class: "facts" },
            h("div", {}, h("dt", {}, t("sources.lastRun")), h("dd", {}, s.lastRunAt ? formatDate(s.lastRunAt) : t("sources.never"))),
            h("div", {}, h("dt", {}, t("sources.lastChange")), h("dd", {}, s.lastChangeAt ? formatDate(s.lastChangeAt) : t("sources.never"))),
            h("div", {}, h("dt", {}, t("sources.imported")), h("dd", {}, String(s.importedCount))),
            h("div", {}, h("dt", {}, t("sources.nextRun")), h("dd", {}, s.nextRunAt ? formatDate(s.nextRunAt) : t("sources.notScheduled")))),
          s.lastError ? h("p", { class: "source-error" }, t("sources.lastError", { error: s.lastError })) : null,
          s.skippedItems.length ? h("details", {}, h("summary", {}, t("sources.skipped", { n: s.skippedItems.length })),
            h("ul", {}, s.skippedItems.map((i) => h("li", {}, `${i.uid}: ${i.reason}`)))) : null,
          h("div", { class: "actions" },
            h("button", { type: "button", "aria-describedby": titleId, disabled: s.paused,
              onclick: () => act(Q.syncSource, { id: s.id }, t("sources.synced")) }, t("sources.sync")),
            s.paused
              ? h("button", { type: "button", class: "secondary", "aria-describedby": titleId, onclick: () => act(Q.resumeSource, { id: s.id }, t("sources.resumed")) }, t("sources.resume"))
              : h("button", { type: "button", class: "secondary", "aria-describedby": titleId, onclick: () => act(Q.pauseSource, { id: s.id }, t("sources.paused")) }, t("sources.pause")),
            h("button", { type: "button", class: "danger", "aria-describedby": titleId, onclick: async () => {
              const keep = h("input", { type: "checkbox", id: "keep-activities" });
              const choice = await openDialog(t("sources.removeTitle"), h("div", {},
                h("p", {}, t("sources.removeBody", { url: s.url })),
                h("p", { class: "check" }, keep, h("label", { for: "keep-activities" }, t("sources.keep")))), (finish) => [
                h("button", { type: "button", class: "danger", id: "dialog-confirm", onclick: () => finish({ keep: keep.checked }) }, t("sources.remove")),
                h("button", { type: "button", class: "secondary", id: "dialog-back", onclick: () => finish(null) }, t("dialog.back")),
              ]);
              if (choice) act(Q.removeSource, { id: s.id, keep: choice.keep }, t("sources.removed"));
            } }, t("sources.remove"))));
      })));
    list.removeAttribute("aria-busy");
  }
  load();
}

// ---- start ----

async function start() {
  // The skip link moves focus; the address's fragment is the desk's route.
  $("skip").addEventListener("click", (e) => {
    e.preventDefault();
    $("main").focus();
  });
  setLanguage(initialLanguage(), false);
  renderChrome();
  if (location.hash.startsWith("#token=")) {
    await takeTokenFromAddress();
    return;
  }
  const kept = sessionStorage.getItem(TOKEN_KEY);
  if (kept) {
    const refused = await signIn(kept);
    if (refused) {
      sessionStorage.removeItem(TOKEN_KEY);
      app.signInMessage = refused;
    }
  }
  app.lastHash = location.hash;
  render();
}

start();
