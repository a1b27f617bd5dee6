#!/usr/bin/env bash
# Build each ecosystem's package and use it as a user would: installed into an empty project,
# on a PATH without Rust (no cargo, no rustc), against a real memcached.
#
#   scripts/packages.sh           # all of them (what .ci/run does)
#   scripts/packages.sh python node php c rust
#
# - python: `maturin sdist`, then a wheel built from that sdist (proving the sdist builds with
#   Rust), installed into a fresh venv with cargo hidden; python/examples/hello.py runs the
#   client and the Django backend.
# - node:   `npm pack` of wasm/js (the built WebAssembly inside; run wasm/build.sh first), installed
#   into an empty npm project; wasm/js/examples/hello.js runs and hello.ts type-checks against
#   index.d.ts (`tsc --noEmit --strict`).
# - php:    Composer installs multiput/multiput (composer.json) from a path repository into an
#   empty project; php-ext/examples/hello.php runs with the library found by MULTIPUT_FFI_LIB.
# - c:      scripts/install-c.sh to a prefix; ffi/examples/hello.c builds with
#   `pkg-config --cflags --libs multiput` and runs.
# - rust:   `cargo package -p multiput -p multiput-cli` (metadata, README, and each crate
#   built from its packaged sources alone).
#
# Needs: maturin's build deps (Rust), node and npm, php with FFI, composer, pkg-config, gcc,
# memcached. Tool versions are pinned below.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"

MATURIN_VERSION=1.9.6
TYPESCRIPT_VERSION=5.9.3
TYPES_NODE_VERSION=20.19.25

what=("$@")
[ ${#what[@]} -gt 0 ] || what=(python node php c rust)

step() { printf '\n==> packages: %s\n' "$*"; }
work="$(mktemp -d)"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export MULTIPUT_RUN_DIR="$work/run"
scripts/memcached.sh start "$port" >/dev/null
cleanup() {
    scripts/memcached.sh stop all >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
servers="127.0.0.1:$port"

# A PATH a user without Rust has: the system's directories and the one Python/Node/PHP use,
# never ~/.cargo/bin.
norust_path=""
for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin "$(dirname "$(command -v node)")"; do
    case ":$norust_path:" in *":$d:"*) ;; *) norust_path="${norust_path:+$norust_path:}$d" ;; esac
done
norust() {
    env PATH="$norust_path" "$@"
}
norust sh -c '! command -v cargo >/dev/null && ! command -v rustc >/dev/null' ||
    { echo "packages.sh: cargo is still on the PATH meant to have no Rust" >&2; exit 1; }

for w in "${what[@]}"; do
    case "$w" in
    python)
        step "Python: sdist, a wheel built from it, installed without Rust"
        py="${PYTHON:-python3}"
        "$py" -m venv "$work/build-venv"
        "$work/build-venv/bin/pip" install -q "maturin==$MATURIN_VERSION"
        (cd python && "$work/build-venv/bin/maturin" sdist -o "$work/dist" >/dev/null)
        sdist=$(ls "$work"/dist/multiput-*.tar.gz)
        tar -tzf "$sdist" >"$work/sdist.list"
        grep -q 'core/src/logic/ring.rs' "$work/sdist.list" ||
            { echo "the sdist lacks the core's sources" >&2; exit 1; }
        # The sdist's build backend, pinned like the rest (pip fetches it for the isolated build).
        echo "maturin==$MATURIN_VERSION" >"$work/constraints.txt"
        PIP_CONSTRAINT="$work/constraints.txt" "$work/build-venv/bin/pip" wheel -q --no-deps -w "$work/dist" "$sdist"
        wheel=$(ls "$work"/dist/multiput-*.whl)
        case "$wheel" in *abi3*) ;; *) echo "not an abi3 wheel: $wheel" >&2; exit 1 ;; esac
        echo "built $(basename "$sdist") and $(basename "$wheel")"
        "$py" -m venv "$work/app-venv"
        norust "$work/app-venv/bin/pip" install -q "$wheel" "django==5.2.19"
        (cd "$work" && norust "$work/app-venv/bin/python" "$REPO/python/examples/hello.py" "$servers")
        ;;
    node)
        step "Node: npm pack, installed into an empty project, run and type-checked"
        [ -f wasm/js/pkg/multiput_wasm_bg.wasm ] || wasm/build.sh
        tarball=$(cd wasm/js && npm pack --silent --pack-destination "$work")
        tar -tzf "$work/$tarball" >"$work/npm.list"
        grep -q 'package/pkg/multiput_wasm_bg.wasm' "$work/npm.list" ||
            { echo "the npm package lacks the WebAssembly" >&2; exit 1; }
        mkdir -p "$work/node-app"
        cp wasm/js/examples/hello.js wasm/js/examples/hello.ts "$work/node-app/"
        (
            cd "$work/node-app"
            norust npm init -y >/dev/null
            norust npm install --silent --no-audit --no-fund "$work/$tarball" \
                "typescript@$TYPESCRIPT_VERSION" "@types/node@$TYPES_NODE_VERSION"
            norust node hello.js "$servers"
            norust npx tsc --noEmit --strict --target es2022 --module nodenext --moduleResolution nodenext \
                --types node hello.ts
            echo "hello.ts type-checks against index.d.ts"
        )
        ;;
    php)
        step "PHP: composer archive of multiput/multiput, installed by Composer into an empty project"
        lib="$REPO/target/debug/libmultiput_ffi.so"
        [ -f "$lib" ] || cargo build --locked -q -p multiput-ffi
        mkdir -p "$work/php-app" "$work/artifacts"
        cp php-ext/examples/hello.php "$work/php-app/"
        # The package as Composer would publish it (composer.json's archive excludes leave the
        # PHP sources, the header, the preload file, README), unpacked as a path repository.
        COMPOSER_HOME="$work/composer-home" composer archive -q --format=tar --dir="$work/artifacts" --file=multiput
        mkdir -p "$work/php-package"
        tar -xf "$work/artifacts/multiput.tar" -C "$work/php-package"
        cat >"$work/php-app/composer.json" <<JSON
{
    "name": "example/app",
    "repositories": [{"type": "path", "url": "$work/php-package", "options": {"symlink": false}}, {"packagist": false}],
    "require": {"multiput/multiput": "*@dev"},
    "minimum-stability": "dev"
}
JSON
        (
            cd "$work/php-app"
            norust env COMPOSER_HOME="$work/composer-home" composer install -q --no-interaction --no-progress
            [ -f vendor/multiput/multiput/php-ext/src/Memcached.php ] ||
                { echo "composer did not install the package" >&2; exit 1; }
            norust env MULTIPUT_FFI_LIB="$lib" php -d ffi.enable=1 hello.php "$servers"
        )
        ;;
    c)
        step "C: scripts/install-c.sh to a prefix, the example built with pkg-config"
        MULTIPUT_PROFILE="${MULTIPUT_PROFILE:-debug}" scripts/install-c.sh "$work/prefix"
        flags=$(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --cflags --libs multiput)
        # shellcheck disable=SC2086 # pkg-config's output is meant to be split
        gcc -Wall -Werror ffi/examples/hello.c $flags -o "$work/hello-c"
        norust env LD_LIBRARY_PATH="$work/prefix/lib" "$work/hello-c" "$servers"
        ;;
    rust)
        step "Rust: cargo package (each crate built from its packaged sources)"
        # (a clean checkout, as in CI; MULTIPUT_PACKAGE_ALLOW_DIRTY=1 while editing)
        cargo package --locked -q ${MULTIPUT_PACKAGE_ALLOW_DIRTY:+--allow-dirty} -p multiput -p multiput-cli
        ls target/package/*.crate
        ;;
    *)
        echo "packages.sh: unknown package $w (python, node, php, c, rust)" >&2
        exit 2
        ;;
    esac
done
step "every package built, installed and used"
