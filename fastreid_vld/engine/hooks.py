"""VLDTrainer's versions of three fast-reid hooks: the checkpointer (model_best.pth kept as the official
VLD code keeps its best_model.pth), the writers (every evaluation reaches metrics.json and tensorboard)
and the iteration timer (its summary says what it timed); and two of its own: the scalar histories a
resumed run continues from, and the run's curves. Its file writers fail as one :class:`FileWriteError`
naming the file (a full disk), metrics.json keeping every line written before, and :func:`run_every`
runs the closing steps of a run so that a failed one is not hidden behind a second error."""

from __future__ import annotations

import datetime
import functools
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable

from fastreid.engine import hooks
from fastreid.utils.events import EventWriter, JSONWriter, TensorboardXWriter, get_event_storage
from fastreid.utils.history_buffer import HistoryBuffer

from ..checkpoint import writing
from .defaults import log_to_files_only, run_error_line

logger = logging.getLogger(__name__)


def run_every(steps: Iterable[Callable[[], None]], what: str) -> None:
    """Call each of ``steps``, each one even where an earlier one failed (every file gets closed), then
    raise the first failure; unless an error is on its way already (a failed training, whose
    ``after_train`` this is): that one stays the error reported, and ``what`` failed besides goes to
    log.txt only."""
    failures = []
    for step in steps:
        try:
            step()
        except Exception as error:
            failures.append(error)
    on_its_way = sys.exc_info()[1] is not None
    for failure in failures if on_its_way else failures[1:]:
        line = run_error_line(failure)
        log_to_files_only(logging.getLogger("fastreid_vld"), f"{what} failed too: {line or repr(failure)}",
                          logging.ERROR, error=None if line else failure)
    if failures and not on_its_way:
        raise failures[0]


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


class RunRecordWriter(hooks.PeriodicWriter):
    """fast-reid's PeriodicWriter (the console line, ``metrics.json`` and the tensorboard events every
    SOLVER.LOG_PERIOD iterations), with every evaluation in the files and no console line twice.

    fast-reid's file writers write only scalars of an iteration later than the last one they wrote,
    and EvalHook stores an evaluation at the epoch's last iteration, after that iteration's periodic
    write: wherever LOG_PERIOD divides the epoch (vcm.yml: 200 iterations, logged every 20) no
    evaluation reached the files, and the one after the last epoch was never written at all. Here the
    files of an epoch's last iteration are written after the epoch's hooks (its evaluation goes with
    its losses), and once more after training, before they are closed; the console line of an epoch's
    last iteration is printed once (fast-reid printed it again after the epoch).
    """

    def __init__(self, writers: list[EventWriter], period: int) -> None:
        super().__init__(writers, period)
        self._printed_iteration = -1

    def after_step(self) -> None:
        iteration = self.trainer.iter
        if (iteration + 1) % self._period and iteration != self.trainer.max_iter - 1:
            return
        epoch_end = (iteration + 1) % self.trainer.iters_per_epoch == 0
        self._write(files=not epoch_end, console=True)

    def after_epoch(self) -> None:
        self._write(files=True, console=self._printed_iteration != get_event_storage().iter)

    def after_train(self) -> None:
        """The files' last write (the evaluation after the last epoch; a failed run's last scalars), then
        every writer closed, each one even where that write or an earlier close failed."""
        run_every([functools.partial(self._write, files=True, console=False),
                   *(writer.close for writer in self._writers)], "Closing metrics.json and the events")

    def _write(self, files: bool, console: bool) -> None:
        for writer in self._writers:
            if isinstance(writer, (JSONWriter, TensorboardXWriter)):
                if files:
                    writer.write()
            elif console:
                writer.write()
        if console:
            self._printed_iteration = get_event_storage().iter


class MetricsWriter(JSONWriter):
    """fast-reid's ``metrics.json`` writer, each of whose writes reaches the file whole or not at all
    (:class:`_WholeWrites`): a full disk leaves every line written before it, and no half line."""

    def __init__(self, json_file: str, window_size: int = 20) -> None:
        super().__init__(json_file, window_size)
        self._file_handle.close()
        self._file_handle = _WholeWrites(json_file)


class _WholeWrites:
    """The file under :class:`MetricsWriter`: the text of one of JSONWriter's writes is kept until its
    ``flush``, which appends it and fsyncs; where the file system refuses (a full disk), the file is cut
    back to where it ended before, and the failure is a :class:`FileWriteError` naming it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, "ab", buffering=0)  # closed by JSONWriter.close
        self._pending: list[str] = []

    def write(self, text: str) -> None:
        self._pending.append(text)

    def flush(self) -> None:
        data, self._pending = "".join(self._pending).encode(), []
        if not data:
            return
        end = os.fstat(self._file.fileno()).st_size
        with writing(self.path):
            try:
                self._append(data)
            except OSError:
                os.ftruncate(self._file.fileno(), end)
                raise

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._file.write(view):]
        os.fsync(self._file.fileno())

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()


class EventsWriter(TensorboardXWriter):
    """fast-reid's tensorboard writer, whose events reach their file by the end of each write, a failure
    (a full disk) then being a :class:`FileWriteError` naming the file. fast-reid's left them to
    tensorboard's writer thread for up to 2 minutes: a failure was a traceback from that thread, then an
    OSError naming no file at some later write (the thread's traceback is now left out:
    :func:`_quiet_writer_threads`)."""

    def __init__(self, log_dir: str, window_size: int = 20) -> None:
        super().__init__(log_dir, window_size)
        events = self._writer._get_file_writer().event_writer
        self.path = events._file_name
        _quiet_writer_threads(events._async_writer._worker)

    def write(self) -> None:
        with writing(self.path):
            super().write()
            self._writer.flush()  # waits for the writer thread, and raises what it met

    def close(self) -> None:
        with writing(self.path):
            super().close()


class _WriterThreadFailures:
    """A ``threading.excepthook``: no traceback from a writer thread dying of an OSError (a full disk)
    where its writer raises that error itself (:class:`EventsWriter`); anything else to ``previous``."""

    def __init__(self, previous: Callable[[threading.ExceptHookArgs], object]) -> None:
        self.previous = previous
        self.reported_by_their_writer: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

    def __call__(self, args: threading.ExceptHookArgs) -> None:
        if args.thread in self.reported_by_their_writer and issubclass(args.exc_type, OSError):
            return
        self.previous(args)


def _quiet_writer_threads(thread: threading.Thread) -> None:
    """``thread``'s OSError left to its writer (:class:`_WriterThreadFailures`, installed once)."""
    if not isinstance(threading.excepthook, _WriterThreadFailures):
        threading.excepthook = _WriterThreadFailures(threading.excepthook)
    threading.excepthook.reported_by_their_writer.add(thread)


class ScalarHistories(hooks.HookBase):
    """The recent history of every scalar, carried by the checkpoints (a checkpointable) and put back
    into the event storage when a resumed run starts, so the smoothed values a resumed run writes
    (metrics.json, tensorboard and the console: medians over the last 20 and 200 values) are the
    uninterrupted run's; before, they restarted from one value after every resume."""

    #: values kept per scalar: the longest window fast-reid's writers read (CommonMetricPrinter's median)
    KEPT = 200

    def __init__(self) -> None:
        self._restored: dict = {}

    def state_dict(self) -> dict:
        storage = get_event_storage()
        hints = storage.smoothing_hints()
        return {name: {"data": [list(pair) for pair in history._data[-self.KEPT:]], "count": history._count,
                       "global_avg": history._global_avg, "smoothing_hint": hints.get(name, True)}
                for name, history in storage.histories().items()}

    def load_state_dict(self, state: dict) -> None:
        self._restored = state

    def before_train(self) -> None:
        storage = get_event_storage()
        for name, kept in self._restored.items():
            history = HistoryBuffer()
            history._data = [tuple(pair) for pair in kept["data"]]
            history._count, history._global_avg = kept["count"], kept["global_avg"]
            storage._history[name] = history
            storage._smoothing_hints[name] = kept["smoothing_hint"]


class CurvesWriter(hooks.HookBase):
    """``OUTPUT_DIR/curves.png`` after training (a failed one too): tools/plot_run.py's picture of the
    run's metrics.json, drawn after :class:`RunRecordWriter` has closed it."""

    def __init__(self, output_dir: str) -> None:
        self._output_dir = output_dir

    def after_train(self) -> None:
        from .curves import write_run_curves  # matplotlib (0.3 s to import) only when a run ends

        write_run_curves(self._output_dir)


class IterationTimer(hooks.IterationTimer):
    """fast-reid's IterationTimer, whose summary counts what it timed: "Overall training speed: 2
    iterations timed in ... (4 trained, the first 2 not timed: warm-up)" where fast-reid's said "2
    iterations" of a 4-iteration run (and miscounted a failed one), and a total training time from the
    start of training (fast-reid's started after the warm-up iterations)."""

    def before_train(self) -> None:
        super().before_train()
        self._began, self._trained = time.perf_counter(), 0

    def after_step(self) -> None:
        super().after_step()
        self._trained += 1

    def after_train(self) -> None:
        total_seconds = time.perf_counter() - self._began
        timed_seconds = self._total_timer.seconds()  # the steps after the warm-up, hooks excluded
        warm_up = min(self._trained, self._warmup_iter - 1)  # fast-reid's timer restarts after each of these
        timed = self._trained - warm_up
        if timed > 0 and timed_seconds > 0:
            logger.info("Overall training speed: %d iterations timed in %s (%.4f s / it; %d trained, the first %d "
                        "not timed: warm-up)", timed, _duration(timed_seconds), timed_seconds / timed,
                        self._trained, warm_up)
        logger.info("Total training time: %s (%s on hooks and warm-up)", _duration(total_seconds),
                    _duration(total_seconds - timed_seconds))


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))
