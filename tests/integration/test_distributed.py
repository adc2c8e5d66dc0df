"""DDP on 2 gloo processes on CPU against one process: same batches, same weights, same metrics.

Each test spawns two ranks (torch.multiprocessing, rendezvous on a free 127.0.0.1 port);
the ranks save what they computed, the test process compares it with a single-process run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.multiprocessing as mp
from tests.integration.distributed_setup import (
    din_columns,
    free_port,
    make_data,
    rank_process,
    tensor_batches,
)

from dinrec.models import DIN
from dinrec.training.batches import TensorBatches

WORLD = 2
N_TRAIN, N_TEST = 128, 51  # 51: the evaluation shards are padded by one duplicate row
GLOBAL_BATCH, EPOCHS = 32, 3  # 4 steps per epoch, 12 steps
# The same arithmetic up to float32 summation order (per-rank means averaged by all-reduce vs
# one batch mean; Dice's statistics summed per rank): after 12 Adam steps the weights (~0.1 to
# 0.5) differ by at most ~2e-6 (Adam divides small gradients by their own scale, so their
# rounding shows in the update). Metrics agree to 1e-6.
ATOL = 1e-5


def make_model(sparse: bool = False) -> Any:
    cols = din_columns(item_dim=6, cate_dim=3)
    if sparse:  # SGD takes sparse gradients; no embedding L2 (it would make them dense)
        model = DIN(cols, ["item_id", "cate_id"], dnn_hidden_units=(16, 8),
                    att_hidden_size=(8, 4), l2_reg_embedding=0.0, sparse_embeddings=True, seed=3)
        model.compile(torch.optim.SGD(model.parameters(), lr=0.5), metrics=["auc", "gauc"])
    else:  # the paper's DIN: Dice in attention and MLP, mini-batch aware regularization
        # init_std 0.05, not DeepCTR's 1e-4: with 1e-4 embeddings the MLP's pre-activations
        # vary by ~1e-4 across the batch, Dice divides by their std (~eps) and amplifies the
        # float32 rounding of any reordered sum by ~1e4 (one process against itself with
        # another summation order differs as much); 0.05 compares the algorithms.
        model = DIN(cols, ["item_id", "cate_id"], dnn_hidden_units=(16, 8),
                    att_hidden_size=(8, 4), dnn_activation="dice", att_activation="dice",
                    embedding_regularization="mba", mba_lambda=0.05, init_std=0.05, seed=3)
        model.compile("adam", metrics=["auc", "gauc"], lr=1e-2)
    return model


def sources(model: Any) -> tuple[TensorBatches, TensorBatches]:
    x, y = make_data(N_TRAIN, 0)
    xt, yt = make_data(N_TEST, 1)
    train = tensor_batches(model, x, y, GLOBAL_BATCH, shuffle=True, seed=7)
    test = tensor_batches(model, xt, yt, 8)
    return train, test


def single_process(sparse: bool = False) -> dict[str, Any]:
    torch.manual_seed(0)
    model = make_model(sparse)
    train, test = sources(model)
    history = model.trainer.fit(train, EPOCHS, verbose=0)
    return {"state": model.state_dict(), "test": model.trainer.evaluate(test),
            "history": history.history}


# The Python-level collectives a training step can issue (DDP's own bucket all-reduce runs
# in C++ and is seen only through the communication hook, which calls dist.all_reduce).
COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "broadcast",
               "_broadcast_coalesced")
DICE_LAYERS = 4  # make_model: attention (8, 4) and MLP (16, 8), all Dice


def count_step_collectives(trainer: Any) -> list[int]:
    """Patch torch.distributed so each training step records how many collectives it ran."""
    import torch.distributed as dist

    calls = [0]

    def counting(call: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            return call(*args, **kwargs)
        return counted

    for name in COLLECTIVES:
        setattr(dist, name, counting(getattr(dist, name)))
    per_step: list[int] = []
    step = trainer.train_step

    def train_step(feats: Any, labels: Any) -> Any:
        calls[0] = 0
        out = step(feats, labels)
        per_step.append(calls[0])
        return out

    trainer.train_step = train_step
    return per_step


def _ddp_worker(rank: int, port: int, out: str, sparse_sync: str | None,
                options: dict[str, Any]) -> None:
    from dinrec.training.distributed.ddp import assert_same_parameters, wrap_trainer
    from dinrec.training.distributed.sharding import DistributedBatches

    with rank_process(rank, port, WORLD):
        torch.manual_seed(0)
        model = make_model(sparse=sparse_sync is not None)
        trainer = wrap_trainer(model.trainer, sparse_sync=sparse_sync or "auto", **options)
        per_step = count_step_collectives(trainer)
        train, test = sources(model)
        sharded = DistributedBatches.from_tensor_batches(train)
        history = trainer.fit(sharded, EPOCHS, verbose=0)
        assert_same_parameters(model)
        result = trainer.evaluate(DistributedBatches(test.features, test.labels, 4))
        torch.save({"state": model.state_dict(), "test": result, "history": history.history,
                    "steps": trainer.global_step, "collectives": per_step},
                   Path(out) / f"rank{rank}.pt")


def run_ranks(tmp_path: Path, sparse_sync: str | None = None,
              **options: Any) -> list[dict[str, Any]]:
    mp.spawn(_ddp_worker, args=(free_port(), str(tmp_path), sparse_sync, options),
             nprocs=WORLD)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def assert_close_states(single: dict[str, torch.Tensor], ddp: dict[str, torch.Tensor]) -> None:
    assert single.keys() == ddp.keys()
    for name, value in single.items():
        torch.testing.assert_close(ddp[name], value, atol=ATOL, rtol=0, msg=name)


@pytest.mark.parametrize(("mba_ids", "local_reduce"),
                         [("bucket", None), ("gather", None), ("bucket", False)])
def test_ddp_over_two_ranks_equals_one_process_with_the_global_batch(
    tmp_path: Path, mba_ids: str, local_reduce: bool | None
) -> None:
    single = single_process()
    ranks = run_ranks(tmp_path, mba_ids=mba_ids, local_reduce=local_reduce)
    # per step: the one gradient bucket with MBA's ids riding in it, or the ids' two
    # all-gathers and the bucket all-reduced by DDP's C++ default hook (not counted here);
    # Dice's forward and backward sums per layer go through shared memory (both ranks on
    # this machine: None picks it), or are gloo all-reduces too
    expected = (1 if mba_ids == "bucket" else 2) + (2 * DICE_LAYERS if local_reduce is False
                                                    else 0)
    assert ranks[0]["collectives"] == [expected] * ranks[0]["steps"]
    # parameters identical on both ranks (assert_same_parameters checked it bitwise too)
    for name, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][name]), name
    assert ranks[0]["steps"] == EPOCHS * N_TRAIN // GLOBAL_BATCH
    assert_close_states(single["state"], ranks[0]["state"])
    # evaluation gathered from both ranks, the padded duplicate dropped: one process's metrics
    for rank in ranks:
        assert rank["test"] == pytest.approx(single["test"], abs=1e-6)


def test_dice_sums_through_shared_memory_equal_gloo_bit_for_bit(tmp_path: Path) -> None:
    (tmp_path / "shm").mkdir()
    (tmp_path / "gloo").mkdir()
    shm = run_ranks(tmp_path / "shm", local_reduce=True)
    gloo = run_ranks(tmp_path / "gloo", local_reduce=False)
    for name, value in gloo[0]["state"].items():
        assert torch.equal(shm[0]["state"][name], value), name
    assert shm[0]["test"] == gloo[0]["test"]


def _reducer_worker(rank: int, port: int, out: str) -> None:
    import time

    from dinrec.training.distributed.local_reduce import LocalReducer

    with rank_process(rank, port, 3):
        reducer = LocalReducer(rank, 3)
        left = [p for p in reducer.paths if p.exists()]
        sums = []
        for op in range(40):
            if rank == 2 and op % 3 == 0:
                time.sleep(0.01)  # one rank late: the others' early bytes count as credits
            t = torch.tensor([float(rank + 1) * (op + 1), 10.0 ** rank], dtype=torch.float64)
            sums.append(reducer.all_reduce_(t).tolist())
        big = torch.arange(10_000, dtype=torch.float64) * (rank + 1)  # over a slot: gloo
        reducer.all_reduce_(big)
        reducer.close()
        torch.save({"left": left, "sums": sums, "big": big}, Path(out) / f"rank{rank}.pt")


def test_shared_memory_sums_are_exact_with_a_late_rank_and_leave_no_files(
    tmp_path: Path
) -> None:
    mp.spawn(_reducer_worker, args=(free_port(), str(tmp_path)), nprocs=3)
    for rank in range(3):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert got["left"] == []  # the block and FIFOs are unlinked once every rank opened
        assert got["sums"] == [[6.0 * (op + 1), 111.0] for op in range(40)]
        assert torch.equal(got["big"], torch.arange(10_000, dtype=torch.float64) * 6)


def _dead_peer_worker(rank: int, port: int, out: str) -> None:
    from dinrec.training.distributed.local_reduce import LocalReducer

    with rank_process(rank, port, WORLD):
        reducer = LocalReducer(rank, WORLD)
        reducer.all_reduce_(torch.ones(3, dtype=torch.float64))
        if rank == 1:
            os._exit(0)  # gone without a word, as a killed rank
        try:
            reducer.all_reduce_(torch.ones(3, dtype=torch.float64))
            message = "no error"
        except RuntimeError as err:
            message = str(err)
        (Path(out) / "rank0.txt").write_text(message)


def test_a_rank_waiting_on_a_dead_one_fails_naming_it_instead_of_hanging(
    tmp_path: Path
) -> None:
    mp.spawn(_dead_peer_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    message = (tmp_path / "rank0.txt").read_text()
    assert message.startswith("rank 1 (pid ") and "exited while rank 0 waited" in message


def test_per_rank_dice_statistics_take_one_collective_per_step(tmp_path: Path) -> None:
    ranks = run_ranks(tmp_path, sync_dice_stats=False)
    # the gradients, MBA's ids and the Dice moving statistics: one all-reduce
    assert ranks[0]["collectives"] == [1] * ranks[0]["steps"]
    # moving statistics averaged in the bucket: both ranks hold the same, bit for bit
    for name, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][name]), name
    assert ranks[0]["test"] == ranks[1]["test"]
    # not one process's numbers (each rank normalises by its own half batch), but close
    single = single_process()
    assert ranks[0]["test"]["auc"] == pytest.approx(single["test"]["auc"], abs=0.05)


@pytest.mark.parametrize("sparse_sync", ["ddp", "gather"])
def test_sparse_embedding_gradients_synchronise(tmp_path: Path, sparse_sync: str) -> None:
    single = single_process(sparse=True)
    ranks = run_ranks(tmp_path, sparse_sync)
    for name, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][name]), name
    assert_close_states(single["state"], ranks[0]["state"])
    assert ranks[0]["test"] == pytest.approx(single["test"], abs=1e-6)


def _stream_worker(rank: int, port: int, path: str, out: str) -> None:
    from dinrec.data.loader import ParquetBatchLoader
    from dinrec.training.distributed.ddp import wrap_trainer
    from dinrec.training.distributed.sharding import AgreedBatches

    with rank_process(rank, port, WORLD) as env:
        model = make_model()
        trainer = wrap_trainer(model.trainer)
        loader = ParquetBatchLoader(path, 8, shard=(env.rank, env.world_size), seed=1)
        # as an iterable without len(): the per-step agreement is exercised too
        unsized = AgreedBatches(iter_only(loader))
        trainer.fit(AgreedBatches(loader), 2, verbose=0)
        trainer.fit(unsized, 1, verbose=0)
        torch.save({"steps": trainer.global_step, "local": len(loader),
                    "freqs": trainer.regularizer.frequencies if trainer.regularizer else None},
                   Path(out) / f"rank{rank}.pt")


class iter_only:
    """A source with set_epoch and __iter__ but no __len__."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self) -> Any:
        return iter(self.loader)


def test_streaming_shards_with_unequal_batches_do_not_hang(tmp_path: Path) -> None:
    x, y = make_data(72, 2)
    table = pa.table({**{k: list(v) if v.ndim > 1 else v for k, v in x.items()}, "label": y})
    path = tmp_path / "train.parquet"
    # row groups of 24, 24, 16, 8 rows: rank 0 reads 24 + 16 (5 batches), rank 1 24 + 8 (4)
    with pq.ParquetWriter(path, table.schema) as writer:
        for lo, hi in ((0, 24), (24, 48), (48, 64), (64, 72)):
            writer.write_table(table.slice(lo, hi - lo))
    mp.spawn(_stream_worker, args=(free_port(), str(path), str(tmp_path)), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert [r["local"] for r in ranks] == [5, 4]
    assert [r["steps"] for r in ranks] == [3 * 4, 3 * 4]  # 3 epochs cut to the fewest (4)
    # MBA's frequencies count every row of the dataset once, whichever rank read it
    model = make_model()
    whole = tensor_batches(model, x, y, 8)
    model.trainer.prepare_regularizer(whole)
    assert model.trainer.regularizer is not None
    for table_name, counts in model.trainer.regularizer.frequencies.items():
        assert torch.equal(ranks[0]["freqs"][table_name], counts)


def _lazy_average_worker(rank: int, port: int, out: str, mba_ids: str) -> None:
    import dinrec.training.weight_average as weight_average
    from dinrec.training.distributed.ddp import wrap_trainer
    from dinrec.training.distributed.sharding import DistributedBatches

    weight_average.EVERY_STEP_MAX = 0  # every table averaged lazily, per row
    with rank_process(rank, port, WORLD):
        torch.manual_seed(0)
        model = make_model()
        trainer = wrap_trainer(model.trainer, mba_ids=mba_ids)
        assert trainer.averaging is not None and trainer.averaging.tables
        per_step = count_step_collectives(trainer)
        train, _ = sources(model)
        trainer.fit(DistributedBatches.from_tensor_batches(train), EPOCHS, verbose=0)
        torch.save({"state": model.state_dict(), "collectives": per_step},
                   Path(out) / f"rank{rank}.pt")


@pytest.mark.parametrize("mba_ids", ["bucket", "gather"])
def test_lazily_averaged_tables_catch_up_every_ranks_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mba_ids: str
) -> None:
    # A row moves when any rank's batch uses it (DDP averages the gradients), so every rank
    # must catch up the union of the batches' rows: then the averages (which the model holds
    # after fit) are one process's, on both ranks.
    import dinrec.training.weight_average as weight_average

    monkeypatch.setattr(weight_average, "EVERY_STEP_MAX", 0)
    single = single_process()
    mp.spawn(_lazy_average_worker, args=(free_port(), str(tmp_path), mba_ids), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    # MBA and the catch-up share one exchange of the ids a step (as without averaging);
    # Dice's sums cross through shared memory (both ranks on this machine)
    expected = 1 if mba_ids == "bucket" else 2
    assert set(ranks[0]["collectives"]) == {expected}
    for name, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][name]), name
    assert_close_states(single["state"], ranks[0]["state"])


def dice_inputs(rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rank's rows x [N_r, 3] (mean far from 0: E[x^2] - E[x]^2 would cancel in float32),
    a mask with some rows padded, and the upstream gradient."""
    g = torch.Generator().manual_seed(rank)
    n = 7 + 4 * rank
    x = 50.0 + torch.randn(n, 3, generator=g)
    mask = torch.rand(n, generator=g) > 0.3
    return x, mask, torch.randn(n, 3, generator=g)


def _dice_worker(rank: int, port: int, out: str) -> None:
    from dinrec.layers.activation import Dice
    from dinrec.training.distributed.sync import sync_dice

    with rank_process(rank, port, WORLD):
        x, mask, upstream = dice_inputs(rank)
        result = {}
        for masked in (False, True):
            dice = Dice(3)
            with torch.no_grad():
                dice.alpha.copy_(torch.tensor([0.1, -0.2, 0.3]))
            sync_dice(dice)
            xr = x.clone().requires_grad_(True)
            y = dice(xr, mask if masked else None)
            (y * upstream).sum().backward()
            result[masked] = {"y": y.detach(), "x_grad": xr.grad, "alpha_grad": dice.alpha.grad,
                              "running": (dice.running_mean, dice.running_var)}
        torch.save(result, Path(out) / f"rank{rank}.pt")


def test_synchronised_dice_is_one_dice_over_the_concatenated_ranks(tmp_path: Path) -> None:
    from dinrec.layers.activation import Dice

    mp.spawn(_dice_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    parts = [dice_inputs(r) for r in range(WORLD)]
    x = torch.cat([p[0] for p in parts])
    mask = torch.cat([p[1] for p in parts])
    upstream = torch.cat([p[2] for p in parts])
    for masked in (False, True):
        dice = Dice(3)
        with torch.no_grad():
            dice.alpha.copy_(torch.tensor([0.1, -0.2, 0.3]))
        xs = x.clone().requires_grad_(True)
        y = dice(xs, mask if masked else None)
        (y * upstream).sum().backward()
        got = [r[masked] for r in ranks]
        torch.testing.assert_close(torch.cat([g["y"] for g in got]), y.detach(), atol=1e-5,
                                   rtol=1e-5)
        torch.testing.assert_close(torch.cat([g["x_grad"] for g in got]), xs.grad, atol=1e-4,
                                   rtol=1e-4)
        # alpha's gradient is each rank's share; DDP's average (x W) makes it the whole
        assert dice.alpha.grad is not None
        torch.testing.assert_close(sum(g["alpha_grad"] for g in got), dice.alpha.grad,
                                   atol=1e-4, rtol=1e-5)
        for g in got:  # the same moving statistics on every rank, one process's
            torch.testing.assert_close(g["running"][0], dice.running_mean, atol=1e-5, rtol=0)
            torch.testing.assert_close(g["running"][1], dice.running_var, atol=1e-4, rtol=1e-4)


def _dice_rows_worker(rank: int, port: int, out: str) -> None:
    from dinrec.layers.activation import Dice
    from dinrec.training.distributed.sync import sync_dice

    with rank_process(rank, port, WORLD):
        x, upstream, _ = dice_rows(rank)
        bias, rows = x[1].clone().requires_grad_(True), x[2]
        dice = Dice(3)
        with torch.no_grad():
            dice.alpha.copy_(torch.tensor([0.1, -0.2, 0.3]))
        sync_dice(dice)
        xr = x[0].clone().requires_grad_(True)
        y = dice.forward_rows(xr, bias, rows)
        (y * upstream).sum().backward()
        torch.save({"y": y.detach(), "x_grad": xr.grad, "bias_grad": bias.grad,
                    "running": (dice.running_mean, dice.running_var)},
                   Path(out) / f"rank{rank}.pt")


def dice_rows(rank: int) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                                  torch.Tensor, None]:
    x, _, upstream = dice_inputs(rank)
    g = torch.Generator().manual_seed(10 + rank)
    bias = torch.randn(2, 3, generator=g)
    rows = torch.arange(x.shape[0]) % 2
    return (x, bias, rows), upstream, None


def test_synchronised_dice_with_a_row_bias_is_one_dice_over_the_ranks(tmp_path: Path) -> None:
    from dinrec.layers.activation import Dice

    mp.spawn(_dice_rows_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    parts = [dice_rows(r) for r in range(WORLD)]
    x = torch.cat([p[0][0] for p in parts]).requires_grad_(True)
    bias = torch.cat([p[0][1] for p in parts]).requires_grad_(True)  # [4, 3]
    rows = torch.cat([p[0][2] + 2 * r for r, p in enumerate(parts)])  # each rank's samples
    upstream = torch.cat([p[1] for p in parts])
    dice = Dice(3)
    with torch.no_grad():
        dice.alpha.copy_(torch.tensor([0.1, -0.2, 0.3]))
    y = dice.forward_rows(x, bias, rows)
    (y * upstream).sum().backward()
    assert x.grad is not None and bias.grad is not None
    torch.testing.assert_close(torch.cat([g["y"] for g in got]), y.detach(), atol=1e-5,
                               rtol=1e-5)
    torch.testing.assert_close(torch.cat([g["x_grad"] for g in got]), x.grad, atol=1e-4,
                               rtol=1e-4)
    torch.testing.assert_close(torch.cat([g["bias_grad"] for g in got]), bias.grad, atol=1e-4,
                               rtol=1e-4)
    for g in got:
        torch.testing.assert_close(g["running"][0], dice.running_mean, atol=1e-5, rtol=0)
        torch.testing.assert_close(g["running"][1], dice.running_var, atol=1e-4, rtol=1e-4)
