"""The validated configuration of a sparse Transformer run: the trainer's flags plus the hparams they resolve to."""

import dataclasses
import os
import typing

from state_of_sparsity.sparse_transformer import hparams as hparams_lib
from state_of_sparsity.sparse_transformer import problems

MODES = ("train", "eval", "train_and_eval")
STRATEGIES = ("one_device", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# --regularization (sos_spec 5.4): the dropout rates and label smoothing each mode sets.
# None leaves the hparams set's value.
REGULARIZATION = {
    "none": dict(dropout=0.0, prepost_dropout=0.0, label_smoothing=0.0),
    "label_smoothing": dict(dropout=0.0, prepost_dropout=0.0, label_smoothing=0.1),
    "dropout+label_smoothing": dict(dropout=None, prepost_dropout=None, label_smoothing=None),
    "moredropout+label_smoothing": dict(dropout=None, prepost_dropout=0.3, label_smoothing=None),
    "muchmoredropout+label_smoothing": dict(dropout=None, prepost_dropout=0.5, label_smoothing=None),
}
# The original trainer's extra flags, each passed on as the hparam of the same name when given.
HPARAM_FLAGS = (
    "sparsity_technique", "target_sparsity", "begin_pruning_step", "end_pruning_step",
    "pruning_frequency", "nbins", "initial_sparsity", "embedding_sparsity", "dkl_weight",
    "dkl_weight_start", "dkl_weight_diff", "dkl_weight_fn", "l0_norm_weight", "l0_weight_start",
    "l0_weight_diff", "clip_log_alpha", "log_alpha_threshold", "load_masks_from", "load_weights_from",
    "hidden_size", "filter_size", "num_heads",
)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; names are the original trainer's flags.

    Launch (the paper's 90% magnitude-pruned Transformer on WMT14 en-de):
      python -m state_of_sparsity.sparse_transformer.trainer \\
        --hparams_set=sparse_transformer_magnitude_pruning_tpu --problem=translate_ende_wmt32k_packed \\
        --data_dir=/data/t2t --output_dir=/runs/mp90 --train_steps=500000 --target_sparsity=0.9 \\
        --begin_pruning_step=0 --end_pruning_step=400000 --pruning_frequency=10000 \\
        --regularization=label_smoothing
    """

    hparams_set: str = "sparse_transformer_base"
    hparams: str = ""
    problem: str = "translate_ende_wmt32k_packed"
    data_dir: str = ""
    sword_path: str = problems.DataSources.sword_path
    train_source: str = ""
    train_target: str = ""
    eval_source: str = ""
    eval_target: str = ""
    vocab_size: int = problems.BUILT_VOCAB_SIZE
    output_dir: str = "/tmp/sparse_transformer"
    mode: str = "train_and_eval"
    train_steps: int = 500_000
    eval_steps: int = 100
    steps_per_checkpoint: int = 1000
    steps_per_log: int = 100
    regularization: str = "dropout+label_smoothing"
    seed: int = 0
    distribution_strategy: str = "one_device"
    precision: str = "float32"
    checkpoint_path: str = ""
    sparsity_technique: typing.Optional[str] = None
    target_sparsity: typing.Optional[float] = None
    begin_pruning_step: typing.Optional[int] = None
    end_pruning_step: typing.Optional[int] = None
    pruning_frequency: typing.Optional[int] = None
    nbins: typing.Optional[int] = None
    initial_sparsity: typing.Optional[float] = None
    embedding_sparsity: typing.Optional[float] = None
    dkl_weight: typing.Optional[float] = None
    dkl_weight_start: typing.Optional[int] = None
    dkl_weight_diff: typing.Optional[int] = None
    dkl_weight_fn: typing.Optional[str] = None
    l0_norm_weight: typing.Optional[float] = None
    l0_weight_start: typing.Optional[int] = None
    l0_weight_diff: typing.Optional[int] = None
    clip_log_alpha: typing.Optional[float] = None
    log_alpha_threshold: typing.Optional[float] = None
    load_masks_from: typing.Optional[str] = None
    load_weights_from: typing.Optional[str] = None
    hidden_size: typing.Optional[int] = None
    filter_size: typing.Optional[int] = None
    num_heads: typing.Optional[int] = None

    def __post_init__(self):
        for name, choices in (("mode", MODES), ("distribution_strategy", STRATEGIES),
                              ("precision", PRECISIONS), ("regularization", tuple(REGULARIZATION))):
            if getattr(self, name) not in choices:
                raise ValueError(f"--{name} must be one of {list(choices)}. Received: {getattr(self, name)!r}")
        problems.get_problem(self.problem)
        for name in ("train_steps", "eval_steps", "steps_per_checkpoint", "steps_per_log", "vocab_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1. Received: {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0. Received: {self.seed}")
        if not self.output_dir:
            raise ValueError("--output_dir must name a directory for checkpoints and summaries.")
        if self.data_dir and os.path.exists(self.data_dir) and not os.path.isdir(self.data_dir):
            raise ValueError(f"--data_dir={self.data_dir!r} is a file: pass a directory.")
        for name in ("load_masks_from", "load_weights_from"):
            path = getattr(self, name)
            if path and not os.path.isdir(path):
                raise ValueError(f"--{name}={path!r} is not a directory: pass a training output_dir.")
        self.resolved_hparams()  # raises on a bad set, override or combination

    def resolved_hparams(self):
        """The hparams set, then the --hparams string, then the flags, then --regularization."""
        hparams = hparams_lib.parse_overrides(hparams_lib.get_hparams(self.hparams_set), self.hparams)
        changes = {name: getattr(self, name) for name in HPARAM_FLAGS if getattr(self, name) is not None}
        mode = REGULARIZATION[self.regularization]
        for field, value in (("attention_dropout", mode["dropout"]), ("relu_dropout", mode["dropout"]),
                             ("layer_prepostprocess_dropout", mode["prepost_dropout"]),
                             ("label_smoothing", mode["label_smoothing"])):
            if value is not None:
                changes[field] = value
        if changes.get("sparsity_technique") in ("", "none"):
            changes["sparsity_technique"] = None
        return dataclasses.replace(hparams, **changes)

    @property
    def data_sources(self):
        return problems.DataSources(
            data_dir=self.data_dir, sword_path=self.sword_path, train_source=self.train_source,
            train_target=self.train_target, eval_source=self.eval_source, eval_target=self.eval_target,
            vocab_size=self.vocab_size,
        )
