#!/usr/bin/env bash
# Prepares the GPU kit here, where the toolchain and the registries are: the gpu_check program
# in release with the wgpu and cuda backends (stripped, xz-compressed), the Vulkan / EGL loader
# debs the GPU machine lacks, and the wheels of diffusers' pure-Python code for PyTorch's side.
# Everything goes into .gpu-kit/ (ignored), which travels with the run:
#
#   tools/gpu/prepare.sh
#   device run, carry [".gpu-kit"], command "bash tools/gpu/run.sh"
#
# The working tree and the kit together must stay under the device's 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
kit=.gpu-kit
rm -rf "$kit"
mkdir -p "$kit/debs" "$kit/wheels"

tools/setup-cuda-llvm.sh
target=${CARGO_TARGET_DIR:-target}
cargo build --release --offline -p hd-painter-examples --features wgpu,cuda --example gpu_check
cp "$target/release/examples/gpu_check" "$kit/gpu_check"
strip "$kit/gpu_check"
xz -T0 -6 "$kit/gpu_check"

# The loaders (amd64 whatever this machine is), as the device's README lists them.
lists=$(mktemp -d)
apt_arch=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
mkdir -p "$lists/partial"
apt-get "${apt_arch[@]}" update -qq
(cd "$kit/debs" && apt-get "${apt_arch[@]}" download -qq \
    libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
rm -rf "$lists"

# diffusers and what it needs that the GPU machine's image lacks (its torch, transformers,
# huggingface_hub, safetensors, numpy, regex, requests, httpx and Pillow are there).
diffusers=$(awk -F'==' '/^diffusers==/ { print $2 }' tools/reference/requirements.txt)
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$kit/wheels" \
    "diffusers==$diffusers" importlib_metadata

tree=$(git ls-files -z | xargs -0 stat -c %s | awk '{ s += $1 } END { print s }')
kit_bytes=$(du -sb "$kit" | cut -f1)
total=$(( (tree + kit_bytes) / 1048576 ))
echo "prepare: kit $(( kit_bytes / 1048576 )) MiB + tree $(( tree / 1048576 )) MiB = $total MiB of 64"
if [ "$total" -ge 64 ]; then
    echo "prepare: over the device's 64 MiB" >&2
    exit 1
fi
