"""Trains or evaluates a sparse Transformer with the original `trainer.py` flags (T2T's t2t_trainer + sparsity flags).

  python -m state_of_sparsity.sparse_transformer.trainer \\
      --hparams_set=sparse_transformer_magnitude_pruning_tpu --problem=translate_ende_wmt32k_packed \\
      --data_dir=/data/t2t --output_dir=/runs/mp90 --target_sparsity=0.9

Every flag is a field of `config.Config`. The sparsity flags (`--target_sparsity`,
`--dkl_weight`, ...) default to "not given" and, when given, override the hparam
of the same name, as the original converted them to `--hp_*` overrides; `--hparams`
takes T2T's "name=value,..." string. Flags are defined only when this module runs
as a script, so tests and other scripts can import it.
"""

from absl import app
from absl import flags

from state_of_sparsity import config_flags
from state_of_sparsity.sparse_transformer import config as config_lib
from state_of_sparsity.sparse_transformer import hparams as hparams_lib
from state_of_sparsity.sparse_transformer import problems
from state_of_sparsity.sparse_transformer import train

CHOICES = {
    "hparams_set": tuple(sorted(hparams_lib.HPARAMS_SETS)),
    "problem": tuple(sorted(problems.PROBLEMS)),
    "mode": config_lib.MODES,
    "distribution_strategy": config_lib.STRATEGIES,
    "precision": config_lib.PRECISIONS,
    "regularization": tuple(config_lib.REGULARIZATION),
}


def define_flags(flag_values=flags.FLAGS):
    config_flags.define_flags(config_lib.Config, CHOICES, flag_values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = config_flags.config_from_flags(config_lib.Config)
    try:
        train.train_and_evaluate(config)
    except problems.DataError as error:
        raise app.UsageError(str(error)) from None


if __name__ == "__main__":
    define_flags()
    app.run(main)
