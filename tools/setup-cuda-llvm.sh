#!/usr/bin/env bash
# Lays out the LLVM that burn's `cuda` feature links, from PyPI, so that it builds offline.
#
# burn/cuda -> cubecl-cuda -> cubecl-llvm, whose build dependency `tracel-llvm-bundler` downloads an
# LLVM archive from GitHub unless `<data dir>/tracel/tracel-llvm-<bundler version>/` holds a marker
# file. PyPI carries the same LLVM major (23) as static libraries with a Python `llvm-config`: the
# X86 wheel and the one with NVPTX. This script downloads both with pip (registry access only),
# unpacks their `static/` trees into that folder and writes the marker. The bundler version is read
# from Cargo.lock, so the folder follows the lock file. Idempotent: a complete folder is kept.
#
# Needs python3; pip and unzip are installed from Debian when missing. Usage: tools/setup-cuda-llvm.sh [--check]
#   --check  only verify that the folder is laid out (exit 1 if not)
set -euo pipefail
cd "$(dirname "$0")/.."

wheel_version=23.1.1.post0
llvm_major=23

bundler=$(awk '/^name = "tracel-llvm-bundler"$/ { getline; gsub(/version = |"/, ""); print }' Cargo.lock)
if [ -z "$bundler" ]; then
    echo "setup-cuda-llvm: Cargo.lock has no tracel-llvm-bundler (is the cuda feature locked?)" >&2
    exit 1
fi
if [ "${bundler%%.*}" != "$llvm_major" ]; then
    echo "setup-cuda-llvm: Cargo.lock pins tracel-llvm-bundler $bundler (LLVM ${bundler%%.*});" \
        "this script lays out LLVM $llvm_major ($wheel_version): update wheel_version" >&2
    exit 1
fi

data=${XDG_DATA_HOME:-$HOME/.local/share}/tracel
dest=$data/tracel-llvm-$bundler
marker=$dest/.tracel-llvm-installed

laid_out() {
    [ -f "$marker" ] && [ -x "$dest/bin/llvm-config" ] &&
        ls "$dest"/lib/libLLVMNVPTXCodeGen.a "$dest"/lib/libLLVMX86CodeGen.a > /dev/null 2>&1
}

if laid_out; then
    echo "setup-cuda-llvm: $dest is laid out (LLVM $("$dest/bin/llvm-config" --version))"
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "setup-cuda-llvm: $dest is not laid out; run tools/setup-cuda-llvm.sh" >&2
    exit 1
fi

# A fresh machine may lack pip or unzip: install them from Debian (as root, like CI).
if ! python3 -m pip --version > /dev/null 2>&1 || ! command -v unzip > /dev/null; then
    apt-get install -y -qq python3-pip unzip > /dev/null ||
        { apt-get update -qq && apt-get install -y -qq python3-pip unzip > /dev/null; }
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work/wheels" \
    "mlc-llvm-static==$wheel_version" "mlc-llvm-static-extra-targets==$wheel_version"
for wheel in "$work"/wheels/mlc_llvm_static*.whl; do
    unzip -q -o "$wheel" 'mlc_llvm_static/static/*' -d "$work/unpack"
done
mkdir -p "$data"
rm -rf "$dest"
mv "$work/unpack/mlc_llvm_static/static" "$dest"
chmod +x "$dest/bin/llvm-config"
touch "$marker"
if ! laid_out; then
    echo "setup-cuda-llvm: the wheels did not give llvm-config and the X86 / NVPTX libraries in $dest" >&2
    exit 1
fi
echo "setup-cuda-llvm: laid out LLVM $("$dest/bin/llvm-config" --version) in $dest"
