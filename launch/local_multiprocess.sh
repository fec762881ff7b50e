#!/usr/bin/env bash
# Runs one vitjax training as N processes on this machine, joined through jax.distributed
# (process 0 is the coordinator on 127.0.0.1:$VITJAX_PORT, default 12355). Each process drives
# the devices it is given: on a GPU box, one GPU per process; on CPU, one host device each.
# Ctrl-C reaches every process (each saves its part of a checkpoint and stops); when one
# process fails, the others, which would wait for it forever, are killed.
#
#   launch/local_multiprocess.sh 2 --config configs/digits.py --workdir runs/digits_2proc
set -euo pipefail
set -m  # each process in its own group: SIGINT is not ignored in background jobs
n=${1:?usage: $0 NUM_PROCESSES vitjax-flags...}; shift
port=${VITJAX_PORT:-12355}
gpus=$(command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L | wc -l || echo 0)
pids=()
interrupted=0
trap 'interrupted=1; kill -INT "${pids[@]}" 2>/dev/null || true' INT
for ((i = 0; i < n; i++)); do
  if ((gpus > 0)); then export CUDA_VISIBLE_DEVICES=$((i % gpus)); fi
  python -m vitjax.main "$@" \
    --config.distributed.coordinator="127.0.0.1:${port}" \
    --config.distributed.num_processes="$n" \
    --config.distributed.process_id="$i" &
  pids+=($!)
done
status=0
for ((i = 0; i < n; i++)); do
  code=0
  wait -n || code=$?
  if ((code == 127)); then break; fi  # no process left
  if ((code != 0 && status == 0)); then
    status=$code
    if ((!interrupted)); then kill -KILL "${pids[@]}" 2>/dev/null || true; fi
  fi
done
exit $status
