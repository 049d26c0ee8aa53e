/**
 * The network-namespace lab's first scenarios (issue 6): real `worldcompute`
 * relay and donor processes on separate hosts behind real NATs and firewalls.
 * Needs root; skips with one line otherwise.
 *
 *   node --test --test-concurrency=1 'test/lab/**\/*.test.ts'
 *   WC_LAB_ONLY=cone,relay-restart …   run only these scenarios (keys below)
 *   WC_LAB_KEEP=1 …                    keep the run folder (logs, data dirs) even when everything passed
 *   WC_LAB_LOG=info,net=debug …        WORLDCOMPUTE_LOG for every lab process
 */
import assert from 'node:assert/strict'
import { it } from 'node:test'
import { buildTopology, namespacesWithPrefix, type Lab } from './topology.ts'
import { NODE, restartRelay, waitDispatchable } from './processes.ts'
import { labSuite, markFailed, pairScenario, runJobAcross, rows, scenarioKeys, secs, PROBE, TEST_TIMEOUT_MS, type Row } from './scenario.ts'

const only = scenarioKeys(['network', 'open', 'cone', 'symmetric', '443-only', 'relay-restart'] as const)

// ---------------------------------------------------------------------------

labSuite('Network-namespace lab: real NATs and firewalls between relay, submitter and executor', () => {
  it('The lab networks behave as declared: cone and symmetric mappings, silent drops, 443-only egress, no route out', { skip: only('network'), timeout: 60_000 }, async (t) => {
    const lab = await buildTopology({
      relays: [{ name: 'relay', ip: '198.51.100.10' }, { name: 'relay2', ip: '198.51.100.20' }],
      sites: [
        { name: 'open', nat: 'none', hosts: [{ name: 'oa' }] },
        { name: 'cone', nat: 'cone', hosts: [{ name: 'ca' }] },
        { name: 'sym', nat: 'symmetric', hosts: [{ name: 'sa' }] },
        { name: 'fw', nat: 'cone', firewall: 'tcp-80-443-only', hosts: [{ name: 'fa' }] }
      ]
    })
    const row: Row = { scenario: 'network', dispatchable: '-', time: '-', path: '-', job: '-', lab: '-' }
    rows.push(row)
    try {
      const serve = (host: string, specs: string[]): ReturnType<Lab['exec']> => lab.exec(host, [NODE, PROBE, 'serve', lab.ip(host), ...specs])
      const servers = [serve('relay', ['tcp:4001', 'tcp:443', 'udp:4001']), serve('relay2', ['udp:4001']), serve('oa', ['tcp:4001'])]
      const deadline = Date.now() + 15_000
      while (servers.some(s => !s.stdoutLines.includes('ready')) && Date.now() < deadline) {
        assert.ok(servers.every(s => s.running()), `a probe server exited: ${servers.map(s => s.stderr()).join('\n')}`)
        await new Promise(resolve => setTimeout(resolve, 50))
      }
      assert.ok(servers.every(s => s.stdoutLines.includes('ready')), 'probe servers ready within 15 s')
      const probe = async (host: string, args: string[]): Promise<any> => {
        const res = await lab.run(host, [NODE, PROBE, ...args], { timeoutMs: 15_000 })
        assert.equal(res.code, 0, res.stderr)
        return JSON.parse(res.stdout)
      }
      const relayIp = lab.ip('relay')
      const r1 = `${relayIp}:4001`
      const r2 = `${lab.ip('relay2')}:4001`
      const [coneTcp, coneUdp, symTcp, symUdp, fw443, fw4001, fwUdp, inOpen, inCone, noRoute] = await Promise.all([
        probe('ca', ['tcp', relayIp, '4001', '3000']),
        probe('ca', ['udp', '40000', '2000', r1, r2]),
        probe('sa', ['tcp', relayIp, '4001', '3000']),
        probe('sa', ['udp', '40000', '2000', r1, r2]),
        probe('fa', ['tcp', relayIp, '443', '3000']),
        probe('fa', ['tcp', relayIp, '4001', '1500']),
        probe('fa', ['udp', '40000', '1000', r1]),
        probe('relay', ['tcp', lab.ip('oa'), '4001', '3000']),
        probe('relay', ['tcp', lab.publicIp('ca'), '4001', '1500']),
        // a TEST-NET address no namespace owns: the internet router has no route for it
        probe('ca', ['tcp', '192.0.2.254', '4001', '3000'])
      ])
      t.diagnostic(`cone: tcp seen as ${String(coneTcp.seen)}; udp from port 40000 seen as ${JSON.stringify(coneUdp.replies)}`)
      t.diagnostic(`symmetric: tcp seen as ${String(symTcp.seen)}; udp from port 40000 seen as ${JSON.stringify(symUdp.replies)}`)
      t.diagnostic(`443-only: tcp/443 ${JSON.stringify(fw443)}, tcp/4001 ${JSON.stringify(fw4001)}, udp ${JSON.stringify(fwUdp.replies)}`)
      t.diagnostic(`inbound: to the open host ${JSON.stringify(inOpen)}; to the cone router ${JSON.stringify(inCone)}; to an address nobody has ${JSON.stringify(noRoute)}`)

      assert.equal(coneTcp.ok, true)
      assert.match(coneTcp.seen, new RegExp(`^${lab.publicIp('ca').replaceAll('.', '\\.')}:`), 'a cone-NAT host is seen at its router\'s WAN address')
      const conePorts = Object.values(coneUdp.replies as Record<string, string | null>).map(v => v?.split(':')[1])
      assert.ok(conePorts.every(p => p != null), 'both relays answer the cone host over UDP')
      assert.equal(conePorts[0], conePorts[1], 'cone NAT: one mapping for every destination (endpoint-independent)')
      assert.equal(symTcp.ok, true)
      const symPorts = Object.values(symUdp.replies as Record<string, string | null>).map(v => v?.split(':')[1])
      assert.ok(symPorts.every(p => p != null), 'both relays answer the symmetric host over UDP')
      assert.notEqual(symPorts[0], symPorts[1], 'symmetric NAT: a new mapping per destination')
      assert.equal(fw443.ok, true, '443-only site: TCP 443 goes out')
      assert.deepEqual([fw4001.ok, fw4001.error], [false, 'ETIMEDOUT'], '443-only site: TCP 4001 is dropped silently')
      assert.equal(Object.values(fwUdp.replies)[0], null, '443-only site: UDP is dropped')
      assert.equal(inOpen.ok, true, 'an open-network host accepts inbound connections')
      assert.match(inOpen.seen, new RegExp(`^${relayIp.replaceAll('.', '\\.')}:`))
      assert.deepEqual([inCone.ok, inCone.error], [false, 'ETIMEDOUT'], 'unsolicited inbound to a NAT router is dropped silently')
      assert.equal(noRoute.ok, false, 'nothing outside the lab is reachable')
      assert.notEqual(noRoute.error, 'ETIMEDOUT', 'the internet router answers "unreachable" at once (it has no default route)')

      const resolv = await lab.run('ca', ['cat', '/etc/resolv.conf'])
      assert.equal(resolv.stdout, '', 'resolv.conf inside a lab host is empty')
      const inetDefault = await lab.run('inet', ['ip', 'route', 'show', 'default'])
      assert.equal(inetDefault.stdout.trim(), '', 'the internet router has no default route')
      row.path = 'as declared'
    } catch (err) {
      markFailed()
      throw err
    } finally {
      const report = await lab.teardown()
      row.lab = `${lab.setupMs} ms / ${report.ms} ms`
      t.diagnostic(`namespaces up in ${lab.setupMs} ms, down in ${report.ms} ms`)
      assert.deepEqual(namespacesWithPrefix(lab.prefix), [])
      assert.equal(report.strays, 0, 'no process is left inside a deleted namespace')
    }
  })

  it('Donors on open networks with public addresses become dispatchable and run a job across sites', { skip: only('open'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await pairScenario(t, {
      key: 'open',
      submitter: { nat: 'none' },
      executor: { nat: 'none' },
      // public hosts also listen on their public address, so a direct path is possible
      extraListen: ip => [`/ip4/${ip}/tcp/4001`]
    })
  })

  it('Donors behind cone NATs at two sites become dispatchable and run a job across sites', { skip: only('cone'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await pairScenario(t, { key: 'cone', submitter: { nat: 'cone' }, executor: { nat: 'cone' } })
  })

  it('Donors behind symmetric NATs at two sites become dispatchable and run a job across sites', { skip: only('symmetric'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await pairScenario(t, { key: 'symmetric', submitter: { nat: 'symmetric' }, executor: { nat: 'symmetric' } })
  })

  it('A donor whose firewall lets only TCP 80/443 out joins over WebSocket on 443 and runs a job sent from a cone-NAT site', { skip: only('443-only'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await pairScenario(t, {
      key: '443-only',
      submitter: { nat: 'cone' },
      executor: { nat: 'cone', firewall: 'tcp-80-443-only' },
      // a sequential 5 s-per-address ladder must first give up on TCP 4001 and QUIC
      dispatchTimeoutMs: 60_000,
      // "the log explains each failed rung" (traversal issue)
      mustExplain: relay => ({ executor: [relay.addr.tcp, relay.addr.quic] })
    })
  })

  it('When the relay restarts mid-run, both donors reserve again by themselves and jobs cross again', { skip: only('relay-restart'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await pairScenario(t, {
      key: 'relay-restart',
      submitter: { nat: 'cone' },
      executor: { nat: 'cone' },
      during: async (ctx) => {
        await runJobAcross(ctx, 'before: ')
        const down = Date.now()
        const { relay, stopMs, exitCode } = await restartRelay(ctx.lab, ctx.relay, ctx.runDir)
        assert.equal(exitCode, 0, 'the relay exits 0 on SIGTERM')
        // the scenario's shutdown must stop the new relay process, not the old one
        ctx.relay.proc = relay.proc
        const back = relay.proc.startedAt
        ctx.t.diagnostic(`relay stopped in ${stopMs} ms, started again (same PeerId) and ready ${relay.readyMs} ms later`)
        const [a, b] = await Promise.allSettled([
          waitDispatchable(ctx.lab, ctx.submitter, { after: back, timeoutMs: 60_000 }),
          waitDispatchable(ctx.lab, ctx.executor, { after: back, timeoutMs: 60_000 })
        ])
        const text = [a, b].map(r => r.status === 'fulfilled' ? `${secs(r.value.ms)} (${r.value.transport})` : 'never')
        const afterReady = [a, b].map(r => r.status === 'fulfilled' ? `${r.value.ms - relay.readyMs} ms` : 'never')
        ctx.row.time += `; after restart A ${text[0]}, B ${text[1]}`
        ctx.t.diagnostic(`reservations back, counted from the new relay process's spawn (${back - down} ms after the stop began): submitter ${text[0]}, executor ${text[1]}; counted from the relay being ready: ${afterReady.join(', ')}`)
        if (a.status === 'rejected') { ctx.row.dispatchable = 'no (submitter after restart)'; throw a.reason }
        if (b.status === 'rejected') { ctx.row.dispatchable = 'no (executor after restart)'; throw b.reason }
      },
      jobLabel: 'after: '
    })
  })
})
