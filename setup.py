"""Installs state_of_sparsity and compiles its sparse-matmul TensorFlow op against the installed TensorFlow."""

import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile

import setuptools
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).parent
README = ROOT / "README.md"
OP_DIR = pathlib.Path("state_of_sparsity") / "custom_ops" / "cc"
BUILD_COMMAND = 'pip install "tensorflow>=2.21,<2.22" && pip install --no-build-isolation .'
# Kernel math is compiled once per instruction set and picked at run time, so
# the library runs on any x86-64 CPU (and on others through the generic build).
ISA_FLAGS = {
    "avx512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma",
               "-mtune=skylake-avx512"],
    "avx2": ["-mavx2", "-mfma", "-mtune=haswell"],
    "generic": [],
}


class TensorFlowOpExtension(setuptools.Extension):
    """A TF custom-op library, compiled with the flags of the TensorFlow found at build time."""

    def __init__(self, name, kernel_math, sources):
        super().__init__(name, sources=[str(s) for s in [kernel_math, *sources]])
        self.kernel_math = str(kernel_math)
        self.tf_sources = [str(s) for s in sources]


class BuildTensorFlowOps(build_ext):
    """Builds TensorFlowOpExtensions with g++ and tf.sysconfig's flags (C++17, TF's ABI)."""

    def build_extension(self, ext):
        if not isinstance(ext, TensorFlowOpExtension):
            return super().build_extension(ext)
        try:
            import tensorflow as tf
        except ImportError:
            raise RuntimeError(
                "Building the sparse-matmul op needs TensorFlow at build time, and pip's "
                "isolated build environment has none. Install TensorFlow first and build "
                f"without isolation: `{BUILD_COMMAND}`"
            ) from None
        compile_flags = list(tf.sysconfig.get_compile_flags())
        link_flags = list(tf.sysconfig.get_link_flags())
        cxx = os.environ.get("CXX", "g++")
        common = ["-fPIC", "-O3", "-Wno-deprecated-declarations", "-Wno-interference-size",
                  "-Wno-unknown-warning-option"]
        x86 = platform.machine().lower() in ("x86_64", "amd64")
        isas = ISA_FLAGS if x86 else {"generic": []}
        output = pathlib.Path(self.get_ext_fullpath(ext.name))
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            jobs, objects = [], []
            for isa, flags in isas.items():
                obj = os.path.join(tmp, f"math_{isa}.o")
                jobs.append([cxx, "-c", ext.kernel_math, "-o", obj, *compile_flags, *common,
                             *flags, f"-DSOS_KERNEL_NS={isa}"])
                objects.append(obj)
            for index, source in enumerate(ext.tf_sources):
                obj = os.path.join(tmp, f"tf_{index}.o")
                defines = ["-DSOS_HAVE_X86_KERNELS"] if x86 else []
                jobs.append([cxx, "-c", source, "-o", obj, *compile_flags, *common, *defines])
                objects.append(obj)
            _run_parallel(jobs)
            _run_parallel([[cxx, "-shared", *objects, "-o", str(output), *link_flags]])
        # Also place the library beside the sources (like --inplace): pip builds in the
        # checkout, and tests or `python -m` run from it import the source package.
        in_tree = ROOT / pathlib.Path(self.get_ext_filename(ext.name))
        if in_tree.parent.is_dir() and in_tree.resolve() != output.resolve():
            shutil.copy2(output, in_tree)


def _run_parallel(commands):
    processes = [(c, subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
                 for c in commands]
    failed = []
    for command, process in processes:
        out = process.communicate()[0].decode(errors="replace")
        if process.returncode:
            failed.append(f"$ {' '.join(command)}\n{out}")
    if failed:
        sys.stderr.write("\n".join(failed))
        raise RuntimeError("Compiling the sparse-matmul op failed (compiler output above).")


setuptools.setup(
    name="state_of_sparsity",
    version="0.1.0",
    description=(
        "Sparse neural networks in TensorFlow 2 / Keras 3: magnitude and random "
        "pruning (and more), reproducing 'The State of Sparsity in Deep Neural Networks'."
    ),
    long_description=README.read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["state_of_sparsity", "state_of_sparsity.*"]),
    # The original's shell wrappers ship inside the package, beside the scripts they call.
    package_data={"state_of_sparsity": ["sparse_rn50/evaluate/*.sh", "sparse_transformer/decode/*.sh"]},
    ext_modules=[
        TensorFlowOpExtension(
            "state_of_sparsity.custom_ops._sparse_matmul_ops",
            kernel_math=OP_DIR / "kernels" / "sparse_matmul_cpu.cc",
            sources=[OP_DIR / "kernels" / "sparse_matmul_kernels.cc",
                     OP_DIR / "ops" / "sparse_matmul_ops.cc"],
        )
    ],
    cmdclass={"build_ext": BuildTensorFlowOps},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.12,<4",
        "tensorboard>=2.20,<3",
        "absl-py>=2.1,<3",
        "numpy>=1.26,<3",
        "h5py>=3.10,<4",
        "matplotlib>=3.8,<4",
        # tfds reads datasets already prepared on disk (sparse_rn50); 4.9.10 needs importlib_resources.
        "tensorflow-datasets>=4.9.7,<5",
        "importlib_resources>=6",
        # sparse_transformer: Moses tokenisation and BLEU without Perl, and the SWORD Bible reader.
        "sacrebleu>=2.4,<3",
        "sacremoses>=0.1,<0.3",
        "pysword>=0.2.8,<0.3",
    ],
    extras_require={"test": ["pytest>=8,<10"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
