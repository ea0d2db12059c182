#!/bin/bash
# The robustness suite of one SMIDS arch on the lent GPU, one view and TTA x8 side by side (each into its own results
# folder; tools/hushem_gpu/merge_robustness.py puts both entries into results/smids/robustness.json here).
# Each run is killed at LIMIT seconds; whatever finished comes back.
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
    tail -3 "$OUT/robustness_$run.log"
done
echo "done at $(( $(date +%s) - START )) s"
