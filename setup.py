"""Installs state_of_sparsity: sparse training for TensorFlow 2 and Keras 3."""

import pathlib

import setuptools

README = pathlib.Path(__file__).parent / "README.md"

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
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.12,<4",
        "tensorboard>=2.20,<3",
        "absl-py>=2.1,<3",
        "numpy>=1.26,<3",
        "h5py>=3.10,<4",
        "matplotlib>=3.8,<4",
    ],
    extras_require={"test": ["pytest>=8,<10"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
