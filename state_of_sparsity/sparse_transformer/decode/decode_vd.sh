#!/usr/bin/env bash
# Translates newstest2014 with a variational dropout checkpoint at a log-alpha threshold, as the original's decode_vd.sh.
# Usage: decode_vd.sh <ckpt_dir> <log_alpha_threshold> [newstest2014.en]
#   ckpt_dir: a training --output_dir, ours or an original TF1 checkpoint directory (imported by name).
#   log_alpha_threshold: weights with log alpha above it are dropped (the released checkpoints' dir names end in it).
#   newstest2014.en: the raw English source (not in the repository); default $SOS_NEWSTEST2014_EN,
#     else newstest2014.en beside this script. sacrebleu -t wmt14/full -l en-de --echo src > newstest2014.en
#   The vocabulary directory is $SOS_WMT_VOCAB_DIR, else wmt_ende32k/ beside this script; it must hold
#   vocab.translate_ende_wmt32k.32768.subwords. Set $PYTHON to choose the interpreter.
# Output: <source>.sparse_transformer.sparse_transformer_variational_dropout_tpu.translate_ende_wmt32k_packed.beam4.alpha0.6.decodes
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
  echo "usage: $0 <ckpt_dir> <log_alpha_threshold> [newstest2014.en]  (vocab dir: \$SOS_WMT_VOCAB_DIR or $here/wmt_ende32k)" >&2
  exit 2
fi
vocab_dir="${SOS_WMT_VOCAB_DIR:-$here/wmt_ende32k}"
source_file="${3:-${SOS_NEWSTEST2014_EN:-$here/newstest2014.en}}"
if [ ! -f "$vocab_dir/vocab.translate_ende_wmt32k.32768.subwords" ]; then
  echo "error: no vocab.translate_ende_wmt32k.32768.subwords in $vocab_dir: copy the original's decode/wmt_ende32k/ there or set SOS_WMT_VOCAB_DIR." >&2
  exit 1
fi
if [ ! -f "$source_file" ]; then
  echo "error: $source_file not found: pass the raw English newstest2014 (sacrebleu -t wmt14/full -l en-de --echo src) as the 3rd argument or set SOS_NEWSTEST2014_EN." >&2
  exit 1
fi
exec "${PYTHON:-python}" -m state_of_sparsity.sparse_transformer.decoder \
  --hparams_set=sparse_transformer_variational_dropout_tpu \
  --output_dir="$1" \
  --model=sparse_transformer \
  --problem=translate_ende_wmt32k_packed \
  --data_dir="$vocab_dir" \
  --decode_from_file="$source_file" \
  --hparams="symbol_modality_num_shards=1,log_alpha_threshold=$2"
