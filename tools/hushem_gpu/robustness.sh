#!/bin/bash
# The robustness suite of one SMIDS arch on the lent GPU, one view and TTA x8 side by side (each into its own results
# folder; tools/hushem_gpu/merge_robustness.py puts both entries into results/smids/robustness.json here).
# Each run is killed at LIMIT seconds; whatever finished comes back: the whole result, and in any case the folds the
# per-fold store (robustness_folds/) holds, so a run cut short resumes here without computing them again:
#   tar xzf FILES/robustness_folds_tta.tgz -C results && python -m spermlib robustness --dataset smids --arch A --tta
# (a stored fold is reused only where its key matches: the same card, precision, images, suite and code).
# usage: OUT=$OUT bash tools/hushem_gpu/robustness.sh effnet_cbam
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
ARCH=${1:-effnet_cbam}; LIMIT=${LIMIT:-330}; PY=${PY:-python3}; DEV=${DEV:-cuda}; DATA=${DATA:-.gpu/data}; OUT=${OUT:-/tmp/out}
START=$(date +%s); mkdir -p "$OUT"
common="--dataset smids --data-dir $DATA --arch $ARCH --device $DEV"
timeout -s KILL $LIMIT $PY -m spermlib robustness $common --results /tmp/rob_1view > "$OUT/robustness_1view.log" 2>&1 &
timeout -s KILL $LIMIT $PY -m spermlib robustness $common --tta --results /tmp/rob_tta > "$OUT/robustness_tta.log" 2>&1 &
wait
for run in 1view tta; do
    cp /tmp/rob_$run/smids/robustness.json "$OUT/robustness_$run.json" 2>/dev/null || echo "no result for $run"
    if [ -d /tmp/rob_$run/smids/robustness_folds ]; then
        tar czf "$OUT/robustness_folds_$run.tgz" -C /tmp/rob_$run smids/robustness_folds
        echo "$run: stored folds $(cd /tmp/rob_$run/smids/robustness_folds && ls */*.csv.gz | tr '\n' ' ')"
    fi
    tail -3 "$OUT/robustness_$run.log"
done
echo "done at $(( $(date +%s) - START )) s"
