#!/usr/bin/env bash
# Evaluates a variational dropout ResNet-50 checkpoint at step 128000 with a log-alpha threshold (0.5 in the paper).
# Usage: evaluate_vd.sh <ckpt_dir> <data_dir> <threshold>
set -euo pipefail
if [ "$#" -ne 3 ]; then echo "usage: $0 <ckpt_dir> <data_dir> <threshold>" >&2; exit 2; fi
python -m state_of_sparsity.sparse_rn50.imagenet_train_eval \
  --mode=eval_once --pruning_method=variational_dropout --eval_batch_size=100 \
  --checkpoint_step=128000 --log_alpha_threshold="$3" --output_dir="$1" --data_directory="$2"
