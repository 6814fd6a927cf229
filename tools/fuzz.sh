#!/usr/bin/env bash
# Long fuzzing campaign over the parsers (image and mask files, config.json, safetensors
# weights and single-file checkpoints, tokenizer files): the proptest harnesses in
# hd-painter-core/tests/fuzz_files.rs and hd-painter-models/tests/fuzz_parsers.rs, run in rounds
# of fresh random cases until the time is up. Any panic stops the campaign with proptest's
# minimal failing input in the log.
#
#   bash tools/fuzz.sh [MINUTES (60)] [CASES PER ROUND (20000)]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-60}
cases=${2:-20000}
log=${FUZZ_LOG:-target/fuzz.log}
mkdir -p target
# Build once, then run the test binaries directly so that other cargo commands are not blocked.
mapfile -t bins < <(cargo test -p hd-painter-core -p hd-painter-models --test fuzz_files --test fuzz_parsers \
    --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
targets=0
for bin in "${bins[@]}"; do
    targets=$((targets + $("$bin" --list 2>/dev/null | grep -c ': test$')))
done
end=$(( $(date +%s) + 60 * minutes ))
round=0
total=0
echo "fuzz: ${#bins[@]} harnesses, $targets targets, ${minutes} min, ${cases} cases per target per round" | tee "$log"
while [ "$(date +%s)" -lt "$end" ]; do
    round=$((round + 1))
    for bin in "${bins[@]}"; do
        (cd "$(dirname "$0")/.." && HD_PAINTER_FUZZ_CASES=$cases "$bin" --test-threads=1 -q) >>"$log" 2>&1 || {
            echo "fuzz: FAILURE in round $round ($bin); see $log" | tee -a "$log"
            exit 1
        }
    done
    total=$((total + cases * targets))
    echo "fuzz: round $round done at $(date +%T), $total cases so far" | tee -a "$log"
done
echo "fuzz: passed, $round rounds, $total cases, no panic" | tee -a "$log"
