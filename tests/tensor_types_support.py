"""The tensor types this checkout declares in pyproject.toml, made visible to importlib.metadata
without installing it (the shared environment's metadata may predate the declaration)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_distribution(directory: Path, entry_points: dict[str, dict[str, str]], name: str = "declared-here") -> Path:
    """A minimal installed-distribution folder in ``directory`` with ``entry_points``; put
    ``directory`` on sys.path (or PYTHONPATH) to have them found."""
    dist = directory / f"{name.replace('-', '_')}-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0\n")
    lines = []
    for group, entries in entry_points.items():
        lines += [f"[{group}]", *(f"{k} = {v}" for k, v in entries.items()), ""]
    (dist / "entry_points.txt").write_text("\n".join(lines))
    return directory


def project_entry_points() -> dict[str, dict[str, str]]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
