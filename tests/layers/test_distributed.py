"""Masks under `tf.distribute.MirroredStrategy` (two logical CPUs) are identical on every replica."""

import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    import state_of_sparsity as sos
    import sys, tempfile
    log_dir = tempfile.mkdtemp()  # summaries read the step of a mirrored optimizer
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for technique in ("magnitude_pruning", "random_pruning"):
        with strategy.scope():
            model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(2)])
            model = sos.sparsify(model, technique, sos.PolynomialDecay(0.8, 0, 6, 2))
            model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
        rng = np.random.default_rng(0)
        model.fit(rng.random((64, 8)), rng.random((64, 2)), batch_size=16, epochs=2, verbose=0,
                  callbacks=[sos.PruningCallback(log_dir=log_dir)])
        for layer in model.layers:
            replicas = [v.numpy() for v in strategy.experimental_local_results(layer.mask.value)]
            same = all(np.array_equal(replicas[0], r) for r in replicas)
            print("RESULT", technique, layer.name, len(replicas), same, replicas[0].mean())
    # Variational dropout noise: independent per replica for identical inputs.
    with strategy.scope():
        layer = sos.SparseDense(3, technique=sos.VariationalDropout(sos.ConstantPenalty(0.0)))
        layer.build((None, 4))
        layer.log_sigma2.assign(np.zeros((4, 3), np.float32))
    outputs = strategy.run(tf.function(lambda: layer(tf.ones([2, 4]), training=True)))
    first, second = [v.numpy() for v in strategy.experimental_local_results(outputs)]
    print("NOISE", bool(np.allclose(first, second)))
""")


def test_masks_agree_across_replicas_and_reach_target_for_both_techniques():
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", SCRIPT],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("RESULT")]
    assert len(rows) == 4
    assert "NOISE False" in result.stdout  # the two replicas drew different VD noise
    for technique, name, replicas, same, kept in rows:
        assert replicas == "2" and same == "True", (technique, name)
        assert abs(float(kept) - 0.2) < 0.02, (technique, name, kept)
