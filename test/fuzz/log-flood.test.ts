import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import { configureLogging, resetLogging } from '../../src/log/logger.ts'
import { configureRepeats } from '../../src/log/repeats.ts'
import { OFFER_PROTOCOL } from '../../src/protocols/offer/constants.ts'
import { OfferService } from '../../src/protocols/offer/offer.ts'
import { PEERS } from './arbitraries.ts'
import { CapturingRegistrar, fakeConnection, frame, pair, sendAndClose, watch } from './targets/streams.ts'

interface Line { level: string, component: string, peer?: string, code?: string, suppressed?: number }

describe('a flood of garbage from one peer', () => {
  afterEach(() => {
    configureRepeats()
    resetLogging()
  })

  it('writes one WARN line per peer and cause per interval, then the count of the rest', async () => {
    const lines: Line[] = []
    configureLogging({ spec: 'info', format: 'json', sink: (line) => { lines.push(JSON.parse(line) as Line) } })
    let now = 0
    configureRepeats({ now: () => now, autoSweep: false })
    const registrar = new CapturingRegistrar()
    const service = new OfferService({ registrar, connectionManager: { openStream: async () => { throw new Error('not used') } } }, {
      decideOffer: () => ({ accept: true, hasModule: false, freeSlots: 1 })
    })
    await service.start()
    const handler = registrar.handler(OFFER_PROTOCOL)
    const garbage = frame(new Uint8Array([0xff, 0x00, 0x13]))
    try {
      for (let i = 0; i < 300; i++) {
        const [outbound, inbound] = await pair()
        const far = watch(outbound)
        const handled = handler(inbound, fakeConnection(PEERS[0].id))
        await sendAndClose(outbound, garbage)
        await handled
        await far.ended
      }
      now += 60_000
      const [outbound, inbound] = await pair()
      const handled = handler(inbound, fakeConnection(PEERS[0].id))
      await sendAndClose(outbound, garbage)
      await handled
    } finally {
      await service.stop()
    }
    const warnings = lines.filter(l => l.level === 'warn')
    assert.deepEqual(warnings.map(l => [l.component, l.peer, l.code, l.suppressed]), [
      ['protocols.offer', PEERS[0].id, 'MALFORMED_MESSAGE', undefined],
      ['protocols.offer', PEERS[0].id, 'MALFORMED_MESSAGE', 299]
    ])
  })
})
