#!/usr/bin/env bash
# Install what wasm/build.sh needs, skipping what is already there:
#   - the wasm32-unknown-unknown target (rustup, ~2 s);
#   - wasm-bindgen-cli at exactly the version of the crate's wasm-bindgen (cargo install,
#     ~200 s on 2 cores; skipped when `wasm-bindgen --version` already matches).
# No wasm-pack, no binary downloads: only rustup and crates.io.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown

want=$(sed -n 's/^wasm-bindgen = "=\(.*\)"$/\1/p' Cargo.toml)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" = "$want" ]; then
  echo "wasm-bindgen $have already installed"
else
  # Not --locked: the CLI's lockfile pins webpki-roots 1.0.11, which the registry here lacks.
  cargo install wasm-bindgen-cli --version "$want"
fi
