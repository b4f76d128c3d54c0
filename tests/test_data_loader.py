"""Dataset, DataLoader (shuffling, reproducibility, resuming in a fresh process), collate, padding and bucketing."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import namedtuple

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import datasets
from tinygrad_nb.data import (
    BucketBatchSampler,
    DataLoader,
    Dataset,
    EpochBatchSampler,
    Subset,
    TensorDataset,
    default_collate,
    lengths_to_mask,
    pad_collate,
    pad_sequence,
    padding_waste,
    random_split,
)
from tinygrad_nb.random import Generator


def labels_of(loader: DataLoader) -> list[list[int]]:
    return [batch[1].tolist() for batch in loader]


def make_loader(n: int = 23, **kwargs) -> DataLoader:
    return DataLoader(TensorDataset(tg.arange(n).float().reshape(n, 1), tg.arange(n)), **kwargs)


# -- order ------------------------------------------------------------------------------------------------------------
def test_unshuffled_batches_len_and_drop_last() -> None:
    loader = make_loader(10, batch_size=4)
    assert len(loader) == 3 and labels_of(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    loader = make_loader(10, batch_size=4, drop_last=True)
    assert len(loader) == 2 and labels_of(loader) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    x, y = next(iter(make_loader(10, batch_size=4)))
    assert x.shape == (4, 1) and x.dtype == np.float32 and y.dtype == np.int64


def test_same_seed_same_order_other_seed_other_order() -> None:
    tg.manual_seed(7)
    first = make_loader(batch_size=5, shuffle=True)
    epochs_a = [labels_of(first) for _ in range(3)]
    tg.manual_seed(7)
    again = make_loader(batch_size=5, shuffle=True)
    assert [labels_of(again) for _ in range(3)] == epochs_a
    tg.manual_seed(8)
    assert labels_of(make_loader(batch_size=5, shuffle=True)) != epochs_a[0]
    assert epochs_a[0] != epochs_a[1]  # a new order every epoch
    for epoch in epochs_a:
        assert sorted(i for batch in epoch for i in batch) == list(range(23))


def test_explicit_generator_and_independence_from_other_draws() -> None:
    a = make_loader(batch_size=4, shuffle=True, generator=Generator(3))
    tg.randn(100)  # other draws from the central RNG do not change a loader's order
    b = make_loader(batch_size=4, shuffle=True, generator=Generator(3))
    assert labels_of(a) == labels_of(b)


def test_tensor_dataset_fast_path_matches_per_sample_collate() -> None:
    X, y = tg.randn(17, 3), tg.arange(17)
    fast = DataLoader(TensorDataset(X, y), batch_size=5, shuffle=True, generator=Generator(1))
    slow = DataLoader(TensorDataset(X, y), batch_size=5, shuffle=True, generator=Generator(1),
                      collate_fn=default_collate)
    for (xf, yf), (xs, ys) in zip(fast, slow):
        assert np.array_equal(xf.numpy(), xs.numpy()) and np.array_equal(yf.numpy(), ys.numpy())


def test_state_dict_resumes_mid_epoch_in_the_same_process() -> None:
    tg.manual_seed(0)
    reference = make_loader(batch_size=4, shuffle=True)
    expected = [labels_of(reference) for _ in range(3)]
    tg.manual_seed(0)
    loader = make_loader(batch_size=4, shuffle=True)
    labels_of(loader)
    it = iter(loader)
    seen = [next(it)[1].tolist() for _ in range(2)]
    state = json.loads(json.dumps(loader.state_dict()))  # plain data
    assert state["epoch"] == 1 and state["position"] == 2
    tg.manual_seed(123)  # a different seed: the state alone decides the order
    resumed = make_loader(batch_size=4, shuffle=True)
    resumed.load_state_dict(state)
    assert seen + labels_of(resumed) == expected[1]
    assert labels_of(resumed) == expected[2]


def test_state_after_a_finished_epoch_starts_the_next() -> None:
    loader = make_loader(batch_size=10, shuffle=True, generator=Generator(2))
    first = labels_of(loader)
    state = loader.state_dict()
    assert (state["epoch"], state["position"]) == (1, 0)
    second = labels_of(loader)
    fresh = make_loader(batch_size=10, shuffle=True, generator=Generator(99))
    fresh.load_state_dict(state)
    assert labels_of(fresh) == second != first


def test_load_state_dict_rejects_a_different_dataset() -> None:
    state = make_loader(batch_size=4, shuffle=True).state_dict()
    with pytest.raises(ValueError, match="num_samples=23"):
        make_loader(30, batch_size=4, shuffle=True).load_state_dict(state)


RESUME_SCRIPT = textwrap.dedent("""
    import json, sys
    import tinygrad_nb as tg
    from tinygrad_nb.data import DataLoader, TensorDataset
    mode, path = sys.argv[1], sys.argv[2]
    tg.manual_seed(int(sys.argv[3]))
    loader = DataLoader(TensorDataset(tg.arange(29)), batch_size=4, shuffle=True)
    if mode == "full":
        print(json.dumps([[b[0].tolist() for b in loader] for _ in range(3)]))
    elif mode == "stop":
        [b for b in loader]
        it = iter(loader)
        done = [next(it)[0].tolist() for _ in range(3)]
        with open(path, "w") as f:
            json.dump({"state": loader.state_dict(), "done": done}, f)
    else:
        with open(path) as f:
            saved = json.load(f)
        loader.load_state_dict(saved["state"])
        print(json.dumps([[b[0].tolist() for b in loader] for _ in range(2)]))
""")


def test_resume_mid_epoch_in_a_fresh_process(tmp_path) -> None:
    def run(*args: str) -> str:
        out = subprocess.run([sys.executable, "-c", RESUME_SCRIPT, *args], capture_output=True, text=True,
                             timeout=120, check=True)
        return out.stdout
    state_file = str(tmp_path / "loader.json")
    full = json.loads(run("full", state_file, "5"))
    run("stop", state_file, "5")
    resumed = json.loads(run("resume", state_file, "6"))  # another seed: the saved state decides
    with open(state_file) as f:
        done = json.load(f)["done"]
    assert done + resumed[0] == full[1]
    assert resumed[1] == full[2]


# -- collate ----------------------------------------------------------------------------------------------------------
class Pairs(Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int):
        return {"x": np.full(2, i, dtype=np.float32), "label": i % 2, "weight": 0.5 * i, "name": f"s{i}",
                "flag": bool(i % 3), "pair": (tg.tensor([i, i]), i)}


def test_default_collate_structures() -> None:
    batch = next(iter(DataLoader(Pairs(), batch_size=3)))
    assert batch["x"].shape == (3, 2) and batch["x"].dtype == np.float32
    assert batch["label"].tolist() == [0, 1, 0] and batch["label"].dtype == np.int64
    assert batch["weight"].dtype == np.float32 and batch["weight"].tolist() == [0.0, 0.5, 1.0]
    assert batch["name"] == ["s0", "s1", "s2"] and batch["flag"].tolist() == [False, True, True]
    assert isinstance(batch["pair"], tuple) and batch["pair"][0].shape == (3, 2)
    Point = namedtuple("Point", "x y")
    assert default_collate([Point(1, 2.0), Point(3, 4.0)]).x.tolist() == [1, 3]
    with pytest.raises(ValueError, match="different shapes.*pad_collate"):
        default_collate([tg.tensor([1, 2]), tg.tensor([3])])
    with pytest.raises(TypeError, match="cannot batch"):
        default_collate([object()])


def test_subset_and_random_split() -> None:
    dataset = TensorDataset(tg.arange(10))
    tg.manual_seed(0)
    a, b = random_split(dataset, [0.7, 0.3])
    tg.manual_seed(0)
    a2, _ = random_split(dataset, [7, 3])
    assert len(a) == 7 and len(b) == 3 and a.indices.tolist() == a2.indices.tolist()
    assert sorted(a.indices.tolist() + b.indices.tolist()) == list(range(10))
    batch = next(iter(DataLoader(a, batch_size=7)))
    assert batch[0].tolist() == a.indices.tolist()
    assert Subset(Pairs(), [4, 5]).get_batch(np.array([1]))["label"].tolist() == [1]


# -- padding and masks ------------------------------------------------------------------------------------------------
def test_pad_sequence_values_and_masks() -> None:
    seqs = [tg.tensor([1, 2, 3]), tg.tensor([4]), tg.tensor([5, 6])]
    padded = pad_sequence(seqs, batch_first=True, padding_value=-1)
    assert padded.tolist() == [[1, 2, 3], [4, -1, -1], [5, 6, -1]] and padded.dtype == np.int64
    time_major, mask = pad_sequence(seqs, return_mask=True)
    assert time_major.shape == (3, 3) and time_major.tolist() == [[1, 4, 5], [2, 0, 6], [3, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, True], [True, False, False]]
    features = pad_sequence([tg.ones(2, 4), tg.ones(3, 4)], batch_first=True)
    assert features.shape == (2, 3, 4) and features.numpy()[0, 2].tolist() == [0, 0, 0, 0]
    assert lengths_to_mask([2, 0, 1]).tolist() == [[True, True], [False, False], [True, False]]
    assert lengths_to_mask(tg.tensor([1]), max_len=3, batch_first=False).shape == (3, 1)
    with pytest.raises(ValueError, match="sequence 1 has shape"):
        pad_sequence([tg.ones(2, 4), tg.ones(2, 3)])


def test_pad_sequence_passes_gradients() -> None:
    a = tg.tensor([1.0, 2.0], requires_grad=True)
    b = tg.tensor([3.0], requires_grad=True)
    (pad_sequence([a, b], batch_first=True) * tg.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    assert a.grad.tolist() == [1.0, 2.0] and b.grad.tolist() == [3.0]


def test_pad_collate() -> None:
    padded, mask, labels = pad_collate([(tg.tensor([1, 2, 3]), 0), (tg.tensor([4]), 1)])
    assert padded.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.sum(dim=1).tolist() == [3, 1]
    assert labels.tolist() == [0, 1]


# -- bucketing ------------------------------------------------------------------------------------------------------
def test_bucketing_wastes_less_padding_than_random_batches() -> None:
    seqs, _ = datasets.sequences()
    lengths = [len(s) for s in seqs]
    assert min(lengths) >= 2 and max(lengths) <= 40 and len(seqs) == 400
    random_batches = EpochBatchSampler(len(seqs), 16, shuffle=True, generator=Generator(0)).batches(0)
    bucket = BucketBatchSampler(lengths, 16, generator=Generator(0))
    bucket_batches = bucket.batches(0)
    assert sorted(np.concatenate(bucket_batches).tolist()) == list(range(400))  # every sample once
    assert len(bucket) == len(bucket_batches) == 25
    waste_random, waste_bucket = padding_waste(random_batches, lengths), padding_waste(bucket_batches, lengths)
    assert waste_bucket < 0.1
    assert waste_random > 0.3
    assert [b.tolist() for b in bucket.batches(1)] != [b.tolist() for b in bucket_batches]  # reshuffled per epoch


def test_dataloader_bucket_by_with_pad_collate() -> None:
    seqs, labels = datasets.sequences()

    class Sequences(Dataset):
        def __len__(self) -> int:
            return len(seqs)

        def __getitem__(self, i: int):
            return seqs[i], int(labels[i].item())

    tg.manual_seed(0)
    loader = DataLoader(Sequences(), batch_size=32, shuffle=True, collate_fn=pad_collate,
                        bucket_by=lambda sample: len(sample[0]))
    total = 0
    for padded, mask, y in loader:
        assert padded.shape == mask.shape and padded.shape[0] == len(y)
        lengths = mask.sum(dim=1).numpy()
        assert lengths.max() == padded.shape[1] and lengths.max() - lengths.min() <= 6
        total += len(y)
    assert total == 400
    state = loader.state_dict()
    assert state["sampler"]["type"] == "BucketBatchSampler"


def test_subset_accepts_ranges_slices_and_lists_of_positions() -> None:
    x = tg.arange(10).float().reshape(5, 2)
    y = tg.arange(5)
    subset = Subset(TensorDataset(x, y), [4, 0, 2])
    xb, yb = subset[range(3)]
    assert yb.tolist() == [4, 0, 2] and xb.tolist() == [[8.0, 9.0], [0.0, 1.0], [4.0, 5.0]]
    assert subset[1:][1].tolist() == [0, 2]
    assert subset[[2]][1].tolist() == [2]
    assert subset[0][1].item() == 4
