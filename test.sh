#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine with Rust: installs the Debian
# tools the tests run (the interop tests use the real zstd, cabextract, minisign,
# ...; the benchmark harness the peers), through apt-get (with sudo when not
# root), then runs `cargo test` with any arguments given.
set -euo pipefail
cd "$(dirname "$0")"

packages=(zstd gzip tar cabextract minisign python3 bsdutils e2fsprogs util-linux time pigz gcab makeself man-db dpkg-dev nginx-light openssl rsync zsync bsdiff)
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

exec cargo test --locked "$@"
