"""Model weights as safetensors files with metadata naming the model, classes and training set-up."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from napari_mammo.errors import MammoInputError
from napari_mammo.io.atomic import current_umask

FORMAT_VERSION = "1"
CACHE_SIZE = 4
"""Loaded models kept for the next click (a few MB each, the backbone is shared)."""
_LOADED: OrderedDict[tuple, Any] = OrderedDict()
_LOADED_LOCK = threading.Lock()


def shipped_weights(model: str) -> Path:
    """Path of the weights shipped in the package for a model ('cnni-bcc' or 'idbll')."""
    return Path(str(resources.files("napari_mammo") / "weights" / f"{model}.safetensors"))


def save_weights(path: str | Path, state: dict, model: str, metadata: dict[str, Any]) -> Path:
    """Write tensors and JSON metadata to a safetensors file atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"model": model, "format_version": FORMAT_VERSION,
              **{key: json.dumps(value) for key, value in metadata.items()}}
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
    bad = next((name for name, tensor in tensors.items()
                if tensor.is_floating_point() and not bool(tensor.isfinite().all())), None)
    if bad is not None:
        raise ValueError(f"not writing {path}: tensor {bad} holds NaN or infinite values")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_weights(path: str | Path, model: str) -> tuple[dict, dict[str, Any]]:
    """Read tensors and metadata; refuse a file that is not safetensors or belongs to another model."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise MammoInputError(path, "weights file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            state = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise MammoInputError(path, f"not a readable safetensors weights file ({err})") from None
    bad = next((name for name, tensor in state.items()
                if tensor.is_floating_point() and not bool(tensor.isfinite().all())), None)
    if bad is not None:
        raise MammoInputError(path, f"tensor {bad} holds NaN or infinite values; these weights cannot be used")
    return state, parsed_header(header, path, model)


def parsed_header(header: dict, path: Path, model: str) -> dict[str, Any]:
    """A weights file's metadata with its JSON values read; refuse a file of another model."""
    found = header.get("model")
    if found != model:
        what = f"weights of model {found!r}" if found else "weights without a napari-mammo model name"
        raise MammoInputError(path, f"holds {what}, not {model!r}")
    metadata = {}
    for key, value in header.items():
        if key in ("model", "format_version"):
            metadata[key] = value
            continue
        try:
            metadata[key] = json.loads(value)
        except json.JSONDecodeError:
            metadata[key] = value
    return metadata


def weights_header(path: str | Path) -> dict[str, str]:
    """A weights file's raw metadata header (its "model" names the model), without reading its tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise MammoInputError(path, f"not a readable safetensors weights file ({err})") from None


def weights_metadata(path: str | Path | None, model: str) -> dict[str, Any]:
    """A weights file's metadata alone (the shipped file's when `path` is None), without reading its tensors."""
    path = shipped_weights(model) if path is None else Path(path)
    return parsed_header(weights_header(path), path, model)


def load_model(path: str | Path | None, model: str, title: str, build: Callable[[], Any]) -> tuple[Any, dict, Path]:
    """Build a network and fill it from a weights file (the shipped one when `path` is None).

    Returns (network, metadata, path); a missing, foreign or mismatched file is a
    MammoInputError naming it.
    """
    if path is None:
        path = shipped_weights(model)
        if not path.is_file():
            raise MammoInputError(path, f"this installation has no shipped {title} weights; pass a weights file")
    path = Path(path)
    state, metadata = load_weights(path, model)
    network = build()
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise MammoInputError(path, f"tensors do not fit the {title} network ({first})") from None
    return network, metadata, path


def cached_load(path: str | Path | None, model: str, device: str, load: Callable[[], Any]) -> Any:
    """`load()`, or the object it gave last time for the same file (path, size, modification time) and device.

    The widgets load their model on every click; a file replaced on disk is loaded anew.
    """
    file = shipped_weights(model) if path is None else Path(path)
    try:
        stat = file.stat()
    except OSError:
        return load()  # the loader names the missing file
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns, model, device)
    with _LOADED_LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
    loaded = load()
    with _LOADED_LOCK:
        _LOADED[key] = loaded
        while len(_LOADED) > CACHE_SIZE:
            _LOADED.popitem(last=False)
    return loaded
