/**
 * Link conditions (lab issue): the same cone ↔ cone pair as scenarios.test.ts,
 * but every donor's uplink has 100 ms round-trip time and 1% loss in each
 * direction (tc netem), or an MTU of 1280 (the IPv6 minimum, common on
 * tunnels and VPNs). The conditions are set before the donors start, so
 * joining, the reservation and the jobs all cross the bad link. The delay case
 * needs sch_netem and is skipped, saying so, on kernels without it. Besides the
 * primes job, a 1 MiB input goes through `upper.wasm` and must come back
 * byte-exact: a lost or mis-sized packet that the stack does not recover shows
 * up as a wrong or missing result.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { it, type TestContext } from 'node:test'
import { submitJob } from './processes.ts'
import { labSuite, pairScenario, scenarioKeys, secs, TEST_TIMEOUT_MS, type PairContext } from './scenario.ts'
import { buildTopology, type Lab, type LinkConditions } from './topology.ts'

const only = scenarioKeys(['lossy-link', 'slow-link', 'mtu-1280'] as const)
const UPPER = fileURLToPath(new URL('../fixtures/wasm/upper.wasm', import.meta.url))

/** 1 MiB of varied lower-case text (not one repeated byte: that would compress well in any buffer). */
function bigInput (): string {
  const words = ['relay', 'donor', 'broker', 'receipt', 'circuit', 'noise', 'yamux', 'quic', 'socket', 'firewall']
  const parts: string[] = []
  let size = 0
  for (let i = 0; size < 1024 * 1024; i++) {
    const w = `${words[(i * 7 + (i >> 3)) % words.length]}-${i.toString(36)} `
    parts.push(w)
    size += w.length
  }
  return parts.join('').slice(0, 1024 * 1024)
}

const sha = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 16)

async function bigJob (ctx: PairContext): Promise<void> {
  const input = bigInput()
  const job = await submitJob(ctx.lab, ctx.submitter, UPPER, input, ctx.runDir, 120_000)
  const v = job.view
  assert.equal(job.code, 0, `1 MiB job exits 0; stderr: ${job.stderr}; status ${v.status}: ${v.message ?? ''}`)
  assert.equal(v.status, 'succeeded', v.message)
  const out = v.stdout ?? ''
  assert.equal(out.length, input.length, '1 MiB comes back whole')
  assert.equal(sha(out), sha(input.toUpperCase()), '1 MiB comes back upper-cased, byte-exact')
  ctx.row.job = `1 MiB upper ${secs(job.ms)} (broker ${v.durationMs} ms)`
  ctx.t.diagnostic(`1 MiB job ${v.jobId}: ${v.status}, path ${v.replicas[0]?.path ?? '?'}, ${job.ms} ms wall, broker ${v.durationMs} ms`)
}

function onLinks (conditions: LinkConditions, text: string): (ctx: { t: TestContext, lab: Lab }) => Promise<undefined> {
  return async ({ t, lab }) => {
    for (const host of ['submitter', 'executor']) await lab.setLink(host, conditions)
    t.diagnostic(`${text} on the uplinks of submitter and executor (netem ${await lab.netemAvailable() ? 'available' : 'not available: loss by iptables statistic'})`)
    return undefined
  }
}

/** Whether this kernel has sch_netem (Firecracker-style kernels often do not): checked in a throwaway namespace. */
async function netemHere (): Promise<boolean> {
  const lab = await buildTopology({ relays: [{ name: 'probe', ip: '198.51.100.99' }], sites: [] })
  try {
    return await lab.netemAvailable()
  } finally {
    await lab.teardown()
  }
}

labSuite('Network-namespace lab: bad links (delay, loss, small MTU)', () => {
  it('Donors behind cone NATs on links with 1% loss each way join, and a primes job and a 1 MiB job cross intact', { skip: only('lossy-link'), timeout: TEST_TIMEOUT_MS + 60_000 }, async (t) => {
    await pairScenario(t, {
      key: 'lossy-link',
      submitter: { nat: 'cone' },
      executor: { nat: 'cone' },
      dispatchTimeoutMs: 60_000,
      // loss at both ends of each donor's uplink: 1% of packets lost in each direction
      // (tc netem where the kernel has it, else an iptables `statistic` rule: the same random drop)
      beforeDonors: onLinks({ lossPct: 1 }, '1% loss at each end'),
      during: bigJob,
      jobLabel: 'primes '
    })
  })

  it('Donors behind cone NATs on links with 100 ms RTT and 1% loss join, and a primes job and a 1 MiB job cross intact', { skip: only('slow-link'), timeout: TEST_TIMEOUT_MS + 60_000 }, async (t) => {
    if (!await netemHere()) {
      t.skip('tc netem is not available in this kernel (no sch_netem module): a 100 ms RTT cannot be emulated here')
      return
    }
    await pairScenario(t, {
      key: 'slow-link',
      submitter: { nat: 'cone' },
      executor: { nat: 'cone' },
      dispatchTimeoutMs: 60_000,
      // netem on both ends of the host's uplink: 50 ms and 1% loss each way, so 100 ms added to every round trip
      beforeDonors: onLinks({ delayMs: 50, lossPct: 1 }, '50 ms delay and 1% loss at each end (100 ms RTT, 1% loss each way)'),
      during: bigJob,
      jobLabel: 'primes '
    })
  })

  it('Donors behind cone NATs on links with MTU 1280 join, and a primes job and a 1 MiB job cross intact', { skip: only('mtu-1280'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await pairScenario(t, {
      key: 'mtu-1280',
      submitter: { nat: 'cone' },
      executor: { nat: 'cone' },
      beforeDonors: onLinks({ mtu: 1280 }, 'MTU 1280'),
      during: bigJob,
      jobLabel: 'primes '
    })
  })
})
