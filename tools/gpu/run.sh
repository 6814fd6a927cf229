#!/usr/bin/env bash
# The command run on the GPU machine, from the repository root with .gpu-kit/ carried (see
# prepare.sh): unpacks the kit, runs gpu_check on cuda (the table and the whole runs) and on wgpu
# (the table), then PyTorch's UNet on the same config, each under its own time limit so that the
# whole stays within 8 minutes. Logs and JSON go to $OUT (or ./gpu-out).
set -uo pipefail
cd "$(dirname "$0")/../.."
kit=.gpu-kit
out=${OUT:-gpu-out}
mkdir -p "$out"
start=$(date +%s)
log() { echo "run.sh +$(( $(date +%s) - start ))s: $*" | tee -a "$out/run.log"; }

for deb in "$kit"/debs/*.deb; do dpkg -x "$deb" /; done
ldconfig
xz -dc "$kit/gpu_check.xz" > /tmp/gpu_check && chmod +x /tmp/gpu_check

# cudarc built without nvcc assumes the newest CUDA it knows; name the driver's.
cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
if [ -n "$cuda" ]; then
    read -r major minor <<< "$cuda"
    export CUDARC_CUDA_VERSION=$(( major * 1000 + minor * 10 ))
fi
# The LLVM path reads nvvm/libdevice/libdevice.10.bc from the toolkit.
for dir in "${CUDA_PATH:-}" /usr/local/cuda /opt/cuda /usr/lib/cuda; do
    if [ -n "$dir" ] && [ -f "$dir/nvvm/libdevice/libdevice.10.bc" ]; then
        export CUDA_PATH=$dir
        break
    fi
done
if ! ls /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json > /dev/null 2>&1; then
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
    egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    [ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
fi
log "CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-unset} CUDA_PATH=${CUDA_PATH:-unset} VK_DRIVER_FILES=${VK_DRIVER_FILES:-default}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$out/run.log"

log "gpu_check on cuda (table and whole runs)"
timeout 240 /tmp/gpu_check --backends cuda --json "$out/gpu-check-cuda.json" \
    > "$out/gpu-check-cuda.md" 2> >(tee "$out/gpu-check-cuda.log" >&2)
log "cuda: exit $?"
log "gpu_check on wgpu (table)"
timeout 90 /tmp/gpu_check --backends wgpu --no-runs --json "$out/gpu-check-wgpu.json" \
    > "$out/gpu-check-wgpu.md" 2> >(tee "$out/gpu-check-wgpu.log" >&2)
log "wgpu: exit $?"

log "PyTorch's UNet"
site=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$kit"/wheels/*.whl
PYTHONPATH=$site PYTHONUNBUFFERED=1 timeout 120 python3 tools/gpu/torch_unet.py --repeats 10 \
    --json "$out/torch-unet.json" 2>&1 | tee "$out/torch-unet.log"
log "PyTorch: exit ${PIPESTATUS[0]}"
cat "$out"/gpu-check-*.md
