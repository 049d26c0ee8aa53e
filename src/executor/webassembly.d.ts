/**
 * Types for the global `WebAssembly` object, which Node provides at run time.
 *
 * TypeScript declares them only in lib.dom / lib.webworker, and this project's
 * tsconfig uses `lib: ["es2023"]` with @types/node (which has none), so the
 * executor declares the subset it uses, with the same shapes as lib.dom.d.ts.
 * Delete this file if the tsconfig ever adds "dom" or "webworker" to `lib`
 * (the type aliases would then be declared twice).
 */

declare namespace WebAssembly {
  interface CompileError extends Error {}
  var CompileError: {
    prototype: CompileError
    new(message?: string): CompileError
    (message?: string): CompileError
  }

  interface LinkError extends Error {}
  var LinkError: {
    prototype: LinkError
    new(message?: string): LinkError
    (message?: string): LinkError
  }

  interface RuntimeError extends Error {}
  var RuntimeError: {
    prototype: RuntimeError
    new(message?: string): RuntimeError
    (message?: string): RuntimeError
  }

  interface Global<T extends ValueType = ValueType> {
    value: ValueTypeMap[T]
    valueOf(): ValueTypeMap[T]
  }
  var Global: {
    prototype: Global
    new<T extends ValueType = ValueType>(descriptor: GlobalDescriptor<T>, v?: ValueTypeMap[T]): Global<T>
  }

  interface Instance {
    readonly exports: Exports
  }
  var Instance: {
    prototype: Instance
    new(module: Module, importObject?: Imports): Instance
  }

  interface Memory {
    readonly buffer: ArrayBuffer
    grow(delta: number): number
  }
  var Memory: {
    prototype: Memory
    new(descriptor: MemoryDescriptor): Memory
  }

  interface Module {}
  var Module: {
    prototype: Module
    new(bytes: ArrayBufferView | ArrayBuffer): Module
    customSections(moduleObject: Module, sectionName: string): ArrayBuffer[]
    exports(moduleObject: Module): ModuleExportDescriptor[]
    imports(moduleObject: Module): ModuleImportDescriptor[]
  }

  interface Table {
    readonly length: number
    get(index: number): any
    grow(delta: number, value?: any): number
    set(index: number, value?: any): void
  }
  var Table: {
    prototype: Table
    new(descriptor: TableDescriptor, value?: any): Table
  }

  interface GlobalDescriptor<T extends ValueType = ValueType> {
    mutable?: boolean
    value: T
  }

  interface MemoryDescriptor {
    initial: number
    maximum?: number
    shared?: boolean
  }

  interface ModuleExportDescriptor {
    kind: ImportExportKind
    name: string
  }

  interface ModuleImportDescriptor {
    kind: ImportExportKind
    module: string
    name: string
  }

  interface TableDescriptor {
    element: TableKind
    initial: number
    maximum?: number
  }

  interface ValueTypeMap {
    anyfunc: Function
    externref: any
    f32: number
    f64: number
    i32: number
    i64: bigint
    v128: never
  }

  interface WebAssemblyInstantiatedSource {
    instance: Instance
    module: Module
  }

  type ImportExportKind = 'function' | 'global' | 'memory' | 'table'
  type TableKind = 'anyfunc' | 'externref'
  type ExportValue = Function | Global | Memory | Table
  type Exports = Record<string, ExportValue>
  type ImportValue = ExportValue | number
  type Imports = Record<string, ModuleImports>
  type ModuleImports = Record<string, ImportValue>
  type ValueType = keyof ValueTypeMap

  function compile(bytes: ArrayBufferView | ArrayBuffer): Promise<Module>
  function instantiate(bytes: ArrayBufferView | ArrayBuffer, importObject?: Imports): Promise<WebAssemblyInstantiatedSource>
  function instantiate(moduleObject: Module, importObject?: Imports): Promise<Instance>
  function validate(bytes: ArrayBufferView | ArrayBuffer): boolean
}
