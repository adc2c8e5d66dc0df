"""Model-parallel embeddings with TorchRec: tables sharded over ranks (row- or table-wise).

For vocabularies whose tables do not fit one process: each rank holds a slice of the rows
(row_wise) or whole tables (table_wise); the dense part (attention, MLP) stays replicated
under DDP. Optional: needs torchrec and fbgemm-gpu(-cpu) built for the installed torch
(see docs/distributed.md for the install that works beside torch 2.13 on CPU).

How it plugs into the network without touching it: the EmbeddingBank is replaced by
TorchRecEmbeddingBank, whose lookup(feature, ids) has the same contract. A forward pre-hook
on the network first fetches, in one sharded lookup per batch, the rows of every id the batch
uses (each table's unique ids, one KeyedJaggedTensor "sample" per rank); lookups during the
forward (candidates, packed behaviors, pooled columns) then index those rows locally.

The embedding optimizer is fused into TorchRec's backward (FBGEMM); the dense optimizer gets
only the other parameters. TorchRec divides the tables' gradients by the world size in its
all-to-all backward (comm_ops' gradient division), so they are the average over ranks as
DDP's are: one step equals one process with the global batch.

Limits: no embedding regularization on sharded tables (set l2_reg_embedding=0 and keep
embedding_regularization="l2"), and checkpoints/bundles of sharded tables are not written
(they need torch.distributed.checkpoint); evaluation must run the same number of batches
on every rank (the lookup is a collective), as the padded sharded sources guarantee.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dinrec.feature_column import SparseFeat, VarLenSparseFeat
from dinrec.training.distributed.launch import current

if TYPE_CHECKING:
    from dinrec.models.network import InterestNetwork
    from dinrec.schema import FeatureSchema
    from dinrec.training.trainer import Trainer

SHARDINGS = ("row_wise", "table_wise", "auto")


def torchrec_available() -> bool:
    """Whether torchrec and its FBGEMM kernels import (a mismatched fbgemm fails here)."""
    try:
        import fbgemm_gpu  # noqa: F401
        import torchrec  # noqa: F401
    except Exception:  # an ABI mismatch raises OSError/RuntimeError, not only ImportError
        return False
    return True


class TorchRecEmbeddingBank(nn.Module):
    """EmbeddingBank.lookup over a (sharded) torchrec EmbeddingCollection.

    Args:
        schema: the resolved FeatureSchema; one torchrec table per schema table, whose one
            "feature" is the table itself (every column of the table looks up through it).

    prepare(inputs) must run before the forward's lookups (the network's pre-hook does it).
    """

    def __init__(self, schema: FeatureSchema) -> None:
        super().__init__()
        from torchrec import EmbeddingCollection, EmbeddingConfig

        self.tables = [spec.name for spec in schema.tables.values()]
        self.table_of: dict[str, str] = {}
        for col in schema.columns:
            if isinstance(col, SparseFeat | VarLenSparseFeat):
                self.table_of[col.name] = col.table
        # An EmbeddingCollection holds tables of one dim: one collection per dim.
        by_dim: dict[int, list[Any]] = {}
        for spec in schema.tables.values():
            by_dim.setdefault(spec.dim, []).append(EmbeddingConfig(
                name=spec.name, embedding_dim=spec.dim, num_embeddings=spec.num_embeddings,
                feature_names=[spec.name]))
        # meta: no full table is ever allocated; DistributedModelParallel creates the shards.
        self.collections = nn.ModuleDict({
            f"dim{dim}": EmbeddingCollection(tables=configs, device=torch.device("meta"))
            for dim, configs in sorted(by_dim.items())})
        self.members = {key: [c.name for c in by_dim[int(key[3:])]] for key in self.collections}
        self._rows: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.plain_parameter_names: list[str] = []  # set by wrap_trainer_torchrec

    def prepare(self, inputs: dict[str, torch.Tensor]) -> None:
        """Fetch the rows of every id in the batch: one sharded lookup for all tables."""
        from torchrec import KeyedJaggedTensor

        per_table: dict[str, list[torch.Tensor]] = {t: [] for t in self.tables}
        for feature, table in self.table_of.items():
            if feature in inputs:
                per_table[table].append(inputs[feature].reshape(-1))
        unique = {t: torch.unique(torch.cat(p)) if p else torch.zeros(0, dtype=torch.int64)
                  for t, p in per_table.items()}
        self._rows = {}
        for key, collection in self.collections.items():
            tables = self.members[key]
            kjt = KeyedJaggedTensor(
                keys=tables,
                values=torch.cat([unique[t] for t in tables]),
                lengths=torch.tensor([unique[t].numel() for t in tables], dtype=torch.int32),
            )  # stride 1: each rank sends one "sample" holding all its unique ids
            out = self._lookup(collection, kjt)
            for t in tables:
                self._rows[t] = (unique[t], out[t].values())  # [U_t], [U_t, E]

    @staticmethod
    def _lookup(collection: nn.Module, kjt: Any) -> Any:
        if not torch.is_inference_mode_enabled():
            return collection(kjt)
        # FBGEMM registers its CPU kernels behind autograd: under inference_mode (the
        # Trainer's evaluation) they are not found, so look up in plain no-grad mode.
        with torch.inference_mode(False), torch.no_grad():
            return collection(kjt)

    def lookup(self, feature: str, ids: torch.Tensor) -> torch.Tensor:
        """Rows of ids [...] of a feature's table -> [..., E] (ids must be in the batch)."""
        unique, rows = self._rows[self.table_of[feature]]
        return rows[torch.searchsorted(unique, ids)]

    def table(self, name: str) -> nn.Embedding:
        raise TypeError(f"table {name!r} is sharded by TorchRec: no rank holds it whole (use "
                        "l2_reg_embedding=0 and no MBA with sharded embeddings)")


def _prepare_hook(module: nn.Module, args: tuple[Any, ...]) -> None:
    bank = module.embeddings
    assert isinstance(bank, TorchRecEmbeddingBank)
    bank.prepare(args[0])


def shard_embeddings(
    model: InterestNetwork,
    sharding: str = "row_wise",
    *,
    optimizer: str = "sgd",
    lr: float = 0.01,
    copy_weights: bool = True,
) -> Any:
    """Replace the model's tables by TorchRec-sharded ones; returns the DistributedModelParallel.

    Call on every rank (collective). The model keeps working as a module (its forward
    pre-hook fetches the batch's rows); the returned DMP is the training forward, with the
    dense part under DDP and the tables' optimizer fused into backward.

    Args:
        model: the InterestNetwork (DIN / EmbeddingMLP); its regularization must not touch
            the tables (l2_reg_embedding=0, embedding_regularization="l2").
        sharding: "row_wise" (each rank a slice of every table's rows), "table_wise" or
            "auto" (TorchRec's planner picks per table).
        optimizer: the fused embedding optimizer: "sgd", "adagrad", "rowwise_adagrad" or
            "adam" (FBGEMM's exact kernels).
        lr: its learning rate.
        copy_weights: start the shards from the model's current tables (same predictions as
            the unsharded model); False keeps TorchRec's own initialisation.
    """
    from fbgemm_gpu.split_embedding_configs import EmbOptimType
    from torchrec.distributed.embedding import EmbeddingCollectionSharder
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import (
        EmbeddingShardingPlanner,
        ParameterConstraints,
        Topology,
    )
    from torchrec.distributed.types import ShardingType

    if sharding not in SHARDINGS:
        raise ValueError(f"sharding must be one of {SHARDINGS}, got {sharding!r}")
    optimizers = {"sgd": EmbOptimType.EXACT_SGD, "adagrad": EmbOptimType.EXACT_ADAGRAD,
                  "rowwise_adagrad": EmbOptimType.EXACT_ROWWISE_ADAGRAD,
                  "adam": EmbOptimType.ADAM}
    if optimizer not in optimizers:
        raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got {optimizer!r}")
    cfg = model.config
    if cfg.embedding_regularization == "mba" or cfg.l2_reg_embedding:
        raise ValueError("sharded tables take no embedding regularization: set "
                         "l2_reg_embedding=0 and embedding_regularization='l2'")
    odd = sorted(f"{t.name}: {t.dim}" for t in model.schema.tables.values() if t.dim % 4)
    if odd:
        raise ValueError(f"FBGEMM's sharded tables need embedding dims that are multiples of 4 "
                         f"({', '.join(odd)})")
    env = current()
    import torch.distributed as dist

    full = {name: model.embeddings.table(name).weight.detach().clone()
            for name in model.schema.tables} if copy_weights else {}
    bank = TorchRecEmbeddingBank(model.schema)
    model.embeddings = bank  # type: ignore[assignment]  # the same lookup() contract
    model.register_forward_pre_hook(_prepare_hook)
    sharder = EmbeddingCollectionSharder(
        fused_params={"optimizer": optimizers[optimizer], "learning_rate": lr})
    constraints = None
    if sharding != "auto":
        kind = {"row_wise": ShardingType.ROW_WISE, "table_wise": ShardingType.TABLE_WISE}[sharding]
        constraints = {t: ParameterConstraints(sharding_types=[kind.value]) for t in bank.tables}
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=env.world_size, compute_device="cpu"),
        constraints=constraints)
    plan = planner.collective_plan(model, [sharder], dist.GroupMember.WORLD)
    dmp = DistributedModelParallel(model, device=torch.device("cpu"), plan=plan,
                                   sharders=[sharder])
    if copy_weights:
        load_full_tables(model, full)
    return dmp


def plain_key(bank: TorchRecEmbeddingBank) -> dict[str, str]:
    """{sharded state key: the plain EmbeddingBank's key} of every table."""
    return {f"embeddings.collections.{key}.embeddings.{t}.weight": f"embeddings.tables.{t}.weight"
            for key, tables in bank.members.items() for t in tables}


def plain_state_dict(model: InterestNetwork) -> dict[str, torch.Tensor] | None:
    """The unsharded model's state dict, on rank 0 (None elsewhere); collective.

    Every table is gathered whole onto rank 0 (the bundle is the single-process one, so the
    tables must fit one process there); the dense weights are rank 0's own.
    """
    bank = model.embeddings
    assert isinstance(bank, TorchRecEmbeddingBank)
    rename = plain_key(bank)
    main = current().is_main
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key not in rename:
            out[key] = value.detach().clone()
            continue
        full = torch.empty(value.size(), dtype=value.dtype) if main else None
        value.gather(dst=0, out=full)  # ShardedTensor: every rank sends its shards
        if full is not None:
            out[rename[key]] = full
    return out if main else None


def load_full_tables(model: InterestNetwork, tables: dict[str, torch.Tensor]) -> None:
    """Copy whole tables [V, E] into this rank's shards (each rank copies its own rows)."""
    state = model.state_dict()
    for name, weight in tables.items():
        sharded = next(v for k, v in state.items()
                       if k.startswith("embeddings.collections.") and k.endswith(f".{name}.weight"))
        for shard in sharded.local_shards():
            rows, cols = shard.metadata.shard_offsets
            n, e = shard.tensor.shape
            with torch.no_grad():
                shard.tensor.copy_(weight[rows : rows + n, cols : cols + e])


def dense_parameters(dmp: Any) -> list[nn.Parameter]:
    """The parameters the dense optimizer updates: all but the fused (sharded) tables."""
    from torchrec.optim.optimizers import in_backward_optimizer_filter

    return [p for _, p in in_backward_optimizer_filter(dmp.named_parameters())]


def wrap_trainer_torchrec(
    trainer: Trainer,
    sharding: str = "row_wise",
    *,
    embedding_optimizer: str = "sgd",
    embedding_lr: float = 0.01,
    dense_optimizer: Any = None,
    sync_dice_stats: bool = True,
) -> Trainer:
    """wrap_trainer with TorchRec-sharded tables: forward through DMP, Dice synchronised,
    the dense optimizer rebuilt over the non-fused parameters, scores gathered.

    Args:
        dense_optimizer: a callable params -> torch optimizer (default: Adam, lr 1e-3).
        sync_dice_stats: Dice statistics over every rank's batch (False: per rank, the
            moving ones broadcast from rank 0 by DMP's DDP).

    The trainable parameter names of the plain model, in its optimizer's order, are kept as
    the bank's plain_parameter_names (checkpoints name optimizer state by parameter, so
    they load across the plain and the sharded model).
    """
    from dinrec.training.distributed.sync import gather_scores, sync_dice
    from dinrec.training.weight_average import WeightAverage
    from dinrec.training.weight_average import dense_parameters as average_dense

    model = trainer.model
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    dmp = shard_embeddings(model, sharding, optimizer=embedding_optimizer, lr=embedding_lr)
    bank = model.embeddings
    assert isinstance(bank, TorchRecEmbeddingBank)
    bank.plain_parameter_names = names
    if sync_dice_stats:
        from dinrec.training.distributed.ddp import dice_reducer

        sync_dice(model, dice_reducer(current(), None, None))
    else:  # DMP's DDP does not broadcast buffers: average Dice's moving statistics instead
        from torch.nn.parallel import DistributedDataParallel

        from dinrec.training.distributed.bucket_riders import (
            MovingStatistics,
            RidingHook,
            riding_hook,
        )

        dense = next(m for m in dmp.modules() if isinstance(m, DistributedDataParallel))
        dense.register_comm_hook(RidingHook([MovingStatistics(model, current().world_size)]),
                                 riding_hook)
    params = dense_parameters(dmp)
    make = dense_optimizer or (lambda ps: torch.optim.Adam(ps, lr=1e-3))
    trainer.optimizer = make(params)
    if trainer.averaging is not None:  # the sharded tables live in TorchRec: dense only
        trainer.averaging = WeightAverage(average_dense(model), trainer.averaging.momentum)
    trainer.forward_module = dmp
    trainer.gather_scores = gather_scores
    return trainer
