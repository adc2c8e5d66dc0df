"""Serving: score raw requests with a bundle (Scorer, no HTTP) and the ranking service.

The Scorer, the behavior stores and the ONNX export need no web framework; the HTTP app
(dinrec.serving.http.app, `dinrec serve`) needs the 'serve' extra. See docs/serving.md.

Example:
    >>> from dinrec.serving import Scorer
    >>> scorer = Scorer.load("din_bundle")                          # doctest: +SKIP
    >>> scorer.rank("u1", ["i1", "i2"], ["c1", "c2"]).probabilities  # doctest: +SKIP
"""

from dinrec.serving.scorer import Scorer

__all__ = ["Scorer"]
