#!/usr/bin/env bash
# Translates newstest2014 with an L0 regularization checkpoint, as the original's decode_l0.sh.
# Usage: decode_l0.sh <ckpt_dir> [newstest2014.en]
#   ckpt_dir: a training --output_dir, ours or an original TF1 checkpoint directory (imported by name).
#   newstest2014.en: the raw English source (not in the repository); default $SOS_NEWSTEST2014_EN,
#     else newstest2014.en beside this script. sacrebleu -t wmt14/full -l en-de --echo src > newstest2014.en
#   The vocabulary directory is $SOS_WMT_VOCAB_DIR, else wmt_ende32k/ beside this script; it must hold
#   vocab.translate_ende_wmt32k.32768.subwords. Set $PYTHON to choose the interpreter.
# Output: <source>.sparse_transformer.sparse_transformer_l0_regularization_tpu.translate_ende_wmt32k_packed.beam4.alpha0.6.decodes
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
  echo "usage: $0 <ckpt_dir> [newstest2014.en]  (vocab dir: \$SOS_WMT_VOCAB_DIR or $here/wmt_ende32k)" >&2
  exit 2
fi
vocab_dir="${SOS_WMT_VOCAB_DIR:-$here/wmt_ende32k}"
source_file="${2:-${SOS_NEWSTEST2014_EN:-$here/newstest2014.en}}"
if [ ! -f "$vocab_dir/vocab.translate_ende_wmt32k.32768.subwords" ]; then
  echo "error: no vocab.translate_ende_wmt32k.32768.subwords in $vocab_dir: copy the original's decode/wmt_ende32k/ there or set SOS_WMT_VOCAB_DIR." >&2
  exit 1
fi
if [ ! -f "$source_file" ]; then
  echo "error: $source_file not found: pass the raw English newstest2014 (sacrebleu -t wmt14/full -l en-de --echo src) as the 2nd argument or set SOS_NEWSTEST2014_EN." >&2
  exit 1
fi
exec "${PYTHON:-python}" -m state_of_sparsity.sparse_transformer.decoder \
  --hparams_set=sparse_transformer_l0_regularization_tpu \
  --output_dir="$1" \
  --model=sparse_transformer \
  --problem=translate_ende_wmt32k_packed \
  --data_dir="$vocab_dir" \
  --decode_from_file="$source_file" \
  --hparams=symbol_modality_num_shards=1
