"""The dataset directory: train/test Parquet, vocab.json and dataset.json, and how to read it.

Layout written by write_dataset:

    train.parquet, test.parquet   one row per sample: user_key, user_id, profile columns,
                                  item_id, cate_id (int64 encoded ids), hist_item_id and
                                  hist_cate_id (list<int64> of length maxlen, post-padded
                                  with 0), hist_len (int64), label (int8), timestamp (int64 s)
    vocab.json                    Vocabularies fitted on the training period only
    dataset.json                  DatasetMeta: format version, protocol and options, maxlen,
                                  vocabulary sizes, profile columns, counts per split,
                                  history groups (their columns: data.group_columns)

`user_key` is a grouping key for GAUC (a dense index of the raw user over both splits), not a
model input. Same samples and vocabularies give byte-identical files.

Example:
    >>> samples = build_samples("rating", log, maxlen=50)           # doctest: +SKIP
    >>> vocabs = Vocabularies.fit(samples.fit_values, min_count=1)  # doctest: +SKIP
    >>> write_dataset("out/ml100k", samples, vocabs)                 # doctest: +SKIP
    >>> ds = load_dataset("out/ml100k")                              # doctest: +SKIP
    >>> columns, history = feature_columns(ds, embedding_dim=16)    # doctest: +SKIP
    >>> x, y = to_numpy(ds.read("train"))                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dinrec.data.group_columns import group_arrays, group_feature_columns, group_fields
from dinrec.data.parquet.write_options import (
    id_storage_type,
    parquet_compression,
    parquet_dictionary_columns,
)
from dinrec.data.protocols.behavior_groups import BehaviorGroups
from dinrec.data.protocols.history import gather_spans, user_codes
from dinrec.data.protocols.samples import (
    CATE_ID,
    HIST_CATE_ID,
    HIST_ITEM_ID,
    HIST_LEN,
    ITEM_ID,
    LABEL,
    TIMESTAMP,
    USER_ID,
    USER_KEY,
    Samples,
    SampleSet,
)
from dinrec.data.table_arrays import to_numpy
from dinrec.data.vocabulary import Vocabularies
from dinrec.feature_column import FeatureColumn, SparseFeat, VarLenSparseFeat

DATASET_FORMAT = "dinrec.dataset"
DATASET_FORMAT_VERSION = 1
SPLITS = ("train", "test")
DEFAULT_ROW_GROUP_SIZE = 65_536
META_FILE = "dataset.json"
VOCAB_FILE = "vocab.json"
_HISTORY_KEYS = ("history_groups", "history_time_gap", "sample_behaviors")


@dataclass(frozen=True)
class DatasetMeta:
    """What dataset.json holds: everything needed to build feature columns and check data.

    Args:
        protocol: "rating", "next-item" or "click-log".
        options: the protocol's options (maxlen, split, threshold, seed, ...).
        maxlen: history length T of hist_item_id / hist_cate_id.
        vocabulary_sizes: {feature: max id + 1}, for user_id, item_id, cate_id and profiles.
        profile_columns: profile feature names, in column order.
        counts: {split: {"samples", "positives", "users", "items", "mean_hist_len"}}.
        source: where the events came from.
        row_group_size: Parquet rows per row group.
        history_groups: {group: behavior types} of the `<group>_hist_*` columns.
        history_time_gap: the attended histories have `*_hist_time_gap` columns.
        sample_behaviors: the behavior types the protocol built samples from (None: all).
        format: always "dinrec.dataset".
        format_version: layout version; readers reject others.
    """

    protocol: str
    options: dict[str, Any]
    maxlen: int
    vocabulary_sizes: dict[str, int]
    profile_columns: list[str]
    counts: dict[str, dict[str, Any]]
    source: str = "events"
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE
    history_groups: dict[str, list[str]] = field(default_factory=dict)
    history_time_gap: bool = False
    sample_behaviors: list[str] | None = None
    format: str = DATASET_FORMAT
    format_version: int = DATASET_FORMAT_VERSION

    @property
    def sparse_features(self) -> list[str]:
        """One-id-per-sample features: user_id, profile columns, item_id, cate_id."""
        return [USER_ID, *self.profile_columns, ITEM_ID, CATE_ID]

    @property
    def history_features(self) -> list[str]:
        """History list features, each sharing its candidate's vocabulary."""
        return [HIST_ITEM_ID, HIST_CATE_ID]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the format fields first (history settings only when set,
        so a dataset without groups writes the dataset.json it always did)."""
        data = asdict(self)
        for key in _HISTORY_KEYS:
            if not data[key]:
                del data[key]
        head = {"format": data.pop("format"), "format_version": data.pop("format_version")}
        return {**head, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetMeta:
        """Inverse of to_dict; a wrong format, version or unknown key raises."""
        if data.get("format") != DATASET_FORMAT:
            raise ValueError(f"not a dinrec dataset.json (format {data.get('format')!r})")
        if data.get("format_version") != DATASET_FORMAT_VERSION:
            raise ValueError(
                f"dataset.json format_version {data.get('format_version')!r} is not supported "
                f"(expected {DATASET_FORMAT_VERSION})"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"dataset.json has unknown keys {unknown}")
        return cls(**data)


@dataclass(frozen=True)
class Dataset:
    """A dataset directory opened for reading (see load_dataset).

    Args:
        path: the directory.
        meta: its dataset.json.
    """

    path: Path
    meta: DatasetMeta

    def split_path(self, split: str) -> Path:
        """Path of `split`.parquet ("train" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        return self.path / f"{split}.parquet"

    def read(self, split: str, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole split as a pyarrow Table (optionally only some columns)."""
        return pq.read_table(self.split_path(split), columns=list(columns) if columns else None)

    def vocabularies(self) -> Vocabularies:
        """The vocabularies in vocab.json."""
        return Vocabularies.load(self.path / VOCAB_FILE)

    def to_numpy(
        self, split: str, feature_names: Sequence[str] | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """to_numpy(self.read(split)): the (x, y) that model.fit takes."""
        return to_numpy(self.read(split), feature_names)


def load_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Open a dataset directory written by write_dataset (reads dataset.json only)."""
    root = Path(path)
    meta_path = root / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{root} is not a dinrec dataset: {META_FILE} is missing")
    meta = DatasetMeta.from_dict(json.loads(meta_path.read_text(encoding="utf-8")))
    return Dataset(root, meta)


def write_dataset(
    out_dir: str | os.PathLike[str],
    samples: Samples,
    vocabs: Vocabularies,
    *,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    overwrite: bool = False,
    groups: BehaviorGroups | None = None,
    time_gap: bool = False,
    sample_behaviors: Sequence[str] | None = None,
) -> DatasetMeta:
    """Encode samples with the vocabularies and write the dataset directory.

    dataset.json is written last, so a directory with it is complete.

    Args:
        out_dir: directory to create or fill.
        samples: a protocol's output.
        vocabs: fitted on samples.fit_values (the training period), e.g.
            Vocabularies.fit(samples.fit_values, min_count=...).
        row_group_size: Parquet rows per row group (a streaming loader reads row groups).
        overwrite: replace an existing dataset in out_dir.
        groups: history groups to write beside the protocol's history, ids encoded with
            `vocabs` (data.group_columns); None: none.
        time_gap: write every attended history's time gap.
        sample_behaviors: recorded in dataset.json: the types the samples were built from.

    Returns:
        the DatasetMeta written to dataset.json.
    """
    root = Path(out_dir)
    if (root / META_FILE).exists() and not overwrite:
        raise FileExistsError(f"{root} already holds a dataset; pass overwrite=True to replace")
    if row_group_size < 1:
        raise ValueError(f"row_group_size must be >= 1, got {row_group_size}")
    profile = samples.profile_columns
    missing = [f for f in (USER_ID, ITEM_ID, CATE_ID, *profile) if f not in vocabs]
    if missing:
        raise ValueError(f"vocabularies lack features {missing}; have {list(vocabs)}")
    root.mkdir(parents=True, exist_ok=True)
    history = {  # the history log encoded once; rows gather their spans from it
        HIST_ITEM_ID: vocabs.encode(ITEM_ID, samples.history.item),  # [M]
        HIST_CATE_ID: vocabs.encode(CATE_ID, samples.history.category),  # [M]
    }
    keys = dict(zip(SPLITS, user_codes(samples.train.user, samples.test.user), strict=True))
    counts = {}
    history_ts = samples.history.timestamp  # [M]: the main history's time gaps
    for split, part in zip(SPLITS, (samples.train, samples.test), strict=True):
        # Vocabulary sizes bound every encoded id; user keys count users over both splits.
        largest = max([int(keys[split].max(initial=0)) + 1, *vocabs.sizes().values()])
        names = groups.names if groups is not None else []
        with split_writer(root / f"{split}.parquet", profile, largest, names, time_gap) as w:
            write_split_rows(w, part, keys[split], history, vocabs, profile, samples.maxlen,
                             row_group_size, groups, time_gap, history_ts)
        counts[split] = _split_counts(part)
    vocabs.save(root / VOCAB_FILE)
    meta = DatasetMeta(
        protocol=samples.protocol, options=dict(samples.options), maxlen=samples.maxlen,
        vocabulary_sizes={f: vocabs[f].size for f in (USER_ID, ITEM_ID, CATE_ID, *profile)},
        profile_columns=list(profile), counts=counts, source=samples.source,
        row_group_size=row_group_size,
        history_groups={} if groups is None else {g: list(t) for g, t in groups.types.items()},
        history_time_gap=time_gap,
        sample_behaviors=None if sample_behaviors is None else list(sample_behaviors),
    )
    write_meta(root, meta)
    return meta


def write_meta(root: Path, meta: DatasetMeta) -> None:
    """dataset.json: written last, since a directory holding it is a complete dataset."""
    text = json.dumps(meta.to_dict(), indent=2, ensure_ascii=False)
    (root / META_FILE).write_text(text + "\n", encoding="utf-8")


def _schema(profile: Sequence[str], id_type: pa.DataType, groups: Sequence[str],
            time_gap: bool) -> pa.Schema:
    ids = [pa.field(name, id_type, nullable=False)
           for name in (USER_KEY, USER_ID, *profile, ITEM_ID, CATE_ID)]
    # Non-null list elements: Arrow then skips validity bitmaps when decoding (~27% faster
    # reads in the streaming loader, same file size).
    element = pa.field("element", id_type, nullable=False)
    lists = [pa.field(name, pa.list_(element), nullable=False)
             for name in (HIST_ITEM_ID, HIST_CATE_ID)]
    tail = [pa.field(HIST_LEN, id_type, nullable=False),
            pa.field(LABEL, pa.int8(), nullable=False),
            pa.field(TIMESTAMP, pa.int64(), nullable=False)]
    return pa.schema(ids + lists + tail + group_fields(groups, time_gap, id_type))


def split_writer(
    path: Path, profile: Sequence[str], largest: int, groups: Sequence[str] = (),
    time_gap: bool = False,
) -> pq.ParquetWriter:
    """A Parquet writer of a split whose ids (user keys included) are all below `largest`,
    with the columns of history `groups` and time gaps (data.group_columns)."""
    schema = _schema(profile, id_storage_type(largest), groups, time_gap)
    # No pandas metadata and a fixed writer configuration: the bytes depend on the data only.
    # Statistics let the loader keep ids as int32 in its shuffle window (parquet.footers).
    return pq.ParquetWriter(path, schema, compression=parquet_compression(schema),
                            use_dictionary=parquet_dictionary_columns(schema),
                            write_statistics=True)


def write_split_rows(
    writer: pq.ParquetWriter, part: SampleSet, user_key: np.ndarray,
    history: dict[str, np.ndarray], vocabs: Vocabularies, profile: Sequence[str], maxlen: int,
    row_group_size: int, groups: BehaviorGroups | None = None, time_gap: bool = False,
    history_ts: np.ndarray | None = None,
) -> None:
    """Append a split's samples (encoded) to its writer, `row_group_size` rows a row group;
    with groups or time_gap (history_ts: [M] seconds of the history log) their columns."""
    schema = writer.schema
    id_type = schema.field(USER_KEY).type
    ids = {USER_KEY: user_key, USER_ID: vocabs.encode(USER_ID, part.user)}
    ids.update({name: vocabs.encode(name, part.profile[name]) for name in profile})
    ids[ITEM_ID] = vocabs.encode(ITEM_ID, part.item)
    ids[CATE_ID] = vocabs.encode(CATE_ID, part.category)
    n = len(part)
    for lo in range(0, n, row_group_size):
        hi = min(lo + row_group_size, n)
        start, length = part.hist_start[lo:hi], part.hist_len[lo:hi]
        arrays: list[pa.Array] = [pa.array(col[lo:hi], id_type) for col in ids.values()]
        for name in (HIST_ITEM_ID, HIST_CATE_ID):
            matrix = gather_spans(history[name], start, length, maxlen)  # [R, T]
            offsets = np.arange(0, matrix.size + 1, maxlen, dtype=np.int32)  # [R + 1]
            values = pa.array(matrix.reshape(-1), id_type)
            arrays.append(
                pa.ListArray.from_arrays(offsets, values, type=schema.field(name).type)
            )
        arrays += [pa.array(length, id_type), pa.array(part.label[lo:hi], pa.int8()),
                   pa.array(part.timestamp[lo:hi], pa.int64())]
        if groups is not None or time_gap:
            main = (np.zeros(0, np.int64) if history_ts is None else history_ts, start,
                    length, maxlen)
            arrays += group_arrays(schema, groups, time_gap, part.user[lo:hi],
                                   part.timestamp[lo:hi], main)
        table = pa.Table.from_arrays(arrays, schema=schema)
        writer.write_table(table, row_group_size=row_group_size)


def _split_counts(part: SampleSet) -> dict[str, Any]:
    """Counts stored per split in dataset.json."""
    n = len(part)
    return {
        "samples": n,
        "positives": int(np.sum(part.label == 1)),
        "users": len(np.unique(part.user)),
        "items": len(np.unique(part.item)),
        "mean_hist_len": round(float(part.hist_len.mean()), 6) if n else 0.0,
    }


def feature_columns(
    dataset: DatasetMeta | Dataset | str | os.PathLike[str],
    embedding_dim: int | str = 16,
    *,
    use_profile: bool = True,
    length_name: str | None = None,
    groups: Sequence[str] = (),
    time_gap: bool = False,
) -> tuple[list[FeatureColumn], list[str]]:
    """DeepCTR-style feature columns for DIN and its history_feature_list.

    SparseFeat for user_id, profile columns, item_id and cate_id (sizes from dataset.json);
    VarLenSparseFeat hist_item_id / hist_cate_id sharing the item_id / cate_id tables.

    Args:
        dataset: a DatasetMeta, an opened Dataset, or a dataset directory.
        embedding_dim: width of every table (or "auto").
        use_profile: include the profile columns.
        length_name: set the history columns' length_name (e.g. "hist_len", which the
            Parquet files hold) instead of masking by id 0.
        groups: history groups of the dataset (meta.history_groups) to add: their
            `<g>_hist_*` columns, attended as DIN's history_groups {g: the history list}.
        time_gap: add every attended history's `*_hist_time_gap` VarLenDenseFeat (the
            dataset must have them: meta.history_time_gap).

    Returns:
        (columns, ["item_id", "cate_id"]).
    """
    if isinstance(dataset, Dataset):
        meta = dataset.meta
    elif isinstance(dataset, DatasetMeta):
        meta = dataset
    else:
        meta = load_dataset(dataset).meta
    sizes = meta.vocabulary_sizes
    sparse = [USER_ID, *(meta.profile_columns if use_profile else []), ITEM_ID, CATE_ID]
    columns: list[FeatureColumn] = [
        SparseFeat(name, sizes[name], embedding_dim=embedding_dim) for name in sparse
    ]
    for hist, target in ((HIST_ITEM_ID, ITEM_ID), (HIST_CATE_ID, CATE_ID)):
        inner = SparseFeat(hist, sizes[target], embedding_dim=embedding_dim,
                           embedding_name=target)
        columns.append(VarLenSparseFeat(inner, maxlen=meta.maxlen, length_name=length_name))
    missing = [g for g in groups if g not in meta.history_groups]
    if missing:
        raise ValueError(f"history group {missing[0]!r} is not in the dataset; it has "
                         f"{sorted(meta.history_groups) or 'none'}")
    if time_gap and not meta.history_time_gap:
        raise ValueError("time_gap: the dataset has no *_hist_time_gap columns (build it "
                         "with the history time gap)")
    columns += group_feature_columns(groups, time_gap, meta.maxlen, sizes, embedding_dim)
    return columns, [ITEM_ID, CATE_ID]
