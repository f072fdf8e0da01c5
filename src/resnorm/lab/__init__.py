"""The lab: studies as data, run by an executor into the results store, judged and reported.

* `StudySpec`, `Part`, `Axis`, `grid`, `load_study`, `study_from_dict` (`resnorm.lab.spec`):
  what a study is; built-in ones in `resnorm.studies`, user ones as TOML files of the same shape.
* `run_study`, `run_studies`, `plan`, `reanalyze` (`resnorm.lab.runner`): the driver, the
  single writer of the store; resumable by run id (the config hash). A script that uses the
  default ``local`` executor needs the ``if __name__ == "__main__":`` guard (spawned workers).
* `study_status` (`resnorm.lab.manifest`): runs per status of each study of a lab.
* `make_executor` (`resnorm.lab.executors`): ``local`` process pool, ``ray``, ``serial``.
* `execute` (`resnorm.lab.tasks`): the run function every executor runs; the measurements it
  runs besides training and probes are registered in `resnorm.diagnostics.measures`.

The lab never imports `resnorm.studies`: the built-in studies are its client, and only the
command line (`resnorm.studies.cli`) maps a study's name to its spec.
"""

from __future__ import annotations

from resnorm.lab.executors import EXECUTORS, make_executor
from resnorm.lab.manifest import study_status
from resnorm.lab.runner import PlannedRun, StudyResult, plan, reanalyze, run_studies, run_study
from resnorm.lab.spec import Axis, Part, StudySpec, grid, load_study, study_from_dict
from resnorm.lab.tasks import execute

__all__ = [
    "EXECUTORS",
    "Axis",
    "Part",
    "PlannedRun",
    "StudyResult",
    "StudySpec",
    "execute",
    "grid",
    "load_study",
    "make_executor",
    "plan",
    "reanalyze",
    "run_studies",
    "run_study",
    "study_from_dict",
    "study_status",
]
