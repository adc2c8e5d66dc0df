"""Dataset download: official URLs, checksum verification, atomic writes, safe zip extraction.

Nothing touches the network at import; `download_dataset` does, once per file: a file that
is already in the cache was verified before it got its final name (it is written to a temporary
name and renamed only after its checksum matched), so later calls return at once.

Example:
    >>> from dinrec.data.download import download_dataset
    >>> from dinrec.data.readers import read_log
    >>> log = read_log("movielens", download_dataset("movielens-100k"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

logger = logging.getLogger("dinrec.data.download")

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset and what it must hash to.

    Args:
        url: the official download URL.
        sha256: its SHA-256 hex digest, or None when no trustworthy one is known.
        size: its size in bytes, checked when known.
        md5: an MD5 hex digest, used only where no SHA-256 is known (publishers such as
            GroupLens and SNAP list MD5 sums); it still detects corrupt or truncated files.
        extract: unzip it into the dataset folder after download.
    """

    url: str
    sha256: str | None
    size: int | None = None
    md5: str | None = None
    extract: bool = False

    @property
    def filename(self) -> str:
        """The last part of the URL: the name it gets in the cache."""
        return PurePosixPath(urllib.parse.urlsplit(self.url).path).name


@dataclass(frozen=True)
class Dataset:
    """A downloadable dataset: its files, and the folder inside it that the readers take."""

    files: tuple[RemoteFile, ...]
    root: str = ""
    homepage: str = ""


_GROUPLENS = "https://files.grouplens.org/datasets/movielens"
_SNAP = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"

# SHA-256 and sizes of the GroupLens zips are those recorded by TensorFlow Datasets
# (url_checksums/movielens.txt); MD5s are GroupLens' published ones. The SNAP files have no
# published SHA-256: their sizes and MD5s are as recorded in a third-party download manifest
# (the reviews size also matches a wget log of the official server), not checked here.
DATASETS: dict[str, Dataset] = {
    "movielens-100k": Dataset(
        (RemoteFile(
            f"{_GROUPLENS}/ml-100k.zip",
            sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            size=4924029, md5="0e33842e24a9c977be4e0107933c0723", extract=True,
        ),),
        root="ml-100k", homepage="https://grouplens.org/datasets/movielens/100k/",
    ),
    "movielens-1m": Dataset(
        (RemoteFile(
            f"{_GROUPLENS}/ml-1m.zip",
            sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            size=5917549, md5="c4d9eecfca2ab87c1945afe126590906", extract=True,
        ),),
        root="ml-1m", homepage="https://grouplens.org/datasets/movielens/1m/",
    ),
    "movielens-latest-small": Dataset(
        (RemoteFile(
            f"{_GROUPLENS}/ml-latest-small.zip",
            sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
            size=978202, extract=True,
        ),),
        root="ml-latest-small", homepage="https://grouplens.org/datasets/movielens/latest/",
    ),
    "amazon-electronics": Dataset(
        (
            RemoteFile(f"{_SNAP}/reviews_Electronics_5.json.gz", sha256=None,
                       size=495854086, md5="e4524af6c644cd044b1969bac7b62b2a"),
            RemoteFile(f"{_SNAP}/meta_Electronics.json.gz", sha256=None,
                       size=186594679, md5="b39b77b4c980cca078ec2b93dfcba786"),
        ),
        homepage="https://jmcauley.ucsd.edu/data/amazon/",
    ),
}


class ChecksumError(ValueError):
    """A downloaded file's size or digest is not the expected one."""


def default_cache_dir() -> Path:
    """$DINREC_CACHE when set, else ~/.cache/dinrec."""
    configured = os.environ.get("DINREC_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "dinrec"


def _source_url(remote: RemoteFile, base_url: str | None) -> str:
    url = remote.url if base_url is None else f"{base_url.rstrip('/')}/{remote.filename}"
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"only http(s) downloads are supported, got {url!r}")
    return url


def _verify(remote: RemoteFile, size: int, sha256: str, md5: str) -> None:
    name = remote.filename
    if remote.size is not None and size != remote.size:
        raise ChecksumError(f"{name}: expected {remote.size} bytes, downloaded {size}")
    if remote.sha256 is not None:
        if sha256 != remote.sha256.lower():
            raise ChecksumError(f"{name}: SHA-256 {sha256} does not match the expected "
                                f"{remote.sha256}")
    elif remote.md5 is not None and md5 != remote.md5.lower():
        raise ChecksumError(f"{name}: MD5 {md5} does not match the expected {remote.md5}")


def _fetch(remote: RemoteFile, url: str, target: Path, verify: bool, progress: bool) -> None:
    """Download url to target through a temporary file renamed only once verified."""
    descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                        suffix=".part")
    temporary = Path(name)
    try:
        sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        logger.info("downloading %s", url)
        with os.fdopen(descriptor, "wb") as handle, urllib.request.urlopen(
            url, timeout=_TIMEOUT_S
        ) as response:
            total = remote.size or int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=remote.filename,
                      disable=not progress) as bar:
                while chunk := response.read(_CHUNK):
                    handle.write(chunk)
                    sha256.update(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
        if verify:
            _verify(remote, size, sha256.hexdigest(), md5.hexdigest())
        else:
            logger.warning("%s: not verified (verify=False)", remote.filename)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def check_zip_members(archive: zipfile.ZipFile, destination: Path) -> None:
    """Raise ValueError if any member would land outside destination or is a link."""
    root = destination.resolve()
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        is_link = stat.S_ISLNK(info.external_attr >> 16)
        outside = (
            name.startswith(("/", "\\")) or ".." in parts or (bool(parts) and ":" in parts[0])
            or not (root / name).resolve().is_relative_to(root)
        )
        if outside or is_link:
            kind = "a link" if is_link else "outside the destination"
            raise ValueError(f"{archive.filename}: refusing member {name!r}, which is {kind}")


def extract_zip(path: Path, destination: Path) -> None:
    """Unzip into destination, checking every member first, through a temporary folder."""
    with zipfile.ZipFile(path) as archive:
        check_zip_members(archive, destination)
        staging = Path(tempfile.mkdtemp(dir=destination, prefix=".extract-"))
        try:
            archive.extractall(staging)
            for entry in staging.iterdir():
                final = destination / entry.name
                if final.is_dir() and not final.is_symlink():
                    shutil.rmtree(final)
                elif final.exists() or final.is_symlink():
                    final.unlink()
                os.replace(entry, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def download_dataset(
    name: str, cache_dir: str | os.PathLike[str] | None = None, *, base_url: str | None = None,
    verify: bool = True, progress: bool = False,
) -> Path:
    """Download (once) and unpack a dataset; returns the folder to give to its reader.

    Args:
        name: a key of DATASETS ("movielens-100k", "movielens-1m", "movielens-latest-small",
            "amazon-electronics").
        cache_dir: where datasets live; default $DINREC_CACHE or ~/.cache/dinrec. Each dataset
            gets its own folder <cache_dir>/<name>.
        base_url: fetch the files from this URL prefix instead of the official one (a mirror).
        verify: check sizes and digests (the default). A file with no known digest is
            refused unless verify=False.
        progress: show a progress bar.

    Raises:
        ChecksumError (a ValueError): a download did not match; nothing is left in the cache.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    dataset = DATASETS[name]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    for remote in dataset.files:
        target = folder / remote.filename
        if not target.exists():
            if verify and remote.sha256 is None and remote.md5 is None:
                raise ValueError(f"{remote.filename}: no known checksum to verify it against; "
                                 "pass verify=False to trust it unverified")
            _fetch(remote, _source_url(remote, base_url), target, verify, progress)
        marker = folder / f".{remote.filename}.extracted"
        if remote.extract and not marker.exists():
            extract_zip(target, folder)
            marker.touch()
    return folder / dataset.root if dataset.root else folder
