"""KerasFacade: compile / fit / evaluate / predict / save as thin calls into the Trainer."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dinrec.inputs import as_input_dict, prepare_group, prepare_inputs, prepare_labels
from dinrec.metrics import resolve_metrics
from dinrec.models.network import InterestNetwork
from dinrec.training.batches import BatchSource, TensorBatches
from dinrec.training.callbacks import Callback, History
from dinrec.training.epoch_metrics import DEFAULT_CAP
from dinrec.training.evaluation import evaluate_model, predict_logits
from dinrec.training.trainer import Trainer
from dinrec.training.weight_average import DEFAULT_MOMENTUM

DEFAULT_FIT_BATCH = 32  # Keras' default when batch_size is None


class KerasFacade(InterestNetwork):
    """Keras-style methods on top of the pure network; state lives in a Trainer."""

    _trainer: Trainer | None = None

    def compile(
        self,
        optimizer: Any = "adam",
        loss: str = "binary_crossentropy",
        metrics: Sequence[str] | None = None,
        *,
        lr: float | None = None,
        gauc_group: str | None = None,
        retain_memory: bool = False,
        train_metric_rows: int | None = DEFAULT_CAP,
        ema_momentum: float | None = DEFAULT_MOMENTUM,
    ) -> None:
        """Choose optimizer, loss and metrics (names; unknown names raise).

        Args:
            optimizer: 'adam', 'adagrad', 'sgd', 'rmsprop' or a torch optimizer.
            loss: 'binary_crossentropy'.
            metrics: e.g. ['auc', 'gauc', 'binary_crossentropy', 'accuracy'].
            lr: learning rate for a named optimizer (Keras defaults otherwise).
            gauc_group: the input GAUC groups by (default user_id / user / uid).
            retain_memory: fix glibc's mmap and trim thresholds for the whole process
                (mallopt), for steps with blocks over the 31 MiB glibc's adaptive thresholds keep;
                off by default, which sets nothing process-wide (dinrec.training.allocator).
            train_metric_rows: a training epoch with more rows computes its AUC / GAUC over
                a uniform sample of this many rows (logloss, accuracy and loss stay over
                every row; see dinrec.training.epoch_metrics); None: every row. Evaluation
                metrics are always over every row.
            ema_momentum: evaluate, predict and save an exponential moving average of
                the weights with this momentum (embedding rows averaged lazily, see
                dinrec.training.weight_average), as Keras' `use_ema=True,
                ema_momentum=0.99`; training continues from the raw weights. None: the
                last step's weights (DeepCTR's and Keras' default). On by default for
                the validation GAUC and logloss it gained on every log of
                docs/quality.md over 3 seeds.
        """
        self._trainer = Trainer(self, optimizer, loss, metrics, gauc_group, lr, retain_memory,
                                train_metric_rows, ema_momentum)

    @property
    def trainer(self) -> Trainer:
        if self._trainer is None:
            raise RuntimeError("call model.compile(...) before fit")
        return self._trainer

    def _source(
        self, x: Any, y: Any, batch_size: int, shuffle: bool
    ) -> TensorBatches | BatchSource:
        x = as_input_dict(self.schema, x)
        if not isinstance(x, dict) and isinstance(x, BatchSource):
            if y is not None:
                raise ValueError("y must be None when x is a batch loader (it yields labels)")
            return x
        feats = prepare_inputs(self.schema, x)
        n = int(next(iter(feats.values())).shape[0])
        group = self._trainer.group_column if self._trainer is not None else None
        if group is not None and group not in feats and group in x:
            # A grouping column that is not a model input (e.g. a dataset's user_key) rides
            # along so GAUC can group by it; the model ignores it.
            feats[group] = prepare_group(x[group], n, group)
        if y is None:
            raise ValueError("y (labels) is required with a dict of inputs")
        labels = prepare_labels(y, n)
        return TensorBatches(feats, labels, batch_size, shuffle, seed=self.config.seed)

    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int = 1,
        initial_epoch: int = 0,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool = True,
        callbacks: Sequence[Callback] | None = None,
    ) -> History:
        """Train; x is a dict of arrays (with y) or a batch loader yielding (features, labels).

        Inputs are checked and converted to tensors once, then batched by indexing.
        validation_split takes the last fraction of the rows before shuffling (as Keras).
        """
        trainer = self.trainer
        bs = DEFAULT_FIT_BATCH if batch_size is None else batch_size
        train = self._source(x, y, bs, shuffle)
        validation: TensorBatches | BatchSource | None = None
        if validation_data is not None:
            if isinstance(validation_data, (tuple, list)):
                if len(validation_data) != 2:
                    raise ValueError("validation_data must be (x_val, y_val) or a loader")
                validation = self._source(validation_data[0], validation_data[1], bs, False)
            else:
                validation = self._source(validation_data, None, bs, False)
        elif validation_split:
            if not 0.0 < validation_split < 1.0:
                raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
            if not isinstance(train, TensorBatches):
                raise ValueError("validation_split needs in-memory inputs; pass validation_data")
            train, val = train.split(validation_split)
            val.shuffle = False
            validation = val
        return trainer.fit(train, epochs, initial_epoch, verbose, callbacks, validation)

    def evaluate(
        self, x: Any = None, y: Any = None, batch_size: int = 256, verbose: int = 0
    ) -> dict[str, float]:
        """{'loss': mean BCE, metric: value, ...} over all rows, in eval mode."""
        source = self._source(x, y, batch_size, False)
        if self._trainer is not None:
            return self._trainer.evaluate(source)
        # Not compiled: loss and AUC, with no optimizer or Trainer built for it.
        return evaluate_model(self, source, resolve_metrics(["binary_crossentropy", "auc"]))

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """Click probabilities, shape (n, 1); eval mode under inference_mode, mode restored."""
        x = as_input_dict(self.schema, x)
        if not isinstance(x, dict) and isinstance(x, BatchSource):
            source: Any = x
        else:
            source = TensorBatches(prepare_inputs(self.schema, x), None, batch_size)
        logits = predict_logits(self, source)
        return torch.sigmoid(logits).numpy().astype(np.float32).reshape(-1, 1)

    def save_weights(self, path: str | os.PathLike[str]) -> None:
        """Write the state_dict (weights, Dice / BatchNorm statistics) as safetensors, as
        Keras' save_weights; load_weights reads it into a model built the same way."""
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  str(path))

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load a save_weights file; every tensor must match this model's (strict)."""
        from safetensors.torch import load_file

        self.load_state_dict(load_file(str(path)), strict=True)

    def save(
        self, path: str | os.PathLike[str], vocab: dict[str, Any] | None = None,
        history_behaviors: dict[str, list[str]] | None = None,
    ) -> Path:
        """Write a bundle directory (JSON + safetensors); dinrec.load_model reads it back.
        history_behaviors: the behavior types feeding each history, for serving (see
        dinrec.bundle.save_model)."""
        from dinrec.bundle import save_model

        return save_model(self, path, vocab=vocab, history_behaviors=history_behaviors)
