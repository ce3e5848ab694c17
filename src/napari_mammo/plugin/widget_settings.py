"""The widget choices a researcher expects to find again in the next session: weights files, folders, device,
thresholds. Kept as JSON in the user's config folder (or NAPARI_MAMMO_CONFIG), written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

CONFIG_ENV = "NAPARI_MAMMO_CONFIG"
FILE_NAME = "widgets.json"


def settings_file() -> Path:
    """Where the settings live: $NAPARI_MAMMO_CONFIG/widgets.json, else the platform's config folder."""
    folder = os.environ.get(CONFIG_ENV)
    if not folder:
        import platformdirs

        folder = platformdirs.user_config_dir("napari-mammo")
    return Path(folder) / FILE_NAME


def load_settings() -> dict:
    """Every widget's saved values ({} when none are saved or the file is unreadable)."""
    try:
        saved = json.loads(settings_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def save_setting(section: str, name: str, value) -> None:
    """Store one value; a settings folder that cannot be written is left alone (the widget still works)."""
    from napari_mammo.io.atomic import atomic_write_bytes

    settings = load_settings()
    settings.setdefault(section, {})[name] = value
    try:
        atomic_write_bytes(settings_file(), json.dumps(settings, indent=1).encode())
    except OSError:
        pass


def _as_saved(value):
    """A widget value as JSON (paths as text)."""
    return str(value) if isinstance(value, Path) else value


def remember(section: str, widgets: dict) -> None:
    """Restore each named widget's saved value (when it is still a valid choice), and save it on every change."""
    saved = load_settings().get(section, {})
    for name, widget in widgets.items():
        if name in saved:
            choices = getattr(widget, "choices", None)
            value = saved[name]
            if choices is None or value in choices:
                try:
                    widget.value = value
                except (ValueError, TypeError):  # out of range, or a type the widget no longer takes
                    pass
        widget.changed.connect(lambda value, name=name: save_setting(section, name, _as_saved(value)))
