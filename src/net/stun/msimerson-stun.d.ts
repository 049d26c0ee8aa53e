/**
 * Types for the subset of `@msimerson/stun` (a maintained fork of the `stun`
 * package; plain CommonJS, ships no declarations) that codec.ts uses.
 */
declare module '@msimerson/stun' {
  interface StunAddress { address: string, port: number, family: string }
  interface StunAttribute { readonly type: number, readonly value: unknown }
  class StunMessage implements Iterable<StunAttribute> {
    readonly type: number
    readonly transactionId: Buffer
    readonly count: number
    isLegacy (): boolean
    getAttribute (type: number): StunAttribute | undefined
    hasAttribute (type: number): boolean
    [Symbol.iterator] (): Iterator<StunAttribute>
  }
  class StunRequest extends StunMessage {
    setType (type: number): void
    setTransactionId (id: Buffer): boolean
    addAttribute (type: number, ...values: unknown[]): StunAttribute | undefined
    addXorAddress (address: string, port: number): StunAttribute | undefined
    addAddress (address: string, port: number): StunAttribute | undefined
    addSoftware (software: string): StunAttribute | undefined
    addError (code: number, reason?: string): StunAttribute | undefined
    addUnknownAttributes (types: number[]): StunAttribute | undefined
    addFingerprint (): StunAttribute | undefined
    toBuffer (): Buffer
  }
  class StunResponse extends StunMessage {
    getAddress (): StunAddress | undefined
    getXorAddress (): StunAddress | undefined
    getError (): { code: number, reason: string } | undefined
  }
  const stun: {
    createMessage: (type: number, transaction?: Buffer) => StunRequest
    decode: (bytes: Buffer) => StunResponse
    validateFingerprint: (message: StunMessage) => boolean
    constants: Record<string, number>
  }
  export default stun
}
