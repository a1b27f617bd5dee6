#!/usr/bin/env bash
# Build the WebAssembly core and the Node package's bindings: cargo build for
# wasm32-unknown-unknown, then wasm-bindgen --target nodejs into js/pkg/.
#
#   wasm/build.sh            # release build (what the tests and the benchmark use)
#
# Needs: rustup target add wasm32-unknown-unknown
#        cargo install wasm-bindgen-cli --version 0.2.130   (must equal the crate's wasm-bindgen)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

want=$(sed -n 's/^wasm-bindgen = "=\(.*\)"$/\1/p' Cargo.toml)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "wasm/build.sh: wasm-bindgen CLI ${have:-not found}; need $want:" >&2
  echo "  cargo install wasm-bindgen-cli --version $want   (or wasm/install-tools.sh)" >&2
  exit 1
fi

# The crate is its own workspace (it means nothing on the host); share the repo's target dir
# so the host build scripts and proc macros it has in common with the workspace are reused.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/../target}"
cargo build --locked --release --target wasm32-unknown-unknown
rm -rf js/pkg
wasm-bindgen --target nodejs --out-dir js/pkg "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/multiput_wasm.wasm"
echo "wasm/build.sh: js/pkg/ ($(wc -c < js/pkg/multiput_wasm_bg.wasm) bytes of wasm)"
