#!/usr/bin/env bash
# GPU check of sb3_softq, one prepared script for a machine with an NVIDIA GPU (at most 7 min 40 s: each step has its own time limit):
#
#   1. the CUDA tests: tests/test_cuda.py (returns, trace diagnostics, soft functions and buffer sampling on CUDA
#      against the CPU) and the device="cuda" cases of tests/test_returns.py and tests/test_save_load.py;
#   2. the λ-return kernel benchmark on CUDA (benchmarks/bench_returns.py --device cuda: loop, scan and the shipped
#      returns on the default grid, then the torch.compile'd returns on a small grid);
#   3. the speed benchmark on CUDA (benchmarks/bench_speed.py --device cuda): SoftQ and SoftQLambda with its defaults
#      (tree backup, learned temperature) against SB3's DQN, 64-64 MLP, 256 and 1,024 TD targets per gradient step.
#
# Usage, from the repository root (the package importable: `pip install -e .[tests]` or PYTHONPATH=.):
#
#   bash benchmarks/gpu_check.sh [OUTPUT_DIR]        # default OUTPUT_DIR: benchmarks/results/gpu/
#
# Writes into OUTPUT_DIR: nvidia-smi.txt, tests_cuda.txt, returns_cuda.md, returns_cuda_compiled.md,
# speed_cuda_256.{md,json}, speed_cuda_1024.{md,json}, and prints a summary. Exits 1 at once when no CUDA GPU is
# visible to PyTorch, and non-zero at the end when any step failed (each step has its own time limit).
set -uo pipefail

OUT_DIR="${1:-benchmarks/results/gpu}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1

if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: FAILED: no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is False)" >&2
    exit 1
fi
nvidia-smi >"$OUT_DIR/nvidia-smi.txt" 2>&1 || echo "(nvidia-smi not available)" >"$OUT_DIR/nvidia-smi.txt"
python -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))" | tee -a "$OUT_DIR/nvidia-smi.txt"

declare -A STATUS
run_step() {  # run_step NAME SECONDS OUTPUT_FILE COMMAND...
    local name="$1" seconds="$2" output="$3"
    shift 3
    local start=$SECONDS
    echo "== $name (at most ${seconds} s) -> $output"
    timeout "$seconds" "$@" >"$output" 2>&1
    local rc=$?
    STATUS[$name]="rc=$rc, $((SECONDS - start)) s"
    [ $rc -eq 0 ] || echo "   $name FAILED (rc=$rc; 124 = time limit), see $output"
    return 0
}

run_step "cuda tests" 120 "$OUT_DIR/tests_cuda.txt" \
    python -m pytest -q -p no:xdist -m "not slow" -rs tests/test_cuda.py \
    "tests/test_returns.py::test_devices_dtypes_and_input_forms" tests/test_save_load.py -k "cuda or test_cuda"
run_step "returns benchmark" 60 "$OUT_DIR/returns_cuda.md" \
    python benchmarks/bench_returns.py --device cuda --no-compile --rounds 5
run_step "compiled returns benchmark" 70 "$OUT_DIR/returns_cuda_compiled.md" \
    python benchmarks/bench_returns.py --device cuda --batch-sizes 256 --lengths 8 16 --no-matrix --rounds 5
for targets in 256 1024; do
    sequence_length=$([ "$targets" = 256 ] && echo 8 || echo 16)
    run_step "speed $targets" 105 "$OUT_DIR/speed_cuda_$targets.md" \
        python benchmarks/bench_speed.py --device cuda --targets "$targets" --sequence-length "$sequence_length" \
        --algorithms SoftQ "SoftQLambda (tree_backup, auto temperature)" --repeats 2 --steps 1500 --gradient-steps 200 \
        --json "$OUT_DIR/speed_cuda_$targets.json"
done

echo
echo "==================== gpu_check.sh summary ($OUT_DIR) ===================="
cat "$OUT_DIR/nvidia-smi.txt" | tail -1
failed=0
for name in "cuda tests" "returns benchmark" "compiled returns benchmark" "speed 256" "speed 1024"; do
    echo "$name: ${STATUS[$name]}"
    [[ "${STATUS[$name]}" == rc=0,* ]] || failed=1
done
echo "--- tests";                   tail -3 "$OUT_DIR/tests_cuda.txt"
echo "--- λ-return kernels (µs)";   grep '^|' "$OUT_DIR/returns_cuda.md" || true
echo "--- compiled returns (µs)";   grep '^|' "$OUT_DIR/returns_cuda_compiled.md" || true
for targets in 256 1024; do
    echo "--- speed, $targets TD targets"; grep '^|' "$OUT_DIR/speed_cuda_$targets.md" || tail -5 "$OUT_DIR/speed_cuda_$targets.md"
done
if [ $failed -ne 0 ]; then
    echo "gpu_check.sh: FAILED (see the files above)" >&2
    exit 1
fi
echo "gpu_check.sh: all steps passed"
