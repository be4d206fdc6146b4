"""Sparse Transformer (sos_spec 5): model, subword vocabulary, WMT/Bible input, trainer, decoder, BLEU.

Scripts: `python -m state_of_sparsity.sparse_transformer.trainer`, `.decoder`, `.bleu`, `.bible_recipe`.
"""

from state_of_sparsity.sparse_transformer.beam_search import beam_search_decode
from state_of_sparsity.sparse_transformer.beam_search import greedy_decode
from state_of_sparsity.sparse_transformer.hparams import HPARAMS_SETS
from state_of_sparsity.sparse_transformer.hparams import HParams
from state_of_sparsity.sparse_transformer.hparams import get_hparams
from state_of_sparsity.sparse_transformer.hparams import parse_overrides
from state_of_sparsity.sparse_transformer.model import SparseTransformer
from state_of_sparsity.sparse_transformer.text_encoder import SubwordTextEncoder
