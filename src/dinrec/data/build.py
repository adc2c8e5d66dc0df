"""build_dataset: a raw behavior log -> a dataset directory, in one call.

read (a reader from dinrec.data.readers, or the synthetic generator) -> build samples
(a protocol) -> fit vocabularies on the training period -> write train/test Parquet,
vocab.json and dataset.json. This is what `dinrec data build` and the experiment runner call.

Every option name is checked before the log is read (build_options), so a misspelt option
fails at once instead of after a slow read. The directory is written under a temporary name
beside `out_dir` and renamed into place only when complete (staging): a failed build leaves
no half-written dataset, and an overwritten one is replaced only by a whole new one.

Example:
    >>> summary = build_dataset("movielens", "data/ml-100k", "rating",  # doctest: +SKIP
    ...                         "out/ml100k", maxlen=50, split={"test_fraction": 0.2})
    >>> print(summary.format())  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dinrec.data.build_options import (
    SOURCES,
    SYNTHETIC,
    check_history_options,
    check_option_names,
    keyword_options,
    protocol_option_names,
    route_options,
    source_option_names,
)
from dinrec.data.dataset import DEFAULT_ROW_GROUP_SIZE, SPLITS, write_dataset
from dinrec.data.events import EventLog
from dinrec.data.protocols import PROTOCOLS, Samples, TimeSplit, build_samples
from dinrec.data.protocols.behavior_groups import BehaviorGroups
from dinrec.data.protocols.samples import check_maxlen
from dinrec.data.readers import read_log_with_stats
from dinrec.data.readers.problems import ON_ERROR_CHOICES
from dinrec.data.staging import DATASET_FILES, prepare_out_dir, staged
from dinrec.data.synthetic import generate_log
from dinrec.data.synthetic_chunked import USERS_PER_CHUNK, write_chunked
from dinrec.data.vocabulary import Vocabularies

# The option names and the staged output have their own modules (build_options, staging);
# their public names stay importable from here, where `dinrec data build` and configs find them.
__all__ = ["DATASET_FILES", "SOURCES", "SYNTHETIC", "BuildSummary", "build_dataset",
           "keyword_options", "protocol_option_names", "route_options", "source_option_names"]

_STAGES = ("read", "samples", "vocabulary", "write")


@dataclass(frozen=True)
class BuildSummary:
    """What a build produced, for printing and for experiment records.

    Args:
        out_dir: the dataset directory.
        source: the log source name given (e.g. "movielens").
        protocol: the sample protocol.
        events: events read (impressions for click-log), after malformed rows were skipped.
        samples: {split: sample count}.
        positives: {split: positive sample count}.
        users: distinct users over both splits.
        items: distinct candidate items over both splits.
        mean_hist_len: mean history length over all samples.
        maxlen: history length T.
        skipped_rows: malformed rows skipped while reading (on_error="skip").
        seconds: wall time of the whole build.
        history_groups: {group: behavior types} written as `<group>_hist_*` columns.
    """

    out_dir: Path
    source: str
    protocol: str
    events: int
    samples: dict[str, int]
    positives: dict[str, int]
    users: int
    items: int
    mean_hist_len: float
    maxlen: int
    skipped_rows: int
    seconds: float
    history_groups: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total_samples(self) -> int:
        return sum(self.samples.values())

    @property
    def positive_rate(self) -> float:
        """Positives / samples over both splits (0.0 when there are no samples)."""
        total = self.total_samples
        return sum(self.positives.values()) / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (out_dir as a string, positive_rate included)."""
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["positive_rate"] = self.positive_rate
        return data

    def format(self) -> str:
        """A few human-readable lines, as `dinrec data build` prints them."""
        parts = ", ".join(f"{split} {n}" for split, n in self.samples.items())
        skipped = f", {self.skipped_rows} malformed rows skipped" if self.skipped_rows else ""
        groups = ["history groups:      " + ", ".join(
            f"{g} ({'+'.join(t)})" for g, t in self.history_groups.items())
        ] if self.history_groups else []
        return "\n".join([
            f"dataset:             {self.out_dir}",
            f"source / protocol:   {self.source} / {self.protocol}",
            f"events read:         {self.events}{skipped}",
            f"samples:             {self.total_samples} ({parts})",
            f"positive rate:       {self.positive_rate:.4f}",
            f"users:               {self.users}",
            f"items:               {self.items}",
            f"mean history length: {self.mean_hist_len:.2f} (maxlen {self.maxlen})",
            *groups,
            f"took:                {self.seconds:.2f} s",
        ])


def _as_split(split: TimeSplit | Mapping[str, Any] | None) -> TimeSplit | None:
    if split is None or isinstance(split, TimeSplit):
        return split
    if isinstance(split, Mapping):
        return TimeSplit.from_dict(split)
    raise ValueError(f"split must be a TimeSplit, a dict or None, got {split!r}")


def _check_path(source: str, path: str | os.PathLike[str] | None, what: str) -> None:
    """A missing path fails here, before a progress bar starts, naming the path."""
    if source == SYNTHETIC:
        return  # the generator takes no path; `path` is documented as unused
    if path is None:
        raise ValueError(f"source {source!r} needs a {what} path")
    if not Path(path).expanduser().exists():
        raise FileNotFoundError(f"{what} path {path} does not exist")


def _read(
    source: str, path: str | os.PathLike[str] | None, options: dict[str, Any], on_error: str,
    seed: int,
) -> tuple[EventLog, int]:
    """(log, malformed rows skipped) from a reader or the synthetic generator."""
    if source == SYNTHETIC:
        return generate_log(seed=seed, **options), 0
    assert path is not None  # _check_path ran first
    log, stats = read_log_with_stats(source, path, on_error=on_error, **options)
    return log, stats.skipped


def build_dataset(
    source: str,
    path: str | os.PathLike[str] | None,
    protocol: str,
    out_dir: str | os.PathLike[str],
    *,
    behaviors_path: str | os.PathLike[str] | None = None,
    maxlen: int = 50,
    seed: int = 0,
    min_count: int | Mapping[str, int] = 1,
    hash_buckets: Mapping[str, int] | None = None,
    split: TimeSplit | Mapping[str, Any] | None = None,
    reader_options: Mapping[str, Any] | None = None,
    protocol_options: Mapping[str, Any] | None = None,
    on_error: str = "raise",
    overwrite: bool = False,
    progress: bool = False,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    history_groups: Mapping[str, Sequence[str]] | None = None,
    sample_behaviors: Sequence[str] | None = None,
    history_time_gap: bool = False,
) -> BuildSummary:
    """Read a behavior log, build samples, fit vocabularies on train, write a dataset dir.

    Args:
        source: a reader name (see dinrec.data.readers.READERS) or "synthetic"
            (dinrec.data.synthetic.generate_log; `path` is unused).
        path: the log file or directory the reader takes.
        protocol: "rating", "next-item" or "click-log".
        out_dir: the dataset directory to write (new, empty, or with overwrite=True a
            previous dataset).
        behaviors_path: click-log only: a behavior log read with the same source and options.
        maxlen: history length T.
        seed: seed of the synthetic generator and of next-item's negative sampler.
        min_count: training count an id needs to get its own id (one value, or per feature).
        hash_buckets: {feature: buckets} for features hashed instead of looked up.
        split: TimeSplit or {"test_fraction": f} / {"cutoff": ts}; default each user's last
            20%. next-item has its own fixed split and rejects one.
        reader_options: the reader's keyword options (generate_log's for synthetic).
        protocol_options: the protocol's keyword options (threshold, history, negatives, ...).
        on_error: "raise" on a malformed row, or "skip" it and count it.
        overwrite: replace an existing dataset in out_dir.
        progress: show a tqdm bar of the build stages on stderr.
        row_group_size: Parquet rows per row group (what a streaming loader reads at once).
        history_groups: {group: behavior types}, e.g. {"buy": ["buy", "cart"]}: per group,
            `<group>_hist_item_id` / `_cate_id` / `_len` columns holding the user's events of
            those types strictly before each sample, latest maxlen (from the behaviors log
            for click-log, else the log), ids in the vocabularies fitted on the protocol's
            training events (an item only ever bought is unknown, 1). Needs a log with
            behavior types (taobao; a table with a behavior column).
        sample_behaviors: build the protocol's samples (and its own hist_* history) from the
            events of these types only, e.g. ["pv"]; the groups still see every type.
        history_time_gap: also write `*_hist_time_gap` for every attended history:
            log1p(hours from the behavior to the sample), 0 at padding.

    Returns:
        BuildSummary of the written dataset.

    Raises:
        ValueError naming the source, protocol, option or directory at fault;
        FileNotFoundError naming a missing log path.
    """
    start = time.perf_counter()
    reader_opts, proto_opts = dict(reader_options or {}), dict(protocol_options or {})
    check_option_names(source, protocol, reader_opts, proto_opts)
    groups = check_history_options(source, history_groups, sample_behaviors)
    accepted = keyword_options(PROTOCOLS[protocol])
    proto_opts["maxlen"] = check_maxlen(maxlen)
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    time_split = _as_split(split)
    if time_split is not None:
        if "split" not in accepted:
            raise ValueError(f"protocol {protocol!r} has a fixed split; split does not apply")
        proto_opts["split"] = time_split
    if "seed" in accepted:
        proto_opts["seed"] = seed
    if behaviors_path is not None and protocol != "click-log":
        raise ValueError(f"behaviors_path is for the click-log protocol, not {protocol!r}")
    if behaviors_path is not None and source == SYNTHETIC:
        raise ValueError("source 'synthetic' generates its own log; it takes no behaviors_path")
    _check_path(source, path, "log")
    if behaviors_path is not None:
        _check_path(source, behaviors_path, "behaviors")
    # Resolved, so "." or "a/.." still has a real name and parent to stage beside.
    out = Path(out_dir).expanduser().resolve()
    prepare_out_dir(out, overwrite)

    chunk = int(reader_opts.pop(USERS_PER_CHUNK, 0) or 0) if source == SYNTHETIC else 0
    if chunk:
        if protocol != "click-log" or hash_buckets:
            raise ValueError(f"reader option {USERS_PER_CHUNK} builds the click-log protocol "
                             "without hash_buckets")
        if groups or sample_behaviors is not None or history_time_gap:
            # The generator has no behavior types, and the chunked writer no group columns.
            raise ValueError(f"reader option {USERS_PER_CHUNK} does not build history groups, "
                             "sample_behaviors or the history time gap; leave them out")
        meta, events = staged(out, lambda staging: write_chunked(
            staging, n_users=int(reader_opts.pop("n_users", 2000)), users_per_chunk=chunk,
            seed=seed, min_count=min_count, options=reader_opts, protocol_options=proto_opts,
            row_group_size=row_group_size))
        c = meta.counts
        return BuildSummary(
            out_dir=out, source=source, protocol=protocol, events=events,
            samples={s: c[s]["samples"] for s in SPLITS},
            positives={s: c[s]["positives"] for s in SPLITS},
            users=max(c[s]["users"] for s in SPLITS), items=max(c[s]["items"] for s in SPLITS),
            mean_hist_len=sum(c[s]["mean_hist_len"] * c[s]["samples"] for s in SPLITS)
            / max(1, sum(c[s]["samples"] for s in SPLITS)),
            maxlen=meta.maxlen, skipped_rows=0, seconds=time.perf_counter() - start)
    with tqdm(total=len(_STAGES), desc="dinrec data build", unit="stage", file=sys.stderr,
              disable=not progress, leave=False) as bar:
        bar.set_postfix_str(f"reading {source}")
        log, skipped = _read(source, path, reader_opts, on_error, seed)
        behaviors = None
        if behaviors_path is not None:
            behaviors, more = _read(source, behaviors_path, reader_opts, on_error, seed)
            skipped += more
        events = len(log)
        typed = behaviors if behaviors is not None else log  # what the groups are drawn from
        if sample_behaviors is not None:
            log = _of_types(log, sample_behaviors)
        bar.update()
        bar.set_postfix_str(f"{protocol} samples from {len(log)} events")
        samples = build_samples(protocol, log, behaviors=behaviors, **proto_opts)
        bar.update()
        bar.set_postfix_str("fitting vocabularies")
        vocabs = Vocabularies.fit(samples.fit_values, min_count=min_count,
                                  hash_buckets=hash_buckets)
        bar.update()
        bar.set_postfix_str(f"writing {out}")
        built = BehaviorGroups(typed, groups, encode=vocabs.encode,
                               maxlen=samples.maxlen) if groups else None
        staged(out, lambda staging: write_dataset(
            staging, samples, vocabs, row_group_size=row_group_size, groups=built,
            time_gap=history_time_gap, sample_behaviors=sample_behaviors))
        bar.update()
    summary = _summarize(out, source, protocol, events, samples, skipped,
                         time.perf_counter() - start)
    return replace(summary, history_groups=groups)


def _of_types(log: EventLog, types: Sequence[str]) -> EventLog:
    """The events of `types` (sample_behaviors); a log without behavior types raises."""
    if log.behavior is None:
        raise ValueError(f"sample_behaviors: the log from {log.source} has no behavior types")
    known = set(np.unique(log.behavior).tolist())
    missing = [t for t in types if t not in known]
    if missing:
        raise ValueError(f"sample_behaviors: type {missing[0]!r} is not in the log; it has "
                         f"{sorted(known)}")
    return log.take(np.isin(log.behavior, np.asarray(list(types))))


def _summarize(
    out: Path, source: str, protocol: str, events: int, samples: Samples, skipped: int,
    seconds: float,
) -> BuildSummary:
    parts = dict(zip(SPLITS, (samples.train, samples.test), strict=True))
    hist_len = np.concatenate([p.hist_len for p in parts.values()])
    return BuildSummary(
        out_dir=out, source=source, protocol=protocol, events=events,
        samples={s: len(p) for s, p in parts.items()},
        positives={s: int(np.sum(p.label == 1)) for s, p in parts.items()},
        users=len(np.unique(np.concatenate([p.user for p in parts.values()]))),
        items=len(np.unique(np.concatenate([p.item for p in parts.values()]))),
        mean_hist_len=float(hist_len.mean()) if len(hist_len) else 0.0,
        maxlen=samples.maxlen, skipped_rows=skipped, seconds=seconds,
    )
