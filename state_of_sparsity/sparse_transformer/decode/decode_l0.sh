#!/usr/bin/env bash
# Translates newstest2014 with an L0 regularization checkpoint, as the original's decode_l0.sh.
# Usage: decode_l0.sh <ckpt_dir> [newstest2014.en]
#   ckpt_dir: a training --output_dir, ours or an original TF1 checkpoint directory (imported by name).
#   Inputs, vocabulary and output name: see decode_common.sh.
set -euo pipefail
if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
  echo "usage: $0 <ckpt_dir> [newstest2014.en]  (vocab dir: \$SOS_WMT_VOCAB_DIR or wmt_ende32k/ beside this script)" >&2
  exit 2
fi
source "$(dirname "$0")/decode_common.sh"
decode_newstest sparse_transformer_l0_regularization_tpu "$1" "${2:-}" "symbol_modality_num_shards=1"
