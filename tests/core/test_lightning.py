"""The shared Lightning machinery: one best-epoch rule, per-epoch atomic checkpoints, run
folders that resume only what may be resumed, trainer settings checked."""

from __future__ import annotations

import json
import math
import pickle
import signal

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rankpref.config import TrainerConfig
from rankpref.errors import ConfigError
from rankpref.lightning import (BEST, LAST, BestKeeper, LastCheckpoint, make_trainer,
                                prepare_run, readable_checkpoint)


class Scripted(L.LightningModule):
    """Logs a scripted valid value per epoch, so the selection rule can be checked exactly."""

    def __init__(self, values):
        super().__init__()
        self.model = torch.nn.Linear(2, 1)
        self.values = values
        self.seen_epochs = []

    def training_step(self, batch, batch_idx):
        loss = self.model(batch[0]).pow(2).mean()
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.seen_epochs.append(self.current_epoch)
        self.log("valid/score", float(self.values[self.current_epoch]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader():
    return DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)


def _fit(values, patience=10, path=None, extra=(), **options):
    module = Scripted(values)
    keeper = BestKeeper("valid/score", patience, path)
    trainer = make_trainer(TrainerConfig(accelerator="cpu"), max_epochs=len(values),
                           callbacks=[keeper, *extra], **options)
    trainer.fit(module, _loader(), _loader())
    return keeper, module, trainer


def test_best_is_the_first_strictly_best_epoch_and_nan_never_counts():
    keeper, module, _ = _fit([0.1, float("nan"), 0.3, 0.3, 0.2])
    assert keeper.best_epoch == 2 and keeper.best == pytest.approx(0.3)  # not the later tie
    assert [h["epoch"] for h in keeper.history] == [1, 2, 3, 4, 5]
    assert math.isnan(keeper.history[1].get("valid/score", float("nan")))
    assert "train/loss" in keeper.history[0]  # the epoch's own training loss is in its row
    assert keeper.summary()["selected_on"] == "valid score"


def test_patience_counts_epochs_without_a_better_value():
    keeper, module, trainer = _fit([0.5, 0.4, 0.4, 0.6, 0.9], patience=2)
    assert trainer.current_epoch == 3 and keeper.best_epoch == 0  # stopped after epoch 3


def test_kept_weights_are_those_of_the_best_epoch(tmp_path):
    snapshots = []

    class Snap(L.Callback):
        def on_validation_end(self, trainer, pl_module):
            snapshots.append(pl_module.model.weight.detach().clone())

    for path in (None, tmp_path / BEST):
        snapshots.clear()
        keeper, module, _ = _fit([0.1, 0.9, 0.2], path=path, extra=[Snap()])
        state = keeper.best_state()
        assert torch.equal(state["weight"], snapshots[1])
        keeper.restore(module.model)
        assert torch.equal(module.model.weight, snapshots[1])


def test_last_checkpoint_is_written_every_epoch_and_holds_the_keeper(tmp_path):
    written = []

    class Watch(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            path = tmp_path / "ck" / LAST
            written.append(torch.load(path, weights_only=True)["epoch"] if path.exists() else None)

    keeper, _, _ = _fit([0.1, 0.5, 0.2], extra=[Watch(), LastCheckpoint(tmp_path / "ck")])
    assert written == [None, 0, 1]  # epoch e's checkpoint exists before epoch e + 1 starts
    ckpt = torch.load(tmp_path / "ck" / LAST, weights_only=True)
    held = [v for k, v in ckpt["callbacks"].items() if "BestKeeper" in k][0]
    assert held["best_epoch"] == 1 and len(held["history"]) == 3
    assert not list((tmp_path / "ck").glob(".*.tmp"))


def test_unreadable_checkpoints_are_not_resumed(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"epoch": 1}, good)
    assert readable_checkpoint(good)
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(good.read_bytes()[:40])
    planted = tmp_path / "pickle.ckpt"
    planted.write_bytes(pickle.dumps({"epoch": 1}))
    assert not readable_checkpoint(truncated) and not readable_checkpoint(planted)
    assert not readable_checkpoint(tmp_path / "absent.ckpt")


def test_prepare_run_resumes_refuses_and_starts_afresh(tmp_path):
    run = tmp_path / "run"
    assert prepare_run(run, {"model": 1}, resume=True) is None
    (run / "checkpoints").mkdir()
    torch.save({"epoch": 3}, run / "checkpoints" / LAST)
    (run / BEST).write_bytes(b"x")
    assert prepare_run(run, {"model": 1}, resume=True) == run / "checkpoints" / LAST
    with pytest.raises(ConfigError, match="other settings"):
        prepare_run(run, {"model": 2}, resume=True)
    # resume off: the old state goes, nothing stale is restored by a later run
    assert prepare_run(run, {"model": 2}, resume=False) is None
    assert not (run / "checkpoints").exists() and not (run / BEST).exists()
    assert json.loads((run / "run_config.json").read_text()) == {"model": 2}
    # a truncated checkpoint is moved aside, never deleted, and the run starts afresh
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / LAST).write_bytes(b"PK\x03\x04 truncated")
    assert prepare_run(run, {"model": 2}, resume=True) is None
    assert (run / (LAST + ".bad")).read_bytes() == b"PK\x03\x04 truncated"
    assert not (run / "checkpoints").exists()


def test_impossible_trainer_settings_are_config_errors():
    with pytest.raises(ConfigError, match="train.trainer"):
        make_trainer(TrainerConfig(accelerator="tpu-that-does-not-exist"), max_epochs=1,
                     callbacks=[])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_at_the_next_batch_and_names_the_last_saved_epoch(tmp_path, signum):
    """In-process and fast; the subprocess test in tests/tasks/next_item (kill -9 in the
    default suite, Ctrl-C and SIGTERM among the slow tests) checks the resumed metrics."""
    from rankpref.errors import RunInterrupted
    from rankpref.lightning import run_fit

    class SignalInEpoch3(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 2 and batch_idx == 0:
                signal.raise_signal(signum)

    module = Scripted([0.1, 0.2, 0.3, 0.4, 0.5])
    trainer = make_trainer(TrainerConfig(accelerator="cpu"), max_epochs=5,
                           callbacks=[SignalInEpoch3(), BestKeeper("valid/score", 10),
                                      LastCheckpoint(tmp_path / "ck")])
    before = signal.getsignal(signum)
    with pytest.raises(RunInterrupted) as info:
        run_fit(trainer, module, train_dataloaders=_loader(), val_dataloaders=_loader())
    error = info.value
    assert error.signum == signum and error.epochs_done == 2
    assert error.checkpoint == str(tmp_path / "ck" / LAST)
    assert torch.load(tmp_path / "ck" / LAST, weights_only=True)["epoch"] == 1  # epochs 1, 2
    assert sorted(set(module.seen_epochs)) == [0, 1], "the interrupted epoch must not validate"
    assert f"{signal.Signals(signum).name} during epoch 3" in str(error)
    assert signal.getsignal(signum) == before, "the previous handler is restored"
