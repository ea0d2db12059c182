#!/bin/bash
# One HuSHeM fold of one candidate: the base recipe, then the hardening stage (init-from, corruptions).
# usage: job.sh ARCH BACKBONE SIZE SEED TAG FOLD [extra train args...]
set -e
ARCH=$1; BB=$2; SIZE=$3; SEED=$4; TAG=$5; FOLD=$6; shift 6
PY=${PY:-python3}
COMMON="--dataset hushem --data-dir .gpu/data --arch $ARCH --fold $FOLD --input-size $SIZE --seed $SEED --threads ${THREADS:-1} --device ${DEV:-cuda}"
t0=$(date +%s)
$PY -m spermlib train $COMMON --backbone $BB --weights .gpu/weights/$BB.fp16.safetensors \
    --checkpoints runs/gpu/$TAG --runs runs/gpu-state/$TAG "$@" > runs/gpu-logs/$TAG.f$FOLD.log 2>&1
t1=$(date +%s)
$PY -m spermlib train $COMMON --init-from runs/gpu/$TAG --corrupt-p 0.5 --warmup-epochs 0 --lr 3e-4 --keep-last \
    --epochs ${HARDEN_EPOCHS:-15} --checkpoints runs/gpu/${TAG}_h --runs runs/gpu-state/${TAG}_h "$@" \
    > runs/gpu-logs/${TAG}_h.f$FOLD.log 2>&1
t2=$(date +%s)
echo "$TAG fold $FOLD base $((t1-t0)) s harden $((t2-t1)) s"
