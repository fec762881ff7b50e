#!/usr/bin/env bash
# Cloud TPU VM pod slice: the same command on every worker; jax.distributed.initialize()
# detects the pod by itself. The workdir should be a gs:// bucket or a shared filesystem.
#
#   launch/tpu_pod.sh my-tpu us-central2-b configs/beans.py gs://bucket/runs/beans
set -euo pipefail
tpu=${1:?usage: $0 TPU_NAME ZONE CONFIG WORKDIR [vitjax-flags...]}
zone=${2:?}; config=${3:?}; workdir=${4:?}; shift 4
extra=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd ~/vitjax && pip install -q -e . 'jax[tpu]' && python -m vitjax.main --config $config --workdir $workdir$extra"
