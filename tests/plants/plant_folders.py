"""Plant folders for tests: copies of built-in plants under other names, anywhere on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

from twin.spec import PLANTS_DIR


def copy_plant(builtin: str, dest: Path, new_name: str) -> Path:
    """A copy of a built-in plant folder under another name; returns its plant.toml."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(PLANTS_DIR / builtin / "simulator.py", dest / "simulator.py")
    text = (PLANTS_DIR / builtin / "plant.toml").read_text()
    text = text.replace(f'name = "{builtin}"', f'name = "{new_name}"', 1)
    (dest / "plant.toml").write_text(text)
    return dest / "plant.toml"
