"""Trains or evaluates a sparse ResNet with the original `imagenet_train_eval.py` flags.

  python -m state_of_sparsity.sparse_rn50.imagenet_train_eval --pruning_method=threshold \\
      --end_sparsity=0.9 --data_directory=/data/imagenet --output_dir=/runs/mp90

Every flag is a field of `config.Config` (same name, same default); flags are
validated once into that immutable config, and nothing below `main` reads them.
"""

from absl import app
from absl import flags

from state_of_sparsity import config_flags
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


config_flags.define_flags(config_lib.Config, _CHOICES)
flags.DEFINE_alias("data_dir", "data_directory")
FLAGS = flags.FLAGS


def config_from_flags():
    """The validated Config of the parsed flags; bad values become a usage error."""
    return config_flags.config_from_flags(config_lib.Config, FLAGS)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    train.train_and_evaluate(config_from_flags())


if __name__ == "__main__":
    app.run(main)
