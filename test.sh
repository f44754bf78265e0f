#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine with Rust: installs the Debian
# tools the tests run (the interop tests use the real zstd, cabextract, minisign,
# ...; the farm rollout tests ansible-core's ansible-playbook; the benchmark
# harness the peers), through apt-get (with sudo when not
# root), then runs `cargo test` with any arguments given.
set -euo pipefail
cd "$(dirname "$0")"

packages=(zstd gzip tar cabextract minisign jq python3 bsdutils e2fsprogs util-linux time pigz gcab makeself man-db dpkg-dev ansible-core nginx-light openssl rsync zsync bsdiff)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "test.sh: installing the Debian packages the tests use: ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python packages the tests use: the ABNF parser that checks the spec's grammars
# (tests/format_grammars.rs).
if ! python3 -c 'import abnf' 2>/dev/null; then
    echo "test.sh: installing the Python package the tests use: abnf" >&2
    if ! python3 -m pip --version >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip >/dev/null
    fi
    python3 -m pip install --quiet --disable-pip-version-check 'abnf==2.9.1' 2>/dev/null ||
        python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'abnf==2.9.1'
fi

exec cargo test --locked "$@"
