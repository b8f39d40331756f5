"""The data: CIFAR-10 and CIFAR-100 read safely from their usual forms, the training pipeline that keeps
them on the device, and corrupted copies for measuring calibration under shift."""

from .files import DATASETS, MEAN, NUM_CLASSES, STD, DataError, Split, default_data_dir, load_cifar, load_split

__all__ = ["DATASETS", "MEAN", "NUM_CLASSES", "STD", "DataError", "Split", "default_data_dir", "load_cifar",
           "load_split"]
