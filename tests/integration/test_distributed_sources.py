"""Sharded sources and the row-range reader, in one process (no process group needed)."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from tests.integration.faults import KillAtStep

from dinrec.experiment.rank_rows import shard_range, user_boundary
from dinrec.training.batches import TensorBatches
from dinrec.training.distributed.launch import read_env
from dinrec.training.distributed.sharding import DistributedBatches, epoch_permutation, shard_source


def features(n: int) -> dict[str, torch.Tensor]:
    return {"row": torch.arange(n), "x": torch.arange(n, dtype=torch.float32) * 2}


def test_ranks_split_each_global_batch_of_tensor_batches() -> None:
    n, batch, world = 40, 8, 2
    whole = TensorBatches(features(n), torch.zeros(n), batch, shuffle=True, seed=5)
    ranks = [DistributedBatches.from_tensor_batches(whole, rank=r, world_size=world)
             for r in range(world)]
    for epoch in (0, 3):
        whole.set_epoch(epoch)
        for r in ranks:
            r.set_epoch(epoch)
        per_rank = [[f["row"] for f, _ in r] for r in ranks]
        for k, (feats, _) in enumerate(whole):
            together = torch.cat([per_rank[r][k] for r in range(world)])
            assert sorted(together.tolist()) == sorted(feats["row"].tolist())


def test_padding_wraps_to_a_multiple_of_the_world_and_row_ids_name_the_duplicates() -> None:
    ranks = [DistributedBatches(features(5), torch.zeros(5), 2, rank=r, world_size=2)
             for r in range(2)]
    assert [r.row_ids().tolist() for r in ranks] == [[0, 2, 4], [1, 3, 0]]
    assert [len(r) for r in ranks] == [2, 2]
    rows = np.concatenate([r.row_ids() for r in ranks])
    assert sorted(set(rows.tolist())) == [0, 1, 2, 3, 4]
    # MBA counts each real row once: rank r's real rows are r, r + W, ...
    assert [r.real_rows().tolist() for r in ranks] == [[0, 2, 4], [1, 3]]


def test_epoch_permutation_is_the_order_of_tensor_batches() -> None:
    whole = TensorBatches(features(9), torch.zeros(9), 9, shuffle=True, seed=2)
    whole.set_epoch(4)
    (feats, _), = list(whole)
    assert torch.equal(feats["row"], epoch_permutation(9, 2, 4))


def test_shard_source_alone_returns_the_source() -> None:
    whole = TensorBatches(features(4), torch.zeros(4), 2)
    assert shard_source(whole) is whole


def test_shard_ranges_cover_the_rows_once() -> None:
    ranges = [shard_range(10, r, 3) for r in range(3)]
    assert ranges == [(0, 3), (3, 6), (6, 10)]


def test_user_boundary_moves_to_the_start_of_the_next_user(tmp_path) -> None:
    users = np.array([1, 1, 1, 2, 2, 3, 3, 3, 3, 4])
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"user_key": users}), path, row_group_size=3)
    assert user_boundary(path, 0, "user_key") == 0
    assert user_boundary(path, 3, "user_key") == 3  # already a boundary
    assert user_boundary(path, 4, "user_key") == 5
    assert user_boundary(path, 6, "user_key") == 9  # across row groups
    assert user_boundary(path, 10, "user_key") == 10


def test_torchrun_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    env = read_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                    "TORCHELASTIC_RESTART_COUNT": "1"})
    assert (env.rank, env.world_size, env.local_rank, env.restart_count) == (3, 4, 1, 1)
    assert env.is_distributed and not env.is_main
    assert not read_env({}).is_distributed
    with pytest.raises(ValueError, match="RANK=4"):
        read_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_fault_injection_fires_on_the_first_attempt_only() -> None:
    first = read_env({"RANK": "1", "WORLD_SIZE": "2"})
    again = read_env({"RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RESTART_COUNT": "1"})
    assert KillAtStep("1:7", first).kill_at == 7
    assert KillAtStep("1:7", again).kill_at is None
    assert KillAtStep("0:7", first).kill_at is None
    assert KillAtStep("7", first).kill_at == 7


def test_rank_row_ranges_hold_out_the_validation_rows_of_one_process(tmp_path) -> None:
    from dinrec.data.build import build_dataset
    from dinrec.data.dataset import load_dataset
    from dinrec.data.splits import last_fraction_mask
    from dinrec.experiment.rank_rows import read_rows, split_rows
    from dinrec.experiment.split_arrays import read_split

    build_dataset("synthetic", None, "click-log", tmp_path / "d", maxlen=5, row_group_size=97,
                  reader_options={"n_users": 40, "n_items": 80, "n_categories": 6,
                                  "mean_impressions": 15})
    dataset = load_dataset(tmp_path / "d")
    whole = read_split(dataset, "train")
    held = np.flatnonzero(last_fraction_mask(whole.groups, 0.2))
    parts, ends = [], []
    for rank in range(3):
        lo, hi = split_rows(dataset, "train", rank, 3)
        part = read_rows(dataset, "train", lo, hi)
        np.testing.assert_array_equal(part.y, whole.y[lo:hi])
        for name, values in part.x.items():
            np.testing.assert_array_equal(values, whole.x[name][lo:hi])
        parts.append(lo + np.flatnonzero(last_fraction_mask(part.groups, 0.2)))
        ends.append((lo, hi))
    assert ends[0][0] == 0 and ends[-1][1] == len(whole)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ends))  # contiguous
    np.testing.assert_array_equal(np.concatenate(parts), held)
