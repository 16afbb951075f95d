"""Listwise ranking by subjective ratings: RankList and the standard listwise losses.

    from rankpref.tasks import rank

    cfg = rank.load_config(None, ["data.name=emobank-slice", "data.target=V"])
    result = rank.fit(cfg)                      # RunResult
    rank.evaluate_artifact(result.artifact, ["test"])
    rank.predict_table(result.artifact, "new_items.csv")
"""

from rankpref.registry import TASKS
from rankpref.tasks import Task
from rankpref.tasks.rank.artifact import load_artifact
from rankpref.tasks.rank.config import RankConfig, load_config
from rankpref.tasks.rank.data import load_data
from rankpref.tasks.rank.evaluate import evaluate_artifact, predict_table
from rankpref.tasks.rank.fit import fit

__all__ = ["RankConfig", "TASK", "evaluate_artifact", "fit", "load_artifact", "load_config",
           "load_data", "predict_table"]

TASK = TASKS.register("rank", Task(
    name="rank", load_config=load_config, fit=fit, load_data=lambda cfg: load_data(cfg.data),
    data_key=lambda cfg: cfg.data.model_dump_json(),
    monitor=lambda cfg: f"valid/{cfg.eval.monitor}", fit_command="rankpref rank fit --config",
    fixed=("eval.", "data.name", "data.target", "data.split", "data.valid_fraction",
           "data.test_fraction", "data.id_column", "data.rater_column", "data.std_column")))
