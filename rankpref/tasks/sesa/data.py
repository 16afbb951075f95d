"""The data of SESA runs: an O*NET ranking task (:mod:`rankpref.data.onet`), its concept
labels and encoder inputs, and the data module that batches training queries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from rankpref.data import onet
from rankpref.data.concepts import ConceptVocabulary
from rankpref.data.module import DataModule
from rankpref.models.sesa import build_word_vocab, encode_words
from rankpref.tasks.sesa.config import SESARunConfig
from rankpref.text import TextEncoder


@dataclass
class TaskInputs:
    """A task with its concept labels and encoder inputs, ready for training and evaluation."""

    task: onet.RankingTask
    concepts: ConceptVocabulary
    query_inputs: torch.Tensor         # [n_queries, ...] features or word ids
    item_inputs: torch.Tensor          # [n_items, ...]
    query_labels: torch.Tensor         # [n_queries, n_concepts] 0/1
    item_labels: torch.Tensor          # [n_items, n_concepts] 0/1
    query_label_train: torch.Tensor    # bool [n_queries]: supervises training
    item_label_train: torch.Tensor     # bool [n_items]
    words: list[str] | None
    stats: dict


def _task_kwargs(cfg: SESARunConfig) -> dict:
    d = cfg.data
    defaults = {"titles": (0.05, 0.1), "related": (0.1, 0.2)}[d.task]
    return dict(concept_kind=cfg.concepts.kind, seed=d.seed, max_tasks=d.max_tasks,
                valid_fraction=d.valid_fraction or defaults[0],
                test_fraction=d.test_fraction or defaults[1])


def text_encoder(cfg: SESARunConfig, progress: bool = False) -> TextEncoder:
    return TextEncoder(cfg.model.text_model, cache_dir=Path(cfg.data.cache_dir) / "embeddings",
                       progress=progress)


def load_task(cfg: SESARunConfig) -> tuple[onet.RankingTask, ConceptVocabulary]:
    folder = onet.resolve_folder(cfg.data.name, cfg.data.path)
    occupations = onet.read_occupations(folder)
    task = onet.load_task(cfg.data.task, folder, occupations=occupations, **_task_kwargs(cfg))
    concepts = onet.concept_vocabulary(occupations, cfg.concepts.kind, cfg.concepts.min_occupations,
                                       folder=folder)
    return task, concepts


def prepare_inputs(cfg: SESARunConfig, task: onet.RankingTask | None = None,
                   concepts: ConceptVocabulary | None = None, encoder=None,
                   words: list[str] | None = None) -> TaskInputs:
    """The task (loaded from ``cfg`` unless given), its concept labels and encoder inputs."""
    if task is None or concepts is None:
        task, concepts = load_task(cfg)
    # concept names below min_occupations are not in the vocabulary: counted, skipped
    q_lab, q_stats = concepts.multi_hot(task.query_labels, on_unknown="skip", where="query labels")
    i_lab, i_stats = concepts.multi_hot(task.item_labels, on_unknown="skip", where="item labels")
    q_has, i_has = q_lab.sum(1) > 0, i_lab.sum(1) > 0
    if task.name == "related":  # queries are occupations: held-out ones keep their labels hidden
        q_train = q_has & np.array([task.item_label_train[i] for i in task.self_item])
    else:
        q_train = q_has & np.array([s == "train" for s in task.query_split])
    i_train = i_has & task.item_label_train
    words, cut = None, 0
    if cfg.model.encoder == "minilm":
        encoder = encoder or text_encoder(cfg, progress=cfg.train.progress)
        q_in = torch.from_numpy(np.asarray(encoder.encode(task.query_texts)))
        i_in = torch.from_numpy(np.asarray(encoder.encode(task.item_texts)))
    else:
        train_q = [task.query_texts[i] for i in task.indices("train")]
        words = words or build_word_vocab(train_q + task.item_texts, cfg.model.word_min_count)
        q_in, q_cut = encode_words(task.query_texts, words, cfg.model.max_query_tokens)
        i_in, cut = encode_words(task.item_texts, words, cfg.model.max_doc_tokens)
        cut += q_cut
    stats = {**task.stats, "concepts": len(concepts), "concept_source": concepts.source,
             "query_labels": q_stats.to_json(), "item_labels": i_stats.to_json(),
             "queries_supervising_concepts": int(q_train.sum()),
             "items_supervising_concepts": int(i_train.sum()), "texts_cut": cut,
             "words": None if words is None else len(words)}
    return TaskInputs(task, concepts, q_in, i_in, torch.from_numpy(q_lab), torch.from_numpy(i_lab),
                    torch.from_numpy(q_train), torch.from_numpy(i_train), words, stats)


class QueryDataModule(DataModule):
    """Training: batches of training query rows (the step scores them against the items).
    Validation: every valid query row in one batch (metrics rank the whole catalogue)."""

    def __init__(self, cfg: SESARunConfig, inputs: TaskInputs):
        super().__init__(cfg.train.batch_size, seed=cfg.train.seed,
                         num_workers=cfg.train.num_workers)
        self.inputs = inputs

    def _rows(self, split: str) -> TensorDataset:
        return TensorDataset(torch.from_numpy(self.inputs.task.indices(split)))

    def train_dataset(self) -> TensorDataset:
        return self._rows("train")

    def eval_dataset(self, split: str) -> TensorDataset:
        return self._rows(split)

    def eval_dataloader(self, split: str):
        dataset = self.eval_dataset(split)
        return self.loader(dataset, train=False, batch_size=max(1, len(dataset)))
