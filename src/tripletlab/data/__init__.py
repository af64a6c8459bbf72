"""Datasets (bundled, IDX files, image folders, arrays), splits and the P×K batch sampler."""

from tripletlab.data.arrays import from_arrays, load_array_file, load_csv, load_npy_pair, load_npz
from tripletlab.data.bundled import load_digits_dataset
from tripletlab.data.datasets import (
    BUILTIN_DATASETS,
    EmbeddingDataset,
    encode_labels,
    load_dataset,
)
from tripletlab.data.distributed_sampler import DistributedPKSampler
from tripletlab.data.idx import (
    fashion_mnist_dir,
    load_fashion_mnist,
    load_idx_folder,
    read_idx,
    write_idx,
)
from tripletlab.data.image_folder import load_image_folder
from tripletlab.data.sampler import PKSampler, pk_batches
from tripletlab.data.splits import (
    SPLITS,
    Split,
    held_out_classes_split,
    official_split,
    split_dataset,
    split_indices,
    stratified_split,
)

__all__ = [
    "BUILTIN_DATASETS",
    "SPLITS",
    "DistributedPKSampler",
    "EmbeddingDataset",
    "PKSampler",
    "Split",
    "encode_labels",
    "fashion_mnist_dir",
    "from_arrays",
    "held_out_classes_split",
    "load_array_file",
    "load_csv",
    "load_dataset",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_idx_folder",
    "load_image_folder",
    "load_npy_pair",
    "load_npz",
    "official_split",
    "pk_batches",
    "read_idx",
    "split_dataset",
    "split_indices",
    "stratified_split",
    "write_idx",
]
