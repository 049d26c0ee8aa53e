import { WorldComputeError } from '../core/errors.ts'
import type { ExecuteRequest, ExecuteResult } from '../core/job.ts'
import { cancelTasks } from '../donor/cancel.ts'
import type { CancelRequest, CancelResponse } from '../protocols/cancel/index.ts'
import type { CapacityInfo } from '../protocols/capacity/index.ts'
import type { Admission, AdmissionRequest, DispatchContext } from '../protocols/dispatch/index.ts'
import type { NatInfoMessage } from '../protocols/nat-info/index.ts'
import type { OfferContext, OfferRequest, OfferResponse } from '../protocols/offer/index.ts'

/** What a peer is told about our NAT before the NAT prober has run. */
const NAT_UNKNOWN: NatInfoMessage = { mapping: 'unknown', filtering: 'unknown', udp: 'unknown', webrtc: false }

/** The roles that answer the protocol services: the job runner (none with --no-execute) and the donor's NAT view. */
export interface AnsweringRoles {
  runner?: {
    capacity: () => CapacityInfo
    decideOffer: (req: OfferRequest, context: OfferContext) => OfferResponse
    admit: (req: AdmissionRequest, context: DispatchContext) => Admission
    runTask: (req: ExecuteRequest, options: { signal: AbortSignal } & DispatchContext) => Promise<ExecuteResult>
    cancelTask: (peer: string, taskId: string) => 'stopped' | 'dropped' | 'unknown'
    suspendedMs: () => number
  }
  nat: { natInfo: () => NatInfoMessage }
}

/** A task was dispatched to this donor before its job runner existed. */
export class DonorStartingError extends WorldComputeError {
  constructor () {
    super('the donor is still starting', 'DONOR_STARTING')
  }
}

/**
 * What the protocol services (capacity, NAT info, offer, dispatch) answer
 * peers with. The services are built inside the libp2p node, and the roles
 * that answer (job runner, donor) are built on that node, so the services
 * reach the roles through this one seam, attached once the roles exist;
 * until then a peer is told this donor is starting.
 */
export class ServiceAnswers {
  private roles?: AnsweringRoles

  attach (roles: AnsweringRoles): void {
    this.roles = roles
  }

  capacity (): CapacityInfo | undefined {
    return this.roles?.runner?.capacity()
  }

  natInfo (): NatInfoMessage {
    return this.roles?.nat.natInfo() ?? NAT_UNKNOWN
  }

  decideOffer (req: OfferRequest, context: OfferContext): OfferResponse {
    const runner = this.roles?.runner
    return runner != null ? runner.decideOffer(req, context) : { accept: false, reason: 'starting', hasModule: false, freeSlots: 0 }
  }

  admit (req: AdmissionRequest, context: DispatchContext): Admission {
    const runner = this.roles?.runner
    return runner != null ? runner.admit(req, context) : { admitted: false, code: 'no-offer', reason: 'the donor is still starting' }
  }

  cancelTasks (req: CancelRequest, context: { peer: string }): CancelResponse {
    const runner = this.roles?.runner
    return runner != null ? cancelTasks(runner, req, context) : { stopped: [], dropped: [], unknown: req.taskIds }
  }

  /** How long the donor's jobs have been suspended in all (donor controls), ms. */
  suspendedMs (): number {
    return this.roles?.runner?.suspendedMs() ?? 0
  }

  async runTask (req: ExecuteRequest, options: { signal: AbortSignal } & DispatchContext): Promise<ExecuteResult> {
    const runner = this.roles?.runner
    if (runner == null) throw new DonorStartingError()
    return await runner.runTask(req, options)
  }
}
