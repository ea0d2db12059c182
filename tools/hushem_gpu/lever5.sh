#!/bin/bash
# Lever 5 on the lent GPU (README, Lever 5 to ship): per SMIDS (arch, fold), 224 px with the whole schedule
# (--patience 20), then the 4-epoch hardening stage from it; all jobs in parallel, one CPU thread each. Launches
# stop at LAUNCH_S and stragglers are killed at KILL_S; then call 1's share of the checkpoints is packed into $OUT
# (later calls: python3 tools/hushem_gpu/pack_calls.py runs/gpu $OUT N).
# usage: bash tools/hushem_gpu/lever5.sh "effnet_cbam:1,2,3,4 effnet:0,1,2,3,4"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
START=$(date +%s); export START
LAUNCH_S=${LAUNCH_S:-200}; KILL_S=${KILL_S:-420}; P=${P:-9}; export LAUNCH_S
export PY=${PY:-python3} DEV=${DEV:-cuda} DATA=${DATA:-.gpu/data} EXTRA=${EXTRA:-}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" runs/gpu-logs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
$PY -c "import torch, timm, PIL, pandas; from PIL import features; print('torch', torch.__version__, 'timm', timm.__version__, 'PIL', PIL.__version__, 'webp', features.check('webp'), 'pandas', pandas.__version__, 'cuda', torch.cuda.is_available())"
job() {
    arch=$1; k=$2
    if (( $(date +%s) - START > LAUNCH_S )); then echo "skip $arch fold $k"; return 0; fi
    common="--dataset smids --data-dir $DATA --arch $arch --fold $k --input-size 224 --threads 1 --device $DEV"
    t0=$(date +%s)
    $PY -m spermlib train $common --patience 20 --weights .gpu/weights/tf_efficientnet_lite0.fp16.safetensors \
        --checkpoints runs/gpu/p20 --runs runs/gpu-state/p20 $EXTRA > runs/gpu-logs/p20.$arch.f$k.log 2>&1 \
        || { echo "FAILED p20 $arch fold $k"; tail -4 runs/gpu-logs/p20.$arch.f$k.log; return 0; }
    t1=$(date +%s)
    $PY -m spermlib train $common --init-from runs/gpu/p20 --corrupt-p 0.5 --warmup-epochs 0 --epochs 4 --lr 3e-4 \
        --keep-last --checkpoints runs/gpu/p20_h4 --runs runs/gpu-state/p20_h4 > runs/gpu-logs/p20_h4.$arch.f$k.log 2>&1 \
        || { echo "FAILED p20_h4 $arch fold $k"; tail -4 runs/gpu-logs/p20_h4.$arch.f$k.log; return 0; }
    t2=$(date +%s)
    echo "$arch fold $k: base $((t1 - t0)) s, hardening $((t2 - t1)) s ($(tail -1 runs/gpu-logs/p20.$arch.f$k.log | cut -c1-90))"
}
export -f job
for spec in ${1:-effnet_cbam:1,2,3,4 effnet:0,1,2,3,4}; do
    folds=${spec#*:}
    for k in ${folds//,/ }; do echo "${spec%%:*} $k"; done
done > /tmp/jobs
cat /tmp/jobs | tr '\n' ';'; echo
timeout -s KILL $((KILL_S - ($(date +%s) - START))) xargs -P $P -L 1 bash -c 'job "$@"' _ < /tmp/jobs
echo "training ended at $(( $(date +%s) - START )) s"
tar czf "$OUT/logs.tgz" runs/gpu-logs $(find runs/gpu -name '*.json' 2>/dev/null)
$PY tools/hushem_gpu/pack_calls.py runs/gpu "$OUT" 1
echo "done at $(( $(date +%s) - START )) s"
