"""Prepared datasets: decoded, resized images and compact label maps, stored once.

Decoding JPEGs and label PNGs dominates a dissection on a GPU, and a dissection reads the
data twice. :func:`prepare_dataset` decodes every selected row of a
:class:`~netdissect.data.BrodenDataset` once and writes a directory holding

* ``images.npy``: uint8, every row's image as :meth:`Preprocess.resize` gives it (H, W, 3),
  flattened and concatenated (rows may differ in size when no input size is set);
* ``labels.npy``: uint16 (int32 when a label number is >= 65536), the annotation layers each
  row has (no padding), flattened and concatenated;
* ``index.npz``: per-row offsets and shapes into those arrays, the layer counts, and per row
  and category whether a layer holds a nonzero label;
* ``prepared.json``: the format version and the dataset's key.

The key (:func:`dataset_key`) hashes the CSV files, the selected categories and rows, the
input size, and the size and mtime of every file the rows reference, so an edited or touched
dataset never reads a stale cache. The directory is written under a temporary name and renamed
when complete: an interrupted run never leaves a cache that looks valid. Reading one opens the
arrays as memory maps, lazily in each DataLoader worker.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .._version import __version__
from ..errors import DatasetError
from ..runs.outputs import PREPARED, check_output

if TYPE_CHECKING:
    from .broden import BrodenDataset

FORMAT_VERSION = 1
INFO_FILE = "prepared.json"
OWNER_FILE = "owner.json"  # in a directory being written: who writes it
TMP_PREFIX = ".tmp-"
AUTO = "auto"


def default_cache_dir() -> Path:
    """Where netdissect caches generated data: ``$NETDISSECT_CACHE``, else
    ``$XDG_CACHE_HOME/netdissect``, else ``~/.cache/netdissect``."""
    env = os.environ.get("NETDISSECT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "netdissect"


def dataset_key(dataset: BrodenDataset) -> str:
    """SHA-256 (hex) of everything a prepared copy of ``dataset`` depends on.

    The CSV files, the selected categories and rows, ``preprocess.input_size``, and the relative
    path, size and mtime of every image and PNG the selected rows reference.
    """
    meta = dataset.meta
    digest = hashlib.sha256()
    selection = {
        "format": FORMAT_VERSION,
        "categories": meta.categories,
        "rows": [r.row for r in meta.rows],
        "input_size": dataset.preprocess.input_size,
    }
    digest.update(json.dumps(selection).encode())
    names = ["index.csv", "label.csv", "category.csv", *(f"c_{c}.csv" for c in meta.all_categories)]
    for name in names:
        path = meta.directory / name
        digest.update(f"\0{name}\0".encode())
        if path.is_file():
            digest.update(path.read_bytes())
    images = meta.directory / "images"
    for row in meta.rows:
        for rel in (row.image, *(p for paths in row.pngs for p in paths)):
            try:
                st = os.stat(images / rel)
                digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{rel}\0missing\n".encode())
    return digest.hexdigest()


def default_prepared_path(dataset: BrodenDataset, key: str | None = None) -> Path:
    """``<cache dir>/prepared/<dataset directory name>-<key[:16]>``."""
    key = key or dataset_key(dataset)
    return default_cache_dir() / "prepared" / f"{dataset.directory.resolve().name}-{key[:16]}"


class PreparedData:
    """An open prepared dataset: reads rows' pixels and label layers from its memory maps.

    The arrays are mapped on first use in each process (DataLoader workers included); pickling
    an instance carries only the path and the small per-row index.
    """

    def __init__(self, path: Path, info: dict, index: dict[str, np.ndarray]) -> None:
        self.path = path
        self.info = info
        self.index = index
        self._images: np.ndarray | None = None
        self._labels: np.ndarray | None = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> PreparedData:
        """Open a prepared directory (without checking which dataset it belongs to)."""
        path = Path(path)
        info = _read_info(path)
        if info is None:
            raise DatasetError(
                f"{path} is not a prepared dataset (no valid {INFO_FILE}); run `netdissect prepare` to write one"
            )
        try:
            with np.load(path / "index.npz", allow_pickle=False) as z:
                index = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise DatasetError(f"prepared dataset {path} is damaged ({exc}); run `netdissect prepare` again") from None
        return cls(path, info, index)

    @property
    def key(self) -> str:
        return self.info["key"]

    def _maps(self) -> tuple[np.ndarray, np.ndarray]:
        if self._images is None or self._labels is None:
            self._images = np.load(self.path / "images.npy", mmap_mode="r")
            self._labels = np.load(self.path / "labels.npy", mmap_mode="r")
        return self._images, self._labels

    def image(self, index: int) -> np.ndarray:
        """Row ``index``'s resized image, uint8 (H, W, 3) (a read-only view)."""
        images, _ = self._maps()
        start, stop = self.index["image_offsets"][index : index + 2]
        height, width = self.index["image_shapes"][index]
        return images[start:stop].reshape(int(height), int(width), 3)

    def layers(self, index: int, sh: int, sw: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ``index``'s annotation layers, int32 (layers, sh, sw), and per category whether
        one of its layers holds a nonzero label (as :meth:`BrodenDataset.decode_layers`)."""
        _, labels = self._maps()
        start, stop = self.index["label_offsets"][index : index + 2]
        seg = np.array(labels[start:stop], dtype=np.int32).reshape(int(self.index["layers"][index]), sh, sw)
        return seg, self.index["annotated"][index].copy()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None, "_labels": None}


def _read_info(path: Path) -> dict | None:
    """The directory's ``prepared.json`` if it is a complete prepared dataset of this format."""
    try:
        info = json.loads((path / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("format") != FORMAT_VERSION or not isinstance(info.get("key"), str):
        return None
    return info


def find_prepared(dataset: BrodenDataset) -> PreparedData | None:
    """The prepared copy of ``dataset`` in the default location, or ``None`` if there is none."""
    root = default_cache_dir() / "prepared"
    name = dataset.directory.resolve().name
    if not any(root.glob(f"{glob.escape(name)}-*")):  # skip hashing when nothing can match
        return None
    key = dataset_key(dataset)
    path = default_prepared_path(dataset, key)
    info = _read_info(path)
    if info is None or info["key"] != key:
        return None
    try:
        return PreparedData.open(path)
    except DatasetError:
        return None


def open_prepared(dataset: BrodenDataset, path: str | os.PathLike) -> PreparedData:
    """Open the prepared directory ``path``, which must have been prepared from ``dataset``
    as it is now (same files, selection and input size); else :class:`DatasetError`."""
    prepared = PreparedData.open(path)
    if prepared.key != dataset_key(dataset):
        raise DatasetError(
            f"{prepared.path} was prepared from a different dataset or input size (or the dataset changed "
            "since); run `netdissect prepare` again"
        )
    return prepared


def resolve_prepared(dataset: BrodenDataset, prepared: str | os.PathLike | PreparedData | None) -> PreparedData | None:
    """What ``BrodenDataset(prepared=...)`` reads: ``None`` (decode), ``"auto"``, a path, or an open copy."""
    if prepared is None or isinstance(prepared, PreparedData):
        return prepared
    if isinstance(prepared, str) and prepared == AUTO:
        return find_prepared(dataset)
    return open_prepared(dataset, prepared)


class _Decoded(Dataset):
    """The dataset's rows decoded from the files: (index, uint8 pixels, int32 layers, annotated)."""

    def __init__(self, dataset: BrodenDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        pixels = self.dataset.decode_image(index)  # the reader's order: the image's errors first
        return (index, pixels, *self.dataset.decode_layers(index))


def _as_list(items: list) -> list:
    return items


def prepare_dataset(
    dataset: BrodenDataset,
    out: str | os.PathLike | None = None,
    workers: int = min(4, os.cpu_count() or 1),
    progress: bool = True,
) -> Path:
    """Decode every row of ``dataset`` once and store it for fast reading; returns the directory.

    Args:
        dataset: the dataset with its selection (categories, split, size) and preprocessing
            (only ``input_size`` matters: normalisation is applied when reading).
        out: the directory to write (default :func:`default_prepared_path`, where
            ``BrodenDataset(prepared="auto")`` finds it). A directory already holding this
            prepared dataset is kept as it is; another prepared dataset or an empty directory
            is replaced; a given ``out`` holding anything else is refused.
        workers: DataLoader worker processes decoding the files (0: in this process).
        progress: show a progress bar.

    Raises:
        DatasetError: an unreadable, missing or wrongly sized image or PNG, or an unknown label
            (the reader's messages), or an ``out`` that holds something else.
    """
    key = dataset_key(dataset)  # before decoding: a file changed meanwhile gets a new key
    owned = out is None  # the default location belongs to us: whatever is there may be replaced
    if out is not None:
        check_output(out, PREPARED)
    out = Path(out) if out is not None else default_prepared_path(dataset, key)
    info = _read_info(out)
    if info is not None and info["key"] == key:
        return out
    emptyish = out.is_dir() and (not any(out.iterdir()) or (out / INFO_FILE).is_file())
    if not (owned or not out.exists() or emptyish):
        raise DatasetError(f"{out} exists and is not a prepared dataset: choose another output directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(out)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{out.name}-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would stay on the renamed directory
        (tmp / OWNER_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
        _write(dataset, tmp, key, workers, progress)
        (tmp / OWNER_FILE).unlink()
        info = _read_info(out)
        if info is not None and info["key"] == key:  # another process finished first
            return out
        if out.is_dir():
            shutil.rmtree(out)  # an empty directory, a damaged copy or another prepared dataset
        elif out.exists():
            out.unlink()
        try:
            os.replace(tmp, out)
        except OSError:
            info = _read_info(out)
            if info is None or info["key"] != key:
                raise
            # another process renamed its identical copy into place in the meantime
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write(dataset: BrodenDataset, directory: Path, key: str, workers: int, progress: bool) -> None:
    meta = dataset.meta
    rows = meta.rows
    input_size = dataset.preprocess.input_size
    image_shapes = np.array([input_size or (r.ih, r.iw) for r in rows], dtype=np.int64).reshape(-1, 2)
    image_offsets = np.concatenate([[0], np.cumsum(image_shapes.prod(axis=1) * 3)])
    layers = np.array([sum(len(paths) for paths in r.pngs) for r in rows], dtype=np.int64)
    label_offsets = np.concatenate([[0], np.cumsum(layers * [r.sh * r.sw for r in rows])])
    label_dtype = np.uint16 if meta.num_labels <= 1 << 16 else np.int32
    images = np.lib.format.open_memmap(directory / "images.npy", "w+", np.uint8, (int(image_offsets[-1]),))
    labels = np.lib.format.open_memmap(directory / "labels.npy", "w+", label_dtype, (int(label_offsets[-1]),))
    annotated = np.zeros((len(rows), len(meta.categories)), dtype=bool)

    loader = iter(DataLoader(_Decoded(dataset), batch_size=8, num_workers=workers, collate_fn=_as_list))
    try:
        with tqdm(total=len(rows), desc="prepare", unit="image", disable=not progress) as bar:
            for batch in loader:
                for index, pixels, seg, present in batch:
                    images[image_offsets[index] : image_offsets[index + 1]] = pixels.reshape(-1)
                    labels[label_offsets[index] : label_offsets[index + 1]] = seg.reshape(-1)
                    annotated[index] = present
                bar.update(len(batch))
    finally:
        shutdown = getattr(loader, "_shutdown_workers", None)  # stop workers now, even on error
        if shutdown is not None:
            shutdown()
    images.flush()
    labels.flush()
    del images, labels
    np.savez(
        directory / "index.npz",
        image_offsets=image_offsets,
        image_shapes=image_shapes,
        label_offsets=label_offsets,
        layers=layers,
        annotated=annotated,
    )
    info = {
        "format": FORMAT_VERSION,
        "key": key,
        "dataset": str(meta.directory.resolve()),
        "categories": list(meta.categories),
        "images": len(rows),
        "input_size": list(input_size) if input_size else None,
        "label_dtype": np.dtype(label_dtype).name,
        "netdissect": __version__,
    }
    (directory / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")  # last: marks the copy complete


def _remove_abandoned(out: Path) -> None:
    """Delete temporary directories for ``out`` left by processes of this host that have died."""
    host = socket.gethostname()
    for tmp in out.parent.glob(f"{glob.escape(TMP_PREFIX + out.name)}-*"):
        try:
            owner = json.loads((tmp / OWNER_FILE).read_text())
            if owner["host"] != host:
                continue
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (OSError, ValueError, KeyError, TypeError):
            continue


def prepared_size(path: str | os.PathLike) -> int:
    """Bytes used by the prepared directory ``path``."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())
