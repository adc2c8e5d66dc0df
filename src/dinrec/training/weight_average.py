"""WeightAverage: an exponential moving average of the weights, used outside training.

Adam at a constant learning rate leaves the weights moving around the optimum by the noise
of the last few hundred mini-batches; the epoch's last step is one sample of that walk. An
exponential moving average of the weights (Polyak averaging, TF's ExponentialMovingAverage,
Keras' `use_ema`) scores from the centre of the walk instead. On the validation splits of
docs/quality.md (3 seeds) it adds 0.0013-0.0024 GAUC and takes 0.0035-0.011 off the logloss
on all four logs (ml-100k rating and next-item, synthetic, local).

Dense weights (the attention unit, the MLP: ~10^5 numbers for DIN) and embedding tables of
up to 2^18 numbers are averaged at every step. Larger tables (up to 10^8 numbers, a few
thousand rows touched per step) are averaged lazily per row: before a step changes a
batch's rows, those rows' averages catch up over
the steps since they were last caught up, as repeated averaging toward their current value;
every row catches up when the average is put in. That is exactly the per-step average for a
row that moves only when its id is in the batch (sparse_embeddings=True, MBA, no
regularization); with dense Adam a row also drifts for a few steps after its last batch (the
moment estimates decay), and the catch-up credits the whole interval with where it drifted
to. Per step the cost scales with the batch's ids, not the vocabulary. Averaging only the
dense weights kept the logloss gain but not the GAUC gain (docs/quality.md).

The Trainer swaps: while it trains, the model holds the raw weights and this object the
average; between epochs and after fit, the model holds the average (so evaluate, predict,
callbacks, checkpoints and saved bundles all see it) and this object the raw weights that
the next epoch continues from.

Example:
    >>> w = torch.nn.Parameter(torch.zeros(1))
    >>> avg = WeightAverage([w], momentum=0.5)
    >>> with torch.no_grad():
    ...     _ = w.fill_(1.0)
    >>> avg.update()  # decay min(0.5, 2/11): the average moves 9/11 of the way
    >>> avg.use_average(); round(float(w), 4)
    0.8182
    >>> avg.use_raw(); float(w)
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dinrec.training.regularization import present_rows

DEFAULT_MOMENTUM = 0.99  # Keras' ema_momentum; horizon ~100 steps
# Tables of at most this many numbers (1 MiB of float32) are averaged at every step: a lerp
# over them costs less than the per-row catch-up's ~10 small ops (ml-100k's are all below).
EVERY_STEP_MAX = 1 << 18


class WeightAverage:
    """EMA with TF's warm-up: decay_t = min(momentum, (1 + t) / (10 + t)) at step t.

    The warm-up lets the average forget the initial weights within the first tens of steps
    (at t = 100 the decay is 0.92), so a short run is not scored with near-initial weights.

    Args:
        params: dense weights, averaged at every update().
        momentum: the decay once warmed up (Keras' ema_momentum).
        tables: embedding tables by name ([V, E] weights); those above EVERY_STEP_MAX
            numbers are averaged per row: call before_step(ids) with each table's ids of
            the batch before the optimizer step.
    """

    def __init__(
        self,
        params: Sequence[nn.Parameter],
        momentum: float = DEFAULT_MOMENTUM,
        tables: dict[str, nn.Parameter] | None = None,
    ) -> None:
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
                or not 0.0 < momentum < 1.0:
            raise ValueError(f"ema_momentum must be in (0, 1) or None (off), got {momentum!r}")
        self.momentum = float(momentum)
        tables = dict(tables or {})
        # A table small enough is averaged with the dense weights at every step (one fused
        # lerp beats a gather and scatter of its batch rows); larger ones lazily per row.
        every_step = [w for w in tables.values() if w.numel() <= EVERY_STEP_MAX]
        self.tables = {n: w for n, w in tables.items() if w.numel() > EVERY_STEP_MAX}
        params = [*params, *every_step]
        self.dense = len(params)
        self.params = [*params, *self.tables.values()]  # every-step first, then lazy tables
        # The weights the model does not hold now: the average while training, else the raw.
        self.other = [p.detach().clone() for p in self.params]
        # Per table row: log_decay of the step its average is caught up to ([V] float64;
        # stored as the log so a catch-up is one gather, subtract and exp per row).
        self.synced = {name: torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
                       for name, w in self.tables.items()}
        self._slot = {name: len(params) + i for i, name in enumerate(self.tables)}
        self.updates = 0
        self.holds_average = False
        self._versions: list[int] = []
        # The warm-up ends at the first step whose (1 + t) / (10 + t) reaches the momentum.
        self._warm = max(1, math.ceil((10.0 * self.momentum - 1.0) / (1.0 - self.momentum)))

    def log_decay(self, steps: torch.Tensor) -> torch.Tensor:
        """sum over s = 1..t of log decay_s, for each t of `steps` (float64, exact form).

        Before the warm-up ends the product of (1 + s) / (10 + s) telescopes into Gamma
        functions; after it every step adds log(momentum).
        """
        t = steps.to(torch.float64)
        early = torch.clamp(t, max=self._warm - 1)
        warm = torch.lgamma(early + 2) - torch.lgamma(early + 11) + math.lgamma(11)
        return warm + torch.clamp(t - (self._warm - 1), min=0) * math.log(self.momentum)

    def before_step(self, ids: dict[str, torch.Tensor]) -> None:
        """Catch up the rows a step is about to change ({table: ids [K]}, repeats allowed)."""
        if self.holds_average:
            raise RuntimeError("WeightAverage.before_step while the model holds the average")
        self._follow_params()
        now = self._now_log()
        for name, table_ids in ids.items():
            if name in self.tables:
                rows = present_rows(table_ids, self.tables[name].shape[0])
                self._catch_up(name, rows, now)

    def _now_log(self) -> torch.Tensor:
        """log_decay of the steps done so far, [1] float64 (on the tables' device)."""
        device = next(iter(self.synced.values())).device if self.synced else None
        return self.log_decay(torch.tensor([self.updates], device=device))

    def _catch_up(self, name: str, rows: torch.Tensor | None, now: torch.Tensor) -> None:
        """Average rows (None: all) toward their current value over their missed steps."""
        weight = self.tables[name].detach()
        average = self.other[self._slot[name]]
        synced = self.synced[name] if rows is None else self.synced[name][rows]
        keep = torch.exp(now - synced).to(weight.dtype)  # [R]: product of the missed decays
        current = weight if rows is None else weight[rows]
        held = average if rows is None else average[rows]
        caught = current + keep.unsqueeze(1) * (held - current)  # [R, E]
        with torch.no_grad():
            if rows is None:
                average.copy_(caught)
                self.synced[name].fill_(now.item())
            else:
                average.index_copy_(0, rows, caught)
                self.synced[name].index_fill_(0, rows, now.item())

    def update(self) -> None:
        """After an optimizer step (model holding the raw weights): dense average <- lerp."""
        if self.holds_average:
            raise RuntimeError("WeightAverage.update while the model holds the average")
        self._follow_params()
        self.updates += 1
        decay = min(self.momentum, (1.0 + self.updates) / (10.0 + self.updates))
        if self.dense:
            with torch.no_grad():
                torch._foreach_lerp_(self.other[: self.dense],
                                     [p.detach() for p in self.params[: self.dense]], 1 - decay)

    def use_average(self) -> None:
        """Put the average into the model (the raw weights are kept here)."""
        if not self.holds_average:
            self._follow_params()
            now = self._now_log()
            for name in self.tables:
                self._catch_up(name, None, now)
            self._swap()
            self.holds_average = True
            self._versions = [p._version for p in self.params]

    def use_raw(self) -> None:
        """Put the raw weights back into the model, to train on.

        If the model's weights were changed since the average went in (load_weights,
        EarlyStopping's restore_best_weights), those weights are taken as both raw and
        average: training continues from what the caller put there.
        """
        if not self.holds_average:
            return
        if self._versions != [p._version for p in self.params]:
            with torch.no_grad():
                torch._foreach_copy_(self.other, [p.detach() for p in self.params])
        self._swap()
        self.holds_average = False

    def _follow_params(self) -> None:
        """Keep the held tensors where the weights are: model.to(device) after compile
        moves the parameters' data, not these copies."""
        for i, (p, t) in enumerate(zip(self.params, self.other, strict=True)):
            if t.device != p.device or t.dtype != p.dtype:
                self.other[i] = t.to(device=p.device, dtype=p.dtype)
        for name, w in self.tables.items():
            if self.synced[name].device != w.device:
                self.synced[name] = self.synced[name].to(w.device)

    def _swap(self) -> None:
        self._follow_params()
        with torch.no_grad():
            held = [p.detach().clone() for p in self.params]
            torch._foreach_copy_([p.detach() for p in self.params], self.other)
            self.other = held

    def reset(self) -> None:
        """Start the average over from the model's current weights (taken as raw)."""
        with torch.no_grad():
            self.other = [p.detach().clone() for p in self.params]
        for synced in self.synced.values():
            synced.zero_()
        self.updates = 0
        self.holds_average = False
        self._versions = []

    def state_dict(self) -> dict[str, Any]:
        return {"other": [t.clone() for t in self.other], "updates": self.updates,
                "holds_average": self.holds_average, "momentum": self.momentum,
                "synced": {name: s.clone() for name, s in self.synced.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """After the model's own state is loaded (it holds what it held when saved)."""
        other = state["other"]
        if len(other) != len(self.params):
            raise ValueError(f"weight average state has {len(other)} tensors, the model "
                             f"{len(self.params)} averaged weights")
        with torch.no_grad():
            for dst, src in zip(self.other, other, strict=True):
                dst.copy_(src)
        for name, synced in state.get("synced", {}).items():
            if name in self.synced:
                self.synced[name].copy_(synced)
        self.updates = int(state["updates"])
        self.holds_average = bool(state["holds_average"])
        self._versions = [p._version for p in self.params]


def table_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The trainable embedding tables of an InterestNetwork by table name ({} for others)."""
    embeddings = getattr(model, "embeddings", None)
    schema = getattr(model, "schema", None)
    if embeddings is None or schema is None:
        return {}
    out = {}
    for name in schema.tables:
        weight = embeddings.table(name).weight
        if weight.requires_grad:
            out[name] = weight
    return out


def dense_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters outside the embedding tables (the ones worth averaging)."""
    embeddings = getattr(model, "embeddings", None)
    skip = {id(p) for p in embeddings.parameters()} if isinstance(embeddings, nn.Module) else set()
    return [p for p in model.parameters() if p.requires_grad and id(p) not in skip]
