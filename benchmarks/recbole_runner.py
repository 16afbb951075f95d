"""Run one RecBole 1.2.1 model on an atomic dataset folder and write its results as JSON.

Runs inside RecBole's own virtualenv (made by ``benchmarks/recommendation.py``), so it
imports nothing of rankpref. Besides RecBole's valid/test metrics it writes the seconds of
every training epoch and, for the split check, every user's valid and test target as RecBole
holds them (original tokens).

    python recbole_runner.py --data-path DIR --dataset ml100k_sorted --model SASRec \\
        --epochs 300 --out result.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-path", required=True, help="folder holding <dataset>/<dataset>.inter")
    ap.add_argument("--dataset", default="ml100k_sorted")
    ap.add_argument("--model", required=True)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--stopping-step", type=int, default=10)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--split-only", action="store_true",
                    help="build RecBole's split and export its held-out targets; train nothing")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    # RecBole 1.2.1 pickles its config into checkpoints; torch >= 2.6 loads weights only
    torch.load = functools.partial(torch.load, weights_only=False)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, get_trainer, init_logger, init_seed
    # importing recbole's models runs sine.py, which turns anomaly detection on for the
    # whole process (several times slower); switch it back off
    torch.autograd.set_detect_anomaly(False)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import recbole
    # RecBole reads its own bundled copy whenever the dataset is named "ml-100k", whatever
    # data_path says: the feed has another name and takes ml-100k's dataset settings
    ml100k_yaml = Path(recbole.__file__).parent / "properties" / "dataset" / "ml-100k.yaml"
    config = Config(model=args.model, dataset=args.dataset,
                    config_file_list=[str(ml100k_yaml)], config_dict={
        "data_path": args.data_path, "epochs": args.epochs, "stopping_step": args.stopping_step,
        "train_neg_sample_args": None, "loss_type": "CE",
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                      "group_by": "user"},
        "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
        "seed": args.seed, "reproducibility": True, "show_progress": False,
        "use_gpu": False, "gpu_id": "", "worker": 0, "log_wandb": False,
        "checkpoint_dir": str(out.parent / f"{args.model}-checkpoints"),
    })
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    def targets(loader) -> dict[str, str]:
        inter = loader._dataset.inter_feat
        users = dataset.id2token(dataset.uid_field, inter[dataset.uid_field].numpy())
        items = dataset.id2token(dataset.iid_field, inter[dataset.iid_field].numpy())
        return {str(u): str(i) for u, i in zip(users, items)}

    split = {"dataset": args.dataset, "recbole_version": __import__("recbole").__version__,
             "users": int(dataset.user_num - 1), "items": int(dataset.item_num - 1),
             "interactions": int(dataset.inter_num),
             "valid_targets": targets(valid_data), "test_targets": targets(test_data)}
    if args.split_only:
        write(out, split)
        return

    epoch_seconds: list[float] = []
    original = Trainer._train_epoch

    def timed(self, *a, **k):
        started = time.perf_counter()
        result = original(self, *a, **k)
        epoch_seconds.append(time.perf_counter() - started)
        return result

    Trainer._train_epoch = timed
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    best_valid, valid_result = trainer.fit(train_data, valid_data, saved=True,
                                           show_progress=False)
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)

    result = {
        **split, "model": args.model, "seed": args.seed, "torch": torch.__version__,
        "threads": args.threads, "epochs_run": len(epoch_seconds),
        "best_epoch": len(epoch_seconds) - trainer.cur_step,  # 1-based; cur_step = epochs since
        "seconds_per_epoch": sum(epoch_seconds) / max(len(epoch_seconds), 1),
        "epoch_seconds": [round(s, 2) for s in epoch_seconds],
        "valid": {k: float(v) for k, v in valid_result.items()},
        "test": {k: float(v) for k, v in test_result.items()},
        "config": {k: config[k] for k in ("train_batch_size", "learning_rate",
                                           "MAX_ITEM_LIST_LENGTH", "stopping_step", "epochs")},
    }
    write(out, result)


def write(out: Path, obj: dict) -> None:
    """JSON through a temp file, fsync and rename: a stopped run leaves no half file."""
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
