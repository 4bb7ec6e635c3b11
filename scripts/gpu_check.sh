#!/usr/bin/env bash
# The GPU check (issue #28 item 5), one call that fits in 9 minutes on a 16-core H100 machine:
#   1. build the CUDA wheel of the pinned llama-cpp-python into .venv (as `make setup-cuda`);
#   2. the import-isolation check: the parent holds lm-eval/datasets (torch, pyarrow where installed), the engine
#      process holds llama.cpp and no torch/pyarrow; a CUDA load and a log-likelihood call next to them, no LD_PRELOAD;
#   3. `harness speed` on SmolLM2 and on the Llama 3.2 1B shape (harness/models/shaped.py, random Q4_0 weights);
#   4. MMLU 570 and GSM8K 100 on the 1B shape with --parallel 8 and 32, and CPU vs GPU agreement on a subset;
#   5. `-t mmlu_loglik --full` on SmolLM2 (the run that once aborted after 2,420 requests), with its engine
#      process killed (SIGKILL) mid-run: the run must restart the engine and finish on its own.
# Everything is written under OUT (default build/gpu-check); OUT/summary.md is the one file to read.
#
#   scripts/gpu_check.sh [--cpu] [OUT]
#
# --cpu: the dry run on a machine without a GPU: no CUDA build, SmolLM2 in place of the 1B shape, small sizes,
# "GPU" runs on the CPU too (agreement is then trivially expected: the check of the script, not of a GPU).
# Sizes can be overridden: MMLU_N GSM_N AGREE_MMLU_N AGREE_GSM_N PARALLELS KILL_AFTER FULL_ARGS SHAPE DATA_DIR, and
# SCALE multiplies every step's time limit.
set -uo pipefail
cd "$(dirname "$0")/.."

CPU=0
if [[ "${1:-}" == "--cpu" ]]; then CPU=1; shift; fi
OUT=${1:-${OUT:-build/gpu-check}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SUMMARY=$OUT/summary.md
PY=.venv/bin/python
H=.venv/bin/harness
DATA_DIR=${DATA_DIR:-../shared/data/hub}
if [[ $CPU == 1 ]]; then
  MMLU_N=${MMLU_N:-4}; GSM_N=${GSM_N:-2}; AGREE_MMLU_N=${AGREE_MMLU_N:-2}; AGREE_GSM_N=${AGREE_GSM_N:-1}
  PARALLELS=${PARALLELS:-"1 2"}; KILL_AFTER=${KILL_AFTER:-2}; FULL_ARGS=${FULL_ARGS:-"--limit 6"}
  SHAPE=${SHAPE:-smollm2}; THREADS=${THREADS:-2}; SCALE=${SCALE:-8}  # 2 shared cores: longer time limits
  GEN=${GEN:-0}  # the dry run skips generation (GSM8K: minutes a question on 2 shared cores); GEN=1 runs it
else
  MMLU_N=${MMLU_N:-570}; GSM_N=${GSM_N:-100}; AGREE_MMLU_N=${AGREE_MMLU_N:-20}; AGREE_GSM_N=${AGREE_GSM_N:-4}
  PARALLELS=${PARALLELS:-"8 32"}; KILL_AFTER=${KILL_AFTER:-2000}; FULL_ARGS=${FULL_ARGS:-"--full"}
  SHAPE=${SHAPE:-1b}; THREADS=${THREADS:-0}; SCALE=${SCALE:-1}; GEN=${GEN:-1}
fi
COMMON=(--data-dir "$DATA_DIR" --threads "$THREADS")

{
  echo "# GPU check ($( [[ $CPU == 1 ]] && echo 'CPU dry run' || echo GPU )), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "host: $(uname -n), $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    | sed 's/^/gpu: /'
  echo
  echo "| step | exit | seconds | result |"
  echo "|---|---|---|---|"
} > "$SUMMARY"

# step NAME SECONDS CMD...: run with a time limit, log to OUT/NAME.log, one summary row (its last line as result).
step() {
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$((limit * SCALE))" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local last
  last=$(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1 | tr '|' '/' | cut -c1-200)
  echo "| $name | $rc | $((SECONDS - t0)) | $last |" >> "$SUMMARY"
  return $rc
}

# 1. the CUDA wheel (skipped in the dry run)
if [[ $CPU == 0 ]]; then
  [[ -x $H ]] || step setup 300 make setup
  step cuda-build 330 make setup-cuda || { echo "CUDA build failed: see $OUT/cuda-build.log" >> "$SUMMARY"; exit 1; }
fi

# 2. import isolation: lm-eval and datasets (torch, pyarrow where installed) in this process, llama.cpp in the engine's
step import-isolation 120 "$PY" - <<'EOF'
import sys
import datasets, lm_eval  # noqa: F401 - what the parent holds during a bench
for heavy in ("torch", "pyarrow"):
    try:
        __import__(heavy)
    except ImportError:
        pass
from harness.backends.llamacpp.settings import EngineSettings
from harness.backends.llamacpp.engine_proc import EngineProcess
from harness.models.catalogue import resolve
from harness.models.locate import local_model_path

parent = sorted(m for m in ("torch", "pyarrow", "datasets", "lm_eval", "llama_cpp") if m in sys.modules)
ep = EngineProcess(local_model_path(resolve("smollm2-135m")), EngineSettings())
try:
    mods = {m.split(".")[0] for m in ep.worker_modules()}
    ctx = ep.tokenize("The capital of France is")
    ll = ep.loglikelihood([(ctx, ep.tokenize(" Paris", add_bos=False))])
finally:
    ep.close()
bad = sorted(mods & {"torch", "pyarrow", "datasets", "lm_eval", "pandas"})
print(f"parent holds {parent}; engine process: llama_cpp {'llama_cpp' in mods}, gpu_offload {ep.gpu_offload}, "
      f"{ep.gpus[:1]}, heavy modules {bad or 'none'}; log P(' Paris') = {ll[0][0]:.4f}")
sys.exit(1 if bad or "llama_cpp" not in mods else 0)
EOF

# 3. the shaped model, then the speed probe on both models
if [[ $SHAPE == smollm2 ]]; then
  SHAPED=smollm2-135m; KIND=()
else
  step shape-build 180 "$PY" -m harness.models.shaped "$SHAPE" --quant Q4_0
  SHAPED=$("$PY" -c "from harness.models.shaped import ensure_shaped_model as e; print(e('$SHAPE', 'Q4_0', log=None))")
  KIND=(--kind base)  # random weights: no chat template worth judging
fi
step speed-smollm2 90 "$H" speed smollm2-135m --threads "$THREADS"
[[ $SHAPE == smollm2 ]] || step "speed-$SHAPE" 90 "$H" speed "$SHAPED" --threads "$THREADS"

# 4. the 1B shape at two --parallel values, then the same subset on GPU and CPU
for P in $PARALLELS; do
  step "mmlu$MMLU_N-p$P" 240 "$H" bench -m "$SHAPED" "${KIND[@]}" -t mmlu_loglik --limit "$MMLU_N" --parallel "$P" \
    "${COMMON[@]}" --results-dir "$OUT/p$P"
  [[ $GEN == 1 ]] && step "gsm8k$GSM_N-p$P" 240 "$H" bench -m "$SHAPED" "${KIND[@]}" -t gsm8k --limit "$GSM_N" --parallel "$P" \
    "${COMMON[@]}" --results-dir "$OUT/p$P"
done
for T in "mmlu_loglik $AGREE_MMLU_N" "gsm8k $AGREE_GSM_N"; do
  set -- $T
  [[ $1 == gsm8k && $GEN != 1 ]] && continue
  step "agree-$1-gpu" 120 "$H" bench -m "$SHAPED" "${KIND[@]}" -t "$1" --limit "$2" --parallel 8 "${COMMON[@]}" \
    --results-dir "$OUT/agree-gpu"
  step "agree-$1-cpu" 240 "$H" bench -m "$SHAPED" "${KIND[@]}" -t "$1" --limit "$2" --parallel 8 --gpu-layers 0 \
    "${COMMON[@]}" --results-dir "$OUT/agree-cpu"
done
step agreement 30 "$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
def records(d):
    return {json.loads(p.read_text())["task"]["name"]: json.loads(p.read_text())
            for p in (out / d / "runs").glob("*.json") if not p.name.endswith(".lm_eval.json")}
gpu, cpu = records("agree-gpu"), records("agree-cpu")
parts = []
for task in sorted(set(gpu) & set(cpu)):
    g = {(s["task"], s["doc_id"]): s for s in gpu[task]["samples"]}
    c = {(s["task"], s["doc_id"]): s for s in cpu[task]["samples"]}
    keys = sorted(set(g) & set(c))
    same_answer = sum(g[k]["extracted"] == c[k]["extracted"] for k in keys)
    same_output = sum(g[k]["response"] == c[k]["response"] for k in keys)
    parts.append(f"{task}: {same_answer}/{len(keys)} same answer, {same_output}/{len(keys)} identical output")
print("CPU vs GPU: " + "; ".join(parts) if parts else "CPU vs GPU: no pair of records to compare")
sys.exit(0 if parts else 1)
EOF

# 5. full MMLU (log-likelihood) on SmolLM2 with its engine process killed once mid-run
step kill-recovery 300 "$PY" - "$OUT" "$KILL_AFTER" "$DATA_DIR" "$THREADS" $FULL_ARGS <<'EOF'
import json, os, signal, subprocess, sys, time
from pathlib import Path
import psutil

out, after, data, threads, extra = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
res = out / "kill"
cmd = [".venv/bin/harness", "bench", "-t", "mmlu_loglik", *extra, "--data-dir", data, "--threads", threads,
       "--results-dir", str(res)]
proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
def journaled():
    d = res / ".journal"
    return sum(len(f.read_text().splitlines()) - 1 for f in d.glob("*.jsonl")) if d.exists() else 0
killed = None
while proc.poll() is None and killed is None:
    if journaled() >= after:
        for c in psutil.Process(proc.pid).children():
            if "harness.backends.llamacpp.worker" in " ".join(c.cmdline()):
                os.kill(c.pid, signal.SIGKILL)
                killed = c.pid
    time.sleep(0.2)
text = proc.communicate()[0]
(out / "kill-console.txt").write_text(text)
for line in text.splitlines():
    if "died" in line or "record:" in line:
        print(line.strip()[-300:])
recs = [p for p in (res / "runs").glob("*.json") if not p.name.endswith(".lm_eval.json")]
rec = json.loads(recs[0].read_text()) if recs else {}
restarts = rec.get("resume", {}).get("engine_restarts")
print(f"killed engine pid {killed} after {after} journaled requests; exit {proc.returncode}; "
      f"engine_restarts {restarts}; n {rec.get('task', {}).get('n')}")
sys.exit(0 if proc.returncode == 0 and killed and restarts and restarts["count"] == 1 else 1)
EOF

echo >> "$SUMMARY"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); logs and records under $OUT" >> "$SUMMARY"
cat "$SUMMARY"
! grep -q '^| [^|]* | [1-9]' "$SUMMARY"
