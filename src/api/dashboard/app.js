// The donor's dashboard: polls the daemon's API through the session cookie
// (same origin, /dashboard/api/v1/…) every POLL_MS while the tab is visible,
// so the daemon does no work for a dashboard nobody looks at.
'use strict'

const POLL_MS = 2000
const API = 'api/v1'
const DIALS_LIMIT = 500
const DONATED_LIMIT = 200
/** how far back the charts look, minutes */
const WINDOW_MIN = 60
const TRANSPORT_COLOURS = { quic: '#0b5cad', tcp: '#8250df', ws: '#bf8700', wss: '#1a7f37', webrtc: '#cf222e', circuit: '#57606a' }

const $ = (id) => document.getElementById(id)
const state = { routes: null, paused: undefined, charts: {}, timer: undefined }

/** A call to the API through the session; { ok, status, body } and never a throw for an HTTP error. */
async function api (path, init = {}) {
  const res = await fetch(`${API}/${path}`, { ...init, headers: { accept: 'application/json', ...(init.body != null ? { 'content-type': 'application/json' } : {}) } })
  const text = await res.text()
  let body
  try { body = text === '' ? undefined : JSON.parse(text) } catch { body = { error: { code: 'BAD_RESPONSE', message: text.slice(0, 200) } } }
  return { ok: res.ok, status: res.status, body }
}

function has (name) {
  return state.routes == null || state.routes.has(name)
}

function text (el, value) {
  el.textContent = value == null || value === '' ? '—' : String(value)
  return el
}

function row (cells) {
  const tr = document.createElement('tr')
  for (const c of cells) {
    const td = document.createElement('td')
    if (c instanceof Node) td.append(c)
    else text(td, c)
    tr.append(td)
  }
  return tr
}

function code (value) {
  return text(document.createElement('code'), value)
}

function definitions (el, pairs) {
  el.replaceChildren(...pairs.flatMap(([k, v]) => [text(document.createElement('dt'), k), v instanceof Node ? wrap('dd', v) : text(document.createElement('dd'), v)]))
}

function wrap (tag, child) {
  const el = document.createElement(tag)
  el.append(child)
  return el
}

function shortId (id) {
  return typeof id === 'string' && id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id
}

function ago (iso) {
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return iso
  const s = Math.max(0, Math.round((Date.now() - t) / 1000))
  const words = s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min` : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`
  return `${new Date(t).toLocaleString()} (${words} ago)`
}

function ms (n) {
  if (typeof n !== 'number') return undefined
  return n < 1000 ? `${Math.round(n)} ms` : n < 120000 ? `${(n / 1000).toFixed(1)} s` : `${(n / 60000).toFixed(1)} min`
}

// ---- the sections ----

function renderStatus (s) {
  text($('peer-id'), s.peerId)
  renderDonating(s)
  renderNetwork(s)
  renderRelays(s.relays ?? [])
  renderAllowlist(s)
  renderSettings(s)
}

function renderDonating (s) {
  const ex = s.executor ?? {}
  const running = ex.accepting ? `running ${ex.running ?? 0} of ${ex.maxConcurrent ?? '?'} task(s), ${ex.queued ?? 0} queued` : `not running jobs: ${ex.reason ?? 'unknown'}`
  text($('donating-state'), s.paused === true ? `Paused. ${running}` : running)
  const button = $('pause-button')
  if (!has('pause') || !has('resume')) {
    button.disabled = true
    text($('pause-message'), 'Pause unavailable: this daemon has no pause/resume API (update worldcompute).')
    return
  }
  state.paused = s.paused === true
  button.disabled = false
  button.textContent = state.paused ? 'Resume' : 'Pause'
  button.className = state.paused ? 'resume' : ''
  if (!state.pauseError) text($('pause-message'), state.paused ? 'No new tasks are accepted; running ones are suspended.' : 'Accepting tasks from brokers.')
}

function verdictOf (s) {
  const relays = s.relays ?? []
  if (s.reachability === 'public') return 'Reachable directly (public address): donating.'
  if (relays.length > 0) return `Donating through ${relays.length} relay reservation(s) over ${[...new Set(relays.map(r => r.transport))].join(', ')}.`
  const failing = (s.bootstrap ?? []).find(b => b.lastError)
  return `Not reachable yet: no relay reservation${failing ? ` (last error: ${failing.lastError})` : ''}.`
}

function renderNetwork (s) {
  text($('verdict'), verdictOf(s))
  definitions($('network'), [
    ['Reachability', `${s.reachability}${s.reachabilityReason ? ` — ${s.reachabilityReason}` : ''}`],
    ['NAT mapping', s.natMapping ?? s.nat?.mapping ?? 'not measured'],
    ['NAT filtering', s.natFiltering ?? s.nat?.filtering ?? 'not measured'],
    ['UDP', s.udp ?? s.nat?.udp ?? 'unknown'],
    ['Seen as', s.nat?.mappedAddress],
    ['Connections', (s.connections ?? []).length]
  ])
}

function renderRelays (relays) {
  $('relays').replaceChildren(...relays.map(r => row([code(r.peerId), r.transport, ago(r.since), code(r.addr ?? r.circuitAddr)])))
  $('relays-empty').hidden = relays.length > 0
}

/** host:port and what runs over it, from a multiaddr such as /dns4/relay.example/tcp/443/tls/ws/p2p/… */
function endpointOf (addr) {
  const p = String(addr).split('/')
  const i = p.findIndex(x => x === 'tcp' || x === 'udp')
  if (i < 2) return undefined
  const host = p[2]
  const rest = p.slice(i + 2)
  const kind = rest.includes('quic-v1') ? 'UDP (QUIC)' : rest.includes('wss') || (rest.includes('tls') && rest.includes('ws')) ? 'TCP (WebSocket over TLS)' : rest.includes('ws') ? 'TCP (WebSocket)' : p[i] === 'udp' ? 'UDP' : 'TCP (libp2p)'
  return `outbound ${kind} to ${host}:${p[i + 1]}`
}

function renderAllowlist (s) {
  const lines = new Set()
  for (const r of s.relays ?? []) { const e = endpointOf(r.addr ?? ''); if (e) lines.add(`${e} — relay ${shortId(r.peerId)}, in use`) }
  for (const b of s.bootstrap ?? []) { const e = endpointOf(b.addr); if (e) lines.add(`${e} — bootstrap relay${b.peerId ? ` ${shortId(b.peerId)}` : ''} (${b.state})`) }
  for (const srv of s.nat?.servers ?? []) lines.add(`outbound UDP to ${srv} — STUN (NAT detection, direct connections)`)
  const items = [...lines].map(l => text(document.createElement('li'), l))
  $('allowlist').replaceChildren(...(items.length > 0 ? items : [text(document.createElement('li'), 'No relay configured or known yet.')]))
}

function renderSettings (s) {
  const ex = s.executor ?? {}
  const limits = ex.maxLimits ?? {}
  const pairs = [
    ['Version', s.version],
    ['Started', ago(s.startedAt)],
    ['Runs jobs', ex.accepting ? `yes, ${ex.maxConcurrent ?? '?'} at once` : `no (${ex.reason ?? 'unknown'})`],
    ['Per task, at most', limits.memoryBytes ? `${Math.round(limits.memoryBytes / 1048576)} MiB, ${ms(limits.deadlineMs)}` : undefined],
    ['Bootstrap relays', (s.bootstrap ?? []).map(b => b.addr).join('\n')],
    ['Listening on', (s.listenAddrs ?? []).join('\n')],
    ['Proxies', (s.proxies ?? []).map(p => p.url ?? JSON.stringify(p)).join('\n') || 'none']
  ]
  // the donor controls, when this daemon reports them
  const controls = { paused: 'Paused', cpuLimit: 'CPU limit', suspendWhenBusy: 'Suspend when busy', runHours: 'Run hours', controls: 'Controls' }
  for (const [key, label] of Object.entries(controls)) {
    if (s[key] !== undefined) pairs.push([label, typeof s[key] === 'object' ? JSON.stringify(s[key]) : s[key]])
  }
  definitions($('settings'), pairs)
}

function renderDonated (res) {
  // the rows as an array, or under the one field of an object answer ({ rows }, { tasks }, …)
  const body = res.ok ? res.body : undefined
  const rows = Array.isArray(body) ? body : body != null ? (Object.values(body).find(Array.isArray) ?? []) : []
  $('donated').replaceChildren(...rows.map(r => {
    const status = text(document.createElement('span'), r.status)
    status.className = `status-${r.status}`
    return row([ago(r.at), code(shortId(r.broker)), code(r.jobId), status, ms(r.cpuMs), r.fuelUsed])
  }))
  $('donated-empty').hidden = rows.length > 0
  if (!res.ok && res.status !== 404) text($('donated-empty'), `Could not read the history: ${res.body?.error?.message ?? res.status}`)
  return rows
}

// ---- charts (uPlot) ----

/**
 * Sums per minute over the last WINDOW_MIN minutes, every minute present (a
 * quiet minute is a zero, not a gap): { x: [minute starts, s], series: { key: [sum per minute] }, count }
 */
function perMinute (items, timeOf, keyOf, valueOf) {
  const last = Math.floor(Date.now() / 60000)
  const first = last - WINDOW_MIN + 1
  const x = Array.from({ length: WINDOW_MIN }, (_, i) => (first + i) * 60)
  const series = {}
  let count = 0
  for (const it of items) {
    const minute = Math.floor(Date.parse(timeOf(it)) / 60000)
    if (!(minute >= first && minute <= last)) continue
    const key = keyOf(it)
    series[key] ??= x.map(() => 0)
    series[key][minute - first] += valueOf(it)
    count++
  }
  const sorted = {}
  for (const k of Object.keys(series).sort()) sorted[k] = series[k]
  return { x, series: sorted, count }
}

function drawChart (name, { x, series, count }, styleOf) {
  const el = $(`${name}-chart`)
  $(`${name}-empty`).hidden = count > 0
  const keys = Object.keys(series)
  const signature = keys.join('|')
  let chart = state.charts[name]
  if (chart != null && (chart.signature !== signature || count === 0)) { chart.plot.destroy(); chart = undefined; delete state.charts[name] }
  if (count === 0 || typeof uPlot !== 'function') return
  const data = [x, ...keys.map(k => series[k])]
  if (chart != null) { chart.plot.setData(data); return }
  const colour = getComputedStyle(document.body).color
  const opts = {
    width: Math.max(300, el.clientWidth),
    height: 220,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [{ stroke: colour }, { stroke: colour }],
    series: [{}, ...keys.map(k => ({ label: k, ...styleOf(k) }))]
  }
  state.charts[name] = { signature, plot: new uPlot(opts, data, el) }
}

function drawDials (attempts) {
  const data = perMinute(attempts, a => a.ts, a => `${a.transport} ${a.outcome}`, () => 1)
  drawChart('dial', data, (k) => {
    const [transport, outcome] = k.split(' ')
    return { stroke: TRANSPORT_COLOURS[transport] ?? '#57606a', width: 2, dash: outcome === 'success' ? undefined : [6, 4] }
  })
}

function drawCpu (rows) {
  const data = perMinute(rows, r => r.at, () => 'CPU seconds', r => (r.cpuMs ?? 0) / 1000)
  drawChart('cpu', data, () => ({ stroke: '#0b5cad', fill: 'rgba(11,92,173,0.15)', width: 2 }))
}

// ---- the loop ----

function showError (message) {
  const el = $('error')
  el.hidden = message == null
  if (message != null) text(el, message)
  const live = $('live')
  live.className = message == null ? 'live ok' : 'live bad'
  text(live, message == null ? `live, updated ${new Date().toLocaleTimeString()}` : 'not updating')
}

async function loadRoutes () {
  const res = await fetch('api/routes')
  if (res.ok) state.routes = new Set((await res.json()).routes.map(r => r.name))
}

async function refresh () {
  if (state.routes == null) await loadRoutes()
  const [status, dials, donated] = await Promise.all([
    api('status'),
    api(`dials?limit=${DIALS_LIMIT}`),
    has('donated') ? api(`donated?limit=${DONATED_LIMIT}`) : Promise.resolve({ ok: false, status: 404 })
  ])
  if (status.status === 401) throw Object.assign(new Error(`Logged out: ${status.body?.error?.message ?? 'the session expired; run `worldcompute dashboard` for a new link'}`), { plain: true })
  if (!status.ok) throw new Error(`status: ${status.body?.error?.message ?? `HTTP ${status.status}`}`)
  renderStatus(status.body)
  if (dials.ok) drawDials(dials.body.attempts ?? [])
  drawCpu(renderDonated(donated))
}

async function tick () {
  state.timer = undefined
  state.running = true
  try {
    await refresh()
    showError(undefined)
  } catch (err) {
    showError(err.plain ? err.message : `The daemon does not answer: ${err.message}`)
  }
  state.running = false
  if (!document.hidden) state.timer = setTimeout(tick, POLL_MS)
}

async function togglePause () {
  const button = $('pause-button')
  button.disabled = true
  const res = await api(state.paused ? 'resume' : 'pause', { method: 'POST', body: '{}' })
  state.pauseError = !res.ok
  if (res.status === 404) text($('pause-message'), 'Pause unavailable: this daemon has no pause/resume API (update worldcompute).')
  else if (!res.ok) text($('pause-message'), `Could not ${state.paused ? 'resume' : 'pause'}: ${res.body?.error?.message ?? `HTTP ${res.status}`}`)
  else state.paused = res.body.paused
  button.disabled = false
  button.textContent = state.paused ? 'Resume' : 'Pause'
  button.className = state.paused ? 'resume' : ''
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && state.timer == null && !state.running) void tick()
})
$('pause-button').addEventListener('click', () => { void togglePause() })
void tick()
