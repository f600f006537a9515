// Warren management console: plain JavaScript over the management API.
'use strict';

// ---------- small helpers ----------

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const enc = encodeURIComponent;
const fmt = (n) => (typeof n === 'number' ? n.toLocaleString('en-US', { maximumFractionDigits: 1 }) : (n ?? ''));
const view = () => $('#view');

function h(html) {
  const t = document.createElement('template');
  t.innerHTML = html.trim();
  return t.content.firstElementChild;
}

let bannerTimer;
function banner(msg, ok = false) {
  const b = $('#banner');
  b.textContent = msg;
  b.className = ok ? 'banner ok' : 'banner';
  b.hidden = false;
  clearTimeout(bannerTimer);
  bannerTimer = setTimeout(() => { b.hidden = true; }, ok ? 3000 : 10000);
}

// Errors never leave a blank page: they are shown in words.
window.addEventListener('error', (e) => banner('Something went wrong in the console: ' + e.message));
window.addEventListener('unhandledrejection', (e) => banner(describe(e.reason)));

function describe(err) {
  if (err instanceof ApiError) return err.message;
  if (err instanceof TypeError) return 'Cannot reach the broker (' + err.message + '). Is it running?';
  return String(err && err.message ? err.message : err);
}

class ApiError extends Error {
  constructor(status, body) {
    const reason = body && (body.reason || body.error) ? (body.reason || body.error) : 'HTTP ' + status;
    super(status === 401 && reason === 'Login failed' ? 'Login failed: wrong user name or password.' : reason);
    this.status = status;
  }
}

// ---------- API ----------

const auth = {
  get() { return sessionStorage.getItem('warren-auth'); },
  set(u, p) { sessionStorage.setItem('warren-auth', btoa(unescape(enc(u + ':' + p)))); sessionStorage.setItem('warren-user', u); },
  clear() { sessionStorage.removeItem('warren-auth'); sessionStorage.removeItem('warren-user'); },
};

async function api(method, path, body, headers = {}) {
  const opts = { method, headers: { Authorization: 'Basic ' + auth.get(), 'X-Requested-With': 'XMLHttpRequest', ...headers } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { reason: text }; }
  }
  if (res.status === 401 && data && data.error === 'not_authorized') {
    auth.clear();
    showLogin('Your session ended: log in again.');
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}
const get = (p) => api('GET', p);

// Runs an action, reporting success or the error in the banner.
async function act(fn, okMsg) {
  try {
    await fn();
    if (okMsg) banner(okMsg, true);
    return true;
  } catch (e) {
    banner(describe(e));
    return false;
  }
}

// ---------- login ----------

function showLogin(msg = '') {
  stopTimers();
  $('#app').hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = msg;
}

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.target;
  auth.set(f.username.value, f.password.value);
  try {
    await start();
  } catch (err) {
    auth.clear();
    $('#login-error').textContent = describe(err);
  }
});

$('#logout').addEventListener('click', () => { auth.clear(); showLogin(); });

let me = null;
async function start() {
  me = await get('/api/whoami');
  $('#whoami').textContent = me.name + (me.tags.length ? ' (' + me.tags.join(', ') + ')' : '');
  $('#login').hidden = true;
  $('#app').hidden = false;
  if (!location.hash || location.hash === '#/') location.hash = '#/overview';
  route();
}

// ---------- routing ----------

let timers = [];
function every(ms, fn) { timers.push(setInterval(fn, ms)); }
function stopTimers() { timers.forEach(clearInterval); timers = []; }

const routes = [
  [/^#\/overview$/, overviewPage],
  [/^#\/connections$/, () => listPage('connections')],
  [/^#\/channels$/, () => listPage('channels')],
  [/^#\/exchanges$/, () => listPage('exchanges')],
  [/^#\/queues$/, () => listPage('queues')],
  [/^#\/nodes$/, () => listPage('nodes')],
  [/^#\/queue\/([^/]+)\/(.+)$/, (v, n) => queuePage(decodeURIComponent(v), decodeURIComponent(n))],
  [/^#\/exchange\/([^/]+)\/(.*)$/, (v, n) => exchangePage(decodeURIComponent(v), decodeURIComponent(n))],
  [/^#\/admin$/, adminPage],
  [/^#\/shovels$/, shovelsPage],
  [/^#\/definitions$/, definitionsPage],
  [/^#\/federation$/, federationPage],
];

async function route() {
  if (!auth.get()) return showLogin();
  stopTimers();
  const hash = location.hash || '#/overview';
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', hash.startsWith(a.getAttribute('href'))));
  for (const [re, page] of routes) {
    const m = hash.match(re);
    if (m) {
      view().innerHTML = '<p class="muted">Loading…</p>';
      try {
        await page(...m.slice(1));
      } catch (e) {
        view().innerHTML = '';
        view().append(h('<div class="card"><h1>Could not show this page</h1><p class="error"></p></div>'));
        $('.error', view()).textContent = describe(e);
      }
      return;
    }
  }
  view().innerHTML = '<div class="card"><h1>Not found</h1><p>No such page. <a href="#/overview">Go to the overview</a>.</p></div>';
}
window.addEventListener('hashchange', route);

// ---------- overview with live charts ----------

const series = { rates: [], depth: [] };

function drawChart(canvas, points, keys, colors) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, ht = canvas.clientHeight;
  canvas.width = w * dpr; canvas.height = ht * dpr;
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, ht);
  const pad = 40;
  let maxV = 1;
  for (const p of points) for (const k of keys) maxV = Math.max(maxV, p[k] || 0);
  g.strokeStyle = '#dde2e8'; g.fillStyle = '#6b7480'; g.font = '11px system-ui'; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = 10 + (ht - 30) * i / 4;
    g.beginPath(); g.moveTo(pad, y); g.lineTo(w - 5, y); g.stroke();
    g.fillText(fmt(maxV * (1 - i / 4)), 2, y + 4);
  }
  keys.forEach((k, ki) => {
    g.strokeStyle = colors[ki]; g.lineWidth = 2; g.beginPath();
    points.forEach((p, i) => {
      const x = pad + (w - pad - 5) * (points.length < 2 ? 1 : i / (60 - 1));
      const y = 10 + (ht - 30) * (1 - (p[k] || 0) / maxV);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  });
}

const COLORS = ['#c2571a', '#2f6fb3', '#2f7d32', '#8e44ad'];
function legend(keys, labels) {
  return '<div class="legend">' + keys.map((k, i) => `<span><i class="c${i}"></i>${esc(labels[i])}</span>`).join('') + '</div>';
}

function mib(b) { return (b / 1048576).toFixed(1); }

async function overviewPage() {
  view().innerHTML = `
    <h1>Overview</h1>
    <div class="stats" id="stats"></div>
    <div class="charts">
      <div class="card"><h2>Message rates (per second)</h2><canvas id="rates"></canvas>
        ${legend(['publish', 'deliver_get', 'ack'], ['published', 'delivered', 'acknowledged'])}</div>
      <div class="card"><h2>Queued messages</h2><canvas id="depth"></canvas>
        ${legend(['ready', 'unacked'], ['ready', 'unacknowledged'])}</div>
    </div>
    <p class="muted" id="version"></p>`;
  const refresh = async () => {
    let o;
    try { o = await get('/api/overview'); } catch (e) { banner(describe(e)); return; }
    const t = o.object_totals, q = o.queue_totals, ms = o.message_stats || {};
    const stat = (label, v, id) => `<div class="stat" id="${id}"><span class="muted">${label}</span><b>${fmt(v)}</b></div>`;
    $('#stats').innerHTML = stat('Connections', t.connections, 'st-connections') + stat('Channels', t.channels, 'st-channels') +
      stat('Exchanges', t.exchanges, 'st-exchanges') + stat('Queues', t.queues, 'st-queues') + stat('Consumers', t.consumers, 'st-consumers') +
      stat('Ready', q.messages_ready, 'st-ready') + stat('Unacked', q.messages_unacknowledged, 'st-unacked') +
      stat('Publish/s', (ms.publish_details || {}).rate || 0, 'st-publish-rate');
    $('#version').textContent = `Warren, speaking RabbitMQ ${o.rabbitmq_version} to clients · node ${o.node}`;
    // The memory budget for queued messages: what is in memory, what is paged out.
    let n;
    try { [n] = await get('/api/nodes'); } catch (e) { n = null; }
    if (n && n.message_memory_budget) {
      $('#stats').innerHTML += stat('In memory', `${mib(n.message_bytes_ram)} / ${mib(n.message_memory_budget)} MiB`, 'st-mem') +
        stat('Messages in memory', n.messages_ram, 'st-mem-msgs') +
        stat('Paged out', `${fmt(n.messages_paged_out)} (${mib(n.message_bytes_paged_out)} MiB)`, 'st-paged');
    }
    const rate = (k) => (ms[k + '_details'] || {}).rate || 0;
    series.rates.push({ publish: rate('publish'), deliver_get: rate('deliver_get'), ack: rate('ack') });
    series.depth.push({ ready: q.messages_ready, unacked: q.messages_unacknowledged });
    for (const s of Object.values(series)) while (s.length > 60) s.shift();
    if ($('#rates')) {
      drawChart($('#rates'), series.rates, ['publish', 'deliver_get', 'ack'], COLORS);
      drawChart($('#depth'), series.depth, ['ready', 'unacked'], COLORS);
    }
  };
  await refresh();
  every(2000, refresh);
}

// ---------- paged, filterable, sortable lists ----------

const lists = {
  connections: {
    title: 'Connections', path: '/api/connections', sort: 'name',
    cols: [['name', 'Name'], ['user_provided_name', 'Client-given name'], ['user', 'User'], ['vhost', 'Vhost'], ['channels', 'Channels', 'num'], ['client_properties.product', 'Client'], ['ssl', 'TLS']],
    actions: (r) => `<button class="danger small" data-close="${esc(r.name)}">Close</button>`,
  },
  channels: {
    title: 'Channels', path: '/api/channels', sort: 'name',
    cols: [['name', 'Channel'], ['user', 'User'], ['vhost', 'Vhost'], ['consumer_count', 'Consumers', 'num'], ['prefetch_count', 'Prefetch', 'num'], ['messages_unacknowledged', 'Unacked', 'num'], ['confirm', 'Confirm']],
  },
  exchanges: {
    title: 'Exchanges', path: '/api/exchanges', sort: 'name',
    cols: [['vhost', 'Vhost'], ['name', 'Name'], ['type', 'Type'], ['durable', 'Durable'], ['auto_delete', 'Auto-delete'], ['internal', 'Internal'], ['policy', 'Policy'], ['messages_delayed', 'Delayed', 'num']],
    link: (r) => `#/exchange/${enc(r.vhost)}/${enc(r.name || 'amq.default')}`,
    create: 'exchange',
  },
  nodes: {
    title: 'Nodes', path: '/api/nodes', sort: 'name',
    cols: [['name', 'Node'], ['running', 'Running'], ['leader', 'Leads metadata'], ['cluster_address', 'Cluster address'], ['amqp_address', 'AMQP address'], ['uptime', 'Uptime (ms)', 'num'], ['mem_used', 'Memory', 'num']],
  },
  queues: {
    title: 'Queues', path: '/api/queues', sort: 'name',
    cols: [['vhost', 'Vhost'], ['name', 'Name'], ['node', 'Node'], ['durable', 'Durable'], ['policy', 'Policy'], ['messages_ready', 'Ready', 'num'], ['messages_unacknowledged', 'Unacked', 'num'], ['messages', 'Total', 'num'], ['consumers', 'Consumers', 'num']],
    link: (r) => `#/queue/${enc(r.vhost)}/${enc(r.name)}`,
    create: 'queue',
  },
};

function pick(obj, path) { return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj); }

async function listPage(kind) {
  const L = lists[kind];
  const state = { page: 1, size: 50, name: '', regex: false, sort: L.sort, reverse: false };
  view().innerHTML = `
    <h1>${L.title}</h1>
    <div class="toolbar">
      <label>Filter by name <input id="filter" placeholder="substring or regex"></label>
      <label class="inline"><input type="checkbox" id="regex"> regex</label>
      <label>Per page <select id="size"><option>20</option><option selected>50</option><option>100</option><option>500</option></select></label>
    </div>
    <div class="card"><table id="list"><thead></thead><tbody></tbody></table>
      <div class="pager"><button class="secondary" id="prev">‹ Previous</button><span id="pageinfo" class="muted"></span><button class="secondary" id="next">Next ›</button></div>
    </div>
    <div id="create"></div>`;
  const thead = $('#list thead');
  thead.innerHTML = '<tr>' + L.cols.map(([k, label, cls]) => `<th data-sort="${k}" class="${cls || ''}">${label}</th>`).join('') + (L.actions ? '<th class="nosort"></th>' : '') + '</tr>';
  thead.addEventListener('click', (e) => {
    const k = e.target.dataset.sort;
    if (!k) return;
    state.reverse = state.sort === k ? !state.reverse : false;
    state.sort = k;
    load();
  });
  let timer;
  $('#filter').addEventListener('input', (e) => { state.name = e.target.value; state.page = 1; clearTimeout(timer); timer = setTimeout(load, 250); });
  $('#regex').addEventListener('change', (e) => { state.regex = e.target.checked; state.page = 1; load(); });
  $('#size').addEventListener('change', (e) => { state.size = +e.target.value; state.page = 1; load(); });
  $('#prev').addEventListener('click', () => { state.page--; load(); });
  $('#next').addEventListener('click', () => { state.page++; load(); });
  $('#list tbody').addEventListener('click', async (e) => {
    const name = e.target.dataset.close;
    if (name && confirm('Close connection ' + name + '?')) {
      if (await act(() => api('DELETE', '/api/connections/' + enc(name), undefined, { 'X-Reason': 'Closed from the Warren console' }), 'Connection closed')) load();
    }
  });
  async function load() {
    const q = new URLSearchParams({ page: state.page, page_size: state.size, sort: state.sort, sort_reverse: state.reverse });
    if (state.name) { q.set('name', state.name); q.set('use_regex', state.regex); }
    let res;
    try {
      res = await get(L.path + '?' + q);
    } catch (e) {
      if (e.status === 400 && state.page > 1) { state.page = 1; return load(); }
      banner(describe(e));
      return;
    }
    const tbody = $('#list tbody');
    if (!tbody) return;
    tbody.innerHTML = res.items.length ? '' : `<tr><td colspan="${L.cols.length + 1}" class="muted">Nothing here${state.name ? ' matches the filter' : ''}.</td></tr>`;
    for (const r of res.items) {
      const cells = L.cols.map(([k, , cls], i) => {
        let v = pick(r, k);
        if (typeof v === 'boolean') v = v ? '✓' : '';
        v = v === null || v === undefined ? '' : (typeof v === 'number' ? fmt(v) : v);
        const text = esc(v === '' && k === 'name' && kind === 'exchanges' ? '(AMQP default)' : v);
        return `<td class="${cls || ''}">${i === (kind === 'exchanges' || kind === 'queues' ? 1 : 0) && L.link ? `<a href="${L.link(r)}">${text}</a>` : text}</td>`;
      });
      tbody.append(h('<tr>' + cells.join('') + (L.actions ? `<td>${L.actions(r)}</td>` : '') + '</tr>'));
    }
    $('#pageinfo').textContent = `Page ${res.page} of ${res.page_count} · ${fmt(res.filtered_count)} of ${fmt(res.total_count)}`;
    $('#prev').disabled = res.page <= 1;
    $('#next').disabled = res.page >= res.page_count;
    thead.querySelectorAll('th').forEach((th) => { th.textContent = th.textContent.replace(/ [▲▼]$/, ''); if (th.dataset.sort === state.sort) th.textContent += state.reverse ? ' ▼' : ' ▲'; });
  }
  await load();
  every(5000, load);
  if (L.create) await createForm(L.create, load);
}

async function vhostOptions() {
  const vs = await get('/api/vhosts');
  return vs.map((v) => `<option>${esc(v.name)}</option>`).join('');
}

// parseJSON reads an optional JSON object from a text field.
function parseJSON(text, what) {
  if (!text.trim()) return {};
  try {
    const v = JSON.parse(text);
    if (typeof v !== 'object' || Array.isArray(v) || v === null) throw new Error('not an object');
    return v;
  } catch (e) {
    throw new Error(`${what} must be a JSON object, like {"x-max-length": 1000} (${e.message})`);
  }
}

async function createForm(kind, reload) {
  const opts = await vhostOptions();
  const form = h(`<form class="card stack" id="create-${kind}">
    <h2>Add ${kind === 'queue' ? 'a queue' : 'an exchange'}</h2>
    <div class="toolbar">
      <label>Vhost <select name="vhost">${opts}</select></label>
      <label>Name <input name="name" required></label>
      ${kind === 'exchange' ? '<label>Type <select name="type"><option>direct</option><option>fanout</option><option>topic</option><option>headers</option><option>x-delayed-message</option><option>x-consistent-hash</option><option>x-modulus-hash</option><option>x-random</option></select></label>' : ''}
      <label class="inline"><input type="checkbox" name="durable" checked> durable</label>
      <label class="inline"><input type="checkbox" name="auto_delete"> auto-delete</label>
    </div>
    <label>Arguments (JSON) <textarea name="arguments" placeholder='${kind === 'queue' ? '{"x-message-ttl": 60000, "x-consumer-timeout": 600000, "x-message-deduplication": true}' : '{"x-delayed-type": "direct"} or {"hash-header": "user"} or {"x-message-deduplication": true, "x-cache-size": 10000}'}'></textarea></label>
    <div><button type="submit">Add ${kind}</button></div>
  </form>`);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.target;
    await act(async () => {
      const body = { durable: f.durable.checked, auto_delete: f.auto_delete.checked, arguments: parseJSON(f.arguments.value, 'Arguments') };
      if (kind === 'exchange') body.type = f.type.value;
      await api('PUT', `/api/${kind}s/${enc(f.vhost.value)}/${enc(f.name.value)}`, body);
      f.name.value = '';
      await reload();
    }, `${kind === 'queue' ? 'Queue' : 'Exchange'} added`);
  });
  $('#create').append(form);
}

// ---------- queue and exchange pages ----------

function kv(rows) {
  return '<table class="kv">' + rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${v}</td></tr>`).join('') + '</table>';
}
const jsonBlock = (v) => `<pre>${esc(JSON.stringify(v, null, 2))}</pre>`;

// messageRows lists messages numbered from 1, or by their stream offset
// (m.position) when byOffset is set.
function messageRows(items, byOffset = false) {
  if (!items.length) return '<p class="muted">No messages.</p>';
  return `<table class="messages"><thead><tr><th class="nosort">${byOffset ? 'Offset' : '#'}</th><th class="nosort">Routing key</th><th class="nosort">Properties</th><th class="nosort">Payload</th></tr></thead><tbody>` +
    items.map((m, i) => `<tr><td class="num">${byOffset ? m.position : (m.position ?? i) + 1}${m.redelivered ? ' <span class="tag">redelivered</span>' : ''}</td><td>${esc(m.routing_key)}</td><td>${jsonBlock(m.properties)}</td>` +
      `<td><pre class="payload">${esc(m.payload)}</pre><span class="muted">${fmt(m.payload_bytes)} bytes, ${esc(m.payload_encoding)}</span></td></tr>`).join('') +
    '</tbody></table>';
}

function publishForm(exchangeName, defaultKey) {
  return `<form class="card stack" id="publish">
    <h2>Publish a message</h2>
    <label>Routing key <input name="routing_key" value="${esc(defaultKey)}"></label>
    <label>Headers (JSON) <textarea name="headers" placeholder='{"x-delay": 5000}'></textarea></label>
    <div class="toolbar"><label>Delivery mode <select name="delivery_mode"><option value="1">1 - transient</option><option value="2">2 - persistent</option></select></label>
      <label>Content type <input name="content_type" value="text/plain"></label></div>
    <label>Payload <textarea name="payload"></textarea></label>
    <div><button type="submit">Publish to ${esc(exchangeName || 'the default exchange')}</button></div>
  </form>`;
}

function wirePublish(vhost, exchangeName, after) {
  $('#publish').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.target;
    let routed;
    const ok = await act(async () => {
      const properties = { delivery_mode: +f.delivery_mode.value, headers: parseJSON(f.headers.value, 'Headers') };
      if (f.content_type.value) properties.content_type = f.content_type.value;
      const res = await api('POST', `/api/exchanges/${enc(vhost)}/${enc(exchangeName || 'amq.default')}/publish`,
        { routing_key: f.routing_key.value, payload: f.payload.value, payload_encoding: 'string', properties });
      routed = res.routed;
    });
    if (ok) {
      banner(routed ? 'Message published.' : 'Message published, but it was not routed to any queue.', routed);
      if (after) after();
    }
  });
}

function bindingsTable(bs, role) {
  if (!bs.length) return '<p class="muted">No bindings.</p>';
  return '<table class="bindings"><thead><tr><th class="nosort">' + (role === 'queue' ? 'From exchange' : 'To') + '</th><th class="nosort">Routing key</th><th class="nosort">Arguments</th><th class="nosort"></th></tr></thead><tbody>' +
    bs.map((b) => `<tr><td>${esc(role === 'queue' ? (b.source || '(AMQP default)') : b.destination + ' (' + b.destination_type + ')')}</td><td>${esc(b.routing_key)}</td>` +
      `<td>${Object.keys(b.arguments || {}).length ? jsonBlock(b.arguments) : ''}</td>` +
      `<td>${b.source ? `<button class="secondary" data-unbind="${esc(`/api/bindings/${enc(b.vhost)}/e/${enc(b.source)}/${b.destination_type === 'queue' ? 'q' : 'e'}/${enc(b.destination)}/${b.properties_key}`)}">Unbind</button>` : ''}</td></tr>`).join('') +
    '</tbody></table>';
}

function wireUnbind(root, reload) {
  root.addEventListener('click', async (e) => {
    const path = e.target.dataset.unbind;
    if (path && await act(() => api('DELETE', path), 'Binding removed')) reload();
  });
}

async function queuePage(vhost, name) {
  const base = `/api/queues/${enc(vhost)}/${enc(name)}`;
  const q = await get(base);
  if (q.type === 'stream') return streamPage(vhost, name, base, q);
  view().innerHTML = `
    <h1>Queue ${esc(name)} <span class="muted">in vhost ${esc(vhost)}</span></h1>
    <div class="grid2">
      <div class="card"><h2>Details</h2><div id="qdetails"></div></div>
      <div class="card"><h2>Bindings</h2><div id="qbindings"></div>
        <form class="stack" id="bind"><h2>Add a binding</h2>
          <div class="toolbar"><label>From exchange <input name="source" required></label><label>Routing key <input name="routing_key"></label></div>
          <label>Arguments (JSON) <textarea name="arguments"></textarea></label>
          <div><button type="submit">Bind</button></div></form></div>
    </div>
    <div class="card"><h2>Browse messages <span class="muted">(leaves them in place)</span></h2>
      <div class="toolbar"><button class="secondary" id="browse-prev">‹</button><span id="browse-info" class="muted"></span><button class="secondary" id="browse-next">›</button><button class="secondary" id="browse-refresh">Refresh</button></div>
      <div id="browse"></div></div>
    <div class="grid2">
      ${publishForm('', name)}
      <form class="card stack" id="getmsgs"><h2>Get messages</h2>
        <div class="toolbar"><label>Count <input name="count" type="number" value="1" min="1"></label>
        <label>Ack mode <select name="ackmode"><option value="ack_requeue_true">Nack, requeue</option><option value="ack_requeue_false">Ack (removes them)</option><option value="reject_requeue_false">Reject, no requeue</option></select></label></div>
        <div><button type="submit">Get</button></div><div id="got"></div></form>
    </div>
    <div class="card"><h2>Danger zone</h2><button class="danger" id="purge">Purge messages</button> <button class="danger" id="delete">Delete queue</button></div>`;
  const details = (q) => {
    $('#qdetails').innerHTML = kv([
      ['Ready', fmt(q.messages_ready)], ['Unacknowledged', fmt(q.messages_unacknowledged)], ['Total', fmt(q.messages)],
      ['Consumers', fmt(q.consumers)], ['Durable', q.durable ? 'yes' : 'no'], ['Auto-delete', q.auto_delete ? 'yes' : 'no'],
      ['Exclusive', q.exclusive ? 'yes' : 'no'], ['Policy', esc(q.policy || 'none')],
      ['Arguments', jsonBlock(q.arguments)], ['Effective policy definition', jsonBlock(q.effective_policy_definition)],
      ['Published / delivered / acked', `${fmt(q.message_stats.publish)} / ${fmt(q.message_stats.deliver_get)} / ${fmt(q.message_stats.ack)}`],
    ]);
  };
  details(q);
  const loadBindings = async () => { $('#qbindings').innerHTML = bindingsTable(await get(base + '/bindings'), 'queue'); };
  await loadBindings();
  wireUnbind($('#qbindings'), loadBindings);
  $('#bind').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.target;
    if (await act(() => api('POST', `/api/bindings/${enc(vhost)}/e/${enc(f.source.value)}/q/${enc(name)}`,
      { routing_key: f.routing_key.value, arguments: parseJSON(f.arguments.value, 'Arguments') }), 'Bound')) loadBindings();
  });
  let offset = 0;
  const pageSize = 20;
  const browse = async () => {
    const res = await get(`${base}/browse?offset=${offset}&count=${pageSize}`);
    $('#browse').innerHTML = messageRows(res.items);
    const last = Math.min(offset + res.items.length, res.total);
    $('#browse-info').textContent = res.total ? `Messages ${fmt(offset + 1)}–${fmt(last)} of ${fmt(res.total)} ready` : 'The queue is empty';
    $('#browse-prev').disabled = offset === 0;
    $('#browse-next').disabled = last >= res.total;
  };
  $('#browse-prev').addEventListener('click', () => { offset = Math.max(0, offset - pageSize); act(browse); });
  $('#browse-next').addEventListener('click', () => { offset += pageSize; act(browse); });
  $('#browse-refresh').addEventListener('click', () => act(browse));
  await act(browse);
  const refresh = async () => { try { details(await get(base)); } catch (e) { banner(describe(e)); } };
  wirePublish(vhost, '', () => { refresh(); act(browse); });
  $('#getmsgs').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.target;
    await act(async () => {
      const msgs = await api('POST', base + '/get', { count: +f.count.value, ackmode: f.ackmode.value, encoding: 'auto', truncate: 50000 });
      $('#got').innerHTML = messageRows(msgs);
      refresh();
      browse();
    });
  });
  $('#purge').addEventListener('click', async () => {
    if (confirm(`Purge every ready message of ${name}?`) && await act(() => api('DELETE', base + '/contents'), 'Queue purged')) { refresh(); act(browse); }
  });
  $('#delete').addEventListener('click', async () => {
    if (confirm(`Delete queue ${name}?`) && await act(() => api('DELETE', base), 'Queue deleted')) location.hash = '#/queues';
  });
  every(5000, refresh);
}

// A stream's page: the log's extent, each consumer's position and lag,
// the named consumers' stored offsets, and browsing from any offset
// (reading a stream takes nothing, so there is no get or purge).
async function streamPage(vhost, name, base, q) {
  view().innerHTML = `
    <h1>Stream ${esc(name)} <span class="muted">in vhost ${esc(vhost)}</span></h1>
    <div class="grid2">
      <div class="card"><h2>Log</h2><div id="sdetails"></div></div>
      <div class="card"><h2>Consumers</h2><div id="sconsumers"></div>
        <h2>Named consumers <span class="muted">(where each name resumes)</span></h2><div id="soffsets"></div></div>
    </div>
    <div class="card"><h2>Browse <span class="muted">(from any offset; reading takes nothing)</span></h2>
      <form class="toolbar" id="sbrowse-form"><label>From offset <input name="offset" id="sbrowse-offset" type="number" min="0" value="0"></label>
        <button type="submit">Read</button><button class="secondary" type="button" id="sbrowse-first">First</button>
        <button class="secondary" type="button" id="sbrowse-prev">‹</button><button class="secondary" type="button" id="sbrowse-next">›</button>
        <button class="secondary" type="button" id="sbrowse-last">Last</button><span id="sbrowse-info" class="muted"></span></form>
      <div id="sbrowse"></div></div>
    <div class="grid2">
      ${publishForm('', name)}
      <div class="card"><h2>Bindings</h2><div id="qbindings"></div></div>
    </div>
    <div class="card"><h2>Danger zone</h2><button class="danger" id="delete">Delete stream</button></div>`;
  let cur = q;
  const empty = () => cur.last_offset == null;
  const details = () => {
    $('#sdetails').innerHTML = kv([
      ['Messages', fmt(cur.messages)], ['Size', `${fmt(cur.message_bytes)} bytes (${mib(cur.message_bytes)} MiB)`],
      ['Segments', fmt(cur.segments)], ['First offset', fmt(cur.first_offset)],
      ['Last offset', empty() ? '<span class="muted">none yet</span>' : fmt(cur.last_offset)],
      ['Consumers', fmt(cur.consumers)], ['Policy', esc(cur.policy || 'none')],
      ['Arguments', jsonBlock(cur.arguments)], ['Effective policy definition', jsonBlock(cur.effective_policy_definition)],
      ['Published / delivered / acked', `${fmt(cur.message_stats.publish)} / ${fmt(cur.message_stats.deliver_get)} / ${fmt(cur.message_stats.ack)}`],
    ]);
    const cs = cur.stream_consumers || [];
    $('#sconsumers').innerHTML = cs.length ? '<table id="sconsumers-table"><thead><tr><th class="nosort">Consumer tag</th><th class="nosort">Name</th><th class="nosort num">Next offset</th><th class="nosort num">Lag</th></tr></thead><tbody>' +
      cs.map((c) => `<tr><td>${esc(c.consumer_tag)}</td><td>${esc(c.name || '')}</td><td class="num">${fmt(c.offset)}</td><td class="num">${fmt(c.lag)}</td></tr>`).join('') +
      '</tbody></table>' : '<p class="muted">No consumers.</p>';
    const next = empty() ? cur.first_offset : cur.last_offset + 1;
    const os = cur.consumer_offsets || [];
    $('#soffsets').innerHTML = os.length ? '<table id="soffsets-table"><thead><tr><th class="nosort">Name</th><th class="nosort num">Stored offset</th><th class="nosort num">On disk</th><th class="nosort num">Lag</th></tr></thead><tbody>' +
      os.map((o) => `<tr><td>${esc(o.name)}</td><td class="num">${fmt(o.offset)}</td><td class="num">${fmt(o.synced_offset)}</td><td class="num">${fmt(Math.max(0, next - o.offset))}</td></tr>`).join('') +
      '</tbody></table>' : '<p class="muted">No named consumers (<code>x-stream-consumer-name</code>).</p>';
  };
  details();
  $('#qbindings').innerHTML = bindingsTable(await get(base + '/bindings'), 'queue');
  wireUnbind($('#qbindings'), async () => { $('#qbindings').innerHTML = bindingsTable(await get(base + '/bindings'), 'queue'); });
  const pageSize = 20;
  let from = cur.first_offset;
  const browse = async () => {
    const res = await get(`${base}/browse?offset=${from}&count=${pageSize}`);
    const items = res.items.map((m) => ({ ...m, position: pick(m, 'properties.headers.x-stream-offset') }));
    $('#sbrowse').innerHTML = messageRows(items, true);
    if (items.length) from = items[0].position; // an offset retention dropped reads from the oldest kept
    $('#sbrowse-offset').value = from;
    $('#sbrowse-info').textContent = items.length ? `Offsets ${fmt(items[0].position)}–${fmt(items[items.length - 1].position)} of ${fmt(cur.first_offset)}–${fmt(cur.last_offset)}`
      : (empty() ? 'The stream is empty' : `Nothing at offset ${fmt(from)} or after (the last is ${fmt(cur.last_offset)})`);
    $('#sbrowse-prev').disabled = from <= cur.first_offset;
    $('#sbrowse-next').disabled = empty() || from + pageSize > cur.last_offset;
  };
  const go = (off) => { from = Math.max(0, Math.floor(off)); return act(browse); };
  $('#sbrowse-form').addEventListener('submit', (e) => { e.preventDefault(); go(+$('#sbrowse-offset').value); });
  $('#sbrowse-first').addEventListener('click', () => go(cur.first_offset));
  $('#sbrowse-last').addEventListener('click', () => go(empty() ? cur.first_offset : Math.max(cur.first_offset, cur.last_offset - pageSize + 1)));
  $('#sbrowse-prev').addEventListener('click', () => go(Math.max(cur.first_offset, from - pageSize)));
  $('#sbrowse-next').addEventListener('click', () => go(from + pageSize));
  await act(browse);
  const refresh = async () => { try { cur = await get(base); details(); } catch (e) { banner(describe(e)); } };
  wirePublish(vhost, '', refresh);
  $('#delete').addEventListener('click', async () => {
    if (confirm(`Delete stream ${name}? Its log and its named consumers' offsets go with it.`) && await act(() => api('DELETE', base), 'Stream deleted')) location.hash = '#/queues';
  });
  every(5000, refresh);
}

async function exchangePage(vhost, name) {
  const real = name === 'amq.default' ? '' : name;
  const base = `/api/exchanges/${enc(vhost)}/${enc(name)}`;
  const x = await get(base);
  view().innerHTML = `
    <h1>Exchange ${esc(real || '(AMQP default)')} <span class="muted">in vhost ${esc(vhost)}</span></h1>
    <div class="grid2">
      <div class="card"><h2>Details</h2>${kv([['Type', esc(x.type)], ['Durable', x.durable ? 'yes' : 'no'], ['Auto-delete', x.auto_delete ? 'yes' : 'no'],
        ['Internal', x.internal ? 'yes' : 'no'], ['Policy', esc(x.policy || 'none')], ['Arguments', jsonBlock(x.arguments)]]
        .concat(x.type === 'x-delayed-message' ? [['Delayed messages pending', fmt(x.messages_delayed)]] : []))}</div>
      <div class="card"><h2>Bindings from this exchange</h2><div id="xbindings"></div>
        ${real ? `<form class="stack" id="bind"><h2>Add a binding</h2>
          <div class="toolbar"><label>To <select name="dtype"><option value="q">queue</option><option value="e">exchange</option></select></label>
          <label>Name <input name="destination" required></label><label>Routing key <input name="routing_key"></label></div>
          <label>Arguments (JSON) <textarea name="arguments"></textarea></label><div><button type="submit">Bind</button></div></form>` : ''}</div>
    </div>
    ${publishForm(real, '')}
    ${real && !real.startsWith('amq.') ? '<div class="card"><h2>Danger zone</h2><button class="danger" id="delete">Delete exchange</button></div>' : ''}`;
  const loadBindings = async () => { $('#xbindings').innerHTML = bindingsTable(await get(base + '/bindings/source'), 'exchange'); };
  await loadBindings();
  wireUnbind($('#xbindings'), loadBindings);
  if ($('#bind')) {
    $('#bind').addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = e.target;
      if (await act(() => api('POST', `/api/bindings/${enc(vhost)}/e/${enc(real)}/${f.dtype.value}/${enc(f.destination.value)}`,
        { routing_key: f.routing_key.value, arguments: parseJSON(f.arguments.value, 'Arguments') }), 'Bound')) loadBindings();
    });
  }
  wirePublish(vhost, real);
  if ($('#delete')) {
    $('#delete').addEventListener('click', async () => {
      if (confirm(`Delete exchange ${real}?`) && await act(() => api('DELETE', base), 'Exchange deleted')) location.hash = '#/exchanges';
    });
  }
}

// ---------- admin: users, vhosts, permissions, policies ----------

async function adminPage() {
  const isAdmin = me.tags.includes('administrator');
  view().innerHTML = `<h1>Admin</h1>
    ${isAdmin ? '' : '<p class="muted">Users, vhosts and permissions need the administrator tag; policies need policymaker.</p>'}
    <div class="grid2">
      <div class="card" id="users"><h2>Users</h2><div class="body"></div>
        <form class="stack" id="add-user"><div class="toolbar"><label>Name <input name="name" required></label><label>Password <input name="password" type="password"></label>
        <label>Tags <input name="tags" placeholder="administrator, management"></label></div><div><button type="submit">Add or update user</button></div></form></div>
      <div class="card" id="vhosts"><h2>Virtual hosts</h2><div class="body"></div>
        <form class="stack" id="add-vhost"><div class="toolbar"><label>Name <input name="name" required></label><button type="submit">Add vhost</button></div></form></div>
    </div>
    <div class="card" id="perms"><h2>Permissions</h2><div class="body"></div>
      <form class="stack" id="set-perm"><div class="toolbar"><label>User <input name="user" required></label><label>Vhost <input name="vhost" value="/" required></label>
      <label>Configure <input name="configure" value=".*"></label><label>Write <input name="write" value=".*"></label><label>Read <input name="read" value=".*"></label>
      <button type="submit">Set permission</button></div></form></div>
    <div class="card" id="policies"><h2>Policies</h2><div class="body"></div>
      <form class="stack" id="set-policy"><div class="toolbar"><label>Vhost <input name="vhost" value="/" required></label><label>Name <input name="name" required></label>
      <label>Pattern <input name="pattern" value=".*"></label><label>Apply to <select name="apply"><option>all</option><option>queues</option><option>exchanges</option></select></label>
      <label>Priority <input name="priority" type="number" value="0"></label></div>
      <label>Definition (JSON) <textarea name="definition" placeholder='{"max-length": 10000, "dead-letter-exchange": "dlx"}'></textarea></label>
      <div><button type="submit">Set policy</button></div></form></div>`;
  const table = (rows, cols, del) => rows.length ? '<table><thead><tr>' + cols.map((c) => `<th class="nosort">${c[1]}</th>`).join('') + '<th class="nosort"></th></tr></thead><tbody>' +
    rows.map((r) => '<tr>' + cols.map(([k]) => `<td>${Array.isArray(r[k]) ? r[k].map((t) => `<span class="tag">${esc(t)}</span>`).join('') : (typeof r[k] === 'object' ? jsonBlock(r[k]) : esc(r[k]))}</td>`).join('') +
      `<td><button class="secondary" data-del="${esc(del(r))}">Delete</button></td></tr>`).join('') + '</tbody></table>' : '<p class="muted">None.</p>';
  const sections = {
    users: ['/api/users', [['name', 'Name'], ['tags', 'Tags']], (r) => '/api/users/' + enc(r.name)],
    vhosts: ['/api/vhosts', [['name', 'Name'], ['messages', 'Messages']], (r) => '/api/vhosts/' + enc(r.name)],
    perms: ['/api/permissions', [['user', 'User'], ['vhost', 'Vhost'], ['configure', 'Configure'], ['write', 'Write'], ['read', 'Read']], (r) => `/api/permissions/${enc(r.vhost)}/${enc(r.user)}`],
    policies: ['/api/policies', [['vhost', 'Vhost'], ['name', 'Name'], ['pattern', 'Pattern'], ['apply-to', 'Apply to'], ['priority', 'Priority'], ['definition', 'Definition']], (r) => `/api/policies/${enc(r.vhost)}/${enc(r.name)}`],
  };
  const load = async (id) => {
    const [path, cols, del] = sections[id];
    const body = $(`#${id} .body`);
    try {
      body.innerHTML = table(await get(path), cols, del);
    } catch (e) {
      body.innerHTML = `<p class="error">${esc(describe(e))}</p>`;
    }
  };
  const loadAll = () => Promise.all(Object.keys(sections).map(load));
  await loadAll();
  view().addEventListener('click', async (e) => {
    const path = e.target.dataset.del;
    if (path && confirm('Delete ' + decodeURIComponent(path.split('/').slice(2).join(' ')) + '?') && await act(() => api('DELETE', path), 'Deleted')) loadAll();
  });
  const onSubmit = (id, fn, msg) => $(id).addEventListener('submit', async (e) => {
    e.preventDefault();
    if (await act(() => fn(e.target), msg)) loadAll();
  });
  onSubmit('#add-user', (f) => {
    const body = { tags: f.tags.value };
    if (f.password.value) body.password = f.password.value;
    return api('PUT', '/api/users/' + enc(f.name.value), body);
  }, 'User saved');
  onSubmit('#add-vhost', (f) => api('PUT', '/api/vhosts/' + enc(f.name.value)), 'Vhost added');
  onSubmit('#set-perm', (f) => api('PUT', `/api/permissions/${enc(f.vhost.value)}/${enc(f.user.value)}`,
    { configure: f.configure.value, write: f.write.value, read: f.read.value }), 'Permission set');
  onSubmit('#set-policy', (f) => api('PUT', `/api/policies/${enc(f.vhost.value)}/${enc(f.name.value)}`,
    { pattern: f.pattern.value, 'apply-to': f.apply.value, priority: +f.priority.value, definition: parseJSON(f.definition.value, 'Definition') }), 'Policy set');
}

// ---------- shovels ----------

// endpointText names a running shovel's side: its URI and queue, or
// exchange and key.
function endpointText(s, side) {
  const uri = s[side + '_uri'] || '';
  if (s[side + '_queue'] !== undefined) return `${uri} queue ${s[side + '_queue']}`;
  if (s[side + '_exchange'] !== undefined) return `${uri} exchange ${s[side + '_exchange']} ${s[side + '_exchange_key'] || ''}`.trim();
  return uri;
}

async function shovelsPage() {
  const opts = await vhostOptions();
  view().innerHTML = `<h1>Shovels</h1>
    <div class="card" id="shovels"><div class="body"><p class="muted">Loading…</p></div></div>
    <form class="card stack" id="add-shovel"><h2>Add a shovel</h2>
      <p class="muted">Moves messages from a queue to a queue, here or on another broker (Warren or RabbitMQ). <code>amqp://</code> without a host is this broker;
      <code>amqp://user:pass@host:5672/vhost</code> another (several: separate them with spaces). On-confirm: no message is lost if either side fails.</p>
      <div class="toolbar"><label>Vhost <select name="vhost">${opts}</select></label><label>Name <input name="name" required></label>
      <label>Delete after <select name="after"><option value="never">never</option><option value="queue-length">the queue's length</option></select></label></div>
      <div class="toolbar"><label>Source URI <input name="src_uri" value="amqp://" required></label><label>Source queue <input name="src_queue" required></label></div>
      <div class="toolbar"><label>Destination URI <input name="dest_uri" value="amqp://" required></label><label>Destination queue <input name="dest_queue" required></label></div>
      <div><button type="submit">Add shovel</button></div></form>`;
  const load = async () => {
    const body = $('#shovels .body');
    if (!body) return;
    let rows;
    try { rows = await get('/api/shovels'); } catch (e) { body.innerHTML = `<p class="error">${esc(describe(e))}</p>`; return; }
    body.innerHTML = rows.length ? '<table><thead><tr>' + ['Vhost', 'Name', 'State', 'Source', 'Destination', 'Since', 'Reason'].map((c) => `<th class="nosort">${c}</th>`).join('') +
      '<th class="nosort"></th></tr></thead><tbody>' + rows.map((s) => `<tr><td>${esc(s.vhost)}</td><td>${esc(s.name)}</td><td class="state-${esc(s.state)}">${esc(s.state)}</td>` +
      `<td>${esc(endpointText(s, 'src'))}</td><td>${esc(endpointText(s, 'dest'))}</td><td>${esc(s.timestamp)}</td><td>${esc(s.reason || '')}</td>` +
      `<td><button class="secondary" data-del="/api/parameters/shovel/${enc(s.vhost)}/${enc(s.name)}">Delete</button></td></tr>`).join('') + '</tbody></table>'
      : '<p class="muted">No shovels.</p>';
  };
  await load();
  every(3000, load);
  $('#shovels').addEventListener('click', async (e) => {
    const path = e.target.dataset.del;
    if (path && confirm('Delete shovel ' + decodeURIComponent(path.split('/').pop()) + '?') && await act(() => api('DELETE', path), 'Shovel deleted')) load();
  });
  $('#add-shovel').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.target;
    const uris = (s) => { const l = s.trim().split(/\s+/); return l.length === 1 ? l[0] : l; };
    if (await act(() => api('PUT', `/api/parameters/shovel/${enc(f.vhost.value)}/${enc(f.name.value)}`, { value: {
      'src-uri': uris(f.src_uri.value), 'src-queue': f.src_queue.value, 'dest-uri': uris(f.dest_uri.value), 'dest-queue': f.dest_queue.value,
      'src-delete-after': f.after.value } }), 'Shovel added')) load();
  });
}

// ---------- definitions ----------

async function definitionsPage() {
  view().innerHTML = `<h1>Definitions</h1>
    <div class="grid2">
      <div class="card stack"><h2>Export</h2><p>Users, vhosts, permissions, policies, exchanges, queues and bindings, in RabbitMQ's format.</p>
        <div><button id="export">Download definitions</button></div><pre id="export-preview" hidden></pre></div>
      <form class="card stack" id="import"><h2>Import</h2><p>A definitions file from Warren or RabbitMQ. Existing queues and exchanges are left as they are.</p>
        <input type="file" name="file" accept=".json,application/json" required><div><button type="submit">Import</button></div></form>
    </div>`;
  $('#export').addEventListener('click', () => act(async () => {
    const defs = await get('/api/definitions');
    const text = JSON.stringify(defs, null, 2);
    $('#export-preview').textContent = text.slice(0, 4000);
    $('#export-preview').hidden = false;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
    a.download = 'warren-definitions.json';
    a.click();
  }, 'Definitions exported'));
  $('#import').addEventListener('submit', async (e) => {
    e.preventDefault();
    const file = e.target.file.files[0];
    await act(async () => {
      const text = await file.text();
      try { JSON.parse(text); } catch (err) { throw new Error(`${file.name} is not JSON: ${err.message}`); }
      await api('POST', '/api/definitions', text);
    }, 'Definitions imported');
  });
}

// ---------- federation links ----------

// /api/federation-links: each link of a federated exchange or queue to one
// upstream, with its state (starting, running, error and why).
async function federationPage() {
  view().innerHTML = `<h1>Federation links</h1>
    <div class="card"><table id="fed-links"><thead><tr><th>Vhost</th><th>Type</th><th>Exchange or queue</th><th>Upstream</th>
      <th>Upstream URI</th><th>State</th><th>Since</th></tr></thead><tbody></tbody></table>
    <p class="muted">Upstreams are the <code>federation-upstream</code> parameters (<code>warrenctl federation upstream add</code>); a policy with <code>federation-upstream-set: all</code> federates what it matches.</p></div>`;
  async function load() {
    const links = await get('/api/federation-links');
    const tbody = $('#fed-links tbody');
    if (!tbody) return;
    tbody.innerHTML = links.length ? '' : '<tr><td colspan="7" class="muted">No federation links.</td></tr>';
    for (const l of links) {
      const state = l.status === 'error' ? `<span class="error">error</span>: ${esc(l.error || '')}` : esc(l.status);
      tbody.append(h(`<tr><td>${esc(l.vhost)}</td><td>${esc(l.type)}</td><td>${esc(l.exchange || l.queue)}</td><td>${esc(l.upstream)}</td>
        <td>${esc(l.uri)}</td><td data-state="${esc(l.status)}">${state}</td><td>${esc(l.timestamp)}</td></tr>`));
    }
  }
  await load();
  every(5000, () => load().catch((e) => banner(describe(e))));
}

// ---------- boot ----------

if (auth.get()) {
  start().catch((e) => showLogin(describe(e)));
} else {
  showLogin();
}
