#!/usr/bin/env bash
# Translates newstest2014 with a variational dropout checkpoint at a log-alpha threshold, as the original's decode_vd.sh.
# Usage: decode_vd.sh <ckpt_dir> <log_alpha_threshold> [newstest2014.en]
#   ckpt_dir: a training --output_dir, ours or an original TF1 checkpoint directory (imported by name).
#   log_alpha_threshold: weights with log alpha above it are dropped (the released checkpoints' dir names end in it).
#   Inputs, vocabulary and output name: see decode_common.sh.
set -euo pipefail
if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
  echo "usage: $0 <ckpt_dir> <log_alpha_threshold> [newstest2014.en]  (vocab dir: \$SOS_WMT_VOCAB_DIR or wmt_ende32k/ beside this script)" >&2
  exit 2
fi
source "$(dirname "$0")/decode_common.sh"
decode_newstest sparse_transformer_variational_dropout_tpu "$1" "${3:-}" "symbol_modality_num_shards=1,log_alpha_threshold=$2"
