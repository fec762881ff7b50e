#!/usr/bin/env bash
# Runs one vitjax training as N processes on this machine, joined through jax.distributed
# (process 0 is the coordinator on 127.0.0.1). Each process drives the devices it is given:
# on a GPU box, one GPU per process; on CPU, JAX's host devices.
#
#   launch/local_multiprocess.sh 2 --config configs/digits.py --workdir runs/digits_2proc
set -euo pipefail
n=${1:?usage: $0 NUM_PROCESSES vitjax-flags...}; shift
port=${VITJAX_PORT:-12355}
pids=()
for ((i = 0; i < n; i++)); do
  if command -v nvidia-smi >/dev/null 2>&1; then export CUDA_VISIBLE_DEVICES=$i; fi
  python -m vitjax.main "$@" \
    --config.distributed.coordinator="127.0.0.1:${port}" \
    --config.distributed.num_processes="$n" \
    --config.distributed.process_id="$i" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
