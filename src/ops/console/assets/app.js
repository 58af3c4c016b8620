/*
 * Tidings web console: one hand-written script, no framework, no build step.
 *
 * Rules this file keeps:
 * - the key lives in this tab's sessionStorage only and travels as X-API-Key
 *   to this origin (never a cookie, never a URL);
 * - everything goes through the server's existing APIs (/admin/v1, topics,
 *   discussions), which decide what the key may do;
 * - data from the API is inserted as text (textContent, text nodes), never
 *   as markup, so a hostile tenant name or event payload stays text;
 * - no inline code or style: the page runs under a strict CSP.
 */
(() => {
  'use strict';

  const STORAGE_KEY = 'tidings.console.key';
  const WINDOW_MS = 5 * 60 * 1000;
  const MIN_SPAN_MS = 60 * 1000;
  const POLL_MS = 1000;
  const TAIL_KEEP = 200;
  const PAGE = 50;
  const VIEWS = ['overview', 'tenants', 'topics', 'moderation'];
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const state = {
    key: null,
    viewer: null,
    tenants: [],
    tenant: null,
    view: null,
    samples: [],
    charts: null,
    poll: null,
    sampling: false,
    tail: null,
    historyNext: null,
    moderationNext: null,
    deliveriesOf: null,
    deliveriesNext: null,
  };

  const $ = (id) => document.getElementById(id);

  /** An element with text, a class, data attributes and children (strings become text nodes). */
  function el(tag, options = {}, ...children) {
    const node = document.createElement(tag);
    if (options.text !== undefined && options.text !== null) node.textContent = String(options.text);
    if (options.className) node.className = options.className;
    if (options.title) node.title = options.title;
    if (options.type) node.type = options.type;
    if (options.dataset) Object.assign(node.dataset, options.dataset);
    if (options.onClick) node.addEventListener('click', guarded(options.onClick));
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function svg(tag, attributes = {}) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    return node;
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** Reads an answer: `data` of a success, the envelope's message of a failure. */
  async function answer(response) {
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (_) {
      json = null;
    }
    if (!response.ok) {
      const message = (json && json.error && json.error.message) || `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message, json && json.error && json.error.code);
    }
    return json ? json.data : null;
  }

  function headers(tenant, extra = {}) {
    const out = { 'X-API-Key': state.key, ...extra };
    if (tenant) out['x-tenantid'] = tenant;
    return out;
  }

  /** Calls the API with the signed-in key; `tenant` sends x-tenantid. */
  async function api(method, path, { body, tenant } = {}) {
    const extra = body === undefined ? {} : { 'Content-Type': 'application/json' };
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: headers(tenant, extra),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (err) {
      throw new ApiError(0, `the server could not be reached (${err.message})`);
    }
    return answer(response);
  }

  const tenantPath = (suffix = '') => `/admin/v1/tenants/${encodeURIComponent(state.tenant)}${suffix}`;

  // ---------------------------------------------------------------- messages

  function showError(err) {
    const box = $('error');
    const status = err instanceof ApiError && err.status ? ` (HTTP ${err.status})` : '';
    box.textContent = `${err.message || err}${status}`;
    box.hidden = false;
  }

  function clearError() {
    $('error').hidden = true;
    $('error').textContent = '';
  }

  /** An event handler that prevents the default, clears the last error and shows its own. */
  function guarded(handler) {
    return async (event) => {
      if (event && event.preventDefault) event.preventDefault();
      clearError();
      try {
        await handler(event);
      } catch (err) {
        showError(err);
      }
    };
  }

  function notice(id, text) {
    const box = $(id);
    box.textContent = text;
    box.hidden = false;
  }

  /** A button that asks for a second click within four seconds before it acts. */
  function confirmButton(label, action) {
    const button = el('button', { text: label, className: 'danger', type: 'button' });
    let armed = null;
    button.addEventListener('click', guarded(async () => {
      if (armed === null) {
        button.textContent = `Confirm: ${label.toLowerCase()}`;
        button.className = 'confirm';
        armed = setTimeout(() => {
          armed = null;
          button.textContent = label;
          button.className = 'danger';
        }, 4000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      button.disabled = true;
      try {
        await action();
      } finally {
        button.disabled = false;
      }
    }));
    return button;
  }

  // ---------------------------------------------------------------- formatting

  function number(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return '–';
    const abs = Math.abs(value);
    if (abs >= 1e9) return `${(value / 1e9).toFixed(1)}G`;
    if (abs >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
    if (abs >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
    if (Number.isInteger(value)) return String(value);
    return value.toFixed(abs >= 10 ? 1 : 2);
  }

  function bytes(value) {
    if (value === null || value === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB'];
    let unit = 0;
    let scaled = value;
    while (scaled >= 1024 && unit < units.length - 1) {
      scaled /= 1024;
      unit += 1;
    }
    return `${unit === 0 ? scaled : scaled.toFixed(1)} ${units[unit]}`;
  }

  const when = (text) => (text ? String(text).replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–');
  const json = (value) => JSON.stringify(value, null, 2);

  // ---------------------------------------------------------------- sign-in

  async function signIn(key) {
    state.key = key;
    let stats;
    try {
      stats = await api('GET', '/admin/v1/stats');
    } catch (err) {
      state.key = null;
      throw err;
    }
    sessionStorage.setItem(STORAGE_KEY, key);
    state.viewer = stats.viewer;
    await loadTenants();
    $('view-signin').hidden = true;
    $('nav').hidden = false;
    $('sign-out').hidden = false;
    $('who').textContent = state.viewer.instanceAdmin
      ? 'instance admin'
      : `tenant admin · ${state.viewer.tenant.slug} · key ${state.viewer.key.name}`;
    for (const view of VIEWS) $(`nav-${view}`).hidden = !allowedViews().includes(view);
    await show(allowedViews()[0]);
  }

  function signOut() {
    sessionStorage.removeItem(STORAGE_KEY);
    // A fresh page: nothing of the session stays in memory or in the DOM.
    window.location.reload();
  }

  /** The views this credential may use: the instance admin all; a tenant
   * admin key its tenant, plus topics and moderation when it may read. */
  function allowedViews() {
    if (state.viewer.instanceAdmin) return VIEWS;
    const scopes = state.viewer.key.scopes;
    return scopes.includes('read') ? ['tenants', 'topics', 'moderation'] : ['tenants'];
  }

  async function loadTenants() {
    state.tenants = state.viewer.instanceAdmin ? await api('GET', '/admin/v1/tenants') : [state.viewer.tenant];
    if (!state.tenants.some((tenant) => tenant.id === state.tenant)) {
      state.tenant = state.tenants.length ? state.tenants[0].id : null;
    }
    const picker = $('tenant-picker');
    picker.replaceChildren(...state.tenants.map((tenant) => {
      const option = el('option', { text: tenant.slug });
      option.value = tenant.id;
      return option;
    }));
    picker.value = state.tenant || '';
    picker.disabled = !state.viewer.instanceAdmin;
  }

  async function show(view) {
    const allowed = allowedViews();
    const target = allowed.includes(view) ? view : allowed[0];
    state.view = target;
    for (const name of VIEWS) {
      $(`view-${name}`).hidden = name !== target;
      $(`nav-${name}`).classList.toggle('active', name === target);
    }
    $('tenant-picker-label').hidden = target === 'overview';
    if (target === 'overview') startOverview();
    else stopOverview();
    if (target !== 'topics') stopTail();
    if (target === 'tenants') await refreshTenantView();
    if (target === 'moderation') await loadModeration(false);
  }

  // ---------------------------------------------------------------- overview

  const sum = (object) => Object.values(object || {}).reduce((total, value) => total + value, 0);

  /** Deliveries `{transport: {surface: n}}` summed per surface. */
  function bySurface(deliveries) {
    const out = {};
    for (const surfaces of Object.values(deliveries || {})) {
      for (const [surface, count] of Object.entries(surfaces)) out[surface] = (out[surface] || 0) + count;
    }
    return out;
  }

  const TRANSPORT_NAMES = { sse: 'SSE', ws: 'WebSocket', socketio: 'Socket.IO' };

  function renamed(object, names) {
    const out = {};
    for (const [key, value] of Object.entries(object || {})) out[names[key] || key] = value;
    return out;
  }

  /** Charts: `gauge` series are values now; `counter` series become per-second rates. */
  const CHARTS = [
    { title: 'Open connections by protocol', gauge: (s) => ({ 'HTTP/1.1': s.open.connections.http1, 'HTTP/2': s.open.connections.h2 }) },
    { title: 'Open streams by transport', gauge: (s) => renamed(s.open.streams, TRANSPORT_NAMES) },
    { title: 'Subscriptions by surface', gauge: (s) => s.subscriptionsBySurface },
    { title: 'Events committed /s', counter: (s) => ({ events: s.writer.events }) },
    { title: 'Deliveries /s by transport', counter: (s) => renamed(Object.fromEntries(Object.entries(s.deliveries).map(([t, v]) => [t, sum(v)])), TRANSPORT_NAMES) },
    { title: 'Deliveries /s by surface', counter: (s) => bySurface(s.deliveries) },
    { title: 'Writer queue: changes waiting', gauge: (s) => ({ changes: s.writer.queuedChanges }) },
    { title: 'Writer queue: bytes waiting', gauge: (s) => ({ bytes: s.writer.queuedBytes }), format: bytes },
    { title: 'Flush latency (ms, mean per durable group)', derived: flushLatency },
    { title: 'Webhook backlog (pending deliveries)', gauge: (s) => ({ pending: s.webhooks.pending }) },
    { title: 'Webhook attempts /s', counter: (s) => s.webhooks.attempts },
  ];

  function flushLatency(previous, current) {
    const groups = current.writer.commits - previous.writer.commits;
    const seconds = current.writer.flushSeconds - previous.writer.flushSeconds;
    return { flush: groups > 0 ? (seconds * 1000) / groups : null };
  }

  /** The points of a chart over the samples kept. */
  function points(chart) {
    const out = [];
    state.samples.forEach((sample, index) => {
      const previous = state.samples[index - 1];
      if (chart.gauge) {
        out.push({ t: sample.at, values: chart.gauge(sample) || {} });
        return;
      }
      if (!previous) return;
      if (chart.derived) {
        out.push({ t: sample.at, values: chart.derived(previous, sample) });
        return;
      }
      const seconds = (sample.at - previous.at) / 1000;
      const now = chart.counter(sample) || {};
      const before = chart.counter(previous) || {};
      const values = {};
      for (const [name, value] of Object.entries(now)) {
        values[name] = seconds > 0 ? Math.max(0, value - (before[name] || 0)) / seconds : null;
      }
      out.push({ t: sample.at, values });
    });
    return out;
  }

  /** A hand-drawn SVG line chart of the last five minutes. */
  class LineChart {
    constructor(parent, definition) {
      this.definition = definition;
      this.format = definition.format || number;
      this.names = [];
      this.figure = el('figure', { className: 'chart' }, el('figcaption', { text: definition.title }));
      this.plot = svg('svg', { viewBox: '0 0 420 130', class: 'plot', role: 'img', 'aria-label': definition.title });
      this.plot.append(svg('rect', { x: 40, y: 6, width: 376, height: 108, class: 'frame' }));
      this.top = svg('text', { x: 36, y: 14, 'text-anchor': 'end', class: 'axis' });
      this.plot.append(this.top);
      const zero = svg('text', { x: 36, y: 114, 'text-anchor': 'end', class: 'axis' });
      zero.textContent = '0';
      this.start = svg('text', { x: 40, y: 127, class: 'axis' });
      const end = svg('text', { x: 416, y: 127, 'text-anchor': 'end', class: 'axis' });
      end.textContent = 'now';
      this.plot.append(zero, this.start, end);
      this.lines = svg('g');
      this.plot.append(this.lines);
      this.legend = el('div', { className: 'legend' });
      this.figure.append(this.plot, this.legend);
      parent.append(this.figure);
    }

    setNames(names) {
      if (names.join('\u0000') === this.names.join('\u0000')) return;
      this.names = names;
      this.lines.replaceChildren(...names.map((_, i) => svg('polyline', { class: `line s${i % 6}` })));
      this.currents = names.map(() => el('span', { className: 'current' }));
      this.legend.replaceChildren(...names.map((name, i) => el('span', {},
        el('span', { className: `swatch s${i % 6}` }), name, this.currents[i])));
    }

    update(now) {
      const data = points(this.definition);
      const names = [];
      for (const point of data) {
        for (const name of Object.keys(point.values)) if (!names.includes(name)) names.push(name);
      }
      this.setNames(names);
      let max = 0;
      for (const point of data) {
        for (const value of Object.values(point.values)) if (value !== null && value > max) max = value;
      }
      const scale = niceCeiling(max);
      this.top.textContent = this.format(scale);
      // The last five minutes, or less while fewer were sampled (at least one).
      const first = state.samples.length ? state.samples[0].at : now;
      const span = Math.min(WINDOW_MS, Math.max(MIN_SPAN_MS, now - first));
      this.start.textContent = span >= 120000 ? `−${Math.round(span / 60000)} min` : `−${Math.round(span / 1000)} s`;
      const x = (t) => 40 + (376 * (t - (now - span))) / span;
      const y = (v) => 114 - (108 * v) / scale;
      // A gauge that stopped reporting a name (a surface with no subscription left) is at 0.
      const value = (point, name) => {
        const found = point.values[name];
        if (found === undefined) return this.definition.gauge ? 0 : null;
        return found;
      };
      names.forEach((name, i) => {
        const coordinates = data
          .filter((point) => value(point, name) !== null && point.t >= now - span)
          .map((point) => `${x(point.t).toFixed(1)},${y(value(point, name)).toFixed(1)}`);
        this.lines.children[i].setAttribute('points', coordinates.join(' '));
        this.currents[i].textContent = this.format(data.length ? value(data[data.length - 1], name) : null);
      });
    }
  }

  function niceCeiling(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (value <= step * power) return step * power;
    }
    return 10 * power;
  }

  const NUMBERS = [
    ['rss', 'Resident memory', (s) => bytes(s.process.residentBytes)],
    ['fds', 'Open files', (s) => number(s.process.openFds)],
    ['connections', 'Open connections', (s) => number(sum(s.open.connections))],
    ['streams', 'Open streams', (s) => number(sum(s.open.streams))],
    ['subscriptions', 'Subscriptions', (s) => number(s.subscriptions)],
    ['topics', 'Topics followed', (s) => number(s.topics)],
    ['store', 'Store', (s) => s.writer.state],
    ['events', 'Events committed', (s) => number(s.writer.events)],
    ['deliveries', 'Deliveries', (s) => number(sum(bySurface(s.deliveries)))],
    ['commits', 'Durable groups', (s) => number(s.writer.commits)],
    ['queue', 'Writer queue', (s) => number(s.writer.queuedChanges)],
    ['backlog', 'Webhook backlog', (s) => (s.webhooks.pending === null ? 'unknown' : `${number(s.webhooks.pending)}${s.webhooks.pendingCapped ? '+' : ''}`)],
  ];

  function buildOverview() {
    if (state.charts) return;
    $('numbers').replaceChildren(...NUMBERS.map(([id, label]) => el('div', { className: 'number' },
      el('div', { className: 'label', text: label }),
      el('div', { className: 'value', text: '–', dataset: { stat: id } }))));
    const parent = $('charts');
    state.charts = CHARTS.map((definition) => new LineChart(parent, definition));
  }

  function renderOverview() {
    const latest = state.samples[state.samples.length - 1];
    if (!latest) return;
    for (const [id, , value] of NUMBERS) {
      document.querySelector(`[data-stat="${id}"]`).textContent = value(latest);
    }
    for (const chart of state.charts) chart.update(latest.at);
  }

  async function sample() {
    if (state.sampling) return;
    state.sampling = true;
    try {
      const stats = await api('GET', '/admin/v1/stats');
      state.samples.push(stats);
      while (state.samples.length > 2 && state.samples[0].at < stats.at - WINDOW_MS - POLL_MS) state.samples.shift();
      renderOverview();
    } catch (err) {
      showError(err);
    } finally {
      state.sampling = false;
    }
  }

  function startOverview() {
    buildOverview();
    if (state.poll) return;
    sample();
    state.poll = setInterval(sample, POLL_MS);
  }

  function stopOverview() {
    clearInterval(state.poll);
    state.poll = null;
  }

  // ---------------------------------------------------------------- tenants

  async function refreshTenantView() {
    $('tenants-panel').hidden = !state.viewer.instanceAdmin;
    if (state.viewer.instanceAdmin) {
      await loadTenants();
      renderTenants();
    }
    $('key-secret').hidden = true;
    $('webhook-secret').hidden = true;
    $('deliveries').hidden = true;
    if (!state.tenant) {
      for (const id of ['keys-body', 'realms-body', 'webhooks-body']) $(id).replaceChildren();
      $('origins-text').value = '';
      return;
    }
    await Promise.all([loadKeys(), loadRealms(), loadOrigins(), loadWebhooks()]);
  }

  function renderTenants() {
    $('tenants-body').replaceChildren(...state.tenants.map((tenant) => el('tr', { dataset: { id: tenant.id } },
      el('td', { text: tenant.slug }),
      el('td', { text: tenant.name }),
      el('td', { className: 'mono', text: tenant.id }),
      el('td', { text: when(tenant.createdAt) }),
      el('td', { className: 'actions' },
        el('button', { text: 'Manage', type: 'button', onClick: () => selectTenant(tenant.id) }),
        confirmButton('Delete', async () => {
          await api('DELETE', `/admin/v1/tenants/${encodeURIComponent(tenant.id)}`);
          await refreshTenantView();
        })))));
  }

  async function selectTenant(id) {
    state.tenant = id;
    $('tenant-picker').value = id;
    await onTenantChange();
  }

  async function onTenantChange() {
    state.tenant = $('tenant-picker').value || null;
    stopTail();
    $('history-body').replaceChildren();
    $('history-gap').replaceChildren();
    $('tail-events').replaceChildren();
    if (state.view === 'tenants') await refreshTenantView();
    if (state.view === 'moderation') await loadModeration(false);
  }

  async function createTenant() {
    const slug = $('tenant-slug').value.trim();
    const name = $('tenant-name').value.trim();
    const tenant = await api('POST', '/admin/v1/tenants', { body: name ? { slug, name } : { slug } });
    $('tenant-slug').value = '';
    $('tenant-name').value = '';
    state.tenant = tenant.id;
    await refreshTenantView();
  }

  async function loadKeys() {
    const keys = await api('GET', tenantPath('/keys'));
    $('keys-body').replaceChildren(...keys.map((key) => el('tr', { dataset: { id: key.id } },
      el('td', { text: key.name },
        !state.viewer.instanceAdmin && key.id === state.viewer.key.id ? el('div', { className: 'hint', text: 'signed in with this key' }) : null),
      el('td', { className: 'mono', text: key.prefix }),
      el('td', { text: key.scopes.join(', ') }),
      el('td', { text: when(key.createdAt) }),
      el('td', {}, key.revokedAt
        ? el('span', { className: 'badge off', text: `revoked ${when(key.revokedAt)}` })
        : el('span', { className: 'badge on', text: key.lastUsedAt ? `used ${when(key.lastUsedAt)}` : 'active' })),
      el('td', { className: 'actions' }, key.revokedAt ? null : confirmButton('Revoke', async () => {
        await api('DELETE', tenantPath(`/keys/${encodeURIComponent(key.id)}`));
        await loadKeys();
      })))));
  }

  async function createKey() {
    const scopes = ['publish', 'read', 'admin'].filter((scope) => $(`key-scope-${scope}`).checked);
    const name = $('key-name').value.trim();
    const key = await api('POST', tenantPath('/keys'), { body: { name, scopes } });
    notice('key-secret', `Secret of key “${key.name}” (shown only now): ${key.secret}`);
    $('key-name').value = '';
    await loadKeys();
  }

  async function loadRealms() {
    const realms = await api('GET', tenantPath('/realms'));
    $('realms-body').replaceChildren(...realms.map((realm) => el('tr', { dataset: { name: realm.name } },
      el('td', { text: realm.name }),
      el('td', { text: realm.keys.map((key) => (key.kid ? `${key.algorithm} (${key.kid})` : key.algorithm)).join(', ') }),
      el('td', { text: (realm.audience || []).join(', ') || '–' }),
      el('td', { text: realm.issuer || '–' }),
      el('td', { text: `${realm.leewaySeconds} s` }),
      el('td', { className: 'actions' }, confirmButton('Remove', async () => {
        await api('DELETE', tenantPath(`/realms/${encodeURIComponent(realm.name)}`));
        await loadRealms();
      })))));
  }

  async function putRealm() {
    const name = $('realm-name').value.trim();
    const key = { algorithm: $('realm-algorithm').value, material: $('realm-material').value };
    const kid = $('realm-kid').value.trim();
    if (kid) key.kid = kid;
    const body = { keys: [key] };
    const audience = $('realm-audience').value.split(',').map((item) => item.trim()).filter(Boolean);
    if (audience.length) body.audience = audience;
    const issuer = $('realm-issuer').value.trim();
    if (issuer) body.issuer = issuer;
    const leeway = $('realm-leeway').value.trim();
    if (leeway) body.leewaySeconds = Number(leeway);
    await api('PUT', tenantPath(`/realms/${encodeURIComponent(name)}`), { body });
    $('realm-material').value = '';
    await loadRealms();
  }

  async function loadOrigins() {
    const origins = await api('GET', tenantPath('/origins'));
    $('origins-text').value = origins.origins.join('\n');
  }

  async function saveOrigins() {
    const origins = $('origins-text').value.split('\n').map((line) => line.trim()).filter(Boolean);
    await api('PUT', tenantPath('/origins'), { body: { origins } });
    await loadOrigins();
  }

  async function loadWebhooks() {
    const endpoints = await api('GET', tenantPath('/webhooks'));
    $('webhooks-body').replaceChildren(...endpoints.map((endpoint) => el('tr', { dataset: { id: endpoint.id } },
      el('td', { className: 'mono', text: endpoint.url }),
      el('td', { text: endpoint.description || '–' }),
      el('td', { text: endpoint.eventTypes.length ? endpoint.eventTypes.join(', ') : 'all' }),
      el('td', {}, endpoint.enabled
        ? el('span', { className: 'badge on', text: 'enabled' })
        : el('span', { className: 'badge off', text: endpoint.disabledReason ? `disabled: ${endpoint.disabledReason}` : 'disabled' })),
      el('td', { text: endpoint.lastError || '–' }),
      el('td', { className: 'actions' },
        endpoint.enabled
          ? el('button', { text: 'Disable', type: 'button', onClick: () => setEnabled(endpoint.id, false) })
          : el('button', { text: 'Enable', type: 'button', onClick: () => setEnabled(endpoint.id, true) }),
        el('button', { text: 'Failed deliveries', type: 'button', onClick: () => loadDeliveries(endpoint, false) }),
        confirmButton('Delete', async () => {
          await api('DELETE', tenantPath(`/webhooks/${encodeURIComponent(endpoint.id)}`));
          if (state.deliveriesOf && state.deliveriesOf.id === endpoint.id) $('deliveries').hidden = true;
          await loadWebhooks();
        })))));
  }

  async function setEnabled(id, enabled) {
    const path = tenantPath(`/webhooks/${encodeURIComponent(id)}`);
    if (enabled) await api('POST', `${path}/enable`);
    else await api('PATCH', path, { body: { enabled: false } });
    await loadWebhooks();
  }

  async function createWebhook() {
    const body = { url: $('webhook-url').value.trim() };
    const types = $('webhook-types').value.split(',').map((item) => item.trim()).filter(Boolean);
    if (types.length) body.eventTypes = types;
    const description = $('webhook-description').value.trim();
    if (description) body.description = description;
    const endpoint = await api('POST', tenantPath('/webhooks'), { body });
    notice('webhook-secret', `Signing secret of ${endpoint.url} (shown only now): ${endpoint.secret}`);
    for (const id of ['webhook-url', 'webhook-types', 'webhook-description']) $(id).value = '';
    await loadWebhooks();
  }

  async function loadDeliveries(endpoint, append) {
    state.deliveriesOf = endpoint;
    const after = append && state.deliveriesNext ? `&after=${encodeURIComponent(state.deliveriesNext)}` : '';
    const page = await api('GET', tenantPath(`/webhooks/${encodeURIComponent(endpoint.id)}/deliveries?status=failed&limit=${PAGE}${after}`));
    const rows = page.deliveries.map((delivery) => el('tr', { dataset: { id: delivery.id } },
      el('td', { className: 'mono', text: delivery.id }),
      el('td', { className: 'mono', text: delivery.eventId }),
      el('td', { text: delivery.eventType }),
      el('td', { text: delivery.attempts }),
      el('td', { text: delivery.lastError || '–' }),
      el('td', { text: when(delivery.failedAt) }),
      el('td', { className: 'actions' }, el('button', {
        text: 'Re-deliver',
        type: 'button',
        onClick: async () => {
          await api('POST', tenantPath(`/webhooks/${encodeURIComponent(endpoint.id)}/deliveries/${encodeURIComponent(delivery.id)}/redeliver`));
          await loadDeliveries(endpoint, false);
        },
      }))));
    if (append) $('deliveries-body').append(...rows);
    else $('deliveries-body').replaceChildren(...rows);
    state.deliveriesNext = page.next;
    $('deliveries-more').hidden = !page.next;
    $('deliveries-title').textContent = `Failed deliveries of ${endpoint.url}`;
    $('deliveries').hidden = false;
  }

  async function redeliverAll() {
    const endpoint = state.deliveriesOf;
    const result = await api('POST', tenantPath(`/webhooks/${encodeURIComponent(endpoint.id)}/deliveries/redeliver`));
    notice('webhook-secret', `${result.redelivered} failed deliveries of ${endpoint.url} queued again`);
    await loadDeliveries(endpoint, false);
  }

  // ---------------------------------------------------------------- topics

  const topicName = () => {
    const name = $('topic-name').value.trim();
    if (!name) throw new Error('name a topic first');
    return name;
  };

  function eventRow(event) {
    const actor = event.actor && typeof event.actor === 'object' ? event.actor.name : event.actor;
    return el('tr', { dataset: { id: event.id } },
      el('td', { className: 'mono', text: event.id }),
      el('td', { text: event.type }),
      el('td', { text: when(event.occurredAt) }),
      el('td', { text: actor === undefined || actor === null ? '–' : actor }),
      el('td', {}, el('pre', { className: 'json', text: json(event.data) })));
  }

  function gapText(gap) {
    return `Gap: events before ${gap.oldestId || 'the oldest kept'} are gone (${gap.reason})`;
  }

  async function loadHistory(append) {
    const after = append && state.historyNext ? `&after=${encodeURIComponent(state.historyNext)}` : '';
    const path = `/api/v1/topics/${encodeURIComponent(topicName())}/events?limit=${PAGE}${after}`;
    const page = await api('GET', path, { tenant: state.tenant });
    const rows = page.events.map(eventRow);
    if (append) $('history-body').append(...rows);
    else $('history-body').replaceChildren(...rows);
    if (page.gap) $('history-gap').append(el('div', { className: 'gap', text: gapText(page.gap) }));
    else if (!append) $('history-gap').replaceChildren();
    state.historyNext = page.next;
    $('history-more').hidden = !page.next;
  }

  function tailStatus(text) {
    $('tail-status').textContent = text;
  }

  function tailButtons(running) {
    $('topic-tail').hidden = running;
    $('topic-stop').hidden = !running;
  }

  /** Follows a topic live: the SSE stream read with fetch, so the key
   * travels in a header (EventSource could only put it in the URL). */
  async function startTail() {
    const topic = topicName();
    stopTail();
    const controller = new AbortController();
    state.tail = controller;
    tailStatus('connecting…');
    let response;
    try {
      response = await fetch(`/api/v1/topics/${encodeURIComponent(topic)}/stream`, {
        headers: headers(state.tenant, { Accept: 'text/event-stream' }),
        signal: controller.signal,
        cache: 'no-store',
        credentials: 'omit',
      });
      if (!response.ok) await answer(response);
    } catch (err) {
      state.tail = null;
      tailStatus('');
      throw err;
    }
    tailButtons(true);
    readStream(response.body, controller);
  }

  function stopTail() {
    if (state.tail) {
      state.tail.abort();
      state.tail = null;
      tailStatus('stopped');
    }
    tailButtons(false);
  }

  async function readStream(body, controller) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end = buffer.indexOf('\n\n');
        while (end >= 0) {
          onFrame(parseFrame(buffer.slice(0, end)));
          buffer = buffer.slice(end + 2);
          end = buffer.indexOf('\n\n');
        }
      }
      if (!controller.signal.aborted) tailStatus('the stream ended');
    } catch (err) {
      if (!controller.signal.aborted) tailStatus(`the stream failed: ${err.message}`);
    } finally {
      if (state.tail === controller) {
        state.tail = null;
        tailButtons(false);
      }
    }
  }

  function parseFrame(block) {
    const frame = { event: 'message', id: null, data: [] };
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') frame.data.push(value);
      else if (field === 'event') frame.event = value;
      else if (field === 'id') frame.id = value;
    }
    frame.data = frame.data.join('\n');
    return frame;
  }

  function parsed(text) {
    try {
      return JSON.parse(text);
    } catch (_) {
      return text;
    }
  }

  function onFrame(frame) {
    if (!frame.data) return;
    const data = parsed(frame.data);
    switch (frame.event) {
      case 'connected':
        tailStatus(`live (from ${frame.id || 'now'})`);
        return;
      case 'reset':
        $('tail-events').prepend(el('div', { className: 'gap', text: gapText(data) }));
        return;
      case 'error':
      case 'shutdown':
      case 'connection-timeout':
        tailStatus(`${frame.event}: ${data.message || data.reason || data.code || ''}`);
        return;
      default:
        break;
    }
    const list = $('tail-events');
    const event = typeof data === 'object' && data !== null ? data : { id: frame.id, type: frame.event, data };
    const card = el('table', { className: 'tail-event' }, el('tbody', {}, eventRow(event)));
    list.prepend(card);
    while (list.children.length > TAIL_KEEP) list.lastChild.remove();
  }

  // ---------------------------------------------------------------- moderation

  async function loadModeration(append) {
    if (!state.tenant) return;
    const cursor = append && state.moderationNext ? `&cursor=${encodeURIComponent(state.moderationNext)}` : '';
    const page = await api('GET', `/api/v1/discussions/pending-comments?limit=${PAGE}${cursor}`, { tenant: state.tenant });
    const rows = page.comments.map(moderationRow);
    if (append) $('moderation-body').append(...rows);
    else $('moderation-body').replaceChildren(...rows);
    state.moderationNext = page.nextCursor;
    $('moderation-more').hidden = !page.nextCursor;
  }

  function moderationRow(comment) {
    const discussion = comment.discussion;
    const path = `/api/v1/discussions/${encodeURIComponent(discussion.id)}/comments/${encodeURIComponent(comment.id)}`;
    const decide = (action) => async () => {
      const reason = $('moderation-reason').value.trim();
      const body = action === 'reject' && reason ? { reason } : undefined;
      await api('POST', `${path}/${action}`, { body, tenant: state.tenant });
      row.remove();
    };
    const row = el('tr', { dataset: { id: comment.id } },
      el('td', { text: when(comment.createdAt) }),
      el('td', {},
        el('div', { text: discussion.title }),
        el('div', { className: 'hint', text: discussion.externalId }),
        discussion.status === 'open' ? null : el('span', { className: 'badge off', text: discussion.status })),
      el('td', { text: comment.author.displayName || comment.author.userId }),
      el('td', {}, el('pre', { className: 'json', text: comment.body })),
      el('td', { className: 'actions' },
        el('button', { text: 'Approve', className: 'primary', type: 'button', dataset: { action: 'approve' }, onClick: decide('approve') }),
        el('button', { text: 'Reject', className: 'danger', type: 'button', dataset: { action: 'reject' }, onClick: decide('reject') })));
    return row;
  }

  // ---------------------------------------------------------------- wiring

  function wire() {
    $('signin-form').addEventListener('submit', guarded(async () => {
      const key = $('signin-key').value.trim();
      if (!key) throw new Error('enter a key');
      await signIn(key);
      $('signin-key').value = '';
    }));
    $('sign-out').addEventListener('click', signOut);
    for (const view of VIEWS) $(`nav-${view}`).addEventListener('click', guarded(() => show(view)));
    $('tenant-picker').addEventListener('change', guarded(onTenantChange));
    $('tenant-create').addEventListener('submit', guarded(createTenant));
    $('key-create').addEventListener('submit', guarded(createKey));
    $('realm-create').addEventListener('submit', guarded(putRealm));
    $('origins-save').addEventListener('click', guarded(saveOrigins));
    $('webhook-create').addEventListener('submit', guarded(createWebhook));
    $('deliveries-more').addEventListener('click', guarded(() => loadDeliveries(state.deliveriesOf, true)));
    $('deliveries-redeliver-all').addEventListener('click', guarded(redeliverAll));
    $('topic-form').addEventListener('submit', guarded(() => loadHistory(false)));
    $('history-more').addEventListener('click', guarded(() => loadHistory(true)));
    $('topic-tail').addEventListener('click', guarded(startTail));
    $('topic-stop').addEventListener('click', guarded(stopTail));
    $('moderation-refresh').addEventListener('click', guarded(() => loadModeration(false)));
    $('moderation-more').addEventListener('click', guarded(() => loadModeration(true)));
  }

  wire();
  const saved = sessionStorage.getItem(STORAGE_KEY);
  if (saved) {
    signIn(saved).catch((err) => {
      sessionStorage.removeItem(STORAGE_KEY);
      showError(err);
    });
  }
})();
