#!/usr/bin/env bash
# The CPU replication (results/cpu-replication/README.md): continue it where it stopped, or, with another
# OUT_DIR, run it again from nothing. Every invocation works for at most BUDGET minutes (default 150) at the
# lowest priority: the sweep stops its runs with checkpoints when the budget is spent, so that the next
# invocation continues exactly; once every run is finished, phase 5 (inference only) runs in what is left.
#
#     experiments/cpu_replication/run.sh [BUDGET_MINUTES] [OUT_DIR]
#
# Two runs at a time with one thread each: the fastest exact way to use two cores
# (benchmarks/bench_cpu_campaign.py, results/benchmarks/cpu_campaign.json). The runs with the most epochs left
# start first: the 64-epoch runs go before the 16-epoch ones, which fill in beside them, so that the campaign
# does not end with one long run training alone on one core.
set -euo pipefail
cd "$(dirname "$0")/../.."
budget=${1:-150}
out=${2:-results/cpu-replication/runs}
log=$out/campaign.log
mkdir -p "$out"
# tee -a would keep writing to the file it opened even after the log is replaced under its name (a checkout),
# and those lines would be lost: each line is appended by name instead
log_lines() { while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "$line"; printf '%s\n' "$line" >> "$log"; done; }
began=$(date +%s)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//' || true)
echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) start: budget ${budget} min, $(nproc) cores, ${cpu:-unknown CPU}, torch $(python -c 'import torch; print(torch.__version__)')" >> "$log"
status=0
nice -n 19 swapout sweep --file experiments/cpu_replication/sweep.json --out "$out" --device cpu --per-gpu 2 \
    --keep-finished weights --order longest-first --budget-minutes "$budget" 2>&1 | log_lines || status=$?

left=$(( budget * 60 - ($(date +%s) - began) ))
all_done=$(python -c '
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
runs = json.loads((out / "sweep.json").read_text())["runs"]
print(all((out / r["name"] / f"seed-{s}" / "results.json").exists() for r in runs for s in r["seeds"]))' "$out")
if [ "$status" = 0 ] && [ "$all_done" = True ] && [ "$left" -gt 60 ]; then
    # phase 5: Figure 2 of each 32-epoch Linear(1, 0.5) network (masks seeded with the run's seed), then the
    # ensembles; each skipped once written over the whole test split. A Figure 2 cannot resume (about 30 min on
    # two cores), so it starts only with an hour left; the ensembles resume from their cached logits.
    for run in "$out"/linear-1-0.5-32ep/seed-*; do
        left=$(( budget * 60 - ($(date +%s) - began) ))
        drawn=$(python -c '
import pathlib, sys
sys.path.insert(0, "experiments/cpu_replication")
import report
print(report.curve_of(report.read_run(pathlib.Path(sys.argv[1])))[0] is not None)' "$run")
        if [ "$drawn" != True ] && [ "$left" -gt 3600 ]; then
            timeout "$left" nice -n 19 swapout eval "$run" --samples 30 --repeats 10 --seed "${run##*seed-}" --quiet \
                2>&1 | log_lines || status=$?
        fi
    done
    left=$(( budget * 60 - ($(date +%s) - began) ))
    if [ ! -e "$(dirname "$out")/ensembles.json" ] && [ "$left" -gt 60 ]; then
        timeout "$left" nice -n 19 python experiments/cpu_replication/ensembles.py --runs "$out" --out "$(dirname "$out")" \
            2>&1 | log_lines || status=$?
    fi
fi
echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) end: exit status $status" >> "$log"
python experiments/cpu_replication/report.py --runs "$out" --out "$(dirname "$out")/README.md" || status=$?
exit "$status"
