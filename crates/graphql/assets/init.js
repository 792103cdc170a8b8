// cityhub GraphiQL bootstrap.
//
// Served at /graphiql/init.js and loaded by the page at GET /graphql after
// react, react-dom and graphiql (all vendored, see LICENSES.md). Kept in a
// separate file so the page needs no inline script under the hub's CSP
// (`script-src 'self'`).
(function () {
  'use strict';

  var root = document.getElementById('graphiql');
  if (!root) {
    return;
  }
  if (!window.React || !window.ReactDOM || !window.GraphiQL) {
    root.textContent =
      'GraphiQL could not start: /graphiql/react.production.min.js, ' +
      '/graphiql/react-dom.production.min.js or /graphiql/graphiql.min.js did not load.';
    return;
  }

  var wsScheme = location.protocol === 'https:' ? 'wss://' : 'ws://';

  // Queries and mutations go over HTTP POST to /graphql; subscriptions go
  // over the graphql-ws protocol ("graphql-transport-ws") on the same path.
  // The graphql-ws client is bundled inside graphiql.min.js, so no other
  // script is needed for subscriptions.
  var httpFetcher = GraphiQL.createFetcher({
    url: location.origin + '/graphql',
    subscriptionUrl: wsScheme + location.host + '/graphql'
  });

  // The header editor starts with a placeholder showing where a token goes.
  // Until the user replaces "<token>" with a real one, drop that header so
  // the default (public) query is not rejected for carrying a bogus token.
  var PLACEHOLDER = /^\s*Bearer\s*<[^>]*>\s*$/i;
  function fetcher(graphQLParams, opts) {
    if (opts && opts.headers) {
      var headers = {};
      var changed = false;
      Object.keys(opts.headers).forEach(function (name) {
        var value = opts.headers[name];
        if (name.toLowerCase() === 'authorization' &&
            typeof value === 'string' && PLACEHOLDER.test(value)) {
          changed = true;
          return;
        }
        headers[name] = value;
      });
      if (changed) {
        opts = Object.assign({}, opts, { headers: headers });
      }
    }
    return httpFetcher(graphQLParams, opts);
  }

  var defaultQuery = [
    '# Welcome to cityhub, the UNESCO Creative Cities Network hub.',
    '#',
    '# Reading public data needs no token. To act as a signed-in user, put your',
    '# token in the Headers tab below: {"Authorization": "Bearer <token>"}',
    '{',
    '  network { name foundedYear cityCount countryCount activityCount }',
    '  activities(first: 5, filter: { kinds: [ANNUAL_MEETING] }) {',
    '    totalCount',
    '    nodes { slug title startDate datePrecision venue hosts { name country } }',
    '  }',
    '}',
    ''
  ].join('\n');

  var defaultHeaders = '{"Authorization": "Bearer <token>"}';

  // Accessibility the vendored editor lacks (checked with axe-core in the
  // browser tests): every editor's input gets a label, and each scrolling
  // editor area can take the keyboard's focus.
  function labelEditors() {
    var editors = [
      ['.graphiql-query-editor', 'GraphQL query'],
      ['.graphiql-editor-tool [aria-label], .graphiql-editor-tool', 'Variables or headers (JSON)'],
      ['.graphiql-response', 'Response']
    ];
    document.querySelectorAll('.CodeMirror').forEach(function (cm) {
      var label = 'Editor';
      for (var i = 0; i < editors.length; i++) {
        if (cm.closest(editors[i][0])) {
          label = editors[i][1];
          break;
        }
      }
      var input = cm.querySelector('textarea');
      if (input && !input.hasAttribute('aria-label')) {
        input.setAttribute('aria-label', label);
      }
      var scroll = cm.querySelector('.CodeMirror-scroll');
      if (scroll && scroll.getAttribute('tabindex') !== '0') {
        scroll.setAttribute('tabindex', '0');
        scroll.setAttribute('aria-label', label);
      }
    });
  }
  new MutationObserver(labelEditors).observe(root, { childList: true, subtree: true });

  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultHeaders: defaultHeaders,
      defaultEditorToolsVisibility: 'headers',
      isHeadersEditorEnabled: true,
      // Never write tokens to localStorage.
      shouldPersistHeaders: false
    })
  );
})();
