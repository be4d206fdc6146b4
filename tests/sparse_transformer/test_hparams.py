"""Hparams sets of the original, their validation, and T2T-style override strings."""

import dataclasses

import pytest

from state_of_sparsity.sparse_transformer import hparams as hparams_lib

# Every set of sos_spec 5.1 (the registry may hold more, e.g. the micro test set).
ORIGINAL_SETS = (
    "sparse_transformer_base_v1", "sparse_transformer_base_v2", "sparse_transformer_base_v3",
    "sparse_transformer_base", "sparse_transformer_tiny",
    "sparse_transformer_tiny_variational_dropout", "sparse_transformer_tiny_l0_regularization",
    "sparse_transformer_tiny_magnitude_pruning", "sparse_transformer_tiny_shmp",
    "sparse_transformer_tiny_random_pruning", "sparse_transformer_tpu",
    "sparse_transformer_tiny_tpu", "sparse_transformer_magnitude_pruning_tpu",
    "sparse_transformer_random_pruning_tpu", "sparse_transformer_variational_dropout_tpu",
    "sparse_transformer_l0_regularization_tpu", "sparse_transformer_mpfc_tpu",
    "sparse_transformer_mpfc_2k_tpu", "sparse_transformer_split_head_mpfc_tpu",
    "sparse_transformer_magnitude_pruning_4k_tpu",
    "sparse_transformer_split_head_magnitude_pruning_4k_tpu",
)


@pytest.mark.parametrize("name", ORIGINAL_SETS)
def test_every_original_set_is_registered_and_valid(name):
    hparams = hparams_lib.get_hparams(name)
    assert hparams_lib.validate(hparams) is hparams


def test_base_set_has_the_papers_values():
    h = hparams_lib.get_hparams("sparse_transformer_base")
    assert (h.hidden_size, h.filter_size, h.num_hidden_layers, h.num_heads) == (512, 2048, 6, 8)
    assert (h.layer_preprocess_sequence, h.layer_postprocess_sequence) == ("n", "da")
    assert h.layer_prepostprocess_dropout == h.attention_dropout == h.relu_dropout == 0.1
    assert (h.optimizer_adam_beta1, h.optimizer_adam_beta2, h.optimizer_adam_epsilon) == (
        0.9, 0.997, 1e-9)
    assert (h.learning_rate_constant, h.learning_rate_warmup_steps) == (2.0, 8000)
    assert h.dkl_weight == pytest.approx(2.2222e-7, rel=1e-4) and h.clip_log_alpha == 8.0
    assert (h.begin_pruning_step, h.end_pruning_step, h.pruning_frequency) == (0, 200000, 10000)
    assert h.target_sparsity == 0.9 and h.embedding_sparsity == -1.0
    assert h.sparsity_technique is None and h.norm_epsilon == 1e-6 and h.label_smoothing == 0.1


def test_paper_technique_sets_change_only_what_the_original_changes():
    base = hparams_lib.get_hparams("sparse_transformer_base")
    for technique in hparams_lib.TECHNIQUES:
        h = hparams_lib.get_hparams(f"sparse_transformer_{technique}_tpu")
        assert h == dataclasses.replace(
            base, sparsity_technique=technique, symbol_modality_num_shards=1, max_length=64,
            batch_size=2048,
        )


def test_v1_is_post_norm_without_attention_dropout_and_tiny_is_small():
    v1 = hparams_lib.get_hparams("sparse_transformer_base_v1")
    assert (v1.layer_preprocess_sequence, v1.layer_postprocess_sequence) == ("none", "dan")
    assert v1.attention_dropout == v1.relu_dropout == 0.0 and v1.optimizer_adam_beta2 == 0.98
    tiny = hparams_lib.get_hparams("sparse_transformer_tiny_shmp")
    assert (tiny.hidden_size, tiny.filter_size, tiny.num_hidden_layers, tiny.num_heads) == (
        128, 512, 2, 4)
    assert tiny.split_heads and tiny.sparsity_technique == "magnitude_pruning"
    mpfc = hparams_lib.get_hparams("sparse_transformer_mpfc_tpu")
    assert not mpfc.sparse_embedding and mpfc.batch_size == 4096
    tpu = hparams_lib.get_hparams("sparse_transformer_tpu")
    assert tpu.optimizer == "adafactor" and tpu.attention_dropout_broadcast_dims == "0,1"


def test_unknown_set_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Expected one of \[.*'sparse_transformer_base'.*\]"
                                         r"\. Received: hparams_set='sparse_transformer_bse'"):
        hparams_lib.get_hparams("sparse_transformer_bse")


def test_overrides_are_parsed_by_field_type():
    base = hparams_lib.get_hparams("sparse_transformer_tiny")
    h = hparams_lib.parse_overrides(
        base, "hidden_size=64, dkl_weight=1e-7,split_heads=true,dkl_weight_fn=cubic,"
              "sparsity_technique=variational_dropout,log_alpha_threshold=2",
    )
    assert (h.hidden_size, h.dkl_weight, h.split_heads, h.dkl_weight_fn) == (
        64, 1e-7, True, "cubic")
    assert h.sparsity_technique == "variational_dropout" and h.log_alpha_threshold == 2.0
    assert isinstance(h.log_alpha_threshold, float)
    cleared = hparams_lib.parse_overrides(h, "sparsity_technique=none,split_heads=0")
    assert cleared.sparsity_technique is None and cleared.split_heads is False
    assert hparams_lib.parse_overrides(base, "") is base
    assert base.hidden_size == 128  # the original is untouched


@pytest.mark.parametrize("overrides, message", [
    ("hiden_size=64", r"Unknown hparam 'hiden_size'.*Did you mean \['hidden_size'"),
    ("hidden_size=6.5", r"`hidden_size` must be of type int. Received: hidden_size='6.5'"),
    ("split_heads=yes", r"`split_heads` must be of type bool"),
    ("dkl_weight=abc", r"`dkl_weight` must be of type float"),
    ("dkl_weight=inf", r"`dkl_weight` must be of type float"),
    ("hidden_size", r"must look like `name=value`"),
    ("num_heads=3,num_heads=4", r"'num_heads' is set twice"),
    ("num_heads=3", r"divisible by `num_heads`"),
    ("target_sparsity=1.0", r"`target_sparsity` must be a number in \[0, 1\)"),
    ("sparsity_technique=pruning", r"`sparsity_technique` must be one of \[None, 'magnitude"),
    ("dkl_weight_fn=exp", r"`dkl_weight_fn` must be one of \['linear', 'cubic'\]"),
    ("end_pruning_step=0", r"`end_pruning_step` must be greater than `begin_pruning_step`"),
    ("attention_dropout_broadcast_dims=a", r"comma-separated list of axes"),
    ("layer_preprocess_sequence=nd", r"`layer_preprocess_sequence` must be one of"),
    ("embedding_sparsity=1.5", r"`embedding_sparsity` must be a number in \[0, 1\)"),
])
def test_bad_overrides_name_the_hparam(overrides, message):
    with pytest.raises(ValueError, match=message):
        hparams_lib.parse_overrides(hparams_lib.get_hparams("sparse_transformer_tiny"), overrides)


def test_direct_construction_is_validated_too():
    with pytest.raises(ValueError, match=r"`hidden_size` must be of type int"):
        hparams_lib.HParams(hidden_size="512")
    with pytest.raises(ValueError, match=r"`vocab_size` must be an integer >= 1"):
        hparams_lib.HParams(vocab_size=0)
    with pytest.raises(ValueError, match=r"`shared_embedding_and_softmax_weights` must be True"):
        hparams_lib.HParams(shared_embedding_and_softmax_weights=False)


def test_derived_depths_fall_back_like_t2t():
    h = hparams_lib.HParams(num_hidden_layers=3, num_decoder_layers=2, attention_key_channels=64)
    assert (h.encoder_layers, h.decoder_layers, h.key_depth, h.value_depth) == (3, 2, 64, 512)
