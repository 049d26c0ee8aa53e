#!/bin/sh
# Rebuilds the WebAssembly test fixtures in test/fixtures/wasm/ from their C and WAT sources.
# The built .wasm files are committed, because CI has no clang or wabt; run this after editing a source.
#
# Needs (Debian/Ubuntu): clang, lld, wasi-libc, libclang-rt-14-dev-wasm32 (compiler-rt builtins for wasm32),
# and wabt (wat2wasm).
#   apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32 wabt
# Debian lays wasi-libc out as a multiarch sysroot (/usr/include/wasm32-wasi, /usr/lib/wasm32-wasi),
# which clang finds with --sysroot=/usr.
set -eu

dir="$(cd "$(dirname "$0")/../test/fixtures/wasm" && pwd)"
cd "$dir"

CC="${CC:-clang}"
WAT2WASM="${WAT2WASM:-wat2wasm}"
SYSROOT="${WASI_SYSROOT:-/usr}"
max_bytes=102400

for tool in "$CC" "$WAT2WASM"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "build-fixtures: '$tool' not found; install clang, lld, wasi-libc, libclang-rt-14-dev-wasm32 and wabt" >&2
    exit 1
  fi
done

for src in *.c; do
  out="${src%.c}.wasm"
  # -O2: realistic code; -s: no name section, so fixtures stay small
  "$CC" --target=wasm32-wasi --sysroot="$SYSROOT" -O2 -s -o "$out" "$src"
  echo "built $out"
done

for src in *.wat; do
  out="${src%.wat}.wasm"
  case "$src" in
    # shared memory and atomics, multi-memory and tail calls are behind flags in wabt 1.0.32
    atomics.wat) "$WAT2WASM" --enable-threads "$src" -o "$out" ;;
    two-memories.wat) "$WAT2WASM" --enable-multi-memory "$src" -o "$out" ;;
    tail-call.wat) "$WAT2WASM" --enable-tail-call "$src" -o "$out" ;;
    *) "$WAT2WASM" "$src" -o "$out" ;;
  esac
  echo "built $out"
done

# not a module at all: exercises the invalid_module path
printf 'this is not a WebAssembly module, just text\n' > garbage.wasm
echo "built garbage.wasm"

for f in *.wasm; do
  size=$(wc -c < "$f")
  if [ "$size" -gt "$max_bytes" ]; then
    echo "build-fixtures: $f is $size bytes; keep fixtures under $max_bytes bytes" >&2
    exit 1
  fi
done
