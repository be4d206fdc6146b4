#!/usr/bin/env bash
# Evaluates an extended (non-uniform) magnitude pruning checkpoint: dense first layer, step 48000.
# Usage: evaluate_extended_mp.sh <ckpt_dir> <data_dir>
set -euo pipefail
if [ "$#" -ne 2 ]; then echo "usage: $0 <ckpt_dir> <data_dir>" >&2; exit 2; fi
python -m state_of_sparsity.sparse_rn50.imagenet_train_eval \
  --mode=eval_once --pruning_method=threshold --eval_batch_size=100 \
  --checkpoint_step=48000 --prune_first_layer=False --output_dir="$1" --data_directory="$2"
