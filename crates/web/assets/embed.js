/*! cityhub embeddable widget: upcoming activities of the UNESCO Creative
 * Cities Network, or of one city, for any web page.
 *
 *   <a href="https://HUB/cities/lyon/calendar.ics" data-cityhub-fallback>Lyon's activities</a>
 *   <script src="https://HUB/embed.js" data-city="lyon" data-limit="5"></script>
 *
 * Attributes: data-city (slug), data-limit (1-20, default 5), data-field
 * and data-kind (as in GraphQL, e.g. MUSIC, ANNUAL_MEETING), data-from
 * (YYYY-MM-DD, default today), data-lang (default the page's lang: its
 * strings in English, French or Spanish, dates in any language the browser
 * knows), data-hub (the hub's origin, default where this script came from).
 *
 * Theming: the host page sets CSS custom properties on the widget or any
 * ancestor (they cross the shadow boundary): --cityhub-font,
 * --cityhub-color, --cityhub-muted-color, --cityhub-background,
 * --cityhub-border-color, --cityhub-radius, --cityhub-link-color,
 * --cityhub-focus-color, --cityhub-cancelled-color; or styles its parts:
 * ::part(widget), ::part(title), ::part(item), ::part(link), ::part(meta),
 * ::part(more).
 *
 * No framework and no request to any host but the hub (one GET /graphql).
 * The list lives in a shadow root, so host styles do not leak in or out;
 * its styles are a constructed stylesheet, which a strict host CSP that
 * allows the hub's origin for scripts and connections does not block.
 * When the hub cannot be reached, the widget leaves (or adds) a plain link.
 * The script element's data-cityhub-state becomes "ready" or "unreachable".
 */
(function () {
  'use strict';
  var script = document.currentScript;
  if (!script || !script.parentNode) { return; }
  var attr = function (name) { return (script.getAttribute('data-' + name) || '').trim(); };
  var hub;
  try { hub = new URL(attr('hub') || script.src, location.href).origin; } catch (e) { return; }
  var city = attr('city');
  var limit = Math.min(20, Math.max(1, parseInt(attr('limit'), 10) || 5));
  var lang = attr('lang') || document.documentElement.lang || 'en';
  var STRINGS = {
    en: { of: 'Activities of ', all: 'Creative Cities activities', none: 'No upcoming activities.',
      more: 'Subscribe to the calendar', cancelled: 'Cancelled', net: 'UNESCO Creative Cities Network activities',
      cityNet: ' (UNESCO Creative Cities Network)' },
    fr: { of: 'Activités de ', all: 'Activités des Villes créatives', none: 'Aucune activité à venir.',
      more: 'S’abonner au calendrier', cancelled: 'Annulée', net: 'Activités du Réseau des villes créatives de l’UNESCO',
      cityNet: ' (Réseau des villes créatives de l’UNESCO)' },
    es: { of: 'Actividades de ', all: 'Actividades de las Ciudades Creativas', none: 'No hay actividades próximas.',
      more: 'Suscribirse al calendario', cancelled: 'Cancelada', net: 'Actividades de la Red de Ciudades Creativas de la UNESCO',
      cityNet: ' (Red de Ciudades Creativas de la UNESCO)' }
  };
  var T = STRINGS[lang.toLowerCase().split('-')[0]] || STRINGS.en;
  var today = new Date();
  var from = /^\d{4}-\d{2}-\d{2}$/.test(attr('from')) ? attr('from')
    : today.getFullYear() + '-' + pad(today.getMonth() + 1) + '-' + pad(today.getDate());
  var fallback = script.previousElementSibling;
  if (fallback && !fallback.hasAttribute('data-cityhub-fallback')) { fallback = null; }
  var calendarUrl = hub + (city ? '/cities/' + encodeURIComponent(city) : '') + '/calendar.ics';

  function pad(n) { return (n < 10 ? '0' : '') + n; }
  function el(tag, props, text) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (k) { node.setAttribute(k, props[k]); });
    if (text) { node.textContent = text; }
    return node;
  }
  function insert(node) { script.parentNode.insertBefore(node, script.nextSibling); }

  function plainLink() {
    script.setAttribute('data-cityhub-state', 'unreachable');
    if (fallback) { return; }
    insert(el('a', { href: calendarUrl, 'class': 'cityhub-fallback' },
      city ? T.of + city + T.cityNet : T.net));
  }

  function when(a) {
    if (!a.startDate) { return ''; }
    var p = a.startDate.split('-');
    var d = new Date(Date.UTC(+p[0], +p[1] - 1, +p[2]));
    var opts = { timeZone: 'UTC', year: 'numeric' };
    if (a.datePrecision === 'YEAR') { return p[0]; }
    opts.month = 'long';
    if (a.datePrecision === 'DAY') { opts.day = 'numeric'; }
    try { return new Intl.DateTimeFormat(lang, opts).format(d); } catch (e) { return a.startDate; }
  }

  // `all: initial` resets every property but custom ones, which inherit
  // from the host page: they are the theme.
  var CSS = ':host{all:initial;display:block;font:1rem/1.45 var(--cityhub-font,system-ui,sans-serif);color:var(--cityhub-color,#1a1a1a)}' +
    'section{border:1px solid var(--cityhub-border-color,#c8c8c8);border-radius:var(--cityhub-radius,6px);padding:.75rem 1rem;background:var(--cityhub-background,#fff)}' +
    'h2{font-size:1.05rem;margin:0 0 .5rem}ul{list-style:none;margin:0;padding:0}' +
    'li{padding:.35rem 0;border-top:1px solid var(--cityhub-border-color,#ececec)}li:first-child{border-top:0}' +
    'a{color:var(--cityhub-link-color,#0b4f9c);text-decoration:underline}a:focus-visible{outline:3px solid var(--cityhub-focus-color,#f2b600);outline-offset:2px}' +
    '.meta{display:block;color:var(--cityhub-muted-color,#4a4a4a);font-size:.875rem}.cancelled{color:var(--cityhub-cancelled-color,#8a1010)}' +
    '.more{display:inline-block;margin-top:.5rem;font-size:.875rem}';

  function render(data) {
    var list = (data && data.activities && data.activities.nodes) || [];
    var name = (data && data.city && data.city.name) || city;
    var host = el('div', { 'class': 'cityhub-widget' });
    var root = host.attachShadow ? host.attachShadow({ mode: 'open' }) : host;
    if (root !== host && 'adoptedStyleSheets' in root && window.CSSStyleSheet) {
      try { var sheet = new CSSStyleSheet(); sheet.replaceSync(CSS); root.adoptedStyleSheets = [sheet]; } catch (e) { /* unstyled */ }
    }
    var title = name ? T.of + name : T.all;
    var section = el('section', { 'aria-label': title, lang: lang, part: 'widget' });
    section.appendChild(el('h2', { part: 'title' }, title));
    if (!list.length) {
      section.appendChild(el('p', {}, T.none));
    } else {
      var ul = el('ul');
      list.forEach(function (a) {
        var li = el('li', { part: 'item' });
        li.appendChild(el('a', { href: hub + '/activities/' + encodeURIComponent(a.slug), part: 'link' }, a.title));
        var span = el('span', { 'class': 'meta', part: 'meta' });
        var date = when(a);
        if (date) {
          span.appendChild(el('time', { datetime: a.datePrecision === 'YEAR' ? a.startDate.slice(0, 4)
            : a.datePrecision === 'MONTH' ? a.startDate.slice(0, 7) : a.startDate }, date));
        }
        var place = a.venue || (a.venueCity && a.venueCity.name) || '';
        if (place) { span.appendChild(document.createTextNode((date ? ' · ' : '') + place)); }
        if (a.status === 'CANCELLED') { span.appendChild(el('strong', { 'class': 'cancelled' }, ' · ' + T.cancelled)); }
        li.appendChild(span);
        ul.appendChild(li);
      });
      section.appendChild(ul);
    }
    section.appendChild(el('a', { href: calendarUrl, 'class': 'more', part: 'more' }, T.more));
    root.appendChild(section);
    if (fallback) { fallback.hidden = true; }
    insert(host);
    script.setAttribute('data-cityhub-state', 'ready');
  }

  var filter = { from: from, statuses: ['PUBLISHED', 'CANCELLED'] };
  if (city) { filter.cities = [city]; }
  if (attr('field')) { filter.fields = [attr('field')]; }
  if (attr('kind')) { filter.kinds = [attr('kind')]; }
  var query = 'query CityhubWidget($filter: ActivityFilter, $first: Int, $city: String, $hasCity: Boolean!) {' +
    ' city(slug: $city) @include(if: $hasCity) { name }' +
    ' activities(filter: $filter, orderBy: START_DATE_ASC, first: $first) {' +
    ' nodes { slug title status startDate endDate datePrecision venue venueCity { name } } } }';
  var variables = { filter: filter, first: limit, city: city || null, hasCity: !!city };
  var url = hub + '/graphql?query=' + encodeURIComponent(query) +
    '&variables=' + encodeURIComponent(JSON.stringify(variables));
  if (!window.fetch) { plainLink(); return; }
  fetch(url, { headers: { Accept: 'application/json' }, credentials: 'omit', mode: 'cors' })
    .then(function (r) { if (!r.ok) { throw new Error('HTTP ' + r.status); } return r.json(); })
    .then(function (body) {
      if (!body || !body.data || (body.errors && body.errors.length)) { throw new Error('GraphQL error'); }
      render(body.data);
    })
    .catch(function () { plainLink(); });
})();
