#!/bin/sh
# Builds echo.wasm from echo.c with clang and wasi-libc.
# Debian/Ubuntu: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32
set -eu
cd "$(dirname "$0")"
OUT=${1:-echo.wasm}
SYSROOT=${WASI_SYSROOT:-}
if [ -z "$SYSROOT" ]; then
	for d in /usr/share/wasi-sysroot /usr/lib/wasi-sysroot /opt/wasi-sdk/share/wasi-sysroot; do
		[ -d "$d" ] && SYSROOT=$d && break
	done
fi
${CC:-clang} --target=wasm32-wasi ${SYSROOT:+--sysroot="$SYSROOT"} -O2 -Wall -Wextra -Werror \
	-Wl,--strip-all -o "$OUT" echo.c
