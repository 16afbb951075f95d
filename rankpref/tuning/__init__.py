"""Hyper-parameter search with optuna over any registered task (``rankpref tune``).

* :mod:`rankpref.tuning.spec`: the YAML spec (task, base config, overrides, space, sampler,
  pruner), validated before anything trains.
* :mod:`rankpref.tuning.study`: the study itself, over the :class:`rankpref.tasks.Task`
  interface (select on valid, prune per epoch, resumable storage, best config and plots).
"""

from rankpref.tuning.spec import TuneSpec, load_spec
from rankpref.tuning.study import check_space, pruning_callback, tune

__all__ = ["TuneSpec", "check_space", "load_spec", "pruning_callback", "tune"]
