"""Small-scale sparse Transformer recipe that runs on 2 CPU cores: KJV English -> Reina-Valera 1909 Spanish.

  apt-get install -y sword-text-kjv sword-text-sparv
  python -m state_of_sparsity.sparse_transformer.bible_recipe --output_dir=results/sparse_transformer

Trains `sparse_transformer_tiny` (2+2 layers, hidden 128) on the ~29k training verse pairs of the Debian
SWORD Bibles, dense and with each technique at the target sparsity, then translates the held-out test
verses (2% by verse hash) with beam search and scores them with detokenised sacreBLEU. Pruning reaches the
target exactly; variational dropout and L0 learn their sparsity from the penalty weight, so their
measured sparsity is what counts. Writes `results.csv` and `results.png`.
"""

import dataclasses
import os
import time

from absl import app
from absl import flags
from absl import logging

import state_of_sparsity as sos
from state_of_sparsity import atomic_write
from state_of_sparsity import results_csv
from state_of_sparsity.sparse_transformer import bleu
from state_of_sparsity.sparse_transformer import config as config_lib
from state_of_sparsity.sparse_transformer import decoder
from state_of_sparsity.sparse_transformer import problems
from state_of_sparsity.sparse_transformer import train

TECHNIQUES = ("dense", "magnitude_pruning", "random_pruning", "variational_dropout", "l0_regularization")
PROBLEM = "translate_enes_bible_packed"
CSV_COLUMNS = ("technique", "target_sparsity", "global_sparsity", "bleu", "dev_loss", "dev_accuracy",
               "train_steps", "train_time_s", "decode_time_s")


# Penalty weights per target token (the loss is a token mean) of the VD and L0 runs.
VD_WEIGHT = 1e-5
L0_WEIGHT = 7.5e-5


def run_config(technique, base, target, vd_weight=VD_WEIGHT, l0_weight=L0_WEIGHT):
    """The Config of one run: the pruning ramp over the middle of training, or a penalty ramp.

    The penalty weights (`vd_weight`, `l0_weight`) are per target token, chosen for high
    sparsity within a short run; the measured sparsity is reported.
    """
    steps = base.train_steps
    changes = dict(output_dir=os.path.join(base.output_dir, technique))
    if technique in ("magnitude_pruning", "random_pruning"):
        changes.update(sparsity_technique=technique, target_sparsity=target,
                       begin_pruning_step=steps // 5, end_pruning_step=(7 * steps) // 10,
                       pruning_frequency=max(1, steps // 40))
    elif technique == "variational_dropout":
        changes.update(sparsity_technique=technique, dkl_weight=vd_weight, dkl_weight_start=0,
                       dkl_weight_diff=(7 * steps) // 10, dkl_weight_fn="linear")
    elif technique == "l0_regularization":
        changes.update(sparsity_technique=technique, l0_norm_weight=l0_weight, l0_weight_start=0,
                       l0_weight_diff=(7 * steps) // 10, dkl_weight_fn="linear")
    return dataclasses.replace(base, **changes)


def run_one(config, test_pairs, decode_options):
    """Trains, evaluates on dev, translates the test verses; returns the result row."""
    start = time.perf_counter()
    metrics = train.train_and_evaluate(config)["eval"]
    train_time = time.perf_counter() - start
    start = time.perf_counter()
    encoder = decoder.load_encoder(config)
    hparams = dataclasses.replace(config.resolved_hparams(), vocab_size=encoder.vocab_size)
    model, _ = decoder.load_model(config, hparams)
    translate = decoder.make_translator(model, encoder, decoder.DecodeHParams(**decode_options))
    hypotheses = decoder.translate_lines([source for source, _ in test_pairs], translate,
                                         decoder.DEFAULT_BATCH_SIZE)
    decode_time = time.perf_counter() - start
    problems.write_lines(os.path.join(config.output_dir, "test.decodes"), hypotheses)
    score = bleu.sacre_bleu(hypotheses, [target for _, target in test_pairs])
    return {
        "technique": config.resolved_hparams().sparsity_technique or "dense",
        "target_sparsity": config.target_sparsity or 0.0,
        "global_sparsity": sos.sparsity_report(model)["global"] if config.sparsity_technique else 0.0,
        "bleu": score.score,
        "dev_loss": metrics["loss"],
        "dev_accuracy": metrics["accuracy"],
        "train_steps": config.train_steps,
        "train_time_s": train_time,
        "decode_time_s": decode_time,
    }


def write_results(rows, output_dir):
    """results.csv (merged with an earlier one's other techniques) and a bar plot of test BLEU."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "results.csv")
    rows = results_csv.write_merged(rows, path, CSV_COLUMNS, ("technique",), TECHNIQUES)

    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    labels = [f"{r['technique']}\n{r['global_sparsity']:.0%} sparse" for r in rows]
    axes.bar(range(len(rows)), [r["bleu"] for r in rows], tick_label=labels)
    axes.set_ylabel("test BLEU (sacreBLEU)")
    axes.set_title("Sparse Transformer-tiny, KJV -> RV1909")
    axes.tick_params(axis="x", labelsize=8)
    with atomic_write.atomic_path(os.path.join(output_dir, "results.png")) as tmp_path:
        figure.savefig(tmp_path, format="png", dpi=100)


def base_config(train_steps, runs_dir, data_dir, sword_path, warmup_steps, seed=0):
    """The Config every run starts from: the tiny set on the Bible, packed rows of 128 tokens."""
    return config_lib.Config(
        hparams_set="sparse_transformer_tiny",
        hparams=f"max_length=128,batch_size=4096,learning_rate_warmup_steps={warmup_steps}",
        problem=PROBLEM, data_dir=data_dir, sword_path=sword_path, output_dir=runs_dir,
        train_steps=train_steps, steps_per_checkpoint=train_steps, steps_per_log=max(1, train_steps // 20),
        eval_steps=100, mode="train_and_eval", seed=seed,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    unknown = [t for t in _TECHNIQUES.value if t not in TECHNIQUES]
    if unknown:
        raise app.UsageError(f"--techniques must be from {list(TECHNIQUES)}. Received: {unknown}")
    base = base_config(_STEPS.value, _RUNS.value, _DATA.value, _SWORD.value, _WARMUP.value)
    try:
        test_pairs = problems.get_problem(PROBLEM).pairs("test", base.data_sources)
    except FileNotFoundError as error:
        raise app.UsageError(str(error)) from None
    test_pairs = test_pairs[: _TEST_SENTENCES.value or None]
    decode_options = dict(beam_size=_BEAM.value, alpha=_ALPHA.value, extra_length=_EXTRA.value)
    rows = []
    for technique in _TECHNIQUES.value:
        config = run_config(technique, base, _TARGET.value, _VD_WEIGHT.value, _L0_WEIGHT.value)
        logging.info("Training %s for %d steps.", technique, config.train_steps)
        rows.append(run_one(config, test_pairs, decode_options))
        logging.info("%s", rows[-1])
    write_results(rows, _OUTPUT.value)


if __name__ == "__main__":
    _TECHNIQUES = flags.DEFINE_list("techniques", list(TECHNIQUES), "Runs to make.")
    _TARGET = flags.DEFINE_float("target_sparsity", 0.9, "Target of the pruning runs.")
    _VD_WEIGHT = flags.DEFINE_float("vd_weight", VD_WEIGHT, "KL weight per target token (VD run).",
                                    lower_bound=0.0)
    _L0_WEIGHT = flags.DEFINE_float("l0_weight", L0_WEIGHT, "L0 weight per target token (L0 run).",
                                    lower_bound=0.0)
    _STEPS = flags.DEFINE_integer("train_steps", 800, "Training steps per run.", lower_bound=1)
    _WARMUP = flags.DEFINE_integer("warmup_steps", 300, "Learning-rate warm-up steps.", lower_bound=1)
    _BEAM = flags.DEFINE_integer("beam_size", 4, "Beam size.", lower_bound=1)
    _ALPHA = flags.DEFINE_float("alpha", 0.6, "Length-penalty exponent.")
    _EXTRA = flags.DEFINE_integer("extra_length", 50, "Decode up to input length + this.", lower_bound=1)
    _TEST_SENTENCES = flags.DEFINE_integer("test_sentences", 0, "Test verses to translate (0: all).")
    _DATA = flags.DEFINE_string("data_dir", "/tmp/sparse_transformer_bible_data", "Vocabulary cache.")
    _SWORD = flags.DEFINE_string("sword_path", problems.DataSources.sword_path, "SWORD library root.")
    _OUTPUT = flags.DEFINE_string("output_dir", "results/sparse_transformer", "Where results.csv/png go.")
    _RUNS = flags.DEFINE_string("runs_dir", "/tmp/sparse_transformer_recipe", "Checkpoints of every run.")
    app.run(main)
