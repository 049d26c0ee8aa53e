import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { loadDaemonConfig, loadRelayConfig, describeDaemonConfig } from '../../src/config/config.ts'
import { isLoopbackHost, loadMetricsEndpoint, parseHostPort } from '../../src/config/metrics-endpoint.ts'
import { ConfigError } from '../../src/core/errors.ts'
import type { DialAttempt } from '../../src/core/types.ts'
import { startRelay } from '../../src/daemon/daemon.ts'
import { MetricsPortInUseError, NodeMetrics, type DialAttemptSource, type RelayGauges } from '../../src/metrics/node-metrics.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { executorsSeen, finished, submit } from '../helpers/jobs.ts'
import { reservedStatus, startTestDonor, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import { mkdirSync, writeFileSync } from 'node:fs'
import { RELAY_V2_STOP_CODEC } from '@libp2p/circuit-relay-v2'
import type { Connection, Stream, StreamMiddleware } from '@libp2p/interface'
import { CircuitTraffic } from '../../src/net/circuit-traffic.ts'

const dir = tempDir('wc-metrics-')
const track = stopAfterEach()
after(() => { dir.cleanup() })

interface Sample { name: string, labels: Record<string, string>, value: number }
interface Exposition { types: Map<string, string>, samples: Sample[] }

/** Prometheus text format 0.0.4: `# TYPE name type` lines and `name{label="value",…} value` samples; anything else fails the test. */
function parseExposition (text: string): Exposition {
  const types = new Map<string, string>()
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ')) continue
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line)
    if (type != null) { types.set(type[1], type[2]); continue }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    assert.ok(m != null, `an exposition line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g)) labels[l[1]] = l[2]
    // Prometheus reads NaN in any case (prom-client writes "Nan")
    const nan = m[3].toLowerCase() === 'nan'
    const value = nan ? NaN : m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3])
    assert.ok(nan || !Number.isNaN(value), `a number in: ${line}`)
    samples.push({ name: m[1], labels, value })
  }
  return { types, samples }
}

/** The value of the one sample of `name` whose labels include `labels`; undefined when there is none. */
function valueOf (e: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = e.samples.filter(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  assert.ok(found.length <= 1, `at most one ${name} sample with ${JSON.stringify(labels)}`)
  return found[0]?.value
}

/** The sum of the samples of `name` whose labels include `labels`. */
function sumOf (e: Exposition, name: string, labels: Record<string, string>): number {
  return e.samples.filter(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0)
}

async function scrape (port: number): Promise<Exposition> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  return parseExposition(await res.text())
}

class FakeDials implements DialAttemptSource {
  private readonly listeners = new Set<(a: Pick<DialAttempt, 'transport' | 'outcome' | 'phase'>) => void>()
  onAttempt (listener: (a: Pick<DialAttempt, 'transport' | 'outcome' | 'phase'>) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  emit (a: Pick<DialAttempt, 'transport' | 'outcome' | 'phase'>): void {
    for (const l of this.listeners) l(a)
  }

  get subscribers (): number { return this.listeners.size }
}

describe('the metrics endpoint setting', () => {
  it('reads HOST:PORT for IPv4, IPv6 in brackets and names', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:9464', '--metrics'), { host: '127.0.0.1', port: 9464 })
    assert.deepEqual(parseHostPort('[::1]:9464', '--metrics'), { host: '::1', port: 9464 })
    assert.deepEqual(parseHostPort('localhost:0', '--metrics'), { host: 'localhost', port: 0 })
    for (const bad of ['9464', '127.0.0.1', '127.0.0.1:70000', '::1:9464', '[nothost]:1']) {
      assert.throws(() => parseHostPort(bad, '--metrics'), ConfigError, bad)
    }
  })

  it('counts 127.0.0.0/8, ::1 and localhost as loopback, and nothing else', () => {
    for (const h of ['127.0.0.1', '127.5.6.7', '::1', 'localhost', '::ffff:127.0.0.1']) assert.equal(isLoopbackHost(h), true, h)
    for (const h of ['0.0.0.0', '10.0.0.1', '::', 'example.org', '128.0.0.1']) assert.equal(isLoopbackHost(h), false, h)
  })

  it('refuses a non-loopback host without the allowance, with one line naming the flag that allows it', () => {
    assert.throws(() => loadMetricsEndpoint({ flag: '0.0.0.0:9464' }), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.equal(err.code, 'CONFIG_INVALID')
      assert.ok(!err.message.includes('\n'))
      assert.ok(err.message.includes('--metrics-allow-remote'))
      return true
    })
    assert.deepEqual(loadMetricsEndpoint({ flag: '0.0.0.0:9464', allowRemoteFlag: true }), { host: '0.0.0.0', port: 9464, allowRemote: true })
    assert.equal(loadMetricsEndpoint({}), undefined)
  })

  it('takes the flag over config.json, and config.json "metrics" and "metricsAllowRemote" when no flag is given', () => {
    const dataDir = join(dir.path, 'config-file')
    const configFile = join(dataDir, 'config.json')
    mkdirSync(dataDir, { recursive: true })
    writeFileSync(configFile, JSON.stringify({ metrics: '10.1.2.3:9464', metricsAllowRemote: true }))
    const fromFile = loadDaemonConfig({ dataDir }, {})
    assert.deepEqual(fromFile.metrics, { host: '10.1.2.3', port: 9464, allowRemote: true })
    assert.deepEqual(fromFile.unknownKeys, [])
    assert.equal(describeDaemonConfig(fromFile).find(e => e.key === 'metrics')?.source, 'file')
    assert.deepEqual(loadDaemonConfig({ dataDir, metrics: '127.0.0.1:9000' }, {}).metrics, { host: '127.0.0.1', port: 9000, allowRemote: true })
    writeFileSync(configFile, JSON.stringify({ metrics: '10.1.2.3:9464' }))
    assert.throws(() => loadRelayConfig({ dataDir }, {}), ConfigError)
    writeFileSync(configFile, JSON.stringify({ metrics: 9464 }))
    assert.throws(() => loadDaemonConfig({ dataDir }, {}), /"metrics" must be a "HOST:PORT" string/)
  })

  it('is off by default', () => {
    assert.equal(loadDaemonConfig({ dataDir: join(dir.path, 'default') }, {}).metrics, undefined)
  })
})

describe('NodeMetrics', () => {
  const endpoint = { host: '127.0.0.1', port: 0, allowRemote: false }

  it('counts dial attempts by transport, outcome and phase, tasks and jobs by status, and reads relay totals at scrape time', async () => {
    const dials = new FakeDials()
    const relayState = { reservations: 2, circuits: 3, bytes: 4096, refusals: { 'circuits-per-ip': 1 } }
    const relay: RelayGauges = {
      reservationCount: () => relayState.reservations,
      circuits: () => relayState.circuits,
      bytes: () => relayState.bytes,
      refusals: () => relayState.refusals
    }
    const connections = [{ transport: 'tcp' as const }, { transport: 'tcp' as const }, { transport: 'circuit' as const }]
    const metrics = new NodeMetrics({ endpoint }, { dials, relay, connections: { list: () => connections }, donor: { reservations: () => [] } })
    await metrics.start()
    try {
      assert.ok(metrics.port != null && metrics.port > 0)
      dials.emit({ transport: 'tcp', outcome: 'success', phase: 'muxer' })
      dials.emit({ transport: 'tcp', outcome: 'success', phase: 'muxer' })
      dials.emit({ transport: 'quic', outcome: 'failure', phase: 'tcp-connect' })
      metrics.taskExecuted('succeeded')
      metrics.jobFinished('no_agreement')
      let e = await scrape(metrics.port)
      assert.equal(e.types.get('worldcompute_dial_attempts_total'), 'counter')
      assert.equal(valueOf(e, 'worldcompute_dial_attempts_total', { transport: 'tcp', outcome: 'success', phase: 'muxer' }), 2)
      assert.equal(valueOf(e, 'worldcompute_dial_attempts_total', { transport: 'quic', outcome: 'failure', phase: 'tcp-connect' }), 1)
      assert.equal(valueOf(e, 'worldcompute_tasks_executed_total', { status: 'succeeded' }), 1)
      assert.equal(valueOf(e, 'worldcompute_tasks_executed_total', { status: 'failed' }), 0)
      assert.equal(valueOf(e, 'worldcompute_jobs_total', { status: 'no_agreement' }), 1)
      assert.equal(valueOf(e, 'worldcompute_relay_reservations'), 2)
      assert.equal(valueOf(e, 'worldcompute_relay_circuits_total'), 3)
      assert.equal(valueOf(e, 'worldcompute_relay_bytes_total'), 4096)
      assert.equal(valueOf(e, 'worldcompute_relay_refusals_total', { reason: 'circuits-per-ip' }), 1)
      assert.equal(valueOf(e, 'worldcompute_connections', { transport: 'tcp' }), 2)
      assert.equal(valueOf(e, 'worldcompute_connections', { transport: 'circuit' }), 1)
      assert.ok((valueOf(e, 'worldcompute_process_resident_memory_bytes') ?? 0) > 0, 'process metrics with the worldcompute_ prefix')
      relayState.circuits = 5
      relayState.reservations = 0
      connections.pop()
      e = await scrape(metrics.port)
      assert.equal(valueOf(e, 'worldcompute_relay_circuits_total'), 5)
      assert.equal(valueOf(e, 'worldcompute_relay_reservations'), 0)
      assert.equal(valueOf(e, 'worldcompute_connections', { transport: 'circuit' }), undefined, 'a transport with no connection left drops out')
      const notFound = await fetch(`http://127.0.0.1:${metrics.port}/`)
      assert.equal(notFound.status, 404)
      await notFound.body?.cancel()
    } finally {
      await metrics.stop()
    }
    assert.equal(dials.subscribers, 0, 'stop drops the dial subscription')
  })

  it('keeps the numbers of two nodes in one process apart', async () => {
    const a = new NodeMetrics({ endpoint }, { donor: { reservations: () => [] } })
    const b = new NodeMetrics({ endpoint }, { donor: { reservations: () => [] } })
    a.taskExecuted('failed')
    assert.equal((await a.registry.getSingleMetric('worldcompute_tasks_executed_total')?.get())?.values.find(v => v.labels.status === 'failed')?.value, 1)
    assert.equal((await b.registry.getSingleMetric('worldcompute_tasks_executed_total')?.get())?.values.find(v => v.labels.status === 'failed')?.value, 0)
  })

  it('reports time to dispatchable from the first reservation it sees, NaN before', async () => {
    const reservations: Array<{ since: string }> = []
    const startedAt = Date.parse('2026-01-01T00:00:00Z')
    const metrics = new NodeMetrics({ endpoint, startedAt }, { donor: { reservations: () => reservations } })
    const read = async (name: string): Promise<number | undefined> => (await metrics.registry.getSingleMetric(name)?.get())?.values[0]?.value
    assert.ok(Number.isNaN(await read('worldcompute_time_to_dispatchable_seconds')))
    assert.equal(await read('worldcompute_reservations'), 0)
    reservations.push({ since: '2026-01-01T00:00:02.500Z' })
    assert.equal(await read('worldcompute_time_to_dispatchable_seconds'), 2.5)
    assert.equal(await read('worldcompute_reservations'), 1)
    reservations[0] = { since: '2026-01-01T00:01:00Z' }
    assert.equal(await read('worldcompute_time_to_dispatchable_seconds'), 2.5, 'the first one, not a later reservation')
  })

  it('fails to start with MetricsPortInUseError when the port is taken', async () => {
    const holder = createServer()
    await new Promise<void>(resolve => holder.listen(0, '127.0.0.1', resolve))
    const address = holder.address()
    const port = typeof address === 'object' && address != null ? address.port : 0
    const dials = new FakeDials()
    const metrics = new NodeMetrics({ endpoint: { ...endpoint, port } }, { dials })
    try {
      await assert.rejects(metrics.start(), (err: unknown) => err instanceof MetricsPortInUseError && err.code === 'METRICS_PORT_IN_USE' && err.message.includes(`127.0.0.1:${port}`))
    } finally {
      await metrics.stop()
      await new Promise(resolve => holder.close(resolve))
    }
    assert.equal(dials.subscribers, 0)
  })
})

describe('metrics of a relay and donors on loopback', () => {
  it('count a dial, a reservation, a task run for another donor, the job, and the relay\'s reservations and circuits', async () => {
    const relay = track(await startRelay(loadRelayConfig({ dataDir: join(dir.path, 'relay'), listen: ['/ip4/127.0.0.1/tcp/0'], metrics: '127.0.0.1:0' }, {})))
    assert.ok(relay.metricsPort != null)
    const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
    // --no-direct: the job must go through the relay's circuit
    const donors = []
    for (const name of ['a', 'b']) {
      const d = track(await startTestDonor(join(dir.path, `donor-${name}`), bootstrap, ['/p2p-circuit'], { noDirect: true, metrics: '127.0.0.1:0' }))
      await waitFor(`donor ${name} reservation`, async () => await reservedStatus(d.client, relay.info.peerId))
      donors.push(d)
    }
    const [a, b] = donors
    assert.ok(a.metricsPort != null && b.metricsPort != null)

    const before = await scrape(b.metricsPort)
    assert.equal(before.types.get('worldcompute_reservations'), 'gauge')
    assert.equal(valueOf(before, 'worldcompute_reservations'), 1)
    assert.ok(sumOf(before, 'worldcompute_dial_attempts_total', { outcome: 'success', transport: 'tcp' }) >= 1, 'the dial to the relay is counted')
    assert.ok(before.samples.filter(s => s.name === 'worldcompute_dial_attempts_total').every(s => s.labels.phase != null && s.labels.transport != null && s.labels.outcome != null))
    const ttd = valueOf(before, 'worldcompute_time_to_dispatchable_seconds')
    assert.ok(ttd != null && ttd >= 0 && ttd < 60, `time to dispatchable ${ttd}`)

    await executorsSeen(a, 1)
    const view = await finished(a.client, (await submit(a.client, 'upper.wasm', { input: 'hello' })).jobId)
    assert.equal(view.status, 'succeeded', view.message)
    assert.equal(view.replicas[0].executor, b.peerId)
    assert.equal(view.replicas[0].path, 'relayed')

    const ran = await scrape(b.metricsPort)
    assert.equal(valueOf(ran, 'worldcompute_tasks_executed_total', { status: 'succeeded' }), 1)
    const submitted = await scrape(a.metricsPort)
    assert.equal(valueOf(submitted, 'worldcompute_jobs_total', { status: 'succeeded' }), 1)
    assert.equal(valueOf(submitted, 'worldcompute_tasks_executed_total', { status: 'succeeded' }), 0, 'the submitter ran nothing itself')

    const r = await scrape(relay.metricsPort)
    assert.ok(sumOf(r, 'worldcompute_connections', { transport: 'tcp' }) >= 2, 'the donors\' connections to the relay')
    assert.ok((valueOf(r, 'worldcompute_relay_reservations') ?? 0) >= 2, 'both donors reserved')
    assert.ok((valueOf(r, 'worldcompute_relay_circuits_total') ?? 0) >= 1, 'the job went through a circuit')
    assert.ok((valueOf(r, 'worldcompute_relay_bytes_total') ?? 0) > 1000, 'the module and the result crossed the circuit')
    assert.equal(r.types.get('worldcompute_relay_bytes_total'), 'counter')
    assert.equal(r.types.get('worldcompute_tasks_executed_total'), undefined, 'a relay runs no tasks and shows no task counts')
  })
})

describe('CircuitTraffic', () => {
  /** A registrar as libp2p's: one stored middleware array per protocol, handed out as it is. */
  class FakeRegistrar {
    readonly stored = new Map<string, StreamMiddleware[]>()
    getMiddleware (protocol: string): StreamMiddleware[] {
      return this.stored.get(protocol) ?? []
    }
  }

  /** The parts of a stream the counting touches, with what reached the wire and the listeners. */
  function fakeStream (direction: 'inbound' | 'outbound'): { stream: Stream, sent: number[], received: number[] } {
    const sent: number[] = []
    const received: number[] = []
    const target = new EventTarget()
    target.addEventListener('message', (evt) => { received.push((evt as Event & { data: Uint8Array }).data.byteLength) })
    const stream: Pick<Stream, 'direction' | 'send' | 'dispatchEvent'> = {
      direction,
      send: (data) => { sent.push(data.byteLength); return true },
      dispatchEvent: (evt) => target.dispatchEvent(evt)
    }
    return { stream: stream as Stream, sent, received }
  }

  function message (bytes: number): Event {
    return Object.assign(new Event('message'), { data: new Uint8Array(bytes) })
  }

  it('counts each outbound STOP stream as a circuit and its bytes both ways, and leaves the stream working', async () => {
    const traffic = new CircuitTraffic()
    const registrar = new FakeRegistrar()
    const service = traffic.service()({ registrar })
    await service.start?.()
    const [count] = registrar.getMiddleware(RELAY_V2_STOP_CODEC)
    const out = fakeStream('outbound')
    let passed: Stream | undefined
    await count(out.stream, {} as Connection, (s) => { passed = s })
    assert.equal(passed, out.stream, 'the stream goes on down the chain')
    out.stream.send(new Uint8Array(100))
    out.stream.dispatchEvent(message(40))
    out.stream.dispatchEvent(new Event('close'))
    assert.deepEqual(out.sent, [100])
    assert.deepEqual(out.received, [40])
    const inbound = fakeStream('inbound')
    await count(inbound.stream, {} as Connection, () => {})
    inbound.stream.send(new Uint8Array(7))
    assert.equal(traffic.circuits(), 1, 'an inbound STOP stream (this node as a destination) is not a circuit it relays')
    assert.equal(traffic.bytes(), 140)
    await service.stop?.()
    assert.deepEqual(registrar.getMiddleware(RELAY_V2_STOP_CODEC), [], 'stop gives the registrar its own lookup back')
  })

  it('hands libp2p a fresh middleware array per stream, so the handler libp2p appends for an inbound stream does not pile up', async () => {
    const registrar = new FakeRegistrar()
    const service = new CircuitTraffic().service()({ registrar })
    await service.start?.()
    const first = registrar.getMiddleware(RELAY_V2_STOP_CODEC)
    first.push(() => {})
    assert.equal(registrar.getMiddleware(RELAY_V2_STOP_CODEC).length, 1)
    assert.equal(registrar.getMiddleware('/other/1.0.0').length, 0, 'other protocols are left alone')
    await service.stop?.()
  })
})
