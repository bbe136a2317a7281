/* nlb's web console (docs/console.md): one page over the public API.
 *
 * Every call goes to /v1/... with the token the user typed, so the page
 * can do exactly what that token may; the token is kept in this tab's
 * sessionStorage only. Views follow the event stream (GET /v1/events,
 * read with fetch and a stream reader, resumed with the last seq after an
 * error) and, where no event tells of a change (target health, nodes),
 * are read again every few seconds. Charts come from /metrics, parsed
 * here and kept in a ring of samples in memory.
 *
 * Safe by construction: no innerHTML, no eval, no inline script or style
 * (the page's Content-Security-Policy forbids them anyway); every value
 * from the API goes into the page as text (textContent, attributes of
 * created elements). */
'use strict';

(function () {
  const TOKEN_KEY = 'nlb.console.token';
  const POLL_MS = 5000;
  const METRICS_MS = 3000;
  const METRICS_SAMPLES = 100; /* five minutes at METRICS_MS */
  const EVENTS_KEPT = 200;
  const LIVE_STATES = ['pendingAcceptance', 'available'];

  /* ---- DOM ------------------------------------------------------------ */

  /* el('tr', {class: 'x', 'data-test': 'y', onclick: f}, child...): an
   * element; string children become text nodes, null ones are skipped. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else if (key === 'checked' || key === 'disabled' ||
               key === 'value' && node.tagName === 'SELECT')
        node[key] = value;
      else node.setAttribute(key, value === true ? '' : String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child
        : document.createTextNode(String(child)));
    }
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {}))
      node.setAttribute(key, String(value));
    append(node, children);
    return node;
  }

  function $(id) { return document.getElementById(id); }

  function fill(node, ...children) {
    node.replaceChildren();
    append(node, children);
  }

  function fmtTime(text) {
    if (!text) return '\u2014';
    return String(text).replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  function fmtNumber(x) {
    if (!isFinite(x)) return '\u2014';
    const units = ['', 'k', 'M', 'G', 'T'];
    let i = 0;
    while (Math.abs(x) >= 1000 && i < units.length - 1) {
      x /= 1000;
      i++;
    }
    return (Math.abs(x) >= 100 || i === 0 && Number.isInteger(x)
      ? x.toFixed(0) : x.toFixed(1)) + units[i];
  }

  function badge(text) {
    return el('span', {class: 'badge state-' + String(text).replace(
      /[^A-Za-z0-9-]/g, '')}, text);
  }

  function list(values) {
    return values && values.length ? values.join(', ') : '\u2014';
  }

  function table(headings, rows, empty) {
    if (!rows.length) return el('p', {class: 'empty'}, empty || 'None.');
    return el('table', {},
      el('thead', {}, el('tr', {}, headings.map(h => el('th', {}, h)))),
      el('tbody', {}, rows));
  }

  function field(label, input) {
    return el('label', {class: 'field'}, el('span', {}, label), input);
  }

  let messageTimer = null;

  /* A line under the bar: what the last action did, or why it failed. */
  function say(text, isError) {
    const node = $('message');
    node.textContent = text;
    node.className = 'message' + (isError ? ' error' : '');
    clearTimeout(messageTimer);
    if (!isError) messageTimer = setTimeout(() => { node.textContent = ''; },
      8000);
  }

  /* ---- the API -------------------------------------------------------- */

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  const session = {
    token: null,
    who: null,           /* {name, role} */
    tab: null,
    seq: null,           /* the last event seen */
    stream: null,        /* AbortController of the event stream */
    pollTimer: null,
    metricsTimer: null,
    refreshTimer: null,
    events: [],
    samples: [],
    metricsDenied: false,
    selected: new Map(), /* service ID -> Set of endpoint IDs */
    showDeleted: false,
    generation: 0,       /* bumped at sign-out: late answers are dropped */
  };

  function headers(body) {
    const h = {Authorization: 'Bearer ' + session.token};
    if (body !== undefined) h['Content-Type'] = 'application/json';
    return h;
  }

  /* nlbd binds a connection to the first principal whose token it
   * carries and answers another principal's requests on it 421 (nothing
   * done). After a sign-out, or with another tab signed in as someone
   * else, the browser may still hold such connections: over HTTP/1.1 it
   * drops the one that answered 421, so the request is sent again on
   * another. Over HTTP/2 it has one connection per server and keeps it:
   * the 421 stays (signIn says why). */
  const MISDIRECTED_TRIES = 8;

  async function send(path, init) {
    for (let tries = 1; ; tries++) {
      const response = await fetch(path, init);
      if (response.status !== 421 || tries === MISDIRECTED_TRIES)
        return response;
      await response.text();
    }
  }

  async function api(method, path, body) {
    const generation = session.generation;
    const response = await send(path, {
      method, headers: headers(body), cache: 'no-store',
      credentials: 'omit', redirect: 'error',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (generation !== session.generation) throw new ApiError(0, 'SignedOut',
      'signed out');
    let value = text;
    if ((response.headers.get('content-type') || '').startsWith(
      'application/json')) {
      try { value = JSON.parse(text); } catch (e) { /* left as text */ }
    }
    if (!response.ok) {
      const err = value && value.error || {};
      /* Signed in, then refused: the token was revoked or expired. */
      if (response.status === 401 && session.who) {
        signOut('The token is no longer accepted: sign in again.');
        throw new ApiError(0, 'SignedOut', 'signed out');
      }
      throw new ApiError(response.status, err.code || String(response.status),
        err.message || response.statusText);
    }
    return value;
  }

  /* Every page of a list route. */
  async function listAll(path, key) {
    const items = [];
    let token = null;
    do {
      const sep = path.includes('?') ? '&' : '?';
      const page = await api('GET', path + (token ? sep + 'next_token=' +
        encodeURIComponent(token) : ''));
      items.push(...page[key]);
      token = page.next_token;
    } while (token);
    return items;
  }

  function enc(x) { return encodeURIComponent(x); }

  /* Runs an action from a button: disables it meanwhile, says how it
   * went, then reads the view again. */
  async function act(button, what, fn) {
    if (button) button.disabled = true;
    try {
      const result = await fn();
      if (result !== false) say(what);
    } catch (e) {
      if (e.code !== 'SignedOut') say(errorText(e), true);
    } finally {
      if (button) button.disabled = false;
    }
    refresh();
  }

  function errorText(e) {
    return e instanceof ApiError && e.status
      ? e.status + ' ' + e.code + ': ' + e.message : String(e.message || e);
  }

  /* ---- dialogs -------------------------------------------------------- */

  /* A modal dialog: a title, content, buttons [{label, test, primary,
   * run}] where run() returns true (or a promise of it) to close. */
  function openDialog(title, content, buttons) {
    const dialog = $('dialog');
    const error = el('p', {class: 'error', 'data-test': 'dialog-error'});
    const close = () => {
      dialog.close();
      dialog.replaceChildren(); /* a token shown once leaves the page */
    };
    const bar = el('div', {class: 'buttons'});
    for (const b of buttons) {
      bar.appendChild(el('button', {
        type: 'button', class: b.primary ? 'primary' : null,
        'data-test': b.test,
        onclick: async (ev) => {
          ev.target.disabled = true;
          try {
            if (!b.run || await b.run()) close();
          } catch (e) {
            error.textContent = errorText(e);
          } finally {
            ev.target.disabled = false;
          }
        },
      }, b.label));
    }
    fill(dialog, el('h2', {}, title), content, error, bar);
    dialog.oncancel = close;
    dialog.showModal();
  }

  /* A token is shown once: in this dialog, never again. */
  function showToken(title, principal, token) {
    openDialog(title, el('div', {},
      el('p', {}, 'The token of ', el('strong', {}, principal),
        '. Copy it now: it is not shown again.'),
      el('code', {class: 'token', 'data-test': 'new-token-value'}, token)),
    [{label: 'Copy', test: 'copy-token', run: async () => {
      if (!navigator.clipboard)
        throw new Error('This browser does not let the page copy here: ' +
          'select the token and copy it yourself.');
      await navigator.clipboard.writeText(token);
      say('Copied.');
      return false;
    }}, {label: 'Done', test: 'dialog-close', primary: true}]);
  }

  /* ---- signing in and out -------------------------------------------- */

  async function signIn(token) {
    session.token = token;
    try {
      session.who = await api('GET', '/v1/whoami');
    } catch (e) {
      session.token = null;
      throw e;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $('sign-in-view').hidden = true;
    $('sign-out').hidden = false;
    fill($('who'), el('strong', {}, session.who.name), ' (' +
      session.who.role + ')');
    buildTabs();
    follow();
    if (canReadMetrics()) pollMetrics();
  }

  function signOut(why) {
    sessionStorage.removeItem(TOKEN_KEY);
    session.generation++;
    if (session.stream) session.stream.abort();
    clearTimeout(session.pollTimer);
    clearTimeout(session.metricsTimer);
    clearTimeout(session.refreshTimer);
    Object.assign(session, {
      token: null, who: null, tab: null, seq: null, stream: null,
      events: [], samples: [], metricsDenied: false, selected: new Map(),
    });
    const dialog = $('dialog');
    if (dialog.open) dialog.close();
    dialog.replaceChildren();
    $('views').replaceChildren();
    $('tabs').replaceChildren();
    $('who').textContent = '';
    $('live').hidden = true;
    $('sign-out').hidden = true;
    $('sign-in-view').hidden = false;
    $('sign-in-error').textContent = why || '';
    $('token').value = '';
    $('token').focus();
  }

  /* ---- tabs ------------------------------------------------------------ */

  const OP = 'operator', PROV = 'provider', CONS = 'consumer';

  /* Each view: who sees it, how it is drawn (build: once per showing,
   * load: again at each refresh) and for whom it is read again every
   * POLL_MS (poll: what no event announces to them: services others
   * make, target health, nodes). */
  const TABS = [
    {id: 'services', label: 'Services', roles: [OP, PROV],
      build: buildServices, load: loadServices, poll: [OP]},
    {id: 'available', label: 'Services', roles: [CONS],
      build: buildAvailable, load: loadAvailable, poll: [CONS]},
    {id: 'endpoints', label: 'Endpoints', roles: [OP, CONS],
      build: buildEndpoints, load: loadEndpoints},
    {id: 'targets', label: 'Targets', roles: [OP],
      build: buildTargets, load: loadTargets, poll: [OP]},
    {id: 'nodes', label: 'Nodes', roles: [OP],
      build: buildNodes, load: loadNodes, poll: [OP]},
    {id: 'tenancy', label: 'Principals', roles: [OP],
      build: buildTenancy, load: loadTenancy},
    {id: 'traffic', label: 'Traffic', roles: [OP, PROV],
      build: buildTraffic, load: drawCharts},
    {id: 'events', label: 'Events', roles: [OP, PROV, CONS],
      build: buildEvents, load: drawEvents},
  ];

  function canReadMetrics() {
    return session.who && [OP, PROV].includes(session.who.role) &&
      !session.metricsDenied;
  }

  function myTabs() {
    return TABS.filter(t => t.roles.includes(session.who.role) &&
      (t.id !== 'traffic' || canReadMetrics()));
  }

  function buildTabs() {
    const nav = $('tabs');
    nav.replaceChildren();
    for (const tab of myTabs()) {
      nav.appendChild(el('button', {
        type: 'button', class: 'tab', 'data-test': 'tab-' + tab.id,
        'data-tab': tab.id, onclick: () => show(tab.id),
      }, tab.label));
    }
    show(myTabs()[0].id);
  }

  function currentTab() {
    return TABS.find(t => t.id === session.tab);
  }

  function show(id) {
    session.tab = id;
    for (const button of $('tabs').children)
      button.classList.toggle('active', button.dataset.tab === id);
    const view = el('section', {class: 'view', 'data-test': 'view-' + id});
    $('views').replaceChildren(view);
    currentTab().build(view);
    refresh();
  }

  /* Reads the current view again; a later call supersedes an earlier one
   * still under way (its answer is dropped). */
  let loading = 0;
  async function refresh() {
    clearTimeout(session.refreshTimer);
    clearTimeout(session.pollTimer);
    const tab = currentTab();
    if (!tab) return;
    const mine = ++loading;
    const generation = session.generation;
    try {
      await tab.load(() => mine === loading &&
        generation === session.generation && session.tab === tab.id);
    } catch (e) {
      if (mine === loading && e.code !== 'SignedOut') say(errorText(e), true);
    }
    if (tab.poll && tab.poll.includes(session.who.role) &&
        generation === session.generation && session.tab === tab.id)
      session.pollTimer = setTimeout(refresh, POLL_MS);
  }

  /* Events come in bursts: one read for a burst. */
  function refreshSoon() {
    clearTimeout(session.refreshTimer);
    session.refreshTimer = setTimeout(refresh, 150);
  }

  /* ---- services (providers, operators) ------------------------------- */

  function buildServices(view) {
    const name = el('input', {'data-test': 'new-service-name', required: true,
      placeholder: 'web'});
    const lb = el('input', {'data-test': 'new-service-lb', required: true,
      placeholder: 'web-lb'});
    const acceptance = el('input', {type: 'checkbox', checked: true,
      'data-test': 'new-service-acceptance'});
    const principals = el('input', {'data-test': 'new-service-principals',
      placeholder: 'shop-a, shop-b or *'});
    const limit = el('input', {type: 'number', min: 0, value: '0',
      'data-test': 'new-service-limit'});
    const dns = el('input', {'data-test': 'new-service-dns',
      placeholder: 'api.example.com'});
    const create = el('button', {type: 'submit', class: 'primary',
      'data-test': 'create-service'}, 'Create service');
    const form = el('form', {class: 'card form', onsubmit: (ev) => {
      ev.preventDefault();
      const body = {name: name.value.trim(), load_balancer: lb.value.trim(),
        acceptance_required: acceptance.checked,
        allowed_principals: words(principals.value),
        connection_limit: Number(limit.value || 0)};
      if (dns.value.trim()) body.private_dns_name = dns.value.trim();
      act(create, 'Service ' + body.name + ' created.', async () => {
        await api('POST', '/v1/services', body);
        form.reset();
        acceptance.checked = true;
      });
    }},
    el('h2', {}, 'New service'),
    el('div', {class: 'fields'}, field('Name', name),
      field('Load balancer', lb), field('Allowed principals', principals),
      field('Connection limit', limit), field('Private DNS name', dns),
      field('Acceptance required', acceptance)),
    el('div', {class: 'buttons'}, create));
    const ended = el('input', {type: 'checkbox', 'data-test': 'show-deleted',
      checked: session.showDeleted, onchange: () => {
        session.showDeleted = ended.checked;
        refresh();
      }});
    view.append(
      el('div', {class: 'card'},
        el('div', {class: 'heading'}, el('h2', {}, 'Services'),
          refreshButton()),
        el('div', {id: 'services-list'})),
      el('div', {class: 'card'},
        el('div', {class: 'heading'}, el('h2', {}, 'Connection requests'),
          el('label', {class: 'inline'}, ended,
            ' show deleted')),
        el('div', {id: 'connections-list'})),
      form);
  }

  function words(text) {
    return text.split(/[\s,]+/).filter(Boolean);
  }

  function refreshButton() {
    return el('button', {type: 'button', 'data-test': 'refresh',
      onclick: () => refresh()}, 'Refresh');
  }

  async function loadServices(current) {
    const services = await listAll('/v1/services', 'services');
    const connections = await Promise.all(services.map(s =>
      listAll('/v1/services/' + enc(s.id) + '/connections', 'connections')));
    if (!current()) return;
    fill($('services-list'), table(
      ['Name', 'ID', 'Owner', 'Load balancer', 'Ports', 'Acceptance',
        'Allowed principals', 'Limit', 'Private DNS name', 'Created', ''],
      services.map(s => el('tr', {'data-test': 'service-row',
        'data-id': s.id},
      el('td', {class: 'name'}, s.name), el('td', {class: 'id'}, s.id),
      el('td', {}, s.owner), el('td', {}, s.load_balancer),
      el('td', {}, list(s.ports)),
      el('td', {}, s.acceptance_required ? 'required' : 'automatic'),
      el('td', {}, list(s.allowed_principals)),
      el('td', {}, s.connection_limit ? String(s.connection_limit) : 'none'),
      el('td', {}, s.private_dns_name || '\u2014'),
      el('td', {}, fmtTime(s.created_at)),
      el('td', {class: 'actions'},
        el('button', {type: 'button', 'data-test': 'edit-service',
          onclick: () => editService(s)}, 'Edit'),
        el('button', {type: 'button', 'data-test': 'delete-service',
          class: 'danger', onclick: (ev) => act(ev.target,
            'Service ' + s.name + ' deleted.',
            () => api('DELETE', '/v1/services/' + enc(s.id)))},
        'Delete')))),
    session.who.role === PROV
      ? 'No services yet: create one below to publish a load balancer.'
      : 'No services.'));
    fill($('connections-list'), services.length
      ? services.map((s, i) => connectionsBlock(s, connections[i]))
      : el('p', {class: 'empty'}, 'No services, so no requests.'));
  }

  function connectionsBlock(service, all) {
    const shown = all.filter(c => session.showDeleted ||
      c.state !== 'deleted');
    /* Pending ones first, each group oldest first (the API's order). */
    shown.sort((a, b) => (a.state !== 'pendingAcceptance') -
      (b.state !== 'pendingAcceptance'));
    let selected = session.selected.get(service.id);
    if (!selected) session.selected.set(service.id, selected = new Set());
    for (const id of [...selected])
      if (!shown.some(c => c.endpoint_id === id)) selected.delete(id);
    const boxes = [];
    const selectAll = el('input', {type: 'checkbox', 'data-test': 'select-all',
      title: 'Select every request shown',
      checked: shown.length > 0 && selected.size === shown.length,
      disabled: shown.length === 0,
      onchange: () => {
        for (const box of boxes) {
          box.checked = selectAll.checked;
          if (box.checked) selected.add(box.dataset.id);
          else selected.delete(box.dataset.id);
        }
      }});
    /* Of the rows selected, those the verb applies to: accept the pending
     * ones, reject the pending and available ones. */
    const batch = (verb, button) => {
      const states = verb === 'accept' ? ['pendingAcceptance'] : LIVE_STATES;
      const ids = shown.filter(c => selected.has(c.endpoint_id) &&
        states.includes(c.state)).map(c => c.endpoint_id);
      if (!ids.length) {
        say(selected.size ? 'None of the requests selected can be ' +
          (verb === 'accept' ? 'accepted.' : 'rejected.')
          : 'Select requests first.', true);
        return;
      }
      act(button, '', async () => {
        const r = await api('POST', '/v1/services/' + enc(service.id) +
          '/connections/' + verb, {endpoint_ids: ids});
        selected.clear();
        reportBatch(verb, ids.length, r.unsuccessful);
        return false;
      });
    };
    const rows = shown.map(c => {
      const box = el('input', {type: 'checkbox', 'data-test': 'select',
        'data-id': c.endpoint_id, checked: selected.has(c.endpoint_id),
        onchange: () => {
          if (box.checked) selected.add(c.endpoint_id);
          else selected.delete(c.endpoint_id);
          selectAll.checked = selected.size === shown.length;
        }});
      boxes.push(box);
      const one = (verb, ev) => act(ev.target, '', async () => {
        const r = await api('POST', '/v1/services/' + enc(service.id) +
          '/connections/' + verb, {endpoint_ids: [c.endpoint_id]});
        reportBatch(verb, 1, r.unsuccessful);
        return false;
      });
      return el('tr', {'data-test': 'connection-row', 'data-id': c.endpoint_id,
        'data-state': c.state},
      el('td', {}, box), el('td', {class: 'id'}, c.endpoint_id),
      el('td', {}, c.consumer), el('td', {}, c.network),
      el('td', {}, c.address), el('td', {}, badge(c.state)),
      el('td', {}, fmtTime(c.updated_at)),
      el('td', {class: 'actions'},
        el('button', {type: 'button', 'data-test': 'accept', class: 'primary',
          disabled: c.state !== 'pendingAcceptance',
          onclick: (ev) => one('accept', ev)}, 'Accept'),
        el('button', {type: 'button', 'data-test': 'reject', class: 'danger',
          disabled: !LIVE_STATES.includes(c.state),
          onclick: (ev) => one('reject', ev)}, 'Reject')));
    });
    return el('div', {class: 'block', 'data-test': 'connections',
      'data-service': service.name},
    el('div', {class: 'heading'},
      el('h3', {}, service.name, ' ', el('span', {class: 'id'}, service.id)),
      el('span', {class: 'buttons'},
        el('button', {type: 'button', 'data-test': 'accept-selected',
          onclick: (ev) => batch('accept', ev.target)}, 'Accept selected'),
        el('button', {type: 'button', 'data-test': 'reject-selected',
          class: 'danger', onclick: (ev) => batch('reject', ev.target)},
        'Reject selected'))),
    table([selectAll, 'Endpoint', 'Consumer', 'Network', 'Address', 'State',
      'Updated', ''], rows, 'No requests.'));
  }

  function reportBatch(verb, n, unsuccessful) {
    const done = n - unsuccessful.length;
    const past = verb === 'accept' ? 'accepted' : 'rejected';
    if (!unsuccessful.length) {
      say(done + ' ' + past + '.');
      return;
    }
    say(done + ' ' + past + '; not ' + past + ': ' + unsuccessful.map(u =>
      u.endpoint_id + ' (' + u.error.code + ': ' + u.error.message + ')')
      .join('; '), true);
  }

  function editService(s) {
    const acceptance = el('input', {type: 'checkbox', 'data-test':
      'edit-acceptance', checked: s.acceptance_required});
    const limit = el('input', {type: 'number', min: 0, 'data-test':
      'edit-limit', value: String(s.connection_limit)});
    const dns = el('input', {'data-test': 'edit-dns',
      value: s.private_dns_name || ''});
    const add = el('input', {'data-test': 'permissions-add',
      placeholder: 'principals to allow'});
    const remove = el('input', {'data-test': 'permissions-remove',
      placeholder: 'principals to remove'});
    const rejectLive = el('input', {type: 'checkbox',
      'data-test': 'reject-endpoints'});
    openDialog('Service ' + s.name, el('div', {class: 'fields'},
      field('Acceptance required', acceptance),
      field('Connection limit (0: none)', limit),
      field('Private DNS name', dns),
      el('p', {class: 'wide'}, 'Allowed principals: ',
        el('span', {'data-test': 'allowed-principals'},
          list(s.allowed_principals))),
      field('Allow', add), field('Remove', remove),
      field('Reject the removed principals\u2019 endpoints', rejectLive)),
    [{label: 'Cancel', test: 'dialog-cancel'},
      {label: 'Save', test: 'save-service', primary: true, run: async () => {
        const changes = {};
        if (acceptance.checked !== s.acceptance_required)
          changes.acceptance_required = acceptance.checked;
        if (Number(limit.value || 0) !== s.connection_limit)
          changes.connection_limit = Number(limit.value || 0);
        if (dns.value.trim() !== (s.private_dns_name || ''))
          changes.private_dns_name = dns.value.trim();
        if (Object.keys(changes).length)
          await api('PATCH', '/v1/services/' + enc(s.id), changes);
        const perms = {add: words(add.value), remove: words(remove.value)};
        if (perms.add.length || perms.remove.length) {
          if (rejectLive.checked) perms.reject_endpoints = true;
          await api('PATCH', '/v1/services/' + enc(s.id) + '/permissions',
            perms);
        }
        say('Service ' + s.name + ' saved.');
        refresh();
        return true;
      }}]);
  }

  /* ---- consumers: available services, endpoints ----------------------- */

  function buildAvailable(view) {
    view.append(el('div', {class: 'card'},
      el('div', {class: 'heading'},
        el('h2', {}, 'Services you may connect to'), refreshButton()),
      el('div', {id: 'available-list'})));
  }

  async function loadAvailable(current) {
    const services = await listAll('/v1/available-services', 'services');
    if (!current()) return;
    fill($('available-list'), table(
      ['Name', 'Owner', 'Ports', 'Acceptance', 'Private DNS name', ''],
      services.map(s => el('tr', {'data-test': 'service-row', 'data-id': s.id},
        el('td', {class: 'name'}, s.name), el('td', {}, s.owner),
        el('td', {}, list(s.ports)),
        el('td', {}, s.acceptance_required ? 'by the provider' : 'automatic'),
        el('td', {}, s.private_dns_name || '\u2014'),
        el('td', {class: 'actions'}, el('button', {type: 'button',
          'data-test': 'connect', class: 'primary', onclick: () => {
            session.connectTo = s.name;
            show('endpoints');
          }}, 'Create endpoint')))),
      'No service allows you yet.'));
  }

  function buildEndpoints(view) {
    const filter = el('input', {type: 'checkbox', 'data-test': 'show-deleted',
      checked: session.showDeleted, onchange: () => {
        session.showDeleted = filter.checked;
        refresh();
      }});
    view.append(el('div', {class: 'card'},
      el('div', {class: 'heading'}, el('h2', {}, 'Endpoints'),
        el('label', {class: 'inline'}, filter,
          ' show deleted'), refreshButton()),
      el('div', {id: 'endpoints-list'})));
    if (session.who.role !== CONS) return;
    const service = el('select', {'data-test': 'endpoint-service',
      id: 'endpoint-service', required: true});
    const network = el('input', {'data-test': 'endpoint-network',
      required: true, list: 'known-networks', placeholder: 'your network'});
    const address = el('input', {'data-test': 'endpoint-address',
      placeholder: 'first free address'});
    const dns = el('input', {type: 'checkbox',
      'data-test': 'endpoint-private-dns'});
    const create = el('button', {type: 'submit', class: 'primary',
      'data-test': 'create-endpoint'}, 'Create endpoint');
    const form = el('form', {class: 'card form', onsubmit: (ev) => {
      ev.preventDefault();
      const body = {service: service.value, network: network.value.trim()};
      if (address.value.trim()) body.address = address.value.trim();
      if (dns.checked) body.private_dns = true;
      act(create, '', async () => {
        const ep = await api('POST', '/v1/endpoints', body);
        say('Endpoint ' + ep.id + ' created: ' + ep.state + '.');
        address.value = '';
        return false;
      });
    }},
    el('h2', {}, 'New endpoint'),
    el('div', {class: 'fields'}, field('Service', service),
      field('Network', network), field('Address', address),
      field('Private DNS', dns)),
    el('datalist', {id: 'known-networks'}),
    el('div', {class: 'buttons'}, create));
    view.append(form);
  }

  async function loadEndpoints(current) {
    const consumer = session.who.role === CONS;
    const [endpoints, services] = await Promise.all([
      listAll('/v1/endpoints', 'endpoints'),
      consumer ? listAll('/v1/available-services', 'services') : null]);
    if (!current()) return;
    const shown = endpoints.filter(e => session.showDeleted ||
      e.state !== 'deleted');
    fill($('endpoints-list'), table(
      ['Endpoint', 'Service', consumer ? null : 'Consumer', 'Network',
        'Address', 'Ports', 'State', 'Reason', 'DNS names', 'Placements',
        'Created', ''].filter(h => h !== null),
      shown.map(e => el('tr', {'data-test': 'endpoint-row', 'data-id': e.id,
        'data-state': e.state},
      el('td', {class: 'id'}, e.id), el('td', {}, e.service),
      consumer ? null : el('td', {}, e.consumer), el('td', {}, e.network),
      el('td', {}, e.address), el('td', {}, list(e.ports)),
      el('td', {}, badge(e.state)),
      el('td', {class: e.state === 'failed' ? 'reason bad' : 'reason',
        'data-test': 'reason'}, e.reason || ''),
      el('td', {class: 'dns'}, e.dns_names.length
        ? e.dns_names.map(n => el('div', {}, n)) : '\u2014'),
      el('td', {}, e.placements.map(p => el('div', {}, p.node + ': ',
        badge(p.state), p.reason && p.reason !== e.reason
          ? ' ' + p.reason : ''))),
      el('td', {}, fmtTime(e.created_at)),
      el('td', {class: 'actions'}, e.state === 'deleted' ? null
        : el('button', {type: 'button', class: 'danger',
          'data-test': 'delete-endpoint', onclick: (ev) => act(ev.target,
            'Endpoint ' + e.id + ' deleted.',
            () => api('DELETE', '/v1/endpoints/' + enc(e.id)))},
        'Delete')))),
    consumer ? 'No endpoints: create one below.' : 'No endpoints.'));
    if (!consumer) return;
    const select = $('endpoint-service');
    const keep = session.connectTo || select.value;
    session.connectTo = null;
    fill(select, services.map(s => el('option', {value: s.name}, s.name)));
    if (services.some(s => s.name === keep)) select.value = keep;
    const networks = [...new Set(endpoints.map(e => e.network))].sort();
    fill($('known-networks'), networks.map(n => el('option', {value: n})));
  }

  /* ---- operators: targets, nodes, principals, networks ---------------- */

  function buildTargets(view) {
    const group = el('input', {'data-test': 'target-group', required: true});
    const address = el('input', {'data-test': 'target-address',
      required: true, placeholder: '10.0.0.5:8080'});
    const weight = el('input', {type: 'number', min: 1, max: 1000,
      value: '1', 'data-test': 'target-weight'});
    const register = el('button', {type: 'submit', class: 'primary',
      'data-test': 'register-target'}, 'Register target');
    const form = el('form', {class: 'card form', onsubmit: (ev) => {
      ev.preventDefault();
      act(register, 'Target ' + address.value + ' registered.', () =>
        api('POST', '/v1/target-groups/' + enc(group.value.trim()) +
          '/targets', {address: address.value.trim(),
          weight: Number(weight.value || 1)}));
    }}, el('h2', {}, 'Register a target'),
    el('div', {class: 'fields'}, field('Target group', group),
      field('Address', address), field('Weight', weight)),
    el('div', {class: 'buttons'}, register));
    view.append(el('div', {class: 'card'},
      el('div', {class: 'heading'}, el('h2', {}, 'Target groups'),
        refreshButton()),
      el('div', {id: 'targets-list'})), form);
  }

  async function loadTargets(current) {
    const groups = await listAll('/v1/target-groups', 'target_groups');
    if (!current()) return;
    const rows = [];
    for (const g of groups) {
      for (const t of g.targets) {
        rows.push(el('tr', {'data-test': 'target-row',
          'data-group': g.name, 'data-address': t.address,
          'data-state': t.state},
        el('td', {class: 'name'}, g.name), el('td', {}, t.address),
        el('td', {}, String(t.weight)), el('td', {}, badge(t.state)),
        el('td', {class: t.state === 'unhealthy' ? 'reason bad' : 'reason',
        'data-test': 'reason'}, t.reason || ''),
        el('td', {class: 'actions'}, el('button', {type: 'button',
          class: 'danger', 'data-test': 'deregister-target',
          title: 'Targets registered through the API only',
          onclick: (ev) => act(ev.target, 'Target ' + t.address +
            ' is draining.', () => api('DELETE', '/v1/target-groups/' +
            enc(g.name) + '/targets/' + enc(t.address)))},
        'Deregister'))));
      }
      if (!g.targets.length)
        rows.push(el('tr', {}, el('td', {class: 'name'}, g.name),
          el('td', {colspan: 5, class: 'empty'}, 'no targets')));
    }
    fill($('targets-list'), table(['Target group', 'Target', 'Weight',
      'Health', 'Reason', ''], rows, 'No target groups.'));
  }

  function buildNodes(view) {
    view.append(el('div', {class: 'card'},
      el('div', {class: 'heading'}, el('h2', {}, 'Nodes'), refreshButton()),
      el('div', {id: 'nodes-list'})));
  }

  async function loadNodes(current) {
    const nodes = await listAll('/v1/nodes', 'nodes');
    if (!current()) return;
    fill($('nodes-list'), table(
      ['Node', 'State', 'Last seen', 'Applied seq', 'Version', 'Networks', ''],
      nodes.map(n => el('tr', {'data-test': 'node-row', 'data-id': n.name,
        'data-state': n.state},
      el('td', {class: 'name'}, n.name), el('td', {}, badge(n.state)),
      el('td', {}, fmtTime(n.last_seen)),
      el('td', {'data-test': 'applied-seq'}, String(n.applied_seq)),
      el('td', {}, n.version),
      el('td', {}, list((n.networks || []).map(m => m.network + ' \u2192 ' +
        m.netns))),
      el('td', {class: 'actions'}, n.state === 'up' ? el('button', {
        type: 'button', class: 'danger', 'data-test': 'drain-node',
        onclick: () => openDialog('Drain ' + n.name + '?', el('p', {},
          'The node stops accepting flows and exits once its flows are ' +
          'done.'), [{label: 'Cancel', test: 'dialog-cancel'},
          {label: 'Drain', test: 'confirm-drain', primary: true,
            run: async () => {
              await api('POST', '/v1/nodes/' + enc(n.name) + '/drain');
              refresh();
              return true;
            }}])}, 'Drain') : null))),
    'No nodes have recorded themselves.'));
  }

  function buildTenancy(view) {
    const name = el('input', {'data-test': 'new-principal-name',
      required: true, placeholder: 'shop-c'});
    const role = el('select', {'data-test': 'new-principal-role'},
      [CONS, PROV, OP].map(r => el('option', {value: r}, r)));
    const create = el('button', {type: 'submit', class: 'primary',
      'data-test': 'create-principal'}, 'Create principal');
    const principalForm = el('form', {class: 'card form', onsubmit: (ev) => {
      ev.preventDefault();
      act(create, '', async () => {
        const p = await api('POST', '/v1/principals',
          {name: name.value.trim(), role: role.value});
        principalForm.reset();
        showToken('Principal ' + p.name + ' created', p.name, p.token);
        return false;
      });
    }}, el('h2', {}, 'New principal'),
    el('div', {class: 'fields'}, field('Name', name), field('Role', role)),
    el('div', {class: 'buttons'}, create));
    const netName = el('input', {'data-test': 'new-network-name',
      required: true});
    const range = el('input', {'data-test': 'new-network-range',
      required: true, placeholder: '10.1.0.0/24'});
    const netns = el('input', {'data-test': 'new-network-netns',
      placeholder: 'none: on the host'});
    const allowed = el('input', {'data-test': 'new-network-principals',
      placeholder: 'any consumer'});
    const createNet = el('button', {type: 'submit', class: 'primary',
      'data-test': 'create-network'}, 'Create network');
    const networkForm = el('form', {class: 'card form', onsubmit: (ev) => {
      ev.preventDefault();
      const body = {name: netName.value.trim(), range: range.value.trim(),
        principals: words(allowed.value)};
      if (netns.value) body.netns = netns.value;
      act(createNet, 'Network ' + body.name + ' created.', async () => {
        await api('POST', '/v1/networks', body);
        networkForm.reset();
      });
    }}, el('h2', {}, 'New network'),
    el('div', {class: 'fields'}, field('Name', netName), field('Range', range),
      field('Network namespace', netns), field('Consumers', allowed)),
    el('div', {class: 'buttons'}, createNet));
    view.append(
      el('div', {class: 'card'}, el('div', {class: 'heading'},
        el('h2', {}, 'Principals'), refreshButton()),
      el('div', {id: 'principals-list'})),
      principalForm,
      el('div', {class: 'card'}, el('h2', {}, 'Networks'),
        el('div', {id: 'networks-list'})),
      networkForm);
  }

  async function loadTenancy(current) {
    const [principals, networks] = await Promise.all([
      listAll('/v1/principals', 'principals'),
      listAll('/v1/networks', 'networks')]);
    if (!current()) return;
    fill($('principals-list'), table(
      ['Name', 'Role', 'Source', 'Created', ''],
      principals.map(p => el('tr', {'data-test': 'principal-row',
        'data-id': p.name},
      el('td', {class: 'name'}, p.name), el('td', {}, p.role),
      el('td', {}, p.source), el('td', {}, fmtTime(p.created_at)),
      el('td', {class: 'actions'}, p.source === 'api' ? [
        el('button', {type: 'button', 'data-test': 'new-token',
          onclick: (ev) => act(ev.target, '', async () => {
            const t = await api('POST', '/v1/principals/' + enc(p.name) +
              '/tokens', {});
            showToken('New token for ' + p.name, p.name, t.token);
            return false;
          })}, 'New token'),
        el('button', {type: 'button', 'data-test': 'show-tokens',
          onclick: () => showTokens(p.name)}, 'Tokens'),
        el('button', {type: 'button', class: 'danger',
          'data-test': 'delete-principal', onclick: (ev) => act(ev.target,
            'Principal ' + p.name + ' deleted.',
            () => api('DELETE', '/v1/principals/' + enc(p.name)))},
        'Delete')] : el('span', {class: 'muted'}, 'in the config'))))));
    fill($('networks-list'), table(
      ['Name', 'Range', 'Namespace', 'Consumers', 'Source', 'Created', ''],
      networks.map(n => el('tr', {'data-test': 'network-row',
        'data-id': n.name},
      el('td', {class: 'name'}, n.name), el('td', {}, n.range),
      el('td', {'data-test': 'netns'}, n.netns === null ? 'host' : n.netns),
      el('td', {}, n.principals.length ? n.principals.join(', ') : 'any'),
      el('td', {}, n.source), el('td', {}, fmtTime(n.created_at)),
      el('td', {class: 'actions'}, n.source === 'api' ? el('button', {
        type: 'button', class: 'danger', 'data-test': 'delete-network',
        onclick: (ev) => act(ev.target, 'Network ' + n.name + ' deleted.',
          () => api('DELETE', '/v1/networks/' + enc(n.name)))}, 'Delete')
        : el('span', {class: 'muted'}, 'in the config'))))));
  }

  async function showTokens(name) {
    const body = el('div', {});
    const load = async () => {
      const tokens = await listAll('/v1/principals/' + enc(name) + '/tokens',
        'tokens');
      fill(body, table(['Token', 'Created', 'Expires', 'Last used', ''],
        tokens.map(t => el('tr', {'data-test': 'token-row', 'data-id': t.id},
          el('td', {class: 'id'}, t.id), el('td', {}, fmtTime(t.created_at)),
          el('td', {}, t.expires_at ? fmtTime(t.expires_at) : 'never'),
          el('td', {}, fmtTime(t.last_used_at)),
          el('td', {class: 'actions'}, el('button', {type: 'button',
            class: 'danger', 'data-test': 'revoke-token',
            onclick: (ev) => act(ev.target, 'Token ' + t.id + ' revoked.',
              async () => {
                await api('DELETE', '/v1/principals/' + enc(name) +
                  '/tokens/' + enc(t.id));
                await load();
              })}, 'Revoke')))), 'No tokens.'));
    };
    try {
      await load();
    } catch (e) {
      say(errorText(e), true);
      return;
    }
    openDialog('Tokens of ' + name, body,
      [{label: 'Close', test: 'dialog-close', primary: true}]);
  }

  /* ---- events ---------------------------------------------------------- */

  function buildEvents(view) {
    view.append(el('div', {class: 'card'},
      el('div', {class: 'heading'}, el('h2', {}, 'Recent events'),
        el('span', {class: 'muted'}, 'newest first; what your role may see')),
      el('div', {id: 'events-list'})));
  }

  function drawEvents() {
    const node = $('events-list');
    if (!node) return;
    fill(node, table(['Seq', 'Time', 'Type', 'By', 'What', 'State'],
      session.events.slice().reverse().map(e => el('tr', {
        'data-test': 'event-row', 'data-seq': e.seq},
      el('td', {}, String(e.seq)), el('td', {}, fmtTime(e.time)),
      el('td', {}, e.type), el('td', {}, e.principal || ''),
      el('td', {}, eventSubject(e)),
      el('td', {}, e.state ? badge(e.state) : ''))),
    'No events since this page was opened.'));
  }

  function eventSubject(e) {
    const parts = [];
    if (e.endpoint_id) parts.push(e.endpoint_id);
    if (e.service_id) parts.push(e.service_id);
    if (e.target_group) parts.push(e.target_group + ' ' + e.target);
    if (e.node) parts.push(e.node);
    if (e.name) parts.push(e.name);
    if (e.token_id) parts.push(e.token_id);
    if (e.network) parts.push(e.network);
    return parts.join(' ');
  }

  function onEvent(event) {
    if (typeof event.seq === 'number') session.seq = event.seq;
    session.events.push(event);
    if (session.events.length > EVENTS_KEPT) session.events.shift();
    if (session.tab === 'events') drawEvents();
    else refreshSoon();
  }

  /* Where an operator's stream starts: a few events back from what the
   * nodes have applied, so the list is not empty at first. Others start
   * now. */
  async function firstSeq() {
    if (session.who.role !== OP) return null;
    try {
      const nodes = await listAll('/v1/nodes', 'nodes');
      const applied = Math.max(0, ...nodes.map(n => n.applied_seq || 0));
      return applied > 0 ? Math.max(0, applied - 50) : null;
    } catch (e) {
      return null;
    }
  }

  /* Follows GET /v1/events for as long as the session lasts; after an
   * error it comes back with ?after= the last seq seen (after 410, the
   * events are pruned: it reads the views again and starts from now). */
  async function follow() {
    const generation = session.generation;
    let delay = 1000;
    session.seq = await firstSeq();
    while (generation === session.generation) {
      const controller = new AbortController();
      session.stream = controller;
      try {
        const query = session.seq !== null ? '?after=' + session.seq : '';
        const response = await send('/v1/events' + query, {
          headers: headers(), cache: 'no-store', credentials: 'omit',
          signal: controller.signal});
        if (response.status === 401) {
          signOut('The token is no longer accepted: sign in again.');
          return;
        }
        if (response.status === 410) {
          session.seq = null;
          continue;
        }
        if (!response.ok) throw new Error('events: ' + response.status);
        $('live').hidden = false;
        delay = 1000;
        refresh(); /* what changed while the stream was not there */
        await readLines(response.body.getReader(), onEvent);
      } catch (e) {
        if (generation !== session.generation) return;
      }
      $('live').hidden = true;
      if (generation !== session.generation) return;
      await new Promise(resolve => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }

  async function readLines(reader, each) {
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, {stream: true});
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (line) each(JSON.parse(line));
      }
    }
  }

  /* ---- traffic: /metrics, sampled ------------------------------------- */

  /* Prometheus text 0.0.4: [{name, labels, value}], comments skipped. */
  function parseMetrics(text) {
    const out = [];
    const line_re = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
    const label_re = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const line of text.split('\n')) {
      if (!line || line[0] === '#') continue;
      const m = line_re.exec(line);
      if (!m) continue;
      const labels = {};
      for (const l of (m[2] || '').matchAll(label_re))
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => c === 'n' ? '\n' : c);
      out.push({name: m[1], labels, value: Number(m[3])});
    }
    return out;
  }

  /* One sample: per listener (load balancer and port, or endpoint), flows
   * open, flows accepted and bytes carried so far. */
  function sampleOf(series) {
    const listeners = new Map();
    const get = (l) => {
      const key = l.endpoint ? l.endpoint + ' :' + l.listener
        : l.lb + ' :' + l.listener;
      if (!listeners.has(key))
        listeners.set(key, {active: 0, flows: 0, bytes: 0});
      return listeners.get(key);
    };
    for (const s of series) {
      const name = s.name;
      if (name === 'nlb_active_flows') get(s.labels).active += s.value;
      else if (name === 'nlb_new_flows_total') get(s.labels).flows += s.value;
      else if (name === 'nlb_processed_bytes_total')
        get(s.labels).bytes += s.value;
    }
    return listeners;
  }

  async function pollMetrics() {
    const generation = session.generation;
    try {
      const response = await send('/metrics', {headers: headers(),
        cache: 'no-store', credentials: 'omit'});
      if (generation !== session.generation) return;
      if (response.status === 403) {
        session.metricsDenied = true;
        buildTabs();
        return;
      }
      if (response.ok) {
        const text = await response.text();
        if (generation !== session.generation) return;
        session.samples.push({t: Date.now() / 1000,
          listeners: sampleOf(parseMetrics(text))});
        if (session.samples.length > METRICS_SAMPLES)
          session.samples.shift();
        if (session.tab === 'traffic') drawCharts();
      }
    } catch (e) {
      /* the next poll tries again */
    }
    if (generation === session.generation)
      session.metricsTimer = setTimeout(pollMetrics, METRICS_MS);
  }

  function buildTraffic(view) {
    view.append(el('div', {class: 'card'},
      el('div', {class: 'heading'}, el('h2', {}, 'Traffic per listener'),
        el('span', {class: 'muted'}, 'from /metrics every ' +
          METRICS_MS / 1000 + ' s, the last five minutes at most')),
      el('div', {id: 'charts', class: 'charts', 'data-test': 'chart-flows'})));
  }

  const CHARTS = [
    {title: 'Active flows', test: 'chart-active',
      value: (cur) => cur.active},
    {title: 'New flows per second', test: 'chart-new',
      value: (cur, prev, dt) => rate(cur.flows, prev && prev.flows, dt)},
    {title: 'Bytes per second', test: 'chart-bytes',
      value: (cur, prev, dt) => rate(cur.bytes, prev && prev.bytes, dt)},
  ];

  /* A counter's rate; a counter that went back (a restart) counts from 0. */
  function rate(now, before, dt) {
    if (before === undefined || before === null || dt <= 0) return null;
    return (now >= before ? now - before : now) / dt;
  }

  function drawCharts() {
    const node = $('charts');
    if (!node) return;
    const samples = session.samples;
    const keys = [...new Set(samples.flatMap(s => [...s.listeners.keys()]))]
      .sort();
    if (!keys.length) {
      fill(node, el('p', {class: 'empty'}, samples.length
        ? 'No listeners you may see.' : 'Waiting for the first sample\u2026'));
      return;
    }
    fill(node, CHARTS.map(c => chart(c, samples, keys)),
      el('ul', {class: 'legend'}, keys.map((k, i) => el('li', {},
        el('span', {class: 'swatch series-' + (i % 8)}), k))));
  }

  /* The smallest 1, 2 or 5 times a power of ten at or above x (1 at
   * least): round numbers on the axis. */
  function niceCeiling(x) {
    if (!(x > 1)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(x)));
    for (const step of [1, 2, 5, 10])
      if (step * power >= x) return step * power;
    return 10 * power;
  }

  function chart(spec, samples, keys) {
    const W = 600, H = 180, L = 56, R = 8, T = 10, B = 22;
    const now = samples[samples.length - 1].t;
    /* The time the samples cover, one minute at least. */
    const span = Math.max(60, now - samples[0].t);
    const lines = keys.map(k => {
      const points = [];
      for (let i = 0; i < samples.length; i++) {
        const cur = samples[i].listeners.get(k);
        if (!cur) continue;
        const prev = i > 0 ? samples[i - 1].listeners.get(k) : null;
        const v = spec.value(cur, prev, i > 0 ? samples[i].t -
          samples[i - 1].t : 0);
        if (v !== null && isFinite(v)) points.push([samples[i].t, v]);
      }
      return points;
    });
    const max = niceCeiling(Math.max(...lines.flat().map(p => p[1])));
    const x = (t) => L + (W - L - R) * (1 - (now - t) / span);
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const plot = svg('svg', {viewBox: '0 0 ' + W + ' ' + H, class: 'chart',
      role: 'img', 'aria-label': spec.title});
    for (const frac of [0, 0.5, 1]) {
      const v = max * frac;
      plot.append(svg('line', {x1: L, x2: W - R, y1: y(v), y2: y(v),
        class: 'grid'}), svg('text', {x: L - 6, y: y(v) + 4,
        class: 'axis', 'text-anchor': 'end'}, fmtNumber(v)));
    }
    plot.append(svg('text', {x: L, y: H - 6, class: 'axis'},
      '\u2212' + Math.round(span / 60) + ' min'),
    svg('text', {x: W - R, y: H - 6, class: 'axis', 'text-anchor': 'end'},
      'now'));
    lines.forEach((points, i) => {
      if (points.length === 1) {
        plot.append(svg('circle', {cx: x(points[0][0]), cy: y(points[0][1]),
          r: 2.5, class: 'dot series-' + (i % 8)}));
      } else if (points.length > 1) {
        plot.append(svg('polyline', {class: 'line series-' + (i % 8),
          points: points.map(p => x(p[0]).toFixed(1) + ',' +
            y(p[1]).toFixed(1)).join(' ')}, svg('title', {}, keys[i])));
      }
    });
    const last = lines.map(p => p.length ? p[p.length - 1][1] : 0)
      .reduce((a, b) => a + b, 0);
    return el('figure', {class: 'chart-box', 'data-test': spec.test,
      'data-now': last},
      el('figcaption', {}, spec.title, el('span', {class: 'muted'},
        ' now ' + fmtNumber(last) + ' in all')), plot);
  }

  /* ---- start ----------------------------------------------------------- */

  function start() {
    $('sign-in-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const input = $('token');
      const token = input.value.trim();
      $('sign-in-error').textContent = '';
      if (!token) return;
      try {
        await signIn(token);
        input.value = '';
      } catch (e) {
        $('sign-in-error').textContent = e.status === 401
          ? 'This token is not known.' : e.status === 421
            ? 'This browser is still connected to nlbd as another ' +
              'principal (signed in in another tab, or just signed out ' +
              'over HTTPS, where a browser keeps one connection to the ' +
              'server): sign out in the other tab or close it, and try ' +
              'again in two minutes, or use another browser profile.'
            : errorText(e);
      }
    });
    $('sign-out').addEventListener('click', () => {
      signOut('');
      say('Signed out.');
    });
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (!saved) {
      signOut('');
      return;
    }
    signIn(saved).catch(() => signOut('Sign in again.'));
  }

  start();
})();
