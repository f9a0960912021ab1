"""`recserve tune`: search a model's settings on its validation metric with Optuna, resumably.

- TPE samples each trial's settings from the space (training/tune_spaces.py) over the base settings (the
  kind's defaults, --config, --set); a trial trains with the loop `recserve train` uses, without export.
- Each epoch's validation metric is reported to the trial; the median pruner stops a trial whose figure
  falls below the median of earlier trials at the same epoch (after a few complete trials, from epoch 2).
- The study lives in `<study>/study.db` (SQLite): a rerun of the same command continues it until the study
  holds `trials` finished (complete or pruned) trials. A settings combination the model refuses (heads not
  dividing the width) is a pruned trial with its reason.
- `<study>/best.yaml` is the best trial's settings in the form `recserve train --config` takes.
- `jobs` worker processes share the study, each with cores / jobs torch threads. On two cores the default is
  one trial at a time with both cores: two 1-thread trials run no faster than one 2-thread trial there.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.limits import SettingError
from training.progress import duration
from training.settings import Settings, resolve
from training.tune_spaces import suggest

log = logging.getLogger(__name__)
BEST_FILE = "best.yaml"
STUDY_FILE = "study.db"


@dataclass
class TuneJob:
    """What every worker needs to run trials of one study (picklable: workers are spawned processes)."""
    kind: str
    data: str
    study_dir: str
    base: dict            # the base settings (Settings.as_dict())
    space: dict[str, Any]
    trials: int           # finished trials the study should hold
    timeout: float | None
    threads: int
    valid_behaviors: Path | None = None  # news data: a separate validation behaviors.tsv


def default_jobs(cores: int | None = None) -> int:
    """Parallel trials by default: one per 4 cores, at least one (two cores: one trial with both)."""
    return max(1, (cores or os.cpu_count() or 1) // 4)


def open_study(job: TuneJob, worker: int = 0):
    """The study in job.study_dir, created or loaded; a study of another kind or dataset is refused. The
    sampler's seed moves on with the trials already run and the worker, so neither a rerun nor a second
    worker replays the random first draws of the others."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(job.study_dir)
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{folder / STUDY_FILE}"
    study = optuna.create_study(study_name=job.kind, storage=storage, load_if_exists=True, direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    seed = job.base["train"]["seed"] + 1000 * worker + len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    for key, value in (("kind", job.kind), ("data", str(Path(job.data).absolute()))):
        stored = study.user_attrs.get(key)
        if stored is None:
            study.set_user_attr(key, value)
        elif stored != value:
            raise SettingError(f"--study {folder}: holds a study of {key} {stored}, not {value}; use another --study")
    return study


def finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def run_trials(job: TuneJob, worker: int = 0) -> None:
    """One worker: trials until the study holds job.trials finished ones or job.timeout passes."""
    import optuna
    import torch

    torch.set_num_threads(job.threads)
    study = open_study(job, worker)
    left = job.trials - finished(study)
    if left <= 0:
        return
    stop = optuna.study.MaxTrialsCallback(job.trials, states=(optuna.trial.TrialState.COMPLETE,
                                                              optuna.trial.TrialState.PRUNED))
    study.optimize(lambda trial: objective(trial, job), n_trials=left, timeout=job.timeout,
                   callbacks=[stop, lambda s, t: print(progress_line(s, t, job), flush=True)])


def objective(trial, job: TuneJob) -> float:
    """Train one trial's settings; its best validation metric, reported epoch by epoch for pruning."""
    import optuna

    from training.loop import fit
    from training.train import prepare

    def stop(why: str) -> optuna.TrialPruned:
        trial.set_user_attr("why", why)
        return optuna.TrialPruned(why)

    try:
        settings = resolve(job.kind, config=job.base, options=suggest(trial, job.kind, job.space))
    except SettingError as err:
        raise stop(f"refused: {err}") from None
    settings.train["progress"] = False
    trial.set_user_attr("settings", settings.as_dict())
    cfg = settings.train_config()

    def report(epoch: int, metric: float) -> None:
        trial.report(metric, epoch)
        trial.set_user_attr("epochs", epoch + 1)
        if trial.should_prune():
            raise optuna.TrialPruned(f"valid {cfg.monitor} {metric:.4f} at epoch {epoch + 1}")

    run_dir = Path(tempfile.mkdtemp(prefix=f"trial{trial.number}-", dir=job.study_dir))
    cache = Path(job.study_dir) / "cache"  # what a model computes from the data (plm_nrms: frozen title vectors)
    try:
        opts = settings.data_options(cache_dir=cache, valid_behaviors=job.valid_behaviors)
        try:  # a setting the data refuses (plm_nrms heads against the encoder's width) ends this trial only
            model, task, _ = prepare(job.kind, Path(job.data), opts, cfg.seed, settings.model_changes())
        except SettingError as err:
            raise stop(f"refused: {err}") from None
        try:
            result = fit(task, cfg, run_dir, on_epoch=report)
        except FloatingPointError as err:  # the loop's non-finite loss: a too-large lr, say
            raise stop(f"diverged: {err}") from None
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    trial.set_user_attr("best_epoch", result.best_epoch + 1)
    return result.best_metric


def progress_line(study, trial, job: TuneJob) -> str:
    """One line per finished trial: its figure or why it stopped, the best so far, and what it tried."""
    from optuna.trial import TrialState

    monitor = job.base["train"]["monitor"]
    took = duration((trial.datetime_complete - trial.datetime_start).total_seconds()) \
        if trial.datetime_complete and trial.datetime_start else "?"
    if trial.state == TrialState.COMPLETE:
        what = f"valid {monitor} {trial.value:.4f} (epoch {trial.user_attrs.get('best_epoch')})"
    elif trial.state == TrialState.PRUNED:
        what = trial.user_attrs.get("why") or f"pruned after epoch {trial.user_attrs.get('epochs', '?')}"
    else:
        what = str(trial.state.name).lower()
    try:
        best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
    except ValueError:
        best = "no complete trial yet"
    params = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in trial.params.items())
    return f"trial {trial.number} [{finished(study)}/{job.trials}]: {what} in {took}; {best}; {params}"


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_best(study, study_dir: Path) -> Path | None:
    """<study>/best.yaml from the best complete trial (None while there is none)."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    settings = Settings(**best.user_attrs["settings"])
    header = (f"# recserve tune: trial {best.number} of {finished(study)}, valid "
              f"{settings.train['monitor']} {best.value:.4f} at epoch {best.user_attrs.get('best_epoch')}; "
              f"train with: recserve train --config {study_dir / BEST_FILE} --data DATA\n")
    path = Path(study_dir) / BEST_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + settings.to_yaml(run_only=False))
    tmp.replace(path)
    return path


def tune(job: TuneJob, jobs: int = 1) -> Path | None:
    """Run the study (in `jobs` spawned processes when more than one) and write best.yaml."""
    study = open_study(job)  # refuses a mismatched study before any worker starts
    already = finished(study)
    if already >= job.trials:
        log.info("the study in %s holds %d finished trials already (asked for %d)", job.study_dir, already, job.trials)
    elif jobs <= 1:
        run_trials(job)
    else:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=run_trials, args=(job, i)) for i in range(jobs)]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        failed = [w.exitcode for w in workers if w.exitcode]
        if failed:
            raise RuntimeError(f"{len(failed)} of {jobs} tuning workers failed (exit codes {failed}) after "
                               f"{duration(time.perf_counter() - started)}; their errors are above")
    return write_best(open_study(job), Path(job.study_dir))


def summary(study_dir: Path) -> str:
    """The study's best trial in a line (for the command's last output)."""
    path = Path(study_dir) / BEST_FILE
    if not path.exists():
        return f"no trial completed; nothing written to {path}"
    first = path.read_text().splitlines()[0].lstrip("# ")
    return f"{first}\nbest settings: {path}"


