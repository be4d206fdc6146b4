"""Trains or evaluates a sparse ResNet with the original `imagenet_train_eval.py` flags.

  python -m state_of_sparsity.sparse_rn50.imagenet_train_eval --pruning_method=threshold \\
      --end_sparsity=0.9 --data_directory=/data/imagenet --output_dir=/runs/mp90

Every flag is a field of `config.Config` (same name, same default); flags are
validated once into that immutable config, and nothing below `main` reads them.
"""

import dataclasses

from absl import app
from absl import flags

from state_of_sparsity.sparse_rn50 import config as config_lib
from state_of_sparsity.sparse_rn50 import model as model_lib
from state_of_sparsity.sparse_rn50 import train

_CHOICES = {
    "pruning_method": config_lib.PRUNING_METHODS,
    "mode": config_lib.MODES,
    "dataset": config_lib.DATASETS,
    "model": tuple(model_lib.model_names()),
    "distribution_strategy": config_lib.STRATEGIES,
    "precision": config_lib.PRECISIONS,
    "init_method": config_lib.INIT_METHODS,
}


def _define_flags():
    """One absl flag per Config field, typed by its default."""
    for field in dataclasses.fields(config_lib.Config):
        name, default = field.name, field.default
        help_text = f"See state_of_sparsity.sparse_rn50.config.Config ({name})."
        if name in _CHOICES:
            flags.DEFINE_enum(name, default, list(_CHOICES[name]), help_text)
        elif isinstance(default, bool):
            flags.DEFINE_bool(name, default, help_text)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, help_text)
        else:
            flags.DEFINE_string(name, default, help_text)


_define_flags()
flags.DEFINE_alias("data_dir", "data_directory")
FLAGS = flags.FLAGS


def config_from_flags():
    """The validated Config of the parsed flags; bad values become a usage error."""
    values = {field.name: FLAGS[field.name].value for field in dataclasses.fields(config_lib.Config)}
    try:
        return config_lib.Config(**values)
    except ValueError as error:
        raise app.UsageError(str(error)) from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    train.train_and_evaluate(config_from_flags())


if __name__ == "__main__":
    app.run(main)
