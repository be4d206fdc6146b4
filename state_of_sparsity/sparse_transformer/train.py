"""Train and evaluate a sparse Transformer: `train_and_evaluate(config)` and the pieces it is made of."""

import dataclasses
import math
import os

import keras
import tensorflow as tf
from absl import logging

import state_of_sparsity as sos
from state_of_sparsity import atomic_write
from state_of_sparsity import checkpoint_values
from state_of_sparsity import training
from state_of_sparsity.sparse_transformer import learning_rate
from state_of_sparsity.sparse_transformer import losses
from state_of_sparsity.sparse_transformer import metrics as metrics_lib
from state_of_sparsity.sparse_transformer import model as model_lib
from state_of_sparsity.sparse_transformer import problems
from state_of_sparsity.sparse_transformer import input_pipeline

CHECKPOINT_NAME = "model.ckpt"
EVAL_RESULTS_FILE = "eval_results.json"
# Rows of a packed batch when --hparams max_length is 0 (T2T packs WMT to 256).
DEFAULT_PACKED_LENGTH = 256


def sequence_length(hparams):
    """The packed row length / length filter: `max_length`, or T2T's 256 when it is 0."""
    return hparams.max_length or DEFAULT_PACKED_LENGTH


def build_model(hparams, seed=0):
    """A built `SparseTransformer` (all variables created, so checkpoints restore eagerly)."""
    model = model_lib.SparseTransformer(hparams, seed=seed)
    model.build()
    return model


def create_optimizer(hparams):
    """Adam (or Adafactor for the *_tpu sets) on the hparams' learning-rate schedule (sos_spec 5.4)."""
    schedule = learning_rate.create(
        hparams.learning_rate_schedule, hparams.learning_rate, hparams.learning_rate_constant,
        hparams.learning_rate_warmup_steps, hparams.hidden_size,
    )
    clip = hparams.clip_grad_norm or None
    if hparams.optimizer == "adafactor":
        return keras.optimizers.Adafactor(schedule, global_clipnorm=clip)
    return keras.optimizers.Adam(
        schedule, beta_1=hparams.optimizer_adam_beta1, beta_2=hparams.optimizer_adam_beta2,
        epsilon=hparams.optimizer_adam_epsilon, global_clipnorm=clip,
    )


def compile_model(model, hparams):
    """Label-smoothed cross-entropy over non-pad tokens (+ the technique's penalty, a model loss)."""
    label_smoothing = hparams.label_smoothing

    def loss(targets, logits):
        return losses.padded_cross_entropy(logits, targets, label_smoothing)

    model.compile(
        optimizer=create_optimizer(hparams),
        loss=loss,
        metrics=[metrics_lib.PaddedAccuracy(), metrics_lib.NegLogPerplexity(), metrics_lib.NonPadTokens()],
    )


def _with_labels(features):
    return features, features["targets"]


def build_compiled_state(model, dataset):
    """Builds the loss, metrics and optimizer from one real batch before `fit`/`evaluate`.

    Keras builds them from a symbolic copy of the first batch otherwise, and
    under MirroredStrategy that copy loses the integer dtype of the ids.
    """
    features, targets = next(iter(dataset))
    model.test_on_batch(features, targets)
    model.reset_metrics()


def load_data(config, hparams, splits):
    """(encoder, {split: encoded examples}) of the configured problem."""
    problem = problems.get_problem(config.problem)
    sources = config.data_sources
    try:
        encoder = problem.encoder(sources)
        examples = {split: problem.examples(split, sources, encoder, sequence_length(hparams))
                    for split in splits}
    except (ValueError, FileNotFoundError) as error:
        raise problems.DataError(str(error)) from error
    for split, split_examples in examples.items():
        if not split_examples:
            raise problems.DataError(f"--problem={config.problem} has no {split} example of at most "
                             f"{sequence_length(hparams)} tokens: check the data flags.")
        logging.info("%s: %d %s examples.", config.problem, len(split_examples), split)
    return encoder, examples


def train(config, hparams, model, examples, strategy):
    """Trains until `config.train_steps`, resuming from the latest checkpoint in `output_dir`."""
    output_dir = training.worker_dir(config.output_dir, strategy)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(
        checkpoint, output_dir, max_to_keep=5, checkpoint_name=CHECKPOINT_NAME
    )
    latest = tf.train.latest_checkpoint(config.output_dir)
    check_reachable(checkpoint, model)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        logging.info("Resumed from %s.", latest)
    else:
        warm_start(hparams, model, config.seed)
    step = int(model.optimizer.iterations.numpy())
    if step >= config.train_steps:
        logging.info("Already trained for %d steps.", step)
        return {}
    dataset = input_pipeline.make_dataset(
        examples, hparams.batch_size, sequence_length(hparams), packed=problems.get_problem(config.problem).packed,
        shuffle=True, seed=config.seed + step, repeat=True,
    ).map(_with_labels)
    build_compiled_state(model, dataset)
    steps_per_loop = min(config.steps_per_checkpoint, config.train_steps)
    log_dir = os.path.join(output_dir, "train")
    callbacks = [
        # Keras writes into <output_dir>/train itself.
        keras.callbacks.TensorBoard(output_dir, update_freq=config.steps_per_log, write_graph=False),
        training.ProgressLogger(config.steps_per_log, unit="tokens", metric="accuracy", count_metric="tokens"),
        training.CheckpointCallback(manager, config.train_steps),
    ]
    if hparams.sparsity_technique:
        # Masks loaded from another run stay fixed (the original skips mask updates then).
        callbacks.insert(0, sos.PruningCallback(log_dir=log_dir, update=not hparams.load_masks_from))
    history = model.fit(
        dataset, epochs=math.ceil(config.train_steps / steps_per_loop), initial_epoch=step // steps_per_loop,
        steps_per_epoch=steps_per_loop, callbacks=callbacks, shuffle=False, verbose=0,
    )
    return {name: values[-1] for name, values in history.history.items()}


def warm_start(hparams, model, seed):
    """Fixed masks (`load_masks_from`) and/or initial weights (`load_weights_from`) of another run."""
    factory = lambda: build_model(hparams, seed)  # noqa: E731 - same architecture as `model`
    if hparams.load_masks_from:
        values, path = checkpoint_values.load(factory, hparams.load_masks_from, "--load_masks_from")
        checkpoint_values.copy_masks(model, values, path, "--load_masks_from")
        logging.info("Loaded fixed masks from %s.", path)
    if hparams.load_weights_from:
        values, path = checkpoint_values.load(factory, hparams.load_weights_from,
                                              "--load_weights_from")
        checkpoint_values.copy_initial_values(model, values, path, "--load_weights_from")
        logging.info("Loaded initial weights from %s.", path)


def check_reachable(checkpoint, model):
    """Fails unless `checkpoint` reaches every model weight (so saving and restoring cover them all).

    `assert_existing_objects_matched` checks only the objects the checkpoint's
    dependency graph reaches; a layer it cannot reach (e.g. one held only in a
    plain list) would silently keep its initial values. RNG states are not saved.
    """
    reachable = {id(trackable) for trackable in tf.train.TrackableView(checkpoint).descendants()}
    missing = [v.path for v in model.variables
               if not v.path.endswith("seed_generator_state") and id(v) not in reachable]
    if missing:
        raise ValueError(f"tf.train.Checkpoint cannot reach {len(missing)} model weights (e.g. {missing[0]}): "
                         "every layer must be an attribute of its parent.")


def restore(model, checkpoint_path, description):
    """Restores every model variable from `checkpoint_path` (or fails naming the flags to check)."""
    checkpoint = tf.train.Checkpoint(model=model)
    check_reachable(checkpoint, model)
    status = checkpoint.restore(checkpoint_path)
    try:
        status.assert_existing_objects_matched().expect_partial()
    except AssertionError:
        raise ValueError(
            f"Checkpoint {checkpoint_path!r} does not hold every variable of this model ({description}): "
            "was it trained with another --hparams_set, --hparams or --sparsity_technique?"
        ) from None


def latest_checkpoint(config):
    """--checkpoint_path, or the latest checkpoint in --output_dir."""
    path = config.checkpoint_path or tf.train.latest_checkpoint(config.output_dir)
    if not path:
        raise ValueError(f"No checkpoint in --output_dir={config.output_dir!r}: train first or pass "
                         "--checkpoint_path.")
    return path


def evaluate(config, hparams, model, examples, strategy, checkpoint_path=None):
    """Loss, token accuracy, log-perplexity and global sparsity on the dev split; written to eval_results.json."""
    if checkpoint_path:
        restore(model, checkpoint_path, f"--hparams_set={config.hparams_set}")
    if hparams.sparsity_technique == "variational_dropout":
        sos.set_log_alpha_threshold(model, hparams.log_alpha_threshold)
    dataset = input_pipeline.make_eval_dataset(
        examples, hparams.batch_size, sequence_length(hparams), packed=problems.get_problem(config.problem).packed,
    ).map(_with_labels)
    build_compiled_state(model, dataset)
    results = model.evaluate(dataset.take(config.eval_steps), verbose=0, return_dict=True)
    metrics = {
        "loss": float(results["loss"]),
        "accuracy": float(results["accuracy"]),
        "neg_log_perplexity": float(results["neg_log_perplexity"]),
        "tokens": int(results["tokens"]),
        "global_sparsity": sos.sparsity_report(model)["global"] if hparams.sparsity_technique else 0.0,
        "step": int(model.optimizer.iterations.numpy()),
        "checkpoint": checkpoint_path or tf.train.latest_checkpoint(config.output_dir),
    }
    results_dir = training.worker_dir(config.output_dir, strategy)
    os.makedirs(results_dir, exist_ok=True)
    atomic_write.write_json(os.path.join(results_dir, EVAL_RESULTS_FILE), metrics)
    logging.info("Eval: %s", metrics)
    return metrics


def train_and_evaluate(config):
    """Runs `config.mode`; returns {"train": ..., "eval": ...} metrics."""
    keras.utils.set_random_seed(config.seed)
    hparams = config.resolved_hparams()
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.precision)
    try:
        os.makedirs(config.output_dir, exist_ok=True)
        splits = {"train": ("train",), "eval": ("dev",), "train_and_eval": ("train", "dev")}[config.mode]
        encoder, examples = load_data(config, hparams, splits)
        # As in T2T, the problem's vocabulary sizes the shared embedding/softmax.
        hparams = dataclasses.replace(hparams, vocab_size=encoder.vocab_size)
        strategy = training.create_strategy(config.distribution_strategy)
        with strategy.scope():
            model = build_model(hparams, config.seed)
            compile_model(model, hparams)
        metrics = {}
        if config.mode in ("train", "train_and_eval"):
            metrics["train"] = train(config, hparams, model, examples["train"], strategy)
        if config.mode == "eval":
            metrics["eval"] = evaluate(config, hparams, model, examples["dev"], strategy, latest_checkpoint(config))
        elif config.mode == "train_and_eval":
            metrics["eval"] = evaluate(config, hparams, model, examples["dev"], strategy)
        return metrics
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
