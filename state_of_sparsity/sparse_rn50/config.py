"""The immutable configuration of a sparse ResNet run, validated once (sos_spec 6.1 defaults)."""

import dataclasses
import os

from state_of_sparsity.sparse_rn50 import input_pipeline
from state_of_sparsity.sparse_rn50 import learning_rate
from state_of_sparsity.sparse_rn50 import model as model_lib

PRUNING_METHODS = (
    "baseline", "threshold", "random", "variational_dropout", "l0_regularization", "scratch"
)
INIT_METHODS = ("baseline", "sparse")
# The original's --pruning_method values, mapped to this package's techniques.
# "scratch" trains masked layers whose masks come from --load_mask_dir and never change.
TECHNIQUE_FOR_METHOD = {
    "threshold": "magnitude_pruning",
    "scratch": "magnitude_pruning",
    "random": "random_pruning",
    "variational_dropout": "variational_dropout",
    "l0_regularization": "l0_regularization",
}
MODES = ("train", "eval", "eval_once", "train_and_eval")
DATASETS = input_pipeline.DATASETS
STRATEGIES = ("one_device", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; field names are the original's flag names.

    Launch (the paper's ResNet-50, 90% magnitude pruning, on ImageNet TFRecords):
      python -m state_of_sparsity.sparse_rn50.imagenet_train_eval \\
        --pruning_method=threshold --end_sparsity=0.9 --sparsity_begin_step=40000 \\
        --sparsity_end_step=100000 --pruning_frequency=2000 --train_steps=128000 \\
        --train_batch_size=1024 --data_directory=/data/imagenet --output_dir=/runs/mp90
    """

    pruning_method: str = "baseline"
    end_sparsity: float = 0.9
    sparsity_begin_step: int = 5000
    sparsity_end_step: int = 8000
    pruning_frequency: int = 2000
    reg_scalar: float = 0.0
    clip_log_alpha: float = 8.0
    log_alpha_threshold: float = 3.0
    # Not flags of the original: its VD init (sos_spec 6.4) and L0's default gate init.
    # Short runs learn sparsity faster from a larger log_sigma2 / smaller log_alpha.
    log_sigma2_init: float = -15.0
    log_alpha_init: float = 2.197
    is_warm_up: bool = True
    prune_first_layer: bool = True
    prune_last_layer: bool = True
    first_layer_sparsity: float = -1.0
    last_layer_sparsity: float = -1.0
    label_smoothing: float = 0.1
    weight_decay: float = 1e-4
    momentum: float = 0.9
    base_learning_rate: float = 0.1
    train_steps: int = 128_000
    train_batch_size: int = 1024
    eval_batch_size: int = 1000
    num_train_images: int = 1_281_167
    num_eval_images: int = 50_000
    num_label_classes: int = 1000
    image_size: int = 224
    model: str = "resnet50"
    width: float = 1.0
    dataset: str = "imagenet"
    data_directory: str = ""
    output_dir: str = "/tmp/imagenet"
    mode: str = "train"
    # Fit the paper's ~90-epoch LR schedule (warm-up 5, x0.1 at 30/60/80) into
    # --train_steps, for short runs; False keeps real epochs of num_train_images.
    compress_lr_schedule: bool = False
    steps_per_checkpoint: int = 1000
    steps_per_log: int = 100
    checkpoint_step: int = -1
    # --mode=eval waits this long for a new checkpoint before it stops.
    eval_timeout_s: int = 3600
    load_mask_dir: str = ""
    initial_value_checkpoint: str = ""
    init_method: str = "baseline"
    seed: int = 0
    distribution_strategy: str = "one_device"
    precision: str = "float32"

    def __post_init__(self):
        _check_choice("pruning_method", self.pruning_method, PRUNING_METHODS)
        _check_choice("mode", self.mode, MODES)
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("model", self.model, tuple(model_lib.model_names()))
        _check_choice("distribution_strategy", self.distribution_strategy, STRATEGIES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("init_method", self.init_method, INIT_METHODS)
        if (self.pruning_method == "scratch") != bool(self.load_mask_dir):
            raise ValueError(
                "--pruning_method=scratch and --load_mask_dir go together: scratch runs train "
                "fixed masks loaded from that directory's latest checkpoint. Received: "
                f"pruning_method={self.pruning_method!r}, load_mask_dir={self.load_mask_dir!r}"
            )
        if self.init_method == "sparse" and self.pruning_method != "scratch":
            raise ValueError(
                "--init_method=sparse needs the fixed masks of --pruning_method=scratch. "
                f"Received: pruning_method={self.pruning_method!r}"
            )
        if not 0.0 <= self.end_sparsity < 1.0:
            raise ValueError(
                f"--end_sparsity must be a fraction of zeros in [0, 1). Received: {self.end_sparsity}"
            )
        for name in ("first_layer_sparsity", "last_layer_sparsity"):
            value = getattr(self, name)
            if value != -1.0 and not 0.0 <= value < 1.0:
                raise ValueError(f"--{name} must be -1 (off) or in [0, 1). Received: {value}")
        if not 0 <= self.sparsity_begin_step < self.sparsity_end_step:
            raise ValueError(
                "--sparsity_begin_step must be >= 0 and below --sparsity_end_step. Received: "
                f"sparsity_begin_step={self.sparsity_begin_step}, "
                f"sparsity_end_step={self.sparsity_end_step}"
            )
        for name in ("pruning_frequency", "train_steps", "train_batch_size", "eval_batch_size",
                     "num_train_images", "num_eval_images", "num_label_classes", "image_size",
                     "steps_per_checkpoint", "steps_per_log"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1. Received: {getattr(self, name)}")
        overrides = self.first_layer_sparsity != -1.0 or self.last_layer_sparsity != -1.0
        if overrides and self.pruning_method not in ("threshold", "random"):
            raise ValueError(
                "--first_layer_sparsity / --last_layer_sparsity apply to --pruning_method=threshold "
                f"or random only. Received: pruning_method={self.pruning_method!r}"
            )
        if self.clip_log_alpha < 0 or self.seed < 0 or not self.width > 0:
            raise ValueError(
                "--clip_log_alpha and --seed must be >= 0 and --width > 0. Received: "
                f"clip_log_alpha={self.clip_log_alpha}, seed={self.seed}, width={self.width}"
            )
        if self.data_directory and not os.path.isdir(self.data_directory):
            raise ValueError(
                f"--data_directory={self.data_directory!r} is not a directory: pass the directory "
                "holding the dataset."
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"--label_smoothing must be in [0, 1). Received: {self.label_smoothing}")
        if self.reg_scalar < 0 or self.weight_decay < 0:
            raise ValueError(
                "--reg_scalar and --weight_decay must be >= 0. Received: "
                f"reg_scalar={self.reg_scalar}, weight_decay={self.weight_decay}"
            )
        if self.dataset != "fashion_mnist" and not self.data_directory:
            raise ValueError(
                f"--data_directory is required for --dataset={self.dataset}: the directory of "
                "the train-*/validation-* TFRecords (imagenet) or of the prepared tfds dataset."
            )

    @property
    def technique(self):
        """The `sparsify` technique name, or None for the dense baseline."""
        return TECHNIQUE_FOR_METHOD.get(self.pruning_method)

    @property
    def steps_per_epoch(self):
        return max(1, self.num_train_images // self.train_batch_size)

    @property
    def learning_rate_steps_per_epoch(self):
        """Steps per "epoch" of the LR schedule (real epochs unless compressed)."""
        if self.compress_lr_schedule:
            return self.train_steps / learning_rate.SCHEDULE_EPOCHS
        return self.steps_per_epoch


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"--{name} must be one of {list(choices)}. Received: {value!r}")
