"""RankingService: what the HTTP endpoints do, without HTTP: rank, score, events, reload.

The model is held as one reference to an immutable Scorer (with its RankCache). A request
reads it once and uses that Scorer to the end; a reload builds and warms the new Scorer first
and then replaces the reference, so no request ever sees a half-loaded model and none fails
during a swap.

A rank call reads the user's record and the candidates' categories through the RankCache
(see rank_cache.py): a user's entry is valid while the store reports the same version of
that user, items while the item generation is unchanged, so events appended by this or any
other process are seen by the user's next rank call, and other users' events cost nothing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dinrec.serving.bundle_paths import BundleRoot
from dinrec.serving.encoding import Arrays, FeatureEncoder, RequestError, finite_float32
from dinrec.serving.http.prometheus import ServingMetrics
from dinrec.serving.http.schemas import EventsRequest, RankRequest, ScoreRequest
from dinrec.serving.rank_cache import (
    DEFAULT_ITEMS,
    DEFAULT_USERS,
    CachedItem,
    CachedUser,
    RankCache,
    item_arrays,
)
from dinrec.serving.scorer import BACKENDS, Scorer
from dinrec.serving.stores import Behavior, BehaviorStore, Versions, open_store, redact
from dinrec.serving.stores.values import (
    backfilled_history,
    check_events,
    newest_timestamp,
    usable_categories,
    usable_groups,
    usable_profile,
)

log = logging.getLogger("dinrec.serving")

DEFAULT_STORE = "sqlite:///dinrec-store.db"


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one server.

    Args:
        bundle: the model bundle directory.
        store: behavior store URL (see dinrec.serving.stores).
        backend: "torch" or "onnx" (needs `dinrec export BUNDLE --format onnx`).
        max_candidates: most candidates per rank call (and rows per score call).
        max_events: most events per events call.
        max_body_bytes: largest request body accepted (413 beyond).
        api_key: required on every endpoint but /healthz, /readyz and /admin/* when set.
        admin_key: required (X-Admin-Key header) on /admin/*, which exist only when it is
            set; distinct from api_key, so a ranking client cannot swap the model.
        bundle_root: the directory /admin/reload may load bundles from (names relative to
            it); default: the directory holding `bundle`.
        user_feature: the model input fed with user_id (default "user_id" if present).
        history_keep: behaviors kept per user (default: the model's maxlen).
        inference_threads: rank / score / events run on up to this many worker threads
            (default 2: torch and ONNX Runtime release the GIL inside their kernels, so two
            requests overlap on two cores while the event loop parses the next ones); 0 runs
            them on the event loop thread itself.
        cache_users: users whose stored record and encoded inputs are cached (LRU; 0: none).
        cache_items: candidate items whose category and encoded ids are cached (0: none).
            Valid while the store reports the same versions (rank_cache.py).
    """

    bundle: str
    store: str = DEFAULT_STORE
    backend: str = "torch"
    max_candidates: int = 1000
    max_events: int = 1000
    max_body_bytes: int = 1 << 20
    api_key: str | None = None
    admin_key: str | None = None
    bundle_root: str | None = None
    user_feature: str | None = None
    history_keep: int | None = None
    inference_threads: int = 2
    cache_users: int = DEFAULT_USERS
    cache_items: int = DEFAULT_ITEMS

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        for name in ("max_candidates", "max_events", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("cache_users", "cache_items"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.history_keep is not None and self.history_keep < 1:
            raise ValueError(f"history_keep must be >= 1, got {self.history_keep}")
        if self.inference_threads < 0:
            raise ValueError(f"inference_threads must be >= 0, got {self.inference_threads}")
        for name in ("api_key", "admin_key"):
            if getattr(self, name) == "":
                raise ValueError(f"{name} is empty")
        if self.admin_key is not None and self.admin_key == self.api_key:
            raise ValueError("admin_key must differ from api_key: a ranking client must not "
                             "be able to reload the model")


def _timestamp(value: float, field: str) -> float:
    """A timestamp as the float the store orders by; an integer past float range (10**400)
    is the client's error, not an OverflowError."""
    try:
        return float(value)
    except OverflowError:
        raise RequestError(field, "a timestamp in seconds must fit a 64-bit float") from None


@dataclass(frozen=True)
class _Serving:
    """The model and the cache of inputs encoded for it: replaced together on reload."""

    scorer: Scorer
    cache: RankCache


class RankingService:
    """The serving logic behind the HTTP API.

    Args:
        config: the server's settings.
        scorer: an already loaded Scorer (default: load config.bundle).
        store: an open store (default: open config.store).
        metrics: where to count (default: a fresh ServingMetrics).
    """

    def __init__(
        self,
        config: ServeConfig,
        scorer: Scorer | None = None,
        store: BehaviorStore | None = None,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or ServingMetrics()
        self._current = self._serving(scorer or Scorer.load(
            config.bundle, backend=config.backend, user_feature=config.user_feature
        ))
        self.bundles = BundleRoot(config.bundle_root or Path(config.bundle).resolve().parent)
        if not self.bundles.contains(config.bundle):
            raise ValueError(f"bundle_root: {config.bundle_root} does not hold the bundle "
                             f"served ({config.bundle})")
        self._bundle = Path(config.bundle).resolve()
        self.store = store or open_store(config.store)
        self._reload_lock = threading.Lock()
        self.metrics.serving(self.scorer.version, self.scorer.backend.name)

    def _serving(self, scorer: Scorer) -> _Serving:
        return _Serving(scorer, RankCache(self.config.cache_users, self.config.cache_items))

    @property
    def scorer(self) -> Scorer:
        """The Scorer serving now (read once per request)."""
        return self._current.scorer

    @property
    def cache(self) -> RankCache:
        """The cache of the Scorer serving now."""
        return self._current.cache

    def _check_count(self, field: str, n: int, limit: int) -> None:
        if n > limit:
            raise RequestError(field, f"at most {limit} per request, got {n}")

    def rank(self, request: RankRequest) -> dict[str, Any]:
        """Score the candidates for the user; best first (top_k of them if given)."""
        current = self._current  # read once: a reload swaps model and cache together
        scorer = current.scorer
        self._check_count("candidates", len(request.candidates), self.config.max_candidates)
        # The call's own time (a replay's, or None: the server's clock); 10**400 is a 422.
        now = None if request.timestamp is None else _timestamp(request.timestamp, "timestamp")
        user, items = self._inputs(scorer, current.cache, request, now)
        probabilities = scorer.rank_encoded(user.features, items, now).probabilities
        if not np.isfinite(probabilities).all():
            # A fault (500), as json.dumps made it; orjson would quietly write null.
            raise ValueError(f"model {scorer.version} gave non-finite scores")
        order = np.argsort(-probabilities, kind="stable")[: request.top_k]
        self.metrics.scored("rank", len(request.candidates))
        if not user.known:
            self.metrics.count(self.metrics.cold_starts)
        candidates = request.candidates
        out: dict[str, Any] = {
            "user_id": request.user_id,
            "model_version": scorer.version,
            "cold_start": not user.known,
            "history_length": user.history_length,
            "items": [
                {"item_id": candidates[i], "score": p}
                for i, p in zip(order.tolist(), probabilities[order].tolist(), strict=True)
            ],
            "defaulted": list(user.features.defaulted),
        }
        if user.history_lengths is not None:
            out["history_lengths"] = user.history_lengths
        return out

    def _inputs(
        self, scorer: Scorer, cache: RankCache, request: RankRequest, before: float | None
    ) -> tuple[CachedUser, Arrays]:
        """(the user's inputs, the candidates' inputs): from the cache where it holds them
        for the store's current versions, else read from the store (and cached). With
        `before` (the call's timestamp) only stored behaviors strictly before it count."""
        user_id = str(request.user_id)
        candidates = request.candidates
        encoder = scorer.encoder
        versions = self._versions(user_id)  # before any read: see rank_cache.py
        cache.begin(versions)
        # Profile values in the request override stored ones: such inputs are not cached.
        user = None if request.profile else cache.user(versions, user_id)
        # A rank call at an explicit time (a replay, a backfill) reads only behaviors before
        # it, as the data pipeline builds a sample's history: no later event leaks in.
        if user is not None and before is not None and (user.newest or -math.inf) >= before:
            user = None  # cached from behaviors at or after this call's time
        entries = cache.items(versions, candidates)
        missing = [i for i, e in enumerate(entries) if e is None]
        if user is None or missing:
            feeds = scorer.feeds
            # A model with history groups reads each from its own types; the plain model
            # (one history, no mapping) its latest maxlen of every type.
            reads = feeds.reads() if user is None and not feeds.every_type else ()
            limit = scorer.maxlen if user is None and feeds.every_type else 0
            cats = [str(candidates[i]) for i in missing]
            record, found = (self.store.lookup(user_id, limit, cats, reads) if reads
                             else self.store.lookup(user_id, limit, cats))
            if user is None:
                # The store may hold profile values of features this model does not read.
                allowed = set(encoder.profile_features)
                profile, skipped = usable_profile(
                    encoder, {k: v for k, v in record.profile.items() if k in allowed}
                )
                if skipped:
                    self.metrics.count(self.metrics.skipped, float(skipped), "profile")
                profile.update(request.profile)
                newest = newest_timestamp(
                    [b for behaviors in (record.history, *record.groups) for b in behaviors])
                if reads:
                    groups, skipped = usable_groups(
                        self.store, encoder, scorer.feeds, user_id, record, before)
                    history = groups.pop("", [])
                    lengths = {"": len(history), **{k: len(v) for k, v in groups.items()}}
                else:
                    groups, lengths = {}, None
                    history, skipped = backfilled_history(
                        self.store, encoder, user_id, record.history, scorer.maxlen, before
                    )
                if skipped:
                    self.metrics.count(self.metrics.skipped, float(skipped), "behavior")
                user = CachedUser(
                    record.known,
                    sum(lengths.values()) if lengths else min(len(history), scorer.maxlen),
                    encoder.user(request.user_id, profile, history, groups),
                    lengths if lengths is None or "" in encoder.slots
                    else {k: v for k, v in lengths.items() if k},
                    newest,
                )
                # A view bounded by this call's time is not the user's current inputs.
                bounded = before is not None and (newest or -math.inf) >= before
                if not request.profile and not bounded:
                    cache.put_user(versions, user_id, user)
            if missing:
                found, skipped = usable_categories(encoder, found)
                if skipped:
                    self.metrics.count(self.metrics.skipped, float(skipped), "category")
                fresh = self._encode_items(encoder, candidates, entries, missing, found)
                cache.put_items(versions, [candidates[i] for i in missing], fresh)
                for i, entry in zip(missing, fresh, strict=True):
                    entries[i] = entry
        return user, item_arrays(encoder.candidates, [e for e in entries if e is not None])

    @staticmethod
    def _encode_items(
        encoder: FeatureEncoder, candidates: Sequence[Any], entries: Sequence[CachedItem | None],
        missing: Sequence[int], found: Sequence[str | None],
    ) -> list[CachedItem]:
        """Encode the candidates at `missing` (their stored categories `found`)."""
        try:
            arrays = encoder.items([candidates[i] for i in missing], found)
        except RequestError:
            # Encode them all, so the error names the position in the request.
            every: list[str | None] = [None if e is None else e.category for e in entries]
            for i, category in zip(missing, found, strict=True):
                every[i] = category
            encoder.items(candidates, every)
            raise
        columns = [arrays[name].tolist() for name in encoder.candidates]
        return [
            CachedItem(category, tuple(column[n] for column in columns))
            for n, category in enumerate(found)
        ]

    def _versions(self, user_id: str) -> Versions | None:
        """The store's versions for the user, or None when it cannot tell (then nothing is
        cached) or nothing is to be cached (then the read is saved)."""
        if not self.config.cache_users and not self.config.cache_items:
            return None
        read = getattr(self.store, "versions", None)  # stores written before it existed
        return None if read is None else read(user_id)

    def score(self, request: ScoreRequest) -> dict[str, Any]:
        """Score self-contained rows."""
        scorer = self.scorer
        self._check_count("rows", len(request.rows), self.config.max_candidates)
        scores = scorer.score(request.rows)
        self.metrics.scored("score", len(request.rows))
        return {"model_version": scorer.version, "scores": [float(s) for s in scores]}

    @property
    def history_keep(self) -> int:
        """Behaviors kept per user: what the model reads, unless configured."""
        return self.config.history_keep or max(self.scorer.maxlen, 1)

    def append(self, request: EventsRequest) -> dict[str, Any]:
        """Append behaviors; the next rank call of each user sees them."""
        self._check_count("events", len(request.events), self.config.max_events)
        # Ids this model cannot take would otherwise sit in the store and fail rank calls.
        check_events(self.scorer.encoder, request.events)
        feeds = self.scorer.feeds
        for i, e in enumerate(request.events):
            feeds.check(e.behavior, f"events[{i}].behavior")  # read by no history: a 422
        events = [
            Behavior(
                str(e.user_id), str(e.item_id), None if e.category is None else str(e.category),
                _timestamp(e.timestamp, f"events[{i}].timestamp"), e.behavior,
                finite_float32(e.weight, f"events[{i}].weight"),
            )
            for i, e in enumerate(request.events)
        ]
        # An event older than its user's latest `keep` is stored and trimmed at once: the
        # response says so, rather than acknowledging it as appended.
        trimmed = self.store.append(events, keep=self.history_keep) or 0
        self.metrics.count(self.metrics.events, float(len(events)))
        return {"appended": len(events) - trimmed, "trimmed": trimmed,
                "users": len({e.user_id for e in events})}

    def reload(self, bundle: str | None = None) -> dict[str, Any]:
        """Load `bundle` (a directory in the bundle root; default: the current one,
        re-read) and swap it in.

        The old Scorer keeps serving until the new one is loaded and warmed; on any error
        the old one stays and a RequestError (field "bundle", no path outside the root)
        propagates. Reloads run one at a time.
        """
        with self._reload_lock:
            started = time.perf_counter()
            previous = self.scorer
            path = self._bundle
            try:
                path = self._bundle if bundle is None else self.bundles.resolve(bundle)
                fresh = Scorer.load(
                    path, backend=self.config.backend, user_feature=self.config.user_feature
                )
            except Exception as err:
                self.metrics.count(self.metrics.reloads, 1.0, "failed")
                log.error("reload of %s failed: %s", bundle or path, err)
                if isinstance(err, RequestError):
                    raise
                said = self.bundles.scrub(f"{type(err).__name__}: {err}", path)
                raise RequestError("bundle", f"cannot load {self.bundles.relative(path)!r} "
                                   f"({said}); still serving {previous.version}") from err
            self._current = self._serving(fresh)  # the swap: one reference assignment
            self._bundle = path
            self.metrics.count(self.metrics.reloads, 1.0, "ok")
            self.metrics.serving(fresh.version, fresh.backend.name)
            seconds = time.perf_counter() - started
            log.info("reloaded %s: version %s -> %s in %.2fs", path, previous.version,
                     fresh.version, seconds)
            return {
                "model_version": fresh.version, "previous_version": previous.version,
                "backend": fresh.backend.name, "bundle": self.bundles.relative(path),
                "seconds": round(seconds, 4),
            }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details): a model is loaded and the store answers."""
        details: dict[str, Any] = {
            "model_version": self.scorer.version, "store": redact(self.store.url)
        }
        try:
            self.store.ping()
        except Exception as err:  # any store failure means "not ready", never a crash
            details["reason"] = f"store unreachable: {type(err).__name__}: {err}"
            return False, details
        return True, details

    def model_info(self) -> dict[str, Any]:
        info = self.scorer.describe()
        info["bundle"] = self.bundles.relative(self._bundle)  # never a server path
        info["store"] = redact(self.store.url)
        info["limits"] = {
            "max_candidates": self.config.max_candidates, "max_events": self.config.max_events,
            "max_body_bytes": self.config.max_body_bytes, "history_keep": self.history_keep,
        }
        return info

    def close(self) -> None:
        self.store.close()
