#!/usr/bin/env bash
# Install the C library of multiput (the C ABI PHP also loads) to a prefix, with its header and
# a pkg-config file, so that C programs build with `pkg-config --cflags --libs multiput`.
#
#   scripts/install-c.sh [PREFIX]          # default /usr/local; builds the release library
#   MULTIPUT_PROFILE=debug scripts/install-c.sh /tmp/prefix   # the debug build instead
#
# Installs PREFIX/lib/libmultiput_ffi.so, PREFIX/include/multiput.h and
# PREFIX/lib/pkgconfig/multiput.pc. Then:
#   cc hello.c $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs multiput)
# and run with PREFIX/lib on the loader's path (ldconfig, or LD_LIBRARY_PATH).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

prefix="${1:-/usr/local}"
profile="${MULTIPUT_PROFILE:-release}"
if [ "$profile" = release ]; then
    cargo build --locked --release -q -p multiput-ffi
else
    cargo build --locked -q -p multiput-ffi
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)

install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0644 "target/$profile/libmultiput_ffi.so" "$prefix/lib/libmultiput_ffi.so"
install -m 0644 ffi/include/multiput.h "$prefix/include/multiput.h"
cat >"$prefix/lib/pkgconfig/multiput.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: multiput
Description: Replicated memcached client (C ABI of the Rust core)
Version: $version
Libs: -L\${libdir} -lmultiput_ffi
Cflags: -I\${includedir}
PC
echo "installed multiput $version ($profile) to $prefix: lib/libmultiput_ffi.so, include/multiput.h, lib/pkgconfig/multiput.pc"
