#!/usr/bin/env bash
# Evaluates a magnitude (or random) pruning ResNet-50 checkpoint at step 128000, as the original script.
# Usage: evaluate_mp.sh <ckpt_dir> <data_dir>
set -euo pipefail
if [ "$#" -ne 2 ]; then echo "usage: $0 <ckpt_dir> <data_dir>" >&2; exit 2; fi
python -m state_of_sparsity.sparse_rn50.imagenet_train_eval \
  --mode=eval_once --pruning_method=threshold --eval_batch_size=100 \
  --checkpoint_step=128000 --output_dir="$1" --data_directory="$2"
