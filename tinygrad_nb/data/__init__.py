"""Data: CSV files to tensors, datasets, batching and variable-length sequences.

    from tinygrad_nb import data
    table = data.read_csv("iris.csv", target="species")
    table.schema                      # name, type, missing count, vocabulary size per column
    X, y = table.to_tensors()         # float32 features, int64 class codes
    loader = data.DataLoader(data.TensorDataset(X, y), batch_size=32, shuffle=True)

See docs/data.md for a guide.
"""
from .collate import (
           default_collate,
           lengths_to_mask,
           pad_collate,
           pad_sequence,
           padding_waste,
)
from .dataset import Dataset, Subset, TensorDataset, random_split
from .errors import CSVError, CSVProblem
from .loader import BucketBatchSampler, DataLoader, EpochBatchSampler
from .reader import DEFAULT_NA_VALUES, read_csv, sniff_delimiter
from .registry import clear_files_read, files_read
from .table import ColumnNotFoundError, Schema, Table

__all__ = [
           "DEFAULT_NA_VALUES",
           "BucketBatchSampler",
           "CSVError",
           "CSVProblem",
           "ColumnNotFoundError",
           "DataLoader",
           "Dataset",
           "EpochBatchSampler",
           "Schema",
           "Subset",
           "Table",
           "TensorDataset",
           "clear_files_read",
           "default_collate",
           "files_read",
           "lengths_to_mask",
           "pad_collate",
           "pad_sequence",
           "padding_waste",
           "random_split",
           "read_csv",
           "sniff_delimiter",
]
