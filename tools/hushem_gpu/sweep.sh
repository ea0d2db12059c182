#!/bin/bash
# HuSHeM sweep on the lent GPU: every candidate x fold (base recipe + hardening stage) in parallel,
# launches stop at LAUNCH_S, stragglers are killed at KILL_S; then probabilities, the nested choice, packing.
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
START=$(date +%s); export START
LAUNCH_S=${LAUNCH_S:-300}; KILL_S=${KILL_S:-430}; P=${P:-12}; export LAUNCH_S
PY=${PY:-python3}; export PY
OUT=${OUT:-/tmp/out}; mkdir -p $OUT runs/gpu-logs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
$PY -c "import torch, timm, numpy, pandas, sklearn, safetensors; print('torch', torch.__version__, 'timm', timm.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
# jobs: candidate-major, fold-minor (priority order of jobs.txt)
while read -r arch bb size seed tag; do for k in 0 1 2 3 4; do echo "$arch $bb $size $seed $tag $k"; done; done < tools/hushem_gpu/jobs.txt > /tmp/joblist
timeout -s KILL $KILL_S xargs -P $P -L 1 bash -c 'now=$(date +%s); if (( now - START > LAUNCH_S )); then echo "skip $5 fold $6"; exit 0; fi; tools/hushem_gpu/job.sh "$@" '"$EXTRA"' || echo "FAILED $5 fold $6 rc=$?"' _ < /tmp/joblist
echo "training phase ended at $(( $(date +%s) - START )) s"
ls runs/gpu 2>/dev/null | tr '\n' ' '; echo
# probabilities per candidate folder, 6 in parallel
ls runs/gpu | timeout 90 xargs -P ${PP:-6} -I{} $PY tools/hushem_gpu/probabilities.py .gpu/data runs/gpu-probs ${DEV:-cuda} {} 2>&1 | grep -v Warning | tail -30
echo "probs ended at $(( $(date +%s) - START )) s"
$PY tools/hushem_gpu/choose.py runs/gpu-probs runs/gpu-probs/chosen.json
tar czf $OUT/results.tgz runs/gpu-probs $(find runs/gpu -name '*.json') runs/gpu-logs 2>/dev/null
ls -la $OUT/results.tgz
$PY tools/hushem_gpu/pack.py runs/gpu-probs/chosen.json $OUT 1  # later calls: … $OUT N
echo "done at $(( $(date +%s) - START )) s"
