"""Study manifests, ``<lab>/studies/<name>.json``, and ``resnorm study status``.

A manifest holds a study's spec (as data), its planned runs (run id, part, point, seed, name),
the latest analysis (per-run scalars, quantities, checks, verdict; ``None`` until the study has
run) and the pid of the driver that wrote it. It is rewritten atomically (temp + rename).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resnorm.store import Store


def manifest_path(lab: str | Path, study: str) -> Path:
    return Path(lab) / "studies" / f"{study}.json"


def read_manifest(lab: str | Path, study: str) -> dict[str, Any] | None:
    path = manifest_path(lab, study)
    if not path.exists():
        return None
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def manifests(lab: str | Path) -> list[dict[str, Any]]:
    """Every study manifest of a lab, by name."""
    folder = Path(lab) / "studies"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def write_manifest(lab: str | Path, data: Mapping[str, Any]) -> Path:
    path = manifest_path(lab, data["spec"]["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)
    return path


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def study_status(lab: str | Path, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Per study of the lab: its runs by status, from the store (read-only).

    A run stored as ``running`` whose study driver is no longer alive is counted as
    ``interrupted``: the same command run again resumes it.
    """
    out: list[dict[str, Any]] = []
    if not (Path(lab) / "studies").exists():
        return out
    with Store(lab, readonly=True) as store:
        for m in manifests(lab):
            name = m["spec"]["name"]
            if names is not None and name not in names:
                continue
            alive = _alive(m.get("driver_pid"))
            counts: dict[str, int] = {}
            ids = list(dict.fromkeys(r["run_id"] for r in m["runs"]))
            for run_id in ids:
                rec = store.get_run(run_id)
                status = "missing" if rec is None else rec.status
                if status == "running" and not alive:
                    status = "interrupted"
                counts[status] = counts.get(status, 0) + 1
            verdict_ = (m.get("analysis") or {}).get("verdict", "-")
            out.append({"study": name, "runs": len(ids), "counts": counts, "verdict": verdict_})
    return out
