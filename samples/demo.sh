#!/bin/sh
# Builds a signed self-extracting package from samples/hello, inspects it,
# verifies it, expands it, and installs it into a new instance, all inside a
# scratch directory (given as $1, or a new one under $TMPDIR).
#
# Run `cargo build --release` first: this uses target/release/pkgbuild and pkgrun,
# or the tools in the directory $UPKG_BIN (e.g. /usr/bin, once the .deb is installed).
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
bin="${UPKG_BIN:-$repo/target/release}"
if [ ! -x "$bin/pkgbuild" ] || [ ! -x "$bin/pkgrun" ]; then
    echo "demo: build the tools first: cargo build --release" >&2
    exit 1
fi
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/upkg-demo.XXXXXX")}
mkdir -p "$work"
# Keep the machine's trust store and instance registry out of the demo.
export PKGRUN_TRUSTED_KEYS="$work/trusted-keys" PKGRUN_REGISTRY="$work/instances"
mkdir -p "$PKGRUN_TRUSTED_KEYS"

step() { printf '\n== %s\n' "$*"; }

step "a signing key pair (minisign format)"
"$bin/pkgbuild" keygen "$work/demo" --no-passphrase --force
cp "$work/demo.pub" "$PKGRUN_TRUSTED_KEYS/"

step "build samples/hello into one signed, self-extracting file"
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600} \
    "$bin/pkgbuild" build "$repo/samples/hello" -o "$work/hello.run" --key "$work/demo.key"

step "what is it? (the package runs itself: ./hello.run --info)"
"$work/hello.run" --info

step "verify every byte: signature, catalog, payload, stub"
"$work/hello.run" --check

step "expand it to a directory (a network share, say), then verify the share"
"$work/hello.run" -x "$work/share"
"$bin/pkgrun" "$work/share" --check

step "install it: a new instance of the product"
"$work/hello.run" --target "$work/instance"
"$bin/pkgrun" status --target "$work/instance"
"$work/instance/bin/hello"

printf '\nEverything is in %s\n' "$work"
