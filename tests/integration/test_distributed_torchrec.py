"""TorchRec-sharded embedding tables on 2 gloo ranks: predictions equal the unsharded model's
for the same weights, and training steps equal one process with the global batch.

Skipped where torchrec / fbgemm-gpu-cpu are not installed (they are optional)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from dinrec.training.distributed.torchrec_tables import torchrec_available

pytestmark = pytest.mark.skipif(not torchrec_available(),
                                reason="torchrec / fbgemm-gpu-cpu not installed")
WORLD, N_TRAIN, STEPS_BATCH = 2, 128, 32


def make_model() -> Any:
    # FBGEMM's kernels take dims that are multiples of 4
    cols = din_columns(item_dim=8, cate_dim=4)
    # PReLU (Dice's synchronised statistics are tested with DDP); no embedding regularization
    # on sharded tables
    model = DIN(cols, ["item_id", "cate_id"], dnn_hidden_units=(16, 8), att_hidden_size=(8, 4),
                dnn_activation="prelu", att_activation="prelu", l2_reg_embedding=0.0,
                init_std=0.05, seed=3)
    # The raw weights on both sides: TorchRec's sharded tables are not weight-averaged.
    model.compile(torch.optim.SGD(model.parameters(), lr=0.1), metrics=["auc"],
                  ema_momentum=None)
    return model


def batches(model: Any) -> TensorBatches:
    x, y = make_data(N_TRAIN, 0)
    return tensor_batches(model, x, y, STEPS_BATCH, shuffle=True, seed=7)


def full_tables(model: Any) -> dict[str, torch.Tensor]:
    """Whole tables assembled from this rank's shards (zeros elsewhere; summed over ranks)."""
    import torch.distributed as dist

    out = {}
    for key, value in model.state_dict().items():
        if not key.startswith("embeddings.collections."):
            continue
        name = key.split(".")[-2]
        full = torch.zeros(value.size())
        for shard in value.local_shards():
            rows, cols = shard.metadata.shard_offsets
            n, e = shard.tensor.shape
            full[rows : rows + n, cols : cols + e] = shard.tensor
        dist.all_reduce(full)
        out[name] = full
    return out


def _worker(rank: int, port: int, out: str, sharding: str) -> None:
    from dinrec.training.distributed.sharding import DistributedBatches
    from dinrec.training.distributed.torchrec_tables import wrap_trainer_torchrec

    with rank_process(rank, port, WORLD):
        model = make_model()
        source = batches(model)
        probe = DistributedBatches(source.features, source.labels, 20)
        unsharded = _logits(model, probe)
        trainer = wrap_trainer_torchrec(
            model.trainer, sharding, embedding_optimizer="sgd", embedding_lr=0.1,
            dense_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
        sharded = _logits(model, probe)
        trainer.fit(DistributedBatches.from_tensor_batches(source), 2, verbose=0)
        dense = {k: v for k, v in model.state_dict().items()
                 if not k.startswith("embeddings.collections.")}
        torch.save({"unsharded": unsharded, "sharded": sharded,
                    "dense": dense, "tables": full_tables(model),
                    "steps": trainer.global_step}, Path(out) / f"rank{rank}.pt")


def _logits(model: Any, source: Any) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        out = torch.cat([model(feats).squeeze(-1) for feats, _ in source])
    model.train()
    return out


@pytest.mark.parametrize("sharding", ["row_wise", "table_wise"])
def test_sharded_tables_predict_and_train_like_one_process(tmp_path: Path, sharding: str) -> None:
    model = make_model()
    source = batches(model)
    model.trainer.fit(source, 2, verbose=0)
    mp.spawn(_worker, args=(free_port(), str(tmp_path), sharding), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    for r in ranks:  # the same weights, sharded or not: the same predictions
        torch.testing.assert_close(r["sharded"], r["unsharded"], atol=1e-6, rtol=0)
    assert ranks[0]["steps"] == 2 * N_TRAIN // STEPS_BATCH
    state = model.state_dict()
    for name, value in ranks[0]["dense"].items():
        torch.testing.assert_close(value, state[name], atol=1e-5, rtol=0, msg=name)
        assert torch.equal(value, ranks[1]["dense"][name]), name
    for name, table in ranks[0]["tables"].items():
        torch.testing.assert_close(table, state[f"embeddings.tables.{name}.weight"],
                                   atol=1e-5, rtol=0, msg=name)


def _checkpoint_worker(rank: int, port: int, out: str, plain_state: str | None,
                       world: int = WORLD, sharded_from: str | None = None) -> None:
    from dinrec.training.distributed.sharded_checkpoint import (
        load_plain,
        save_sharded,
        trainer_progress,
    )
    from dinrec.training.distributed.sharding import DistributedBatches
    from dinrec.training.distributed.torchrec_tables import (
        plain_state_dict,
        wrap_trainer_torchrec,
    )

    with rank_process(rank, port, world):
        model = make_model()
        trainer = wrap_trainer_torchrec(
            model.trainer, "row_wise", embedding_optimizer="sgd", embedding_lr=0.1,
            dense_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
        if sharded_from is not None:  # another world size's sharded checkpoint, resharded
            from dinrec.training.distributed.sharded_checkpoint import load_sharded

            saved = torch.load(Path(sharded_from) / "ranks.pt", weights_only=False)
            load_sharded(Path(sharded_from) / "sharded", trainer, saved["progress"])
            progress = {"global_step": trainer.global_step}
        elif plain_state is None:  # train, then write the sharded checkpoint
            trainer.fit(DistributedBatches.from_tensor_batches(batches(model)), 1, verbose=0)
            save_sharded(Path(out) / "sharded", trainer)
            progress = trainer_progress(trainer)
        else:  # start from one process's Trainer.state_dict()
            load_plain(trainer, torch.load(plain_state, weights_only=False))
            progress = {"global_step": trainer.global_step}
        whole = plain_state_dict(model)
        if rank == 0:
            torch.save({"progress": progress, "whole": whole}, Path(out) / "ranks.pt")


def test_a_sharded_checkpoint_loads_whole_into_one_process_and_back(tmp_path: Path) -> None:
    from dinrec.training.distributed.sharded_checkpoint import load_sharded

    mp.spawn(_checkpoint_worker, args=(free_port(), str(tmp_path), None), nprocs=WORLD)
    saved = torch.load(tmp_path / "ranks.pt", weights_only=False)
    steps = N_TRAIN // STEPS_BATCH
    # one process: every table assembled from both ranks' shards, bit for bit
    model = make_model()
    load_sharded(tmp_path / "sharded", model.trainer, saved["progress"])
    assert model.trainer.global_step == steps
    assert model.state_dict().keys() == saved["whole"].keys()
    for name, value in saved["whole"].items():
        assert torch.equal(model.state_dict()[name], value), name
    # and back: the one process's state sharded again over 2 ranks
    torch.save(model.trainer.state_dict(), tmp_path / "plain.pt")
    back = tmp_path / "back"
    back.mkdir()
    mp.spawn(_checkpoint_worker, args=(free_port(), str(back), str(tmp_path / "plain.pt")),
             nprocs=WORLD)
    again = torch.load(back / "ranks.pt", weights_only=False)
    assert again["progress"]["global_step"] == steps
    for name, value in saved["whole"].items():
        assert torch.equal(again["whole"][name], value), name


def test_a_sharded_checkpoint_of_2_ranks_resumes_on_3_sharded_ranks(tmp_path: Path) -> None:
    # Row-wise over 3 ranks cuts every table at other rows than over 2: DCP reshards on load.
    mp.spawn(_checkpoint_worker, args=(free_port(), str(tmp_path), None), nprocs=WORLD)
    saved = torch.load(tmp_path / "ranks.pt", weights_only=False)
    three = tmp_path / "three"
    three.mkdir()
    mp.spawn(_checkpoint_worker, args=(free_port(), str(three), None, 3, str(tmp_path)),
             nprocs=3)
    again = torch.load(three / "ranks.pt", weights_only=False)
    assert again["progress"]["global_step"] == N_TRAIN // STEPS_BATCH
    assert again["whole"].keys() == saved["whole"].keys()
    for name, value in saved["whole"].items():
        assert torch.equal(again["whole"][name], value), name


def _per_rank_dice_worker(rank: int, port: int, out: str) -> None:
    from dinrec.layers.activation import Dice
    from dinrec.models import DIN
    from dinrec.training.distributed.sharding import DistributedBatches
    from dinrec.training.distributed.torchrec_tables import wrap_trainer_torchrec

    with rank_process(rank, port, WORLD):
        model = DIN(din_columns(item_dim=8, cate_dim=4), ["item_id", "cate_id"],
                    dnn_hidden_units=(16, 8), att_hidden_size=(8, 4), dnn_activation="dice",
                    att_activation="dice", l2_reg_embedding=0.0, init_std=0.05, seed=3)
        model.compile(torch.optim.SGD(model.parameters(), lr=0.1), ema_momentum=None)
        trainer = wrap_trainer_torchrec(
            model.trainer, "row_wise", embedding_optimizer="sgd", embedding_lr=0.1,
            dense_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1), sync_dice_stats=False)
        trainer.fit(DistributedBatches.from_tensor_batches(batches(model)), 1, verbose=0)
        stats = [t for m in model.modules() if isinstance(m, Dice)
                 for t in (m.running_mean, m.running_var)]
        torch.save(stats, Path(out) / f"rank{rank}.pt")


def test_per_rank_dice_statistics_stay_the_same_on_every_rank(tmp_path: Path) -> None:
    mp.spawn(_per_rank_dice_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert len(ranks[0]) == 8  # 4 Dice layers: mean and variance each
    for mine, other in zip(*ranks, strict=True):
        assert torch.equal(mine, other)
    assert not torch.equal(ranks[0][1], torch.ones_like(ranks[0][1]))  # they moved
