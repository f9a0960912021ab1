"""One training run end to end: read data, build the model, fit, evaluate, write metrics + curves, export.

Layout under the output folder:
    <out>/<model>/train/       best.pt, last.pt, metrics.json, curves.png, bundle_data/
    <out>/<model>/<version>/   the bundle (docs/bundle.md); <out>/<model>/LATEST names the newest
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from models.registry import build_model, config_dict, recipe
from training.bundle_data import load_bundle_data, save_bundle_data
from training.distributed import world
from training.launch import launch
from training.export import ExportError, export_bundle, nonfinite_weights
from training.loop import TrainConfig, fit, load_checkpoint
from training.plots import plot_curves

log = logging.getLogger(__name__)


@dataclass
class DataOptions:
    min_rating: float | None = None      # atomic data: keep ratings >= this
    k_core: int = 0                      # atomic data: iterative k-core filter on users and items
    max_seq_length: int = 50             # sequential models: history length
    features: list[str] | None = None    # GRU4RecF item features; None: the .item file's token fields
    word_vectors: str | None = None      # NRMS: "glove" or a GloVe-format text file
    valid_behaviors: Path | None = None  # NRMS: a separate validation behaviors.tsv
    pretrained: str | None = None        # plm_nrms: "minilm" (the packaged MiniLM) or a Hugging Face BERT folder
    cache_dir: Path | None = None        # where a model may cache what it computes from the data (the run folder)


@dataclass
class RunResult:
    bundle: Path
    run_dir: Path
    metrics: dict


def train_config(model: str, **overrides) -> TrainConfig:
    """The kind's recipe defaults, then every override that is not None."""
    values = {**recipe(model).defaults, **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(**values)


def prepare(model_kind: str, data_dir: Path, opts: DataOptions, seed: int, model_settings: dict | None = None):
    """(model, task, bundle data) for one model kind on one dataset, read by the kind's data family.
    `model_settings`: model-config fields set over what the recipe builds from the data (training/settings.py)."""
    from training.settings import apply_model_settings

    base = recipe(model_kind)
    kind_recipe = replace(base, build_config=lambda data, o: apply_model_settings(
        base, base.build_config(data, o), model_settings or {}))
    torch.manual_seed(seed)
    if kind_recipe.family == "news":
        from training.news import prepare_news
        return prepare_news(kind_recipe, data_dir, opts)
    from training.interactions import prepare_interactions
    return prepare_interactions(kind_recipe, data_dir, opts)


def run(model_kind: str, data_dir: str | Path, out: str | Path, cfg: TrainConfig, opts: DataOptions | None = None,
        *, resume: bool = False, model_settings: dict | None = None) -> RunResult | None:
    """Train, evaluate, export. Data-parallel (training/distributed.py), every rank calls this and reads the
    data; rank 0 alone writes files and returns the result, the others return None once trained.
    `model_settings`: model-config fields to set (Settings.model_changes()); metrics.json and the manifest
    record the effective settings (training/settings.py)."""
    from training.settings import recorded

    out = Path(out)
    run_dir = out / model_kind / "train"
    opts = replace(opts or DataOptions(), cache_dir=run_dir)
    main = world().main
    model, task, bundle_data = prepare(model_kind, Path(data_dir), opts, cfg.seed, model_settings)
    settings = recorded(model_kind, cfg, opts, model.cfg).as_dict()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_bundle_data(bundle_data, run_dir / "bundle_data")
    meta = {"kind": model_kind, "model_config": config_dict(model)}
    try:
        result = fit(task, cfg, run_dir, resume=resume, meta=meta)
    except FloatingPointError as err:  # the loop's non-finite loss: one line, like a metric that is not a number
        raise ExportError(f"not exporting {model_kind}: {err}; no bundle written, LATEST unchanged") from None
    if not main:
        return None
    with torch.no_grad():
        metrics = {phase: task.evaluate(phase) for phase in task.phases}
    metrics["best_epoch"] = result.best_epoch
    metrics["history"] = result.history
    metrics["settings"] = settings
    if result.initial is not None:
        metrics["initial"] = result.initial
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_curves(result.history, cfg.monitor, run_dir / "curves.png", f"{model_kind} on {Path(data_dir).name}")
    bundle_data.metrics = {phase: metrics[phase] for phase in task.phases}
    bundle_data.training = {"train_config": asdict(cfg), "best_epoch": result.best_epoch, "data": str(data_dir),
                            "settings": settings}
    save_bundle_data(bundle_data, run_dir / "bundle_data")
    require_finite_metric(model_kind, model, cfg.monitor, metrics["valid"][cfg.monitor], run_dir)
    bundle = export_bundle(model, bundle_data, out)
    return RunResult(bundle, run_dir, metrics)


def run_data_parallel(nproc: int, model_kind: str, data_dir: str | Path, out: str | Path, cfg: TrainConfig,
                      opts: DataOptions | None = None, *, resume: bool = False,
                      threads: int | None = None, model_settings: dict | None = None) -> RunResult:
    """`run` in `nproc` processes on this machine (DDP over gloo on the CPU, NCCL on `cfg.device` cuda, one
    GPU per process), `threads` torch threads each (default: cores / nproc). `cfg.batch_size` stays the global
    batch: each rank trains on batch_size / nproc of it. A failure on any rank stops them all and raises
    training.launch.RankFailed; too few GPUs for `nproc`, training.device.DeviceError before any starts."""
    # torch.optim.Adam's constructor imports torch._dynamo: 4 s of CPU here, paid once in the forkserver
    found = launch(nproc, _rank_run, (model_kind, str(data_dir), str(out), cfg, opts, resume, model_settings),
                   threads=threads, preload=("torch._dynamo", "training.interactions", "training.news"),
                   device=cfg.device)
    return RunResult(Path(found["bundle"]), Path(found["run_dir"]), found["metrics"])


def _rank_run(model_kind: str, data_dir: str, out: str, cfg: TrainConfig, opts: DataOptions | None,
              resume: bool, model_settings: dict | None = None) -> dict | None:
    """One rank of `run_data_parallel`: rank 0's result as JSON-ready values."""
    result = run(model_kind, data_dir, out, cfg, opts, resume=resume, model_settings=model_settings)
    if result is None:
        return None
    return {"bundle": str(result.bundle), "run_dir": str(result.run_dir), "metrics": result.metrics}


def require_finite_metric(kind: str, model, monitor: str, value: float, run_dir: Path) -> None:
    """The last line of defence before a bundle is written and LATEST moves: the service would load a model
    whose validation metric is not a number all the same. Data that leaves nothing to score is refused when
    read; this also catches a model that diverged."""
    if math.isfinite(value):
        return
    if nonfinite_weights(model) or math.isinf(value):  # an infinite rank metric comes from NaN scores
        cause = "training diverged (the model's weights or scores are not finite); a lower --lr may help"
    else:
        cause = ("the validation data had nothing to score (no user with a validation target, or no impression "
                 "with a clicked and a non-clicked known news), or the model's scores are NaN")
    raise ExportError(f"not exporting {kind}: its validation {monitor} is {value}; likely cause: {cause}; no "
                      f"bundle written, LATEST unchanged (the run's metrics: {run_dir / 'metrics.json'})")


def export_checkpoint(checkpoint: str | Path, out: str | Path | None = None, int8_item_encoder: bool = False,
                      allow_low_recall_index: bool = False) -> Path:
    """Re-export a saved checkpoint (best.pt beside its bundle_data/) as a new bundle under `out`.

    `out` defaults to the artifacts folder the checkpoint came from: `recserve train` writes
    <artifacts>/<model>/train/best.pt, so the new bundle goes beside that model's other versions and only
    its LATEST moves (a default of ./artifacts re-pointed whatever LATEST the current folder held)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ExportError(f"no checkpoint at {checkpoint}")
    try:
        state = load_checkpoint(checkpoint)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... for a file it cannot read
        # torch's own text can advise loading with weights_only=False, unsafe for a file of unknown origin
        raise ExportError(f"{checkpoint} is not a checkpoint that `recserve train` writes (torch cannot read "
                          f"it: {type(err).__name__}); export <artifacts>/<model>/train/best.pt") from err
    # epoch -1: the untrained model, kept as the best by a run that validates it first (eval_initial)
    if "kind" not in state or "model_config" not in state or state.get("epoch", -2) < -1:
        raise ExportError(f"{checkpoint} is not a trained model checkpoint (no completed epoch recorded); "
                          "export the best.pt that `recserve train` writes")
    if out is None:
        run_dir = checkpoint.absolute().parent  # absolute: a bare "best.pt" still has its folders above it
        if run_dir.name != "train" or run_dir.parent.name != state["kind"]:
            raise ExportError(f"{checkpoint} is not in the <artifacts>/{state['kind']}/train/ layout that "
                              "`recserve train` writes, so its artifacts folder is unknown; give one with --out")
        out = run_dir.parent.parent
    model = build_model(state["kind"], state["model_config"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ExportError(f"{checkpoint} does not match its model config: {str(err).splitlines()[0]}") from err
    try:
        data = load_bundle_data(checkpoint.parent / "bundle_data")
    except FileNotFoundError as err:
        raise ExportError(str(err)) from err
    data.metrics = checkpoint_metrics(checkpoint, data.metrics)
    return export_bundle(model, data, out, int8_item_encoder=int8_item_encoder,
                         allow_low_recall_index=allow_low_recall_index)


def checkpoint_metrics(checkpoint: Path, saved: dict) -> dict:
    """The test metrics a re-exported bundle carries, so /models shows what the first export showed: those
    saved with its bundle data, else (bundle data saved before it kept them) the run's metrics.json. Both were
    measured on best.pt: another checkpoint (last.pt) gets none rather than someone else's."""
    if checkpoint.name != "best.pt":
        return {}
    if saved:
        return saved
    try:
        found = json.loads((checkpoint.parent / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return {phase: found[phase] for phase in ("valid", "test") if isinstance(found.get(phase), dict)}
