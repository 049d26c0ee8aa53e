import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { probePortMapping } from '../../src/doctor/probe-port-mapping.ts'
import type { PortMappingStatus } from '../../src/core/types.ts'

const DISCOVERING: PortMappingStatus = { state: 'discovering', reason: 'asking the gateway', mappings: [], failures: [] }

function mapped (confirmed: boolean): PortMappingStatus {
  return {
    state: 'mapped',
    reason: 'mapped',
    protocol: 'upnp',
    gateway: '10.2.0.1',
    mappings: [{ transport: 'tcp', internal: '10.2.0.2:4001', external: '203.0.113.11:4001', lifetimeSeconds: 3600, renewedAt: new Date(0).toISOString(), confirmed }],
    failures: []
  }
}

/** A donor whose status moves on at the given times (ms since the probe started). */
function timeline (steps: Array<[number, PortMappingStatus]>): () => PortMappingStatus {
  const t0 = Date.now()
  return () => {
    const elapsed = Date.now() - t0
    return steps.filter(([at]) => at <= elapsed).at(-1)?.[1] ?? DISCOVERING
  }
}

describe('the doctor\'s wait for a port mapping', () => {
  it('gives a mapping granted late in the budget its own window to be confirmed', async () => {
    // the budget (100 ms) ends before the confirmation (at 220 ms); the window after the grant (at 80 ms) does not
    const status = timeline([[0, DISCOVERING], [80, mapped(false)], [220, mapped(true)]])
    const obs = await probePortMapping(status, { budgetMs: 100, confirmMs: 400, pollMs: 5 })
    assert.equal(obs.timedOut, false)
    assert.equal(obs.status.mappings[0].confirmed, true)
    assert.ok(obs.waitedMs >= 200, `waited ${obs.waitedMs} ms`)
  })

  it('stops at the end of the window after the grant when nobody confirms', async () => {
    const obs = await probePortMapping(timeline([[0, DISCOVERING], [20, mapped(false)]]), { budgetMs: 40, confirmMs: 120, pollMs: 5 })
    assert.equal(obs.timedOut, true)
    assert.equal(obs.status.state, 'mapped')
    assert.ok(obs.waitedMs >= 130, `waited ${obs.waitedMs} ms`)
  })

  it('stops at the budget when no gateway answer settles anything', async () => {
    const obs = await probePortMapping(() => DISCOVERING, { budgetMs: 60, confirmMs: 10_000, pollMs: 5 })
    assert.equal(obs.timedOut, true)
    assert.equal(obs.status.state, 'discovering')
  })
})
