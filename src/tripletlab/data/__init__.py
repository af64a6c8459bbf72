"""Datasets (bundled, IDX files, image folders, arrays), splits and the P×K batch sampler."""
