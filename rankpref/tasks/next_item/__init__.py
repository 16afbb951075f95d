"""Next-item recommendation: SASRec, PULSE (item text + rationales) and its thought space.

The public face of the task (what the CLI, tuning and serving use)::

    from rankpref.tasks import next_item

    cfg = next_item.load_config(None, ["data.name=demo", "model.name=pulse"])
    result = next_item.fit(cfg)               # RunResult: artifact, metrics, model
    rec = next_item.Recommender.load(result.artifact)
    next_item.evaluate_artifact(result.artifact, ["test"])
"""

from rankpref.data.datasets import prepare
from rankpref.registry import TASKS
from rankpref.tasks import Task
from rankpref.tasks.next_item.config import NextItemConfig, load_config
from rankpref.tasks.next_item.data import training_split
from rankpref.tasks.next_item.evaluate import evaluate_artifact
from rankpref.tasks.next_item.fit import check, fit
from rankpref.tasks.next_item.recommend import Recommender, user_history
from rankpref.tasks.next_item.thought_space import (fit_thought_space, load_thought_space,
                                                    thought_pairs, user_behaviour_texts)

__all__ = ["NextItemConfig", "Recommender", "TASK", "evaluate_artifact", "fit",
           "fit_thought_space", "load_config", "load_thought_space", "thought_pairs",
           "training_split", "user_behaviour_texts", "user_history"]

TASK = TASKS.register("next_item", Task(
    name="next_item", load_config=load_config, fit=fit,
    load_data=lambda cfg: prepare(cfg.data, quiet=True),
    data_key=lambda cfg: cfg.data.model_dump_json(),
    monitor=lambda cfg: f"valid/{cfg.eval.monitor}", fit_command="rankpref fit --config",
    check=check, fixed=("data.", "eval."), searchable=("data.max_len",)))
