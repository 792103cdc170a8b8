// cityhub publishing desk: the activity form. Every field of
// `ActivityInput`, read into an input (publish) or a patch (update, only
// what changed), and the server's errors shown next to the field their
// path names.

import { h, fill, t, newId, renderedMarkdown } from "./dom.js";
import { gql, ApiError, NetworkError, Q } from "./api.js";

export const KINDS = ["WORKSHOP", "EXHIBITION", "FESTIVAL", "RESIDENCY", "MEMBER_MEETING", "SUB_NETWORK_COLLABORATION",
  "INTERNATIONAL_CONFERENCE", "ANNUAL_MEETING", "OTHER"];
export const FORMATS = ["IN_PERSON", "ONLINE", "HYBRID"];
export const FIELDS = ["CRAFTS_AND_FOLK_ART", "DESIGN", "FILM", "GASTRONOMY", "LITERATURE", "MEDIA_ARTS", "MUSIC", "ARCHITECTURE"];
export const PRECISIONS = ["DAY", "MONTH", "YEAR"];
export const DOCUMENT_KINDS = ["COMMUNIQUE", "PUBLICATION", "PROGRAMME", "REPORT", "WEBSITE", "OTHER"];

const LISTS = ["coHosts", "organizations", "fields", "themes", "objectives"];
const OPTIONAL_TEXT = ["summary", "description", "venue", "venueCity", "startDate", "endDate"];
const TIMES = ["startTime", "endTime", "timeZone"];

/** The form's values for an activity as the API returned it (or empty ones). */
export function valuesOf(activity, times) {
  if (!activity) {
    const empty = { kind: "WORKSHOP", format: "IN_PERSON", title: "", slug: "", summary: "", description: "",
      startDate: "", endDate: "", datePrecision: "DAY", venue: "", venueCity: "", coHosts: [], organizations: [],
      fields: [], themes: [], objectives: [], documents: [] };
    if (times) Object.assign(empty, { startTime: "", endTime: "", timeZone: "" });
    return empty;
  }
  const named = (role) => (activity.invitations || [])
    .filter((i) => i.role === role && i.state !== "DECLINED").map((i) => i.city.slug);
  const publisher = activity.publishedBy?.slug;
  const coHosts = named("CO_HOST");
  for (const host of activity.hosts || []) {
    if (host.slug !== publisher && !coHosts.includes(host.slug)) coHosts.push(host.slug);
  }
  const venue = named("VENUE");
  const values = {
    kind: activity.kind, format: activity.format, title: activity.title || "", slug: activity.slug || "",
    summary: activity.summary || "", description: activity.description || "",
    startDate: activity.startDate || "", endDate: activity.endDate || "", datePrecision: activity.datePrecision || "DAY",
    venue: activity.venue || "", venueCity: activity.venueCity?.slug || venue[0] || "",
    coHosts, organizations: [...(activity.organizations || [])], fields: [...(activity.fields || [])],
    themes: [...(activity.themes || [])], objectives: [...(activity.objectives || [])],
    documents: (activity.documents || []).map((d) => ({ kind: d.kind, title: d.title || "", url: d.url || "",
      issuedOn: d.issuedOn || "", issuedPrecision: d.issuedPrecision || "DAY", editors: [...(d.editors || [])] })),
  };
  if (times) {
    values.startTime = (activity.startTime || "").slice(0, 5);
    values.endTime = (activity.endTime || "").slice(0, 5);
    values.timeZone = activity.timeZone || "";
  }
  return values;
}

function documentInput(d) {
  const doc = { kind: d.kind, title: d.title.trim(), issuedPrecision: d.issuedPrecision || "DAY" };
  if (d.url.trim()) doc.url = d.url.trim();
  if (d.issuedOn) doc.issuedOn = d.issuedOn;
  if (d.editors.length) doc.editors = d.editors;
  return doc;
}

/** `ActivityInput` for `publishActivity`: empty optional fields left out. */
export function inputOf(values) {
  const input = { kind: values.kind, format: values.format, title: values.title.trim(), datePrecision: values.datePrecision };
  if (values.slug.trim()) input.slug = values.slug.trim();
  for (const name of OPTIONAL_TEXT) {
    const value = name === "description" || name === "summary" ? values[name] : values[name].trim();
    if (value.trim()) input[name] = value;
  }
  for (const name of LISTS) if (values[name].length) input[name] = values[name];
  if (values.documents.length) input.documents = values.documents.map(documentInput);
  for (const name of TIMES) if (name in values && values[name]) input[name] = values[name];
  return input;
}

/** The fields that differ between two sets of values. */
export function changedFields(before, after) {
  return Object.keys(after).filter((name) => JSON.stringify(before[name]) !== JSON.stringify(after[name]));
}

/** `ActivityPatch` for `updateActivity`: only `names`, cleared ones as null. */
export function patchOf(values, names) {
  const input = inputOf(values);
  const patch = {};
  for (const name of names) {
    if (name === "slug" && !values.slug.trim()) continue;
    if (name in input) patch[name] = input[name];
    else if (LISTS.includes(name) || name === "documents") patch[name] = [];
    else patch[name] = null;
  }
  return patch;
}

/** A field's value as words, for the conflict summary. */
export function describeValue(name, value) {
  if (value === null || value === undefined || value === "" || (Array.isArray(value) && value.length === 0)) {
    return t("value.none");
  }
  if (name === "kind") return t(`kind.${value}`);
  if (name === "format") return t(`format.${value}`);
  if (name === "datePrecision") return t(`precision.${value}`);
  if (name === "fields") return value.map((f) => t(`field.${f}`)).join(", ");
  if (name === "documents") return value.map((d) => d.title).join(", ");
  if (Array.isArray(value)) return value.join(", ");
  const text = String(value);
  return text.length > 120 ? `${text.slice(0, 117)}…` : text;
}

/** The form's key for an error's input path: `input.documents[2].url` → `documents.2.url`. */
export function pathKey(path) {
  return String(path || "")
    .replace(/^(input|patch)\./, "")
    .replace(/\[(\d+)\]/g, ".$1");
}

/**
 * The activity form. `ctx`: { cities: [{slug, name}], times: bool, token,
 * actingFor: slug|null (the secretariat's chosen city) }. Returns the
 * element and what the screen needs: `values()`, `isDirty()`, `reset(values)`,
 * `showErrors(errors)` (server errors) and `check()` (client hints).
 */
export function activityForm(initial, ctx) {
  let base = structuredClone(initial);
  const controls = new Map(); // path key → { el (focusable), message (element) }
  const summary = h("div", { class: "error-summary", tabindex: "-1", hidden: true, role: "alert" });
  const form = h("form", { class: "activity-form", novalidate: true });
  const state = structuredClone(initial);

  const described = (key, control, hint) => {
    const message = h("p", { class: "field-error", id: newId("err"), hidden: true });
    const ids = [message.id];
    let hintEl = null;
    if (hint) {
      hintEl = h("p", { class: "hint", id: newId("hint") }, hint);
      ids.unshift(hintEl.id);
    }
    control.setAttribute("aria-describedby", ids.join(" "));
    controls.set(key, { el: control, message });
    return { hintEl, message };
  };

  const textField = (name, { type = "text", required = false, hint, multiline = false, maxlength, list, autocomplete } = {}) => {
    const id = newId(name);
    const control = multiline
      ? h("textarea", { id, name, rows: name === "description" ? 10 : 3, required, maxlength })
      : h("input", { id, name, type, required, maxlength, list, autocomplete: autocomplete || "off", spellcheck: type === "text" ? "true" : "false" });
    control.value = state[name] ?? "";
    control.addEventListener("input", () => { state[name] = control.value; onChange(); });
    const { hintEl, message } = described(name, control, hint);
    return h("div", { class: `field field-${name}` },
      h("label", { for: id }, t(`field.label.${name}`), required ? h("span", { class: "required" }, ` ${t("form.required")}`) : null),
      hintEl, control, message);
  };

  const selectField = (name, options, prefix) => {
    const id = newId(name);
    const control = h("select", { id, name },
      options.map((o) => h("option", { value: o, selected: state[name] === o }, t(`${prefix}.${o}`))));
    control.addEventListener("change", () => { state[name] = control.value; onChange(); });
    const { message } = described(name, control);
    return h("div", { class: `field field-${name}` }, h("label", { for: id }, t(`field.label.${name}`)), control, message);
  };

  /** A list of short texts: a box to type one, Add, and each item with Remove. */
  const listField = (name, { hint, list } = {}) => {
    const id = newId(name);
    const input = h("input", { id, type: "text", list, autocomplete: "off" });
    const items = h("ul", { class: "chips", "aria-label": t(`field.label.${name}`) });
    const render = () => {
      fill(items, state[name].map((item, index) => h("li", {},
        h("span", {}, item),
        h("button", { type: "button", class: "chip-remove", "aria-label": t("list.remove", { item }),
          onclick: () => { state[name].splice(index, 1); render(); onChange(); input.focus(); } }, "×"))));
    };
    const add = () => {
      const parts = input.value.split(/[,;\n]/).map((s) => s.trim()).filter(Boolean);
      for (const part of parts) if (!state[name].includes(part)) state[name].push(part);
      input.value = "";
      render();
      onChange();
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); add(); }
    });
    const { hintEl, message } = described(name, input, hint);
    render();
    return h("div", { class: `field list-field field-${name}` },
      h("label", { for: id }, t(`field.label.${name}`)), hintEl,
      h("div", { class: "list-add" }, input, h("button", { type: "button", onclick: add }, t("list.add"))),
      items, message);
  };

  const fieldsField = () => {
    const group = h("fieldset", { class: "field checks field-fields", tabindex: "-1" },
      h("legend", {}, t("field.label.fields")),
      FIELDS.map((f) => {
        const id = newId("f");
        const box = h("input", { type: "checkbox", id, value: f, checked: state.fields.includes(f) });
        box.addEventListener("change", () => {
          state.fields = FIELDS.filter((x) => (x === f ? box.checked : state.fields.includes(x)));
          onChange();
        });
        return h("span", { class: "check" }, box, h("label", { for: id }, t(`field.${f}`)));
      }));
    const message = h("p", { class: "field-error", id: newId("err"), hidden: true });
    group.setAttribute("aria-describedby", message.id);
    group.append(message);
    controls.set("fields", { el: group, message });
    return group;
  };

  const documentsBox = h("div", { class: "documents" });
  const renderDocuments = () => {
    for (const key of [...controls.keys()]) if (key.startsWith("documents.")) controls.delete(key);
    fill(documentsBox, state.documents.map((doc, index) => {
      const part = (field, control, label) => {
        const id = newId(`doc-${field}`);
        control.id = id;
        const key = `documents.${index}.${field}`;
        const { message } = described(key, control);
        return h("div", { class: `field field-doc-${field}` }, h("label", { for: id }, label), control, message);
      };
      const bind = (control, field, read = (c) => c.value) => {
        control.addEventListener(control.tagName === "SELECT" ? "change" : "input", () => { doc[field] = read(control); onChange(); });
        return control;
      };
      const kind = bind(h("select", {}, DOCUMENT_KINDS.map((k) => h("option", { value: k, selected: doc.kind === k }, t(`document.${k}`)))), "kind");
      const title = bind(h("input", { type: "text", value: doc.title }), "title");
      const url = bind(h("input", { type: "url", value: doc.url, inputmode: "url", spellcheck: "false" }), "url");
      const issued = bind(h("input", { type: "date", value: doc.issuedOn }), "issuedOn");
      const precision = bind(h("select", {}, PRECISIONS.map((p) => h("option", { value: p, selected: doc.issuedPrecision === p }, t(`precision.${p}`)))), "issuedPrecision");
      const editors = bind(h("input", { type: "text", value: doc.editors.join(", ") }), "editors",
        (c) => c.value.split(",").map((s) => s.trim()).filter(Boolean));
      const box = h("fieldset", { class: "document", tabindex: "-1" },
        h("legend", {}, t("document.legend", { n: index + 1 })),
        part("kind", kind, t("document.kind")), part("title", title, t("document.title")),
        part("url", url, t("document.url")), part("issuedOn", issued, t("document.issuedOn")),
        part("issuedPrecision", precision, t("document.issuedPrecision")), part("editors", editors, t("document.editors")),
        h("button", { type: "button", class: "secondary", onclick: () => {
          state.documents.splice(index, 1); renderDocuments(); onChange(); addDocument.focus();
        } }, t("document.remove", { n: index + 1 })));
      const message = h("p", { class: "field-error", id: newId("err"), hidden: true });
      box.append(message);
      controls.set(`documents.${index}`, { el: box, message });
      return box;
    }));
  };
  const addDocument = h("button", { type: "button", class: "secondary", onclick: () => {
    state.documents.push({ kind: "COMMUNIQUE", title: "", url: "", issuedOn: "", issuedPrecision: "DAY", editors: [] });
    renderDocuments();
    onChange();
    const fields = documentsBox.querySelectorAll("fieldset.document");
    fields[fields.length - 1]?.querySelector("select")?.focus();
  } }, t("document.add"));
  renderDocuments();

  // The description's live preview, rendered by the hub's own renderer.
  const preview = h("div", { class: "preview", id: newId("preview") });
  const previewState = h("p", { class: "hint", role: "status" });
  let previewTimer = null;
  let previewRun = 0;
  const refreshPreview = () => {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(async () => {
      const run = ++previewRun;
      const text = state.description;
      if (!text.trim()) {
        fill(preview, h("p", { class: "hint" }, t("preview.empty")));
        previewState.textContent = "";
        return;
      }
      try {
        const data = await gql(Q.preview, { markdown: text }, ctx.token);
        if (run !== previewRun) return;
        fill(preview, renderedMarkdown(data.markdownPreview));
        previewState.textContent = "";
      } catch (error) {
        if (run !== previewRun) return;
        previewState.textContent = error instanceof ApiError && error.code === "BAD_USER_INPUT"
          ? t("preview.refused", { reason: serverReason(error.errors[0]) })
          : t("preview.unavailable");
      }
    }, 300);
  };

  const timesPart = [];
  if (ctx.times) {
    const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    const zoneList = h("datalist", { id: newId("zones") }, zones.map((z) => h("option", { value: z })));
    timesPart.push(
      textField("startTime", { type: "time", hint: t("hint.times") }),
      textField("endTime", { type: "time" }),
      textField("timeZone", { list: zoneList.id, hint: t("hint.timeZone") }),
      zoneList,
    );
  }

  const cityList = h("datalist", { id: newId("cities") },
    (ctx.cities || []).map((c) => h("option", { value: c.slug, label: `${c.name} (${c.country})` })));

  const description = textField("description", { multiline: true, hint: t("hint.description") });
  description.querySelector("textarea").addEventListener("input", refreshPreview);

  form.append(
    summary,
    h("fieldset", { class: "group" }, h("legend", {}, t("form.group.what")),
      selectField("kind", KINDS, "kind"),
      selectField("format", FORMATS, "format"),
      textField("title", { required: true, maxlength: 200, hint: t("hint.title") }),
      textField("summary", { multiline: true, hint: t("hint.summary") }),
      h("div", { class: "markdown" }, description,
        h("section", { class: "preview-box", "aria-labelledby": `${preview.id}-title` },
          h("h3", { id: `${preview.id}-title` }, t("preview.title")), previewState, preview)),
      fieldsField(),
      listField("themes", { hint: t("hint.list") }),
      listField("objectives", { hint: t("hint.list") })),
    h("fieldset", { class: "group" }, h("legend", {}, t("form.group.when")),
      textField("startDate", { type: "date", hint: t("hint.startDate") }),
      selectField("datePrecision", PRECISIONS, "precision"),
      textField("endDate", { type: "date" }),
      timesPart),
    h("fieldset", { class: "group" }, h("legend", {}, t("form.group.where")),
      textField("venue", { hint: t("hint.venue") }),
      textField("venueCity", { list: cityList.id, hint: t("hint.venueCity") }),
      cityList),
    h("fieldset", { class: "group" }, h("legend", {}, t("form.group.who")),
      listField("coHosts", { list: cityList.id, hint: ctx.actingFor ? t("hint.coHosts.secretariat", { city: ctx.actingFor }) : t("hint.coHosts") }),
      listField("organizations", { hint: t("hint.list") })),
    h("fieldset", { class: "group" }, h("legend", {}, t("form.group.documents")), documentsBox, addDocument),
    h("details", { class: "group advanced" }, h("summary", {}, t("form.group.advanced")),
      textField("slug", { hint: t("hint.slug") })),
  );
  refreshPreview();

  let changeListener = () => {};
  function onChange() {
    changeListener();
  }

  function clearErrors() {
    summary.hidden = true;
    summary.replaceChildren();
    for (const { el, message } of controls.values()) {
      el.removeAttribute("aria-invalid");
      message.hidden = true;
      message.textContent = "";
    }
  }

  /** Shows errors ({ field, text }) beside their fields and in a summary; focuses the summary. */
  function showFieldErrors(list, lead) {
    clearErrors();
    if (!list.length) return;
    const items = [];
    for (const { field, text } of list) {
      let key = pathKey(field);
      while (key && !controls.has(key)) key = key.includes(".") ? key.slice(0, key.lastIndexOf(".")) : "";
      const control = key ? controls.get(key) : null;
      const label = control ? labelOf(key) : null;
      if (control) {
        control.el.setAttribute("aria-invalid", "true");
        control.message.hidden = false;
        control.message.textContent = text;
        items.push(h("li", {}, h("a", { href: `#${control.el.id || ""}`, onclick: (e) => {
          e.preventDefault();
          control.el.focus();
        } }, `${label}: ${text}`)));
      } else {
        items.push(h("li", {}, text));
      }
    }
    fill(summary, h("h2", {}, lead || t("errors.summary", { n: list.length })), h("ul", {}, items));
    summary.hidden = false;
    summary.focus();
  }

  function labelOf(key) {
    const [name, index, part] = key.split(".");
    if (name === "documents" && index !== undefined) {
      const doc = t("document.legend", { n: Number(index) + 1 });
      return part ? `${doc}, ${t(`document.${part}`)}` : doc;
    }
    return t(`field.label.${name}`);
  }

  return {
    element: h("div", {}, form),
    form,
    values: () => structuredClone(state),
    base: () => structuredClone(base),
    changed: () => changedFields(base, state),
    isDirty: () => changedFields(base, state).length > 0,
    /** Makes `values` the saved state (after a save, or a reload). */
    rebase(values) { base = structuredClone(values); },
    onChange(listener) { changeListener = listener; },
    clearErrors,
    /** Client-side hints; the server decides. Returns whether to send. */
    check() {
      const problems = [];
      if (!state.title.trim()) problems.push({ field: "title", text: t("hint.error.title") });
      if (state.startDate && state.endDate && state.endDate < state.startDate) {
        problems.push({ field: "endDate", text: t("hint.error.endDate") });
      }
      state.documents.forEach((d, i) => {
        if (!d.title.trim()) problems.push({ field: `documents.${i}.title`, text: t("hint.error.documentTitle") });
      });
      showFieldErrors(problems);
      return problems.length === 0;
    },
    /** Shows the server's errors of an `ApiError`. */
    showServerErrors(error) {
      showFieldErrors(error.errors.map((e) => ({ field: e.field, text: explain(e) })), t("errors.server"));
    },
  };
}

/** The server's own reason, without the input path it starts with. */
export function serverReason(error) {
  const message = error?.message || "";
  if (error?.field && message.startsWith(`${error.field}: `)) return message.slice(error.field.length + 2);
  return message;
}

/** An error of the API in words a non-developer understands. */
export function explain(error) {
  const code = error?.code || "INTERNAL_SERVER_ERROR";
  switch (code) {
    case "BAD_USER_INPUT": {
      const reason = serverReason(error);
      return reason ? t("error.BAD_USER_INPUT", { reason }) : t("error.BAD_USER_INPUT.plain");
    }
    case "INTERNAL_SERVER_ERROR":
      return error?.errorId ? t("error.INTERNAL_SERVER_ERROR.id", { id: error.errorId }) : t("error.INTERNAL_SERVER_ERROR");
    default:
      return t(`error.${code}`) !== `error.${code}` ? t(`error.${code}`) : t("error.other", { reason: error?.message || code });
  }
}

/** The words for a failed request: an `ApiError`'s first error, or the network. */
export function explainFailure(error) {
  if (error instanceof NetworkError) return t("error.network");
  if (error instanceof ApiError) return explain(error.errors[0]);
  return t("error.other", { reason: String(error?.message || error) });
}
