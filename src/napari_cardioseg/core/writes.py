"""Write files atomically, check output paths, and write calibrated TIFFs (whole or page by page).

Every write goes to a hidden temporary beside the target and is renamed over it only when
complete, so an interrupted run never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .errors import CardiosegError
from .io import PIXEL_SIZE_RANGE

_PSEUDO_FOLDERS = ("/proc", "/sys", "/dev")
_TMP_TAG = "cardioseg-tmp"
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)  # what Fiji reads as an ImageJ hyperstack


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # no cheap, safe liveness test: leave the file to the age rule
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


def remove_stale_temporaries(path: str | os.PathLike, max_age: float = 86400.0) -> list[Path]:
    """Delete temporary files left beside ``path`` by a killed write; returns what was removed.

    A temporary file names the process that made it (``.NAME.cardioseg-tmp-PID-TOKEN``); it is
    stale when that process no longer runs, or when it is older than ``max_age`` seconds.
    """
    path = Path(path)
    pattern = f".{glob.escape(path.name)}.{_TMP_TAG}-*"
    removed = []
    for tmp in path.parent.glob(pattern):
        try:
            pid = int(tmp.name.rsplit("-", 2)[-2])
            age = time.time() - tmp.lstat().st_mtime
        except (ValueError, IndexError, OSError):
            continue
        if not _pid_alive(pid) or age > max_age:
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _raise_terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit`` while the body runs, so that ``finally`` blocks run.

    Only in the main thread and only when SIGTERM has its default action (an application's own
    handler, e.g. napari's, is left alone).
    """
    term = getattr(signal, "SIGTERM", None)
    if (term is None or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(term) is not signal.SIG_DFL):
        yield
        return
    signal.signal(term, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(term, signal.SIG_DFL)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and move it over ``path`` only on success.

    A failure (disk full, permission denied, an exception in the body, SIGTERM) leaves any
    existing file at ``path`` untouched and removes the temporary file; temporary files left by
    a killed process (``kill -9``) are removed by the next write to the same path. The file gets
    the permissions the process umask gives a new file (the umask itself is never changed).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise CardiosegError(f"{path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise CardiosegError(f"{path}: is a folder, not a file name")
    remove_stale_temporaries(path)
    tmp_path = path.with_name(f".{path.name}.{_TMP_TAG}-{os.getpid()}-{secrets.token_hex(4)}")
    with _terminate_cleanly():
        try:
            # created like any new file (mode 0666 less the umask), unlike mkstemp's 0600
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            yield tmp_path
            os.replace(tmp_path, path)
        except OSError as exc:
            raise CardiosegError(f"could not write {path}: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                tmp_path.unlink(missing_ok=True)


def _under_pseudo_folder(path: Path) -> bool:
    text = str(path)
    return any(text == root or text.startswith(root + os.sep) for root in _PSEUDO_FOLDERS)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_outputs(
    outputs: Sequence[str | os.PathLike | None],
    inputs: Sequence[str | os.PathLike | None] = (),
) -> list[Path]:
    """Check, before any work, that every output can be written without losing data.

    Parameters
    ----------
    outputs : sequence of path-like or None
        Files the command will write (None entries are skipped).
    inputs : sequence of path-like or None
        Files the command reads; none of them may be an output (also through links).

    Returns
    -------
    list of Path
        The outputs.

    Raises
    ------
    CardiosegError
        An output that is an input, appears twice, is a folder or a special file, lies in a
        missing, unwritable or system (``/proc``, ``/sys``, ``/dev``) folder.
    """
    outs = [Path(p) for p in outputs if p is not None and str(p) != ""]
    ins = [Path(p) for p in inputs if p is not None and str(p) != ""]
    for i, out in enumerate(outs):
        full = Path(os.path.abspath(out))
        if _under_pseudo_folder(full) or _under_pseudo_folder(full.resolve()):
            raise CardiosegError(f"{out}: cannot write into the system folder {full.parent}")
        if out.is_dir():
            raise CardiosegError(f"{out}: is a folder; give a file name")
        if out.exists() and not out.is_file():
            raise CardiosegError(f"{out}: exists and is not a regular file")
        if not full.parent.is_dir():
            raise CardiosegError(f"{out}: the folder {full.parent} does not exist")
        for source in ins:
            if out.exists() and source.exists() and _same_file(out, source):
                raise CardiosegError(
                    f"{out}: the output is the input {source}; writing it would destroy the "
                    "input, choose another output name"
                )
        for other in outs[:i]:
            if full.resolve() == Path(os.path.abspath(other)).resolve():
                raise CardiosegError(f"{out}: the same file is given for two outputs")
        probe = full.parent / f".{full.name}.{_TMP_TAG}-{os.getpid()}-probe"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            probe.unlink()
        except OSError as exc:
            raise CardiosegError(
                f"{out}: cannot write into {full.parent} ({exc.strerror or exc})"
            ) from exc
    return outs


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


def write_pair_atomic(first: tuple[Path, bytes], second: tuple[Path, bytes]) -> None:
    """Write two files that belong together: both in full beside their places, then both moved.

    A failure while either is written (disk full) leaves both old files as they were and no
    new file behind: never a new half of a pair next to an old half.
    """
    with atomic_path(first[0]) as first_tmp:
        first_tmp.write_bytes(first[1])
        with atomic_path(second[0]) as second_tmp:
            second_tmp.write_bytes(second[1])


def _tiff_layout(ndim: int, scale: Sequence[float] | None,
                 imagej: bool) -> tuple[dict, dict]:
    """Return tifffile's ``metadata`` and extra options for an (un)calibrated ``YX``/``ZYX`` file."""
    metadata: dict = {"axes": "ZYX"[-ndim:]}
    options: dict = {}
    if scale is None:
        return metadata, options
    scale = tuple(float(s) for s in scale)
    if len(scale) != ndim:
        raise CardiosegError(f"scale {scale} does not match a {ndim}D array")
    low, high = PIXEL_SIZE_RANGE
    if any(not (math.isfinite(s) and low <= s <= high) for s in scale):
        raise CardiosegError(f"pixel sizes must be numbers in {low:g}..{high:g} µm, got {scale}")
    y, x = scale[-2], scale[-1]
    if imagej:
        metadata["unit"] = "um"
        if ndim == 3:
            metadata["spacing"] = scale[0]
        options["resolution"] = (1.0 / x, 1.0 / y)
    else:
        metadata.update(PhysicalSizeX=x, PhysicalSizeXUnit="µm", PhysicalSizeY=y,
                        PhysicalSizeYUnit="µm")
        if ndim == 3:
            metadata.update(PhysicalSizeZ=scale[0], PhysicalSizeZUnit="µm")
    return metadata, options


def write_tiff(
    path: str | os.PathLike,
    data: np.ndarray,
    scale: Sequence[float] | None = None,
) -> Path:
    """Write a ``YX`` or ``ZYX`` array to a calibrated TIFF, atomically.

    uint8, uint16 and float32 go to an ImageJ hyperstack (Fiji reads the calibration);
    other dtypes (int32, float64, ...) go to OME-TIFF, which keeps them exactly. Both carry
    the pixel size, which :func:`read_image` reads back, and are zlib (deflate) compressed.

    Parameters
    ----------
    path : path-like
        Destination ``.tif``/``.tiff``.
    data : numpy.ndarray
        2D or 3D array.
    scale : sequence of float, optional
        Pixel size in µm per axis. When omitted the file carries no calibration (it reads back
        with ``calibrated=False``); a calibration is never invented.
    """
    data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise CardiosegError(f"can only write 2D or 3D arrays, got shape {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype == np.int64:
        if data.size and (data.min() < np.iinfo(np.int32).min or data.max() > np.iinfo(np.int32).max):
            raise CardiosegError("label values exceed the int32 range and cannot be saved")
        data = data.astype(np.int32)
    imagej = data.dtype.type in _IMAGEJ_DTYPES
    metadata, options = _tiff_layout(data.ndim, scale, imagej)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, imagej=imagej, ome=not imagej, metadata=metadata,
                         compression="zlib", **options)
    return Path(path)


def write_tiff_blocks(
    path: str | os.PathLike,
    array: Any,
    scale: Sequence[float] | None = None,
    dtype: np.dtype | None = None,
    tile: int = 512,
) -> Path:
    """Write a chunked ``YX``/``ZYX`` array (zarr, dask) to a calibrated TIFF, a piece at a time.

    Never holds more than one ``ZYX`` page or one ``tile``² piece of a ``YX`` image, so a
    volume larger than memory can be saved. A stack is an ImageJ hyperstack for uint8, uint16
    and float32 (as :func:`write_tiff`), a 2D image a tiled OME-TIFF (ImageJ files cannot be
    tiled); both carry the pixel size, or none when ``scale`` is None. ``dtype`` converts each
    piece (float16 probabilities to float32, say). Atomic, zlib compressed.
    """
    shape = tuple(int(n) for n in array.shape)
    if len(shape) not in (2, 3):
        raise CardiosegError(f"can only write 2D or 3D arrays, got shape {shape}")
    dtype = np.dtype(dtype or array.dtype)
    if dtype.type not in _IMAGEJ_DTYPES:
        raise CardiosegError(f"piecewise TIFF writing takes uint8, uint16 or float32, not {dtype}")
    imagej = len(shape) == 3
    metadata, options = _tiff_layout(len(shape), scale, imagej)
    if imagej:
        pieces: Iterator[np.ndarray] = (np.asarray(array[z], dtype=dtype) for z in range(shape[0]))
    else:
        options["tile"] = (tile, tile)
        pieces = (np.asarray(array[y : y + tile, x : x + tile], dtype=dtype)
                  for y in range(0, shape[0], tile) for x in range(0, shape[1], tile))
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, pieces, shape=shape, dtype=dtype, imagej=imagej, ome=not imagej,
                         metadata=metadata, compression="zlib", **options)
    return Path(path)
