# Shared by decode_{mp,vd,l0}.sh (sourced, not run): checks the inputs, then runs the decoder.
# Usage inside a script: decode_newstest <hparams_set> <ckpt_dir> <source_arg_position> <hparams> [args...]
#   The vocabulary directory is $SOS_WMT_VOCAB_DIR, else wmt_ende32k/ beside the scripts; it must hold
#   vocab.translate_ende_wmt32k.32768.subwords. The raw English newstest2014 is the optional source
#   argument, else $SOS_NEWSTEST2014_EN, else newstest2014.en beside the scripts
#   (sacrebleu -t wmt14/full -l en-de --echo src > newstest2014.en). Set $PYTHON to choose the interpreter.
# Output: <source>.sparse_transformer.<hparams_set>.translate_ende_wmt32k_packed.beam4.alpha0.6.decodes
decode_newstest() {
  local hparams_set="$1" ckpt_dir="$2" source_arg="$3" hparams="$4"
  local here vocab_dir source_file
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  vocab_dir="${SOS_WMT_VOCAB_DIR:-$here/wmt_ende32k}"
  source_file="${source_arg:-${SOS_NEWSTEST2014_EN:-$here/newstest2014.en}}"
  if [ ! -f "$vocab_dir/vocab.translate_ende_wmt32k.32768.subwords" ]; then
    echo "error: no vocab.translate_ende_wmt32k.32768.subwords in $vocab_dir: copy the original's decode/wmt_ende32k/ there or set SOS_WMT_VOCAB_DIR." >&2
    exit 1
  fi
  if [ ! -f "$source_file" ]; then
    echo "error: $source_file not found: pass the raw English newstest2014 (sacrebleu -t wmt14/full -l en-de --echo src) as the last argument or set SOS_NEWSTEST2014_EN." >&2
    exit 1
  fi
  exec "${PYTHON:-python}" -m state_of_sparsity.sparse_transformer.decoder \
    --hparams_set="$hparams_set" \
    --output_dir="$ckpt_dir" \
    --model=sparse_transformer \
    --problem=translate_ende_wmt32k_packed \
    --data_dir="$vocab_dir" \
    --decode_from_file="$source_file" \
    --hparams="$hparams"
}
