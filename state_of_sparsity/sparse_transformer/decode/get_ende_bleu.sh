#!/bin/bash
# The paper's "Moses BLEU" of WMT14 en-de decodes (newstest2014), plus detokenised sacreBLEU; no Perl needed.
# Usage: get_ende_bleu.sh <decodes> [reference]
#   reference: Moses-tokenised newstest2014.tok.de; default $SOS_WMT14_REFERENCE, else the file beside this script.
set -euo pipefail
if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
  echo "usage: $0 <decodes> [reference]  (reference default: \$SOS_WMT14_REFERENCE or $(dirname "$0")/newstest2014.tok.de)" >&2
  exit 2
fi
python -m state_of_sparsity.sparse_transformer.bleu --decodes="$1" ${2:+--reference="$2"}
