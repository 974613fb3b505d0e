#!/usr/bin/env bash
# Every run behind docs/unsuccessful.md, in order, from a fresh clone (after scripts/setup.sh). Each run is sized
# for at most 30 minutes on 2 CPU cores (not yet timed on the embedded model). On a shared machine set LOCK to a command
# that queues the runs, e.g. LOCK="flock /work/cpu.lock", so timings do not fight. Finished runs are skipped
# (delete runs/unsuccessful/NAME and NAME.done to redo one); then:
#   python bench/unsuccessful.py runs/unsuccessful --docs docs      # the tables and the plots
set -euo pipefail
cd "$(dirname "$0")/.."
L=${LOCK:-}
R=runs/unsuccessful
C=configs/unsuccessful
SFT=$R/sft/checkpoint-100
HELD=(--benchmark configs/data/sum3_heldout.jsonl --limit 32 --prompt_style readable --template plain --prefill "")

run() {  # run NAME COMMAND...: once (runs/unsuccessful/NAME.done marks it done)
    local name=$1; shift
    if [ -e "$R/$name.done" ]; then echo "== $name: done"; return; fi
    echo "== $name: $*"
    $L "$@"
    touch "$R/$name.done"
}
mkdir -p $R
run sft            r1kit sft      --config $C/sft.yaml
run prm_data       r1kit prm-data --config $C/prm_data.yaml
run prm            r1kit prm      --config $C/prm.yaml
# PRM best-of-8 on the SFT model at the paper's sampling (temperature 0.6, top-p 0.95), and majority vote
run eval_sft       r1kit eval --model $SFT "${HELD[@]}" -k 8 --pass_k 8 --max_new_tokens 48 --no-think_gain \
                   --prm $R/prm/model --output_dir $R/eval_sft
run grpo           r1kit grpo --config $C/grpo.yaml
run grpo_prm       r1kit grpo --config $C/grpo_prm.yaml
run grpo_prm_steps r1kit grpo --config $C/grpo_prm_steps.yaml
run mcts           r1kit mcts --config $C/mcts.yaml
# the children cap: one round of search only (no training), 5 simulations, on the same 16 prompts
for k in 1 2 4 8; do
    run cap_$k     r1kit mcts --config $C/mcts.yaml --rounds 1 --actor_steps 0 --value_steps 0 --eval_steps 0 \
                   --max_children $k --output_dir $R/cap_$k
done
