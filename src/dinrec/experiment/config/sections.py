"""The sections of an ExperimentConfig: frozen dataclasses, one per TOML table."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dinrec.models.config import ModelConfig

SECTIONS = ("data", "model", "training", "output", "distributed")
MONITORS = ("val_gauc", "val_auc", "val_loss", "val_logloss")
# ModelConfig settings the [model] section does not take: the one seed lives in [training].
_MODEL_OWNED = ("seed",)


@dataclass(frozen=True)
class DataConfig:
    """[data]: where the samples come from.

    Args:
        dataset: a dataset directory (train/test.parquet, dataset.json, vocab.json).
        source: instead of `dataset`: a raw log source ("movielens", "amazon", "taobao",
            "table", "recbole", ... or "synthetic"), built with dinrec.data.build.
        path: the raw log file or directory of `source`.
        protocol: "rating", "next-item" or "click-log".
        behaviors_path: click-log: a separate behavior log.
        maxlen, seed, min_count, split, hash_buckets, on_error: as build_dataset's.
        reader_options: the reader's options (generate_log's for "synthetic").
        protocol_options: the protocol's options (threshold, history, negatives, ...).
        streaming: read the splits from Parquet in row groups, in bounded memory, instead
            of loading them; absent: stream when the train split would take more than
            `streaming_threshold_mb` in memory (the run's log says which was chosen).
        streaming_threshold_mb: the automatic choice's limit, in MiB of decoded samples.
        shuffle_window: streaming: rows shuffled together (a window spanning row groups,
            whose order is also permuted every epoch); more rows mix better, cost more memory.
        history_groups: {group: [behavior types]}, e.g. { buy = ["buy", "cart"] }: history
            groups built from the log's behavior types (build_dataset's history_groups).
        sample_behaviors: the behavior types the protocol's samples come from (e.g. ["pv"]).
        history_time_gap: write each history's time gap (build_dataset's).
    """

    dataset: str | None = None
    source: str | None = None
    path: str | None = None
    protocol: str | None = None
    behaviors_path: str | None = None
    maxlen: int = 50
    seed: int = 0
    min_count: int = 1
    split: dict[str, Any] | None = None
    hash_buckets: dict[str, Any] = field(default_factory=dict)
    reader_options: dict[str, Any] = field(default_factory=dict)
    protocol_options: dict[str, Any] = field(default_factory=dict)
    on_error: str = "raise"
    streaming: bool | None = None
    streaming_threshold_mb: float = 2048.0
    shuffle_window: int = 262_144
    history_groups: dict[str, Any] = field(default_factory=dict)
    sample_behaviors: tuple[str, ...] | None = None
    history_time_gap: bool = False

    def reading(self) -> DataConfig:
        """Only how the samples are read (streaming and its window), not how they are built."""
        return DataConfig(streaming=self.streaming,
                          streaming_threshold_mb=self.streaming_threshold_mb,
                          shuffle_window=self.shuffle_window)


@dataclass(frozen=True)
class ModelSection:
    """[model]: feature widths plus the network's ModelConfig (its seed is training.seed).

    Args:
        embedding_dim: width of every embedding table.
        use_profile: feed the dataset's profile columns (gender, age, ...) to the model.
        history_groups: which of the dataset's history groups the model attends to (each
            with its own unit); None: all of them, []: none (DeepCTR's one history).
        use_time_gap: feed each attended history's time gap to its unit, when the dataset
            has them (dataset.json history_time_gap).
        network: the DIN / EmbeddingMLP hyper-parameters.
    """

    embedding_dim: int = 16
    use_profile: bool = True
    history_groups: tuple[str, ...] | None = None
    use_time_gap: bool = True
    network: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> dict[str, Any]:
        """The flat [model] table, as written back to TOML."""
        net = {k: v for k, v in self.network.to_dict().items() if k not in _MODEL_OWNED}
        own = {"embedding_dim": self.embedding_dim, "use_profile": self.use_profile,
               "history_groups": self.history_groups, "use_time_gap": self.use_time_gap}
        return {**own, **net}


@dataclass(frozen=True)
class TrainingConfig:
    """[training]: the optimisation and model selection.

    Args:
        epochs: maximum epochs.
        batch_size: training batch size.
        eval_batch_size: batch size of validation, test and prediction passes.
        optimizer: "adam", "adagrad", "sgd", "rmsprop" or "adamw".
        learning_rate: the optimizer's learning rate.
        seed: seeds the weights, the shuffle order and dropout (runs are reproducible).
        validation_fraction: each user's last fraction of training samples (in time order)
            held out for validation; 0 trains on all and keeps the last epoch.
        monitor: validation metric that picks the best epoch and drives early stopping.
        patience: epochs without improvement of `monitor` before stopping.
        num_threads: torch intra-op threads; 0 keeps torch's default.
        compile_dense: torch.compile the activation unit (model.compile_dense(); the first
            steps pay tens of seconds of compiling, then ~1.3x training samples/s on CPU).
        attention_bf16: bf16 GEMMs in the activation unit where the CPU has native bf16
            (model.attention_bf16(); GAUC unchanged on ml100k, docs/performance.md).
        device: where the model trains and scores: "cpu", "cuda" (cuda:LOCAL_RANK with nccl
            under torchrun) or "auto" (cuda when torch sees one); batches are moved to it.
        train_metric_rows: a training epoch with more rows computes its auc / gauc in
            metrics.jsonl over a uniform sample of this many rows (whole users; recorded
            there as train_metric_rows of train_rows), so memory does not grow with the
            data; loss and logloss stay over every row, validation and test metrics too.
            0: every row (memory grows with the epoch).
        ema_momentum: validation, the kept epoch and the bundle use an exponential moving
            average of the dense weights with this momentum (model.compile's
            ema_momentum); 0: the last step's weights.
    """

    epochs: int = 5
    batch_size: int = 256
    eval_batch_size: int = 4096
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    seed: int = 1024
    validation_fraction: float = 0.1
    monitor: str = "val_gauc"
    patience: int = 2
    num_threads: int = 0
    compile_dense: bool = False
    attention_bf16: bool = False
    device: str = "cpu"
    train_metric_rows: int = 1_000_000  # epoch_metrics.DEFAULT_CAP (no torch import here)
    ema_momentum: float = 0.99  # weight_average.DEFAULT_MOMENTUM


DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class OutputConfig:
    """[output]: where and what the run writes.

    Args:
        dir: the run directory; None means runs/<name>-<timestamp> (chosen by the CLI).
        name: a short label of the run (tables, plots).
        checkpoint_every: also checkpoint every this many optimizer steps (0: epoch ends only).
        plots: write PNG training curves.
    """

    dir: str | None = None
    name: str = "run"
    checkpoint_every: int = 500
    plots: bool = True


EMBEDDINGS = ("ddp", "torchrec")
SHARDINGS = ("auto", "row_wise", "table_wise")
MBA_IDS = ("auto", "bucket", "gather")


@dataclass(frozen=True)
class DistributedConfig:
    """[distributed]: how ranks share the work under torchrun (ignored by one process).

    Args:
        embeddings: "ddp" (every rank holds every table; gradients averaged by DDP) or
            "torchrec" (tables sharded over the ranks with TorchRec; dense part under DDP).
        sharding: torchrec: "row_wise", "table_wise", or "auto" (TorchRec's planner picks
            per table); the plan is printed in train.log.
        sync_dice_stats: Dice batch statistics over every rank's batch (the same numbers as
            one process with the global batch; two collectives per Dice layer and step);
            false: per-rank statistics, as BatchNorm without SyncBatchNorm (no collective;
            the moving statistics are averaged over ranks each step).
        mba_ids: how MBA learns every rank's batch ids: "bucket" (presence masks in the
            gradient all-reduce), "gather" (two all-gathers a step) or "auto" (bucket unless
            the tables have sparse gradients).
        bucket_cap_mb: DDP's gradient bucket size in MiB; 0: one bucket for every gradient
            on gloo (CPU), DDP's 25 MiB on nccl.
    """

    embeddings: str = "ddp"
    sharding: str = "auto"
    sync_dice_stats: bool = True
    mba_ids: str = "auto"
    bucket_cap_mb: float = 0.0


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: data, model, training, output and distributed sections."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """{section: {key: value}} in TOML's shapes (lists, no None)."""
        out: dict[str, dict[str, Any]] = {}
        for name in SECTIONS:
            section = getattr(self, name)
            raw = section.to_dict() if name == "model" else dataclasses.asdict(section)
            out[name] = {k: _plain(v) for k, v in raw.items() if v is not None}
        return out

    def replace(self, **sections: Any) -> ExperimentConfig:
        """A copy with whole sections replaced (dataclasses.replace on the top level)."""
        return dataclasses.replace(self, **sections)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return value
