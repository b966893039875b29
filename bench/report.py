"""What every bench script does last: write its results as JSON (folders made) and say where."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: str | Path, result: Any, *, announce: bool = True) -> Path:
    """Write `result` to `path` as indented JSON; print "wrote <path>" unless `announce` is False (for
    scripts that rewrite their file after every measurement, so a run cut short keeps what it had)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    if announce:
        print(f"wrote {path}")
    return path
