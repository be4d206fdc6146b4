"""Readers for datasets stored on disk in their original format."""

from state_of_sparsity.datasets.fashion_mnist import create_split
from state_of_sparsity.datasets.fashion_mnist import load_split
from state_of_sparsity.datasets.fashion_mnist import read_idx
from state_of_sparsity.datasets.fashion_mnist import split_paths
