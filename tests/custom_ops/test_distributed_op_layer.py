"""OpSparseDense under `tf.distribute.MirroredStrategy` (two logical CPUs) trains like masked SparseDense."""

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
    from state_of_sparsity.custom_ops import OpSparseDense
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 20)).astype("float32"), rng.normal(size=(64, 3)).astype("float32")
    losses, kernels = {}, {}
    for cls in (OpSparseDense, sos.SparseDense):
        keras.utils.set_random_seed(1)
        with strategy.scope():
            # Pruned to 80% at steps 0 and 2, so the op's pattern is rebuilt during training.
            technique = sos.MagnitudePruning(sos.PolynomialDecay(0.8, 0, 2, 2))
            model = keras.Sequential([keras.Input((20,)), cls(16, activation="relu", technique=technique),
                                      keras.layers.Dense(3)])
            model.compile(keras.optimizers.SGD(0.05), "mse")
        history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[sos.PruningCallback()])
        losses[cls.__name__] = history.history["loss"]
        layer = model.layers[0]
        masks = [v.numpy() for v in strategy.experimental_local_results(layer.mask.value)]
        print("MASKS", cls.__name__, all(np.array_equal(masks[0], m) for m in masks), masks[0].mean())
        kernels[cls.__name__] = layer.kernel.numpy() * layer.mask.numpy()
    print("LOSS", *losses["OpSparseDense"], "|", *losses["SparseDense"])
    print("KERNEL_DIFF", float(np.abs(kernels["OpSparseDense"] - kernels["SparseDense"]).max()))
""")


def test_op_layer_trains_like_masked_dense_on_two_replicas():
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()
             if line.split() and line.split()[0] in ("LOSS", "KERNEL_DIFF")}
    masks = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("MASKS")]
    assert [m[1] for m in masks] == ["True", "True"]
    assert all(abs(float(m[2]) - 0.2) < 0.02 for m in masks)
    op, dense = " ".join(lines["LOSS"]).split(" | ")
    op, dense = [float(v) for v in op.split()], [float(v) for v in dense.split()]
    assert len(op) == 3 and op[-1] < op[0]
    assert all(abs(a - b) <= 1e-4 * max(1.0, abs(b)) for a, b in zip(op, dense)), (op, dense)
    assert float(lines["KERNEL_DIFF"][0]) < 1e-4
