"""Sparse Transformer (sos_spec 5): model, subword vocabulary, WMT/Bible input, trainer, decoder, BLEU."""
