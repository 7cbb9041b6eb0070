"""Find detector weights and sample videos without ever committing them.

Lookup order for a name such as ``yolo11n.pt`` or ``dual_carriageway_abhishek.mp4``:

1. an existing path, as given (absolute or relative to the working directory);
2. the asset directory: the ``asset_dir`` setting (``ITS_FAUST_ASSET_DIR``), else
   ``~/.cache/its-faust/assets``; weights are looked for in ``<dir>/models/`` and
   videos in ``<dir>/data/videos/``, then in ``<dir>/`` itself;
3. for weights only, Ultralytics' own download of its official releases
   (needs internet; never tried when ``YOLO_OFFLINE`` is set).

When all fail, :class:`AssetNotFound` names the file and every place looked.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

DEFAULT_ASSET_DIR = Path.home() / ".cache" / "its-faust" / "assets"
WEIGHT_SUFFIXES = {".pt", ".onnx", ".engine", ".torchscript"}


class AssetNotFound(FileNotFoundError):
    """A weights file or video is missing; the message says where to put it."""


def asset_dir(configured: Path | str | None = None) -> Path:
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get("ITS_FAUST_ASSET_DIR")
    return Path(env).expanduser() if env else DEFAULT_ASSET_DIR


def _candidates(name: str, root: Path) -> list[Path]:
    sub = "models" if Path(name).suffix in WEIGHT_SUFFIXES else "data/videos"
    return [root / sub / name, root / name]


def resolve_asset(name: str | Path, configured_dir: Path | str | None = None, *, download: bool = True) -> Path:
    """Return the path of an existing weights or video file, or raise :class:`AssetNotFound`."""
    given = Path(name).expanduser()
    if given.exists():
        return given.resolve()
    root = asset_dir(configured_dir)
    tried = [given.resolve()]
    if not given.is_absolute():
        for candidate in _candidates(given.name if given.parent == Path(".") else str(given), root):
            if candidate.exists():
                return candidate.resolve()
            tried.append(candidate)
    download_note = ""
    if download and given.suffix == ".pt" and not os.environ.get("YOLO_OFFLINE"):
        downloaded = _ultralytics_download(given.name)
        if downloaded is not None:
            return downloaded
        download_note = " Ultralytics' download of it failed too (no internet, or not one of its assets)."
    where = "models/" if given.suffix in WEIGHT_SUFFIXES else "data/videos/"
    raise AssetNotFound(
        f"{given.name} not found (looked in: {', '.join(str(p) for p in tried)}).{_near(given.name, root / where)}"
        f"{download_note} Put it in {root / where} or point ITS_FAUST_ASSET_DIR at a folder that has {where}{given.name}."
    )


def _near(name: str, folder: Path) -> str:
    """" Did you mean ...?" with the closest names in ``folder``, or what it holds; "" when it has nothing."""
    try:
        present = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(("README", ".")))
    except OSError:
        return ""
    if not present:
        return ""
    close = difflib.get_close_matches(name, present, n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(close)}?" if close else f" {folder} has: {', '.join(present)}."


def _ultralytics_download(name: str) -> Path | None:
    """Ultralytics' own release download; None when offline or the name is not one of its assets."""
    try:
        from ultralytics.utils.downloads import attempt_download_asset

        path = Path(attempt_download_asset(name))
    except Exception:  # no network, unknown asset: the caller reports what is missing
        return None
    return path.resolve() if path.exists() else None
