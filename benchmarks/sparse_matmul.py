"""Times the sparse-matmul op against dense tf.matmul and tf.sparse for forward, dX and dW passes.

For each (B, K, N) and sparsity s (random unstructured W [K, N]), in one
process and in interleaved rounds (every variant once per round, medians
reported), each variant runs inside a `tf.function` on `--inputs` distinct
input tensors, one call after the other (control dependencies), and returns
every output (Grappler prunes unused ops):
  dense:       the ops autodiff uses: X·W, dY·Wᵀ (transpose_b=True), Xᵀ·dY;
  best dense:  the same with a pre-transposed W for dX (2-3x faster here);
  tf.sparse:   tf.sparse.sparse_dense_matmul forward and dX (one input per
               call: it is 10-50x slower), no SDDMM exists for the update;
  sparse:      this package's ops: forward, dX alone, dW at the nonzeros alone;
               "total" is the forward op + the fused gradient op (dX and dW in
               one sweep), which is what tf.GradientTape runs for a training
               step (dense "total" = its three matmuls).
Each round waits (up to 5 s) for a window in which other processes use
< 0.1 CPU and the run reports how many rounds were contended. Within a round
each variant is called twice back to back and the second call is timed: the
first absorbs waking the intra-op threads after the wait (0.1-0.5 ms here,
which would dominate sub-millisecond sparse ops) and warms caches, as every
step after the first does in a training loop. Also times inference of a 90%-pruned 3-layer MLP (1024 wide): dense Keras
versus `to_sparse_inference`. Writes one CSV row per (B, K, N, sparsity, pass),
a PNG of speedup versus sparsity beside it, and the MLP numbers.

    python benchmarks/sparse_matmul.py                      # all shapes, ~10 min on 2 cores
    python benchmarks/sparse_matmul.py --shapes 256x1024x1024 --sparsities 0.9 --out /tmp/s.csv
    python benchmarks/sparse_matmul.py --dtype bfloat16 --nomlp --out results/custom_ops/sparse_matmul_bf16.csv
"""

import csv
import os
import pathlib
import statistics
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags

import state_of_sparsity as sos
from state_of_sparsity.custom_ops import sparse_matmul_ops as ops
from state_of_sparsity.custom_ops import to_sparse_inference
from state_of_sparsity.custom_ops.sparse_format import SparseWeight

_SHAPES = flags.DEFINE_list("shapes", ["256x1024x1024", "128x512x2048", "64x4096x4096"],
                            "BxKxN problem shapes.")
_SPARSITIES = flags.DEFINE_list("sparsities", ["0.5", "0.8", "0.9", "0.95", "0.98"],
                                "Fractions of zeros in W.")
_OUT = flags.DEFINE_string("out", "results/custom_ops/sparse_matmul.csv", "CSV to write.")
_ROUNDS = flags.DEFINE_integer("rounds", 7, "Interleaved timing rounds.", lower_bound=1)
_INPUTS = flags.DEFINE_integer("inputs", 4, "Distinct inputs (op calls) per timed call.",
                               lower_bound=1)
_MLP = flags.DEFINE_boolean("mlp", True, "Also time the 90%-pruned MLP inference.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "Activation dtype of every variant (the op keeps float32 weights and "
                           "math; dense runs fully in this dtype). tf.sparse is float32 only.")

PASSES = ("forward", "backward", "update", "total")
COLUMNS = ["B", "K", "N", "sparsity", "pass", "dense_ms", "best_dense_ms", "tf_sparse_ms",
           "sparse_ms", "speedup_vs_dense", "speedup_vs_best_dense"]


def parse_shape(text):
    try:
        b, k, n = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise app.UsageError(f"`--shapes` entries must look like 256x1024x1024. Received: {text!r}")
    return b, k, n


def variants(b, k, n, sparsity, count, rng, dtype=tf.float32):
    """{(variant, pass): (tf.function, op calls per call)} for one problem."""
    w = (rng.standard_normal((k, n)) * (rng.random((k, n)) >= sparsity)).astype(np.float32)
    sparse = SparseWeight.from_dense(w)
    sparse = sparse._replace(**{f: tf.constant(getattr(sparse, f)) for f in sparse._fields[:-1]})
    dense, dense_t = tf.cast(w, dtype), tf.cast(w.T.copy(), dtype)
    xs = [tf.cast(rng.standard_normal((b, k)).astype(np.float32), dtype) for _ in range(count)]
    dys = [tf.cast(rng.standard_normal((b, n)).astype(np.float32), dtype) for _ in range(count)]

    def timed(fn, one=False):
        pairs = list(zip(xs, dys))[: 1 if one else count]
        return serialized(fn, pairs), len(pairs)

    functions = {
        ("dense", "forward"): timed(lambda x, dy: tf.matmul(x, dense)),
        ("dense", "backward"): timed(lambda x, dy: tf.matmul(dy, dense, transpose_b=True)),
        ("dense", "update"): timed(lambda x, dy: tf.matmul(x, dy, transpose_a=True)),
        ("best_dense", "backward"): timed(lambda x, dy: tf.matmul(dy, dense_t)),
        ("sparse", "forward"): timed(lambda x, dy: ops.sparse_matmul(x, sparse)),
        ("sparse", "gradient"): timed(lambda x, dy: ops.sparse_matmul_grad(x, dy, sparse)),
    }
    if dtype == tf.float32:  # float32-only kernels: tf.sparse, the standalone dX and dW ops
        tf_sparse = tf.sparse.from_dense(tf.constant(w))
        functions.update({
            ("tf_sparse", "forward"): timed(
                lambda x, dy: tf.sparse.sparse_dense_matmul(x, tf_sparse), True),
            ("tf_sparse", "backward"): timed(
                lambda x, dy: tf.sparse.sparse_dense_matmul(dy, tf_sparse, adjoint_b=True), True),
            ("sparse", "backward"): timed(lambda x, dy: ops.sparse_matmul_grad_input(dy, sparse)),
            ("sparse", "update"): timed(lambda x, dy: ops.sparse_matmul_grad_values(x, dy, sparse)),
        })
    return int(sparse.values.shape[0]), functions


def serialized(fn, args):
    """A tf.function calling `fn(*a)` for each `a` in `args`, each call after the previous one.

    Independent calls would otherwise run concurrently on the inter-op pool
    and fight over the 2 cores and their caches (consecutive layers of a
    network do not); every output is returned so Grappler prunes nothing.
    """
    def run():
        outputs = []
        for a in args:
            with tf.control_dependencies(tf.nest.flatten(outputs[-1:])):
                outputs.append(fn(*a))
        return outputs

    return tf.function(run)


def _cpu_seconds():
    """(busy CPU seconds of the whole machine, CPU seconds of this process)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    times = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), times.user + times.system


def wait_for_quiet(max_wait_s=5.0, window_s=0.25, threshold=0.1):
    """Waits until other processes use < `threshold` CPUs; True if it got quiet.

    Other jobs on a 2-core machine slow a multithreaded op far more than a
    single matmul, so rounds run only in quiet windows when there are any.
    """
    if not os.path.exists("/proc/stat"):
        return True
    deadline = time.monotonic() + max_wait_s
    while True:
        busy0, own0 = _cpu_seconds()
        time.sleep(window_s)
        busy1, own1 = _cpu_seconds()
        if (busy1 - busy0) - (own1 - own0) < threshold * window_s:
            return True
        if time.monotonic() > deadline:
            return False


QUIET = {"quiet": 0, "contended": 0}


def median_ms(functions, rounds):
    """Median milliseconds per op call of each function, measured in interleaved rounds."""
    for fn, _ in functions.values():
        fn()  # trace and warm up
    samples = {key: [] for key in functions}
    for r in range(rounds):
        QUIET["quiet" if wait_for_quiet() else "contended"] += 1
        keys = list(functions) if r % 2 == 0 else list(reversed(functions))
        for key in keys:
            fn, calls = functions[key]
            fn()  # untimed: wakes the intra-op threads and caches the weights, as in a training loop
            start = time.perf_counter()
            fn()
            samples[key].append((time.perf_counter() - start) * 1e3 / calls)
    return {key: statistics.median(values) for key, values in samples.items()}


def rows_for(b, k, n, sparsity, ms):
    ms[("best_dense", "forward")] = ms[("dense", "forward")]
    ms[("best_dense", "update")] = ms[("dense", "update")]
    rows = []
    for p in PASSES:
        def get(variant):
            if p == "total" and (variant, "gradient") in ms:
                # What a training step runs: the forward op + the fused gradient op.
                return ms[(variant, "forward")] + ms[(variant, "gradient")]
            if p == "total":
                parts = [ms.get((variant, q)) for q in PASSES[:3]]
                return None if None in parts else sum(parts)
            return ms.get((variant, p))

        d, best, tfs, sp = get("dense"), get("best_dense"), get("tf_sparse"), get("sparse")
        rows.append({"B": b, "K": k, "N": n, "sparsity": sparsity, "pass": p,
                     "dense_ms": d, "best_dense_ms": best, "tf_sparse_ms": tfs, "sparse_ms": sp,
                     "speedup_vs_dense": None if sp is None else d / sp,
                     "speedup_vs_best_dense": None if sp is None else best / sp})
    return rows


def print_rows(rows, nnz):
    b = rows[0]["B"]
    print(f"\nB,K,N={b},{rows[0]['K']},{rows[0]['N']}  sparsity={rows[0]['sparsity']}  nnz={nnz}")
    print(f"  {'pass':9s}{'dense':>9s}{'best':>9s}{'tf.sparse':>11s}{'op':>9s}"
          f"{'x dense':>9s}{'x best':>8s}{'x tf.sp':>9s}{'op GF/s':>9s}")
    for row in rows:
        flops = 2 * b * nnz * (3 if row["pass"] == "total" else 1)
        tfs, sp = row["tf_sparse_ms"], row["sparse_ms"]
        if sp is None:  # no op for this pass and dtype
            print(f"  {row['pass']:9s}{row['dense_ms']:9.3f}{row['best_dense_ms']:9.3f}        n/a")
            continue
        print(f"  {row['pass']:9s}{row['dense_ms']:9.3f}{row['best_dense_ms']:9.3f}"
              f"{(f'{tfs:11.2f}' if tfs else '        n/a')}{row['sparse_ms']:9.3f}"
              f"{row['speedup_vs_dense']:8.2f}x{row['speedup_vs_best_dense']:7.2f}x"
              f"{(f'{tfs / sp:8.1f}x' if tfs else '      n/a')}"
              f"{flops / sp / 1e6:9.1f}")


def mlp_inference(rounds, batch=256, width=1024, sparsity=0.9):
    """(dense Keras ms, converted ms) per batch for a 90%-pruned 3-layer MLP."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((width,))] + [
        keras.layers.Dense(width, activation="relu") for _ in range(2)] + [keras.layers.Dense(width)])
    pruned = sos.sparsify(model, "magnitude_pruning", sos.ConstantSparsity(sparsity, 0, frequency=1))
    sos.update_masks(pruned, 0)
    dense = sos.strip(pruned)  # plain Keras with the zeros baked in
    converted = to_sparse_inference(pruned)
    rng = np.random.default_rng(1)
    xs = [tf.constant(rng.standard_normal((batch, width)).astype(np.float32)) for _ in range(4)]
    y_dense = dense(xs[0], training=False)
    np.testing.assert_allclose(converted(xs[0]), y_dense, rtol=1e-4, atol=1e-4)
    functions = {name: (serialized(lambda x, m=m: m(x, training=False), [(x,) for x in xs]), len(xs))
                 for name, m in (("dense", dense), ("converted", converted))}
    ms = median_ms(functions, rounds)
    return ms["dense"], ms["converted"]


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, p in zip(axes, ("forward", "total")):
        for shape in sorted({(r["B"], r["K"], r["N"]) for r in rows}):
            points = sorted((r["sparsity"], r["speedup_vs_dense"]) for r in rows
                            if (r["B"], r["K"], r["N"]) == shape and r["pass"] == p)
            ax.plot(*zip(*points), marker="o", label="B,K,N=%d,%d,%d" % shape)
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set(title=f"{p} (op vs dense tf.matmul)", xlabel="sparsity", ylabel="speedup")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    shapes = [parse_shape(s) for s in _SHAPES.value]
    sparsities = [float(s) for s in _SPARSITIES.value]
    print(f"TensorFlow {tf.__version__}, intra-op threads "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}")
    rng = np.random.default_rng(0)
    rows = []
    for b, k, n in shapes:
        for sparsity in sparsities:
            nnz, functions = variants(b, k, n, sparsity, _INPUTS.value, rng,
                                      tf.as_dtype(_DTYPE.value))
            config_rows = rows_for(b, k, n, sparsity, median_ms(functions, _ROUNDS.value))
            print_rows(config_rows, nnz)
            rows.extend(config_rows)
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: (f"{value:.4f}" if isinstance(value, float) and key != "sparsity"
                                   else ("" if value is None else value))
                             for key, value in row.items()})
    plot(rows, out.with_suffix(".png"))
    print(f"\nWrote {out} and {out.with_suffix('.png')}; rounds in a quiet window: "
          f"{QUIET['quiet']}, contended (waited 5 s, ran anyway): {QUIET['contended']}")
    if _MLP.value:
        dense_ms, sparse_ms = mlp_inference(_ROUNDS.value)
        print(f"\n90%-pruned MLP 3x1024, batch 256, inference: dense Keras {dense_ms:.3f} ms, "
              f"to_sparse_inference {sparse_ms:.3f} ms, speedup {dense_ms / sparse_ms:.2f}x")
        mlp_path = out.with_name(out.stem + "_mlp.csv")
        mlp_path.write_text("batch,width,layers,sparsity,dense_ms,sparse_ms,speedup\n"
                            f"256,1024,3,0.9,{dense_ms:.4f},{sparse_ms:.4f},"
                            f"{dense_ms / sparse_ms:.4f}\n")


if __name__ == "__main__":
    app.run(main)
