"""Old bundle versions, to delete (`recserve prune`): every export adds a version folder (a plm_nrms bundle is
91 MB) and nothing else removes one. Torch-free, so the serving image can prune the volume it reads."""
from __future__ import annotations

import shutil
from pathlib import Path

from bundle.contract import MANIFEST_FILE
from bundle.reader import discover, read_latest


def stale_versions(model_dir: Path, keep: int) -> list[Path]:
    """The version folders of `model_dir` older than its newest `keep` (names begin with the UTC timestamp),
    oldest first. Never the one LATEST names, whatever its age (a rollback may point it at an old one), and
    nothing that is not plainly a bundle: hidden folders (an export being written), folders without a
    manifest (`train/`, the checkpoints) and links are left alone."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    latest = read_latest(model_dir)
    versions = sorted(p for p in model_dir.iterdir() if not p.name.startswith(".") and not p.is_symlink()
                      and p.is_dir() and (p / MANIFEST_FILE).is_file())
    return [p for p in versions[:-keep] if p.name != latest]


def prune(artifacts: Path, keep: int, dry_run: bool = False) -> list[tuple[Path, int]]:
    """Delete (unless `dry_run`) the stale versions of every model under `artifacts`; returns each with its size
    in bytes. A running service keeps serving a deleted version's mapped files until its next reload."""
    removed = []
    for model_dir in discover(artifacts).values():
        for path in stale_versions(model_dir, keep):
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
            if not dry_run:
                shutil.rmtree(path)
            removed.append((path, size))
    return removed
