"""BundleRoot: the one directory POST /admin/reload may load bundles from.

Reload takes a bundle named by the client, so without a root any directory on the server
could be loaded, and the errors of a failed load (no such directory, not a bundle, missing
files) would tell the client what exists where. Names are resolved inside the root
(symlinks and `..` included) and everything said back to a client names paths relative to
it, never the server's absolute paths.
"""

from __future__ import annotations

import os
from pathlib import Path

from dinrec.serving.encoding import RequestError


class BundleRoot:
    """Resolves client-given bundle names inside `root`.

    Args:
        root: the directory holding the bundles that may be served.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ValueError(f"bundle_root: {root} is not a directory")

    def contains(self, path: str | os.PathLike[str]) -> bool:
        return Path(path).resolve().is_relative_to(self.root)

    def resolve(self, name: str) -> Path:
        """The directory `name` (relative to the root, or absolute inside it) names.

        Raises:
            RequestError: `name` leads outside the root, or no directory is there; the
                message names no path outside the root.
        """
        given = Path(name)
        path = (given if given.is_absolute() else self.root / given).resolve()
        if not path.is_relative_to(self.root):
            raise RequestError("bundle", "must name a directory inside the server's bundle root "
                               "(relative to it, e.g. \"model-v2\")")
        if not path.is_dir():
            raise RequestError("bundle", f"no bundle directory {self.relative(path)!r} in the "
                               "bundle root")
        return path

    def relative(self, path: str | os.PathLike[str]) -> str:
        """`path` relative to the root ("." for the root itself)."""
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.root):
            return "<outside the bundle root>"
        return str(resolved.relative_to(self.root))

    def scrub(self, message: str, path: str | os.PathLike[str]) -> str:
        """`message` with the bundle's absolute path (and the root's) made relative, for a
        client to read."""
        for spelled in dict.fromkeys((str(Path(path).resolve()), str(path))):
            message = message.replace(spelled, self.relative(path))
        return message.replace(str(self.root), "<bundle root>")
