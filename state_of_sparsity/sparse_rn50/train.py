"""Train and evaluate a sparse ResNet: `train_and_evaluate(config)` and the pieces it is made of."""

import math
import os

import keras
import tensorflow as tf
from absl import logging

import state_of_sparsity as sos
from state_of_sparsity import atomic_write
from state_of_sparsity import training
from state_of_sparsity.training import create_strategy, is_chief, worker_dir  # noqa: F401 - re-exported
from state_of_sparsity.sparse_rn50 import input_pipeline
from state_of_sparsity.sparse_rn50 import learning_rate
from state_of_sparsity.sparse_rn50 import model as model_lib
from state_of_sparsity import checkpoint_values
from state_of_sparsity.sparse_rn50 import warm_start as warm_start_lib

CHECKPOINT_NAME = "model.ckpt"
EVAL_RESULTS_FILE = "eval_results.json"


def build_model(config):
    """The dense variant of `config.model`, sparsified by the configured technique."""
    model = model_lib.create_model(
        config.model, config.num_label_classes,
        input_pipeline.image_shape(config.dataset, config.image_size), config.width,
        config.weight_decay,
    )
    if config.technique is None:
        return model
    sparsity_map = {}
    for name, value in ((model_lib.FIRST_LAYER_NAME, config.first_layer_sparsity),
                        (model_lib.LAST_LAYER_NAME, config.last_layer_sparsity)):
        if value >= 0:  # both overrides are honoured (the original kept only the last one)
            sparsity_map[f"^{name}$"] = value
    if "pruning" in config.technique:
        schedule = sos.PolynomialDecay(
            config.end_sparsity, config.sparsity_begin_step, config.sparsity_end_step,
            config.pruning_frequency,
        )
        options = {"sparsity_map": sparsity_map}
        if config.technique == "random_pruning":
            options["seed"] = config.seed
    else:
        if config.is_warm_up:
            schedule = sos.LinearPenalty(
                config.reg_scalar, config.sparsity_begin_step, config.sparsity_end_step
            )
        else:
            schedule = sos.ConstantPenalty(config.reg_scalar)
        if config.technique == "variational_dropout":
            options = {"threshold": config.log_alpha_threshold, "clip_alpha": config.clip_log_alpha,
                       "log_sigma2_initializer": config.log_sigma2_init}
        else:
            options = {"log_alpha_mean": config.log_alpha_init}
    return sos.sparsify(
        model, config.technique, schedule, prune_first_layer=config.prune_first_layer,
        prune_last_layer=config.prune_last_layer, **options,
    )


def compile_model(model, config):
    """Nesterov momentum on the warm-up + step schedule, label-smoothed cross-entropy, top-1/5."""
    peak = config.base_learning_rate * config.train_batch_size / 256
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate.WarmupStepDecay(peak, config.learning_rate_steps_per_epoch),
            momentum=config.momentum,
            nesterov=True,
        ),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing
        ),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="top_1_accuracy"),
            keras.metrics.TopKCategoricalAccuracy(5, name="top_5_accuracy"),
        ],
    )


def create_dataset(config, split, training):
    """The batched dataset of `split` with one-hot labels for the smoothed loss."""
    batch = config.train_batch_size if training else config.eval_batch_size
    dataset = input_pipeline.create_split(
        config.dataset, config.data_directory, split, batch, training, config.image_size,
        config.seed,
    )
    def one_hot(images, labels):
        # A label outside [0, num_label_classes) would become an all-zero target.
        check = tf.debugging.assert_less(
            labels, config.num_label_classes,
            message=f"A label is >= --num_label_classes={config.num_label_classes}.",
        )
        with tf.control_dependencies([check, tf.debugging.assert_non_negative(labels)]):
            return images, tf.one_hot(labels, config.num_label_classes)

    return dataset.map(one_hot)


def train(config, model, strategy=None):
    """Trains until `config.train_steps`, resuming from the latest checkpoint in `output_dir`.

    With several workers every one saves (collective ops need it) but only the
    chief into `output_dir`; the others use scratch directories.
    """
    strategy = strategy or tf.distribute.get_strategy()
    output_dir = worker_dir(config.output_dir, strategy)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    latest = tf.train.latest_checkpoint(config.output_dir)
    manager = tf.train.CheckpointManager(
        checkpoint, output_dir, max_to_keep=None, checkpoint_name=CHECKPOINT_NAME
    )
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        logging.info("Resumed from %s.", latest)
    step = int(model.optimizer.iterations.numpy())
    steps_per_loop = min(config.steps_per_checkpoint, config.train_steps)
    epochs = math.ceil(config.train_steps / steps_per_loop)
    if step >= config.train_steps:
        logging.info("Already trained for %d steps.", step)
        return {}
    log_dir = os.path.join(output_dir, "train")
    callbacks = [
        keras.callbacks.TensorBoard(log_dir, update_freq=config.steps_per_log, write_graph=False),
        training.ProgressLogger(config.steps_per_log, config.train_batch_size),
        training.CheckpointCallback(manager, config.train_steps),
    ]
    if config.technique is not None:  # scratch masks are fixed: summaries only
        callbacks.insert(0, sos.PruningCallback(log_dir=log_dir, update=config.pruning_method != "scratch"))
    history = model.fit(
        create_dataset(config, "train", training=True),
        epochs=epochs,
        initial_epoch=step // steps_per_loop,
        steps_per_epoch=steps_per_loop,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself
        verbose=0,
    )
    return {name: values[-1] for name, values in history.history.items()}


def evaluate(config, model, checkpoint_path=None, strategy=None):
    """Top-1, top-5 and global sparsity on the eval split; written to eval_results.json."""
    if checkpoint_path:
        # Every model variable must come from the checkpoint: a run of another
        # --pruning_method would otherwise be evaluated with default masks.
        status = tf.train.Checkpoint(model=model, optimizer=model.optimizer).restore(checkpoint_path)
        try:
            status.assert_existing_objects_matched().expect_partial()
        except AssertionError:
            raise ValueError(
                f"Checkpoint {checkpoint_path!r} does not hold every variable of a "
                f"--model={config.model} --pruning_method={config.pruning_method} model: was it "
                "trained with other flags?"
            ) from None
    if config.technique == "variational_dropout":
        # The evaluation threshold is a flag, not the value saved in training.
        sos.set_log_alpha_threshold(model, config.log_alpha_threshold)
    dataset = create_dataset(config, "validation", training=False)
    steps = math.ceil(config.num_eval_images / config.eval_batch_size)
    results = model.evaluate(dataset.take(steps), verbose=0, return_dict=True)
    metrics = {
        "top_1_accuracy": float(results["top_1_accuracy"]),
        "top_5_accuracy": float(results["top_5_accuracy"]),
        "loss": float(results["loss"]),
        "global_sparsity": sos.sparsity_report(model)["global"] if config.technique else 0.0,
        "step": int(model.optimizer.iterations.numpy()) if model.optimizer else None,
        "checkpoint": checkpoint_path or tf.train.latest_checkpoint(config.output_dir),
    }
    name = EVAL_RESULTS_FILE
    if config.technique == "variational_dropout":  # one file per threshold, like the original's eval names
        name = f"eval_results_{int(config.log_alpha_threshold * 10)}.json"
    results_dir = worker_dir(config.output_dir, strategy or tf.distribute.get_strategy())
    os.makedirs(results_dir, exist_ok=True)
    path = os.path.join(results_dir, name)
    atomic_write.write_json(path, metrics)
    logging.info("Eval: %s", metrics)
    return metrics


def warm_start(config, model):
    """Loads fixed masks (scratch) and/or initial values (lottery ticket) into a fresh model."""
    factory = lambda: build_model(config)  # noqa: E731 - same architecture as `model`
    if config.load_mask_dir:
        values, path = warm_start_lib.load_checkpoint_values(factory, config.load_mask_dir)
        checkpoint_values.copy_masks(model, values, path, "--load_mask_dir")
        logging.info("Loaded fixed masks from %s.", path)
        if config.init_method == "sparse":
            warm_start_lib.sparse_initialize(model, config.seed)
    if config.initial_value_checkpoint:
        values, path = warm_start_lib.load_checkpoint_values(factory, config.initial_value_checkpoint)
        checkpoint_values.copy_initial_values(model, values, path, "--initial_value_checkpoint")
        logging.info("Loaded initial values from %s.", path)


def checkpoint_to_evaluate(config):
    """`model.ckpt-<checkpoint_step>`, or the latest checkpoint when the step is -1."""
    if config.checkpoint_step >= 0:
        path = os.path.join(config.output_dir, f"{CHECKPOINT_NAME}-{config.checkpoint_step}")
        if not tf.io.gfile.exists(path + ".index"):
            raise ValueError(
                f"No checkpoint {path!r} for --checkpoint_step={config.checkpoint_step}. "
                f"Available: {tf.train.get_checkpoint_state(config.output_dir)}"
            )
        return path
    latest = tf.train.latest_checkpoint(config.output_dir)
    if latest is None:
        raise ValueError(
            f"No checkpoint to evaluate in --output_dir={config.output_dir!r}: train first."
        )
    return latest


def evaluate_continuously(config, model, strategy):
    """--mode=eval: evaluates each new checkpoint as training writes it (the original's eval job).

    Stops after the checkpoint of `train_steps`, or when no new checkpoint
    appears for `eval_timeout_s` seconds. Returns the last metrics.
    """
    metrics = None
    for path in tf.train.checkpoints_iterator(config.output_dir, timeout=config.eval_timeout_s):
        metrics = evaluate(config, model, path, strategy)
        if metrics["step"] >= config.train_steps:
            break
    if metrics is None:
        raise ValueError(
            f"No checkpoint appeared in --output_dir={config.output_dir!r} within "
            f"--eval_timeout_s={config.eval_timeout_s}."
        )
    return metrics


def train_and_evaluate(config):
    """Runs `config.mode`; returns the final training and/or evaluation metrics."""
    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.precision)
    try:
        os.makedirs(config.output_dir, exist_ok=True)
        strategy = create_strategy(config.distribution_strategy)
        with strategy.scope():
            model = build_model(config)
            compile_model(model, config)
        metrics = {}
        if config.mode in ("train", "train_and_eval"):
            warm_start(config, model)
            metrics["train"] = train(config, model, strategy)
        if config.mode == "eval":
            metrics["eval"] = evaluate_continuously(config, model, strategy)
        elif config.mode in ("eval_once", "train_and_eval"):
            path = None if config.mode == "train_and_eval" else checkpoint_to_evaluate(config)
            metrics["eval"] = evaluate(config, model, path, strategy)
        return metrics
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
