"""SESA: texts embedded into explicit concept dimensions, trained to rank, explained by the
concepts behind each score (and the latent dual-encoder baseline with ``model.head=latent``).

    from rankpref.tasks import sesa

    result = sesa.fit(sesa.load_config(None, ["data.name=onet-slice"]))
    art = sesa.load_artifact(result.artifact)
    sesa.search(art, "python developer", k=5)
    sesa.explain(art, "python developer", "15-1252.00")
"""

import json

from rankpref.registry import TASKS
from rankpref.tasks import Task
from rankpref.tasks.sesa.artifact import SESAArtifact, inputs_for_artifact, load_artifact
from rankpref.tasks.sesa.config import SESARunConfig, load_config
from rankpref.tasks.sesa.data import TaskInputs, prepare_inputs, text_encoder
from rankpref.tasks.sesa.evaluate import evaluate
from rankpref.tasks.sesa.explain import (explain, index_inputs, item_vectors, query_vectors,
                                         search)
from rankpref.tasks.sesa.fit import check, fit

__all__ = ["SESAArtifact", "SESARunConfig", "TASK", "TaskInputs", "evaluate",
           "evaluate_artifact", "explain", "fit", "index_inputs", "inputs_for_artifact", "item_vectors",
           "load_artifact", "load_config", "prepare_inputs", "query_vectors", "search",
           "text_encoder"]


def evaluate_artifact(path, splits=("test",)) -> dict:
    """Rank every item for each split's queries with the artifact's network."""
    art = load_artifact(path, "rankpref sesa evaluate")
    prep = inputs_for_artifact(art)
    return {s: evaluate(art.model, prep, s) for s in splits}


def _data_key(cfg: SESARunConfig) -> str:
    return json.dumps([cfg.data.model_dump(mode="json"), cfg.concepts.model_dump(mode="json"),
                       cfg.model.model_dump(mode="json")], sort_keys=True)


TASK = TASKS.register("sesa", Task(
    name="sesa", load_config=load_config, fit=fit, load_data=prepare_inputs,
    data_key=_data_key, monitor=lambda cfg: f"valid/{cfg.eval.monitor}",
    fit_command="rankpref sesa fit --config", check=check, fixed=("data.", "eval."),
    searchable=("data.max_tasks",)))
