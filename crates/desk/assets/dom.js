// cityhub publishing desk: building the page without HTML strings, the
// desk's strings in the chosen language, announcements for screen readers,
// and the one place the hub's rendered Markdown enters the page.

import en from "./strings-en.js";
import fr from "./strings-fr.js";

const LANGUAGES = { en, fr };
const LANGUAGE_KEY = "cityhub-desk:language";
let strings = en;
let language = "en";

/** The language the desk speaks: the one chosen with the switch, else the browser's first of English and French. */
export function initialLanguage() {
  const chosen = localStorage.getItem(LANGUAGE_KEY);
  if (chosen && LANGUAGES[chosen]) return chosen;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES[base]) return base;
  }
  return "en";
}

/** Switches the desk's language (and remembers the choice when `remember`). */
export function setLanguage(code, remember) {
  language = LANGUAGES[code] ? code : "en";
  strings = LANGUAGES[language];
  document.documentElement.lang = language;
  if (remember) localStorage.setItem(LANGUAGE_KEY, language);
}

/** The current language code. */
export function currentLanguage() {
  return language;
}

/** The languages the desk speaks, as [code, own name]. */
export function languages() {
  return Object.entries(LANGUAGES).map(([code, s]) => [code, s["language.name"]]);
}

/** A string of the desk, with `{name}` placeholders filled from `vars`. */
export function t(key, vars) {
  let text = strings[key] ?? en[key] ?? key;
  if (vars) {
    text = text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
  }
  return text;
}

/** Whether the desk has a string for `key`. */
export function has(key) {
  return key in strings;
}

/**
 * An element: `h("button", { type: "button", onclick: f, class: "x" }, "text", child)`.
 * Attributes are set as attributes or properties, never as markup; text
 * children become text nodes.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "value" || name === "checked" || name === "selected") {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** An id unique in the page, for label and description links. */
export function newId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** Says `text` to screen readers (politely), and shows it in the status line. */
export function announce(text) {
  const status = document.getElementById("status");
  if (!status) return;
  status.textContent = "";
  // A change after a frame is read again even when the text is the same.
  requestAnimationFrame(() => {
    status.textContent = text;
  });
}

// ---- the hub's rendered Markdown ----

const ALLOWED = new Set(["P", "H1", "H2", "H3", "H4", "H5", "H6", "EM", "STRONG", "DEL", "A", "UL", "OL", "LI",
  "BLOCKQUOTE", "CODE", "PRE", "HR", "BR", "TABLE", "THEAD", "TBODY", "TR", "TH", "TD"]);

let previewPolicy = null;
function policy() {
  if (!previewPolicy) {
    // The one Trusted Types policy the page's CSP allows. Its input is
    // only ever the hub's own rendering (`markdownPreview`), and it is
    // parsed into an inert document, never into the page.
    const factory = window.trustedTypes;
    previewPolicy = factory
      ? factory.createPolicy("desk-preview", { createHTML: (text) => text })
      : { createHTML: (text) => text };
  }
  return previewPolicy;
}

/**
 * The hub's rendered Markdown as nodes of this page: parsed inertly (no
 * script runs, nothing loads), then copied element by element from an
 * allow-list, with links kept to http, https, mailto and relative targets.
 */
export function renderedMarkdown(html) {
  const parsed = new DOMParser().parseFromString(policy().createHTML(html), "text/html");
  const out = document.createDocumentFragment();
  const copy = (from, to) => {
    for (const node of from.childNodes) {
      if (node.nodeType === Node.TEXT_NODE) {
        to.append(document.createTextNode(node.data));
      } else if (node.nodeType === Node.ELEMENT_NODE) {
        if (!ALLOWED.has(node.tagName)) {
          copy(node, to);
          continue;
        }
        const el = document.createElement(node.tagName.toLowerCase());
        if (node.tagName === "A") {
          const href = node.getAttribute("href") || "";
          if (/^(https?:|mailto:|\/|#)/i.test(href) && !href.startsWith("//")) el.setAttribute("href", href);
          el.setAttribute("rel", "noopener noreferrer");
          el.setAttribute("target", "_blank");
        }
        if ((node.tagName === "TH" || node.tagName === "TD") && node.getAttribute("style")) {
          // Alignment only, as a class: the page allows no inline style.
          const align = /text-align:\s*(left|right|center)/.exec(node.getAttribute("style"));
          if (align) el.className = `align-${align[1]}`;
        }
        to.append(el);
        copy(node, el);
      }
    }
  };
  copy(parsed.body, out);
  return out;
}
