"""Optional torch.compile of DIN's dense hot path, falling back to eager when unavailable.

Only dense code is compiled (the activation unit's MLP over packed behaviors): compiling a
model with sparse-gradient embeddings silently runs it all eagerly, and the embedding
lookups gain nothing. On CPU, Inductor fuses Dice's normalisation, sigmoid and products
into a few C++ loops around the GEMMs, which eager PyTorch runs as ~30 passes over the
[N, H] activations.

Compiling can fail where eager works (no C++ compiler, an unsupported Python, a backend
bug): the first failure warns once and every later call runs eagerly, so turning compile
on never breaks training or prediction.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

_state: dict[str, Any] = {"failed": None}


class CompiledOrEager:
    """Calls torch.compile(fn) and, after a compile failure, fn itself (with one warning).

    Args:
        fn: the eager function (a plain function; modules are passed as arguments).
        name: what the warning calls it.
        options: keyword arguments of torch.compile (default dynamic=True: the number of
            packed behaviors N changes every batch).
    """

    def __init__(self, fn: Callable[..., Any], name: str, **options: Any) -> None:
        self.eager = fn
        self.name = name
        self.options = {"dynamic": True, **options}
        self._compiled: Callable[..., Any] | None = None

    def compiled(self) -> Callable[..., Any] | None:
        """The compiled function, built on first use; None once compiling has failed."""
        if _state["failed"] is not None:
            return None
        if self._compiled is None:
            try:
                self._compiled = torch.compile(self.eager, **self.options)
            except Exception as exc:  # e.g. "Dynamo is not supported on Python 3.x"
                self._fail(exc)
                return None
        return self._compiled

    def __call__(self, *args: Any) -> Any:
        fn = self.compiled()
        if fn is None:
            return self.eager(*args)
        try:
            return fn(*args)
        except Exception as exc:
            # A genuine input error raises again from the eager call (compile stays on);
            # if eager succeeds, the failure was the compiler's.
            result = self.eager(*args)
            self._fail(exc)
            return result

    def _fail(self, exc: BaseException) -> None:
        _state["failed"] = f"{type(exc).__name__}: {exc}"
        warnings.warn(
            f"torch.compile of {self.name} failed, running it eagerly from now on "
            f"({_state['failed'][:300]})",
            RuntimeWarning,
            stacklevel=3,
        )


def compile_failed() -> str | None:
    """Why compiling failed in this process (the first error), or None."""
    return _state["failed"]
