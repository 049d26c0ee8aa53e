/** Helpers for end-to-end job tests: real fixtures, the real API client, bounded waits. */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { waitFor } from './wait.ts'
import { MeshNode } from '../../src/net/mesh-node.ts'
import type { MeshHost } from '../../src/net/components.ts'
import type { CapacityService } from '../../src/protocols/capacity/index.ts'
import type { ApiClient } from '../../src/api/client.ts'
import type { JobLimits, JobView } from '../../src/core/job.ts'

export function fixture (name: string): Buffer {
  return readFileSync(fileURLToPath(new URL(`../fixtures/wasm/${name}`, import.meta.url)))
}

export interface SubmitOptions {
  input?: Uint8Array | string
  args?: string[]
  env?: string[]
  replicas?: number
  limits?: Partial<JobLimits>
}

export async function submit (client: ApiClient, module: string, opts: SubmitOptions = {}): Promise<JobView> {
  const input = typeof opts.input === 'string' ? Buffer.from(opts.input) : Buffer.from(opts.input ?? new Uint8Array())
  return await client.call('submitJob', {
    module: fixture(module).toString('base64'),
    input: input.toString('base64'),
    moduleName: module,
    args: opts.args ?? [],
    env: opts.env ?? [],
    replicas: opts.replicas ?? 1,
    limits: opts.limits ?? {}
  })
}

export async function finished (client: ApiClient, jobId: string, timeoutMs = 30_000): Promise<JobView> {
  return await waitFor(`job ${jobId} to finish`, async () => {
    const v = await client.call('job', { id: jobId, full: true })
    return v.final ? v : undefined
  }, timeoutMs)
}

/** Waits until the broker behind `client` sees `count` executors other than itself. */
export async function executorsSeen (handle: { donor: { mesh: MeshHost } }, count: number): Promise<void> {
  // the daemon builds its node with the capacity service (daemon.ts)
  const mesh = handle.donor.mesh
  assert.ok(mesh instanceof MeshNode, 'the daemon runs a MeshNode')
  const capacity = (mesh.services as { capacity?: CapacityService }).capacity
  assert.ok(capacity != null, 'the daemon\'s node has the capacity service')
  await waitFor(`${count} executor(s) to be announced`, () => capacity.executors().length >= count ? true : undefined, 15_000)
}
