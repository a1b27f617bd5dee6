'use strict';
// The wasm-bindgen output (`wasm/build.sh` writes it to ../pkg). Loaded once per process.
const path = require('node:path');

const pkg = path.join(__dirname, '..', 'pkg', 'multiput_wasm.js');
let wasm;
try {
  wasm = require(pkg);
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes('multiput_wasm')) {
    const err = new Error(
      `multiput: the WebAssembly core is not built (${pkg} is missing); run wasm/build.sh ` +
        '(needs `rustup target add wasm32-unknown-unknown` and `cargo install wasm-bindgen-cli --version 0.2.130`)',
    );
    err.cause = e;
    throw err;
  }
  throw e;
}
module.exports = wasm;
