"""The checkpointing hook of VLDTrainer: fast-reid's periodic checkpoints, and model_best.pth kept
as the official VLD code keeps its best_model.pth."""

from __future__ import annotations

from fastreid.engine import hooks
from fastreid.utils.events import get_event_storage


class BestCheckpointer(hooks.PeriodicCheckpointer):
    """fast-reid's PeriodicCheckpointer hook (``model_XXXX.pth`` every SOLVER.CHECKPOINT_PERIOD
    epochs, ``model_final.pth``), except for ``model_best.pth``: fast-reid considers it only at
    checkpoint epochs and keeps the earlier of two equal metrics; here, as the official VLD code
    (``main.py:64-74``: best when Rank-1 >= the best so far), every evaluation is considered and a
    later epoch with an equal metric (TEST.SELECT_BY) replaces the earlier one. Every checkpoint
    carries ``best_metric``, so a resumed run keeps model_best.pth until it is beaten
    (:meth:`restore`)."""

    def restore(self, checkpoint: dict) -> None:
        """The best metric so far, from a checkpoint being resumed (-1 in one written before it was kept)."""
        self.best_metric = checkpoint.get("best_metric", self.best_metric)

    def after_epoch(self) -> None:
        self._keep_if_best()
        self.step(self.trainer.epoch, metric=self._latest_metric()[0])

    def after_train(self) -> None:
        self._keep_if_best()  # an evaluation that EvalHook runs after the last epoch

    def step(self, epoch: int, **kwargs) -> None:
        """Periodic and final checkpoints, as fast-reid saves them (model_best is kept apart)."""
        state = {"epoch": int(epoch), "best_metric": self.best_metric, **kwargs}
        if (epoch + 1) % self.period == 0 and epoch < self.max_epoch - 1:
            self.checkpointer.save(f"model_{epoch:04d}", **state)
        if epoch >= self.max_epoch - 1:
            self.checkpointer.save("model_final", **state)

    def _latest_metric(self) -> tuple[float, bool]:
        """(the latest model-selection metric, -1 before any; whether an evaluation just put it)."""
        storage = get_event_storage()
        latest = storage.latest().get(self.metric_name)
        if latest is None:
            return -1.0, False
        return latest[0], latest[1] == storage.iter

    def _keep_if_best(self) -> None:
        metric, fresh = self._latest_metric()
        if fresh and metric >= self.best_metric:
            self.best_metric = metric
            self.checkpointer.save("model_best", epoch=self.trainer.epoch, metric=metric, best_metric=metric)
