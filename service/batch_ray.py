"""`recserve recommend --engine ray`: the one-process path (service/batch.py) as Ray Data `map_batches` over a
pool of actors, each holding the bundle loaded once (its own onnxruntime sessions and catalog matrix).

The driver reads the users (service/batch_io.py), hands them to Ray in blocks of `batch_size` users, and gets the
records back in input order (Ray Data's `preserve_order`), which it writes to one file, as the one-process path
does; records are the same as that path's, since each actor calls its `recommend_users` on its block. A local Ray
starts for the command and stops after it; with RAY_ADDRESS set, the command joins that cluster instead, whose
nodes must have recserve installed (the `ray` extra) and read the bundle at the same path (a shared folder).

Ray is imported only here, and only when this engine runs: the serving image has no Ray."""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bundle.reader import resolve_latest
from service.batch import load_for_batch, recommend_users
from service.batch_io import BatchInputError, records_to_table, table_to_records

INSTALL_HINT = "--engine ray needs Ray: pip install 'recserve[ray]'"


def import_ray() -> Any:
    """`ray` with Ray Data, or a one-line BatchInputError saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray without its data extra lacks pandas/pyarrow)
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] not in ("ray", "pyarrow", "pandas", "fsspec"):
            raise
        raise BatchInputError(f"{INSTALL_HINT} ({err.name} is not installed)") from None
    return ray


@contextmanager
def ray_runtime(actors: int, cpus_per_actor: float) -> Iterator[Any]:
    """Ray, started if no Ray is running in this process: the cluster at RAY_ADDRESS, or else a local one with
    enough CPUs for the actor pool, no dashboard, and the workers' output kept out of the terminal. Ray stops
    at the end only if it was started here."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)  # connects to RAY_ADDRESS; the cluster's resources are its own
    else:
        cpus = max(os.cpu_count() or 1, math.ceil(actors * cpus_per_actor))
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield ray
    finally:
        ray.shutdown()


def quiet_ray_data() -> None:
    """Ray Data's warnings and errors on the terminal, not its news of each run (its log file keeps all)."""
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(max(handler.level, logging.WARNING))
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled"


class Recommender:
    """The actor of `map_batches`: loads the bundle once, then turns each block of user ids into records."""

    def __init__(self, bundle: str, k: int, batch_size: int, exclude_history: bool, cpus: float):
        # onnxruntime defaults to a thread per core of the machine; N actors on one machine would each take
        # them all. As Ray does for OMP_NUM_THREADS, give each actor as many threads as the CPUs it holds.
        os.environ.setdefault("RECSERVE_INTRA_OP_THREADS", str(max(1, int(cpus))))
        from service.cli import user_errors

        self.k, self.batch_size, self.exclude_history = k, batch_size, exclude_history
        self.model, self.error = None, None
        try:
            self.model = load_for_batch(bundle)
        except user_errors() as err:
            # Sent as a record without a user (see recommend_ray), not raised: Ray reports an actor that died in
            # __init__, or a batch that raised, by a traceback in text, the exception itself lost on the way.
            self.error = str(err)

    def __call__(self, batch):
        """A pyarrow table with `user_id` -> a table of records (service/batch_io.record_schema)."""
        if self.error is not None:
            return records_to_table([{"user_id": None, "error": self.error}])
        ids = [str(u) for u in batch.column("user_id").to_pylist()]
        return records_to_table(list(recommend_users(self.model, ids, self.k, self.batch_size, self.exclude_history)))


def recommend_ray(bundle: str | Path, user_ids: Sequence[str], k: int = 10, batch_size: int = 256,
                  exclude_history: bool = True, actors: int = 1, cpus_per_actor: float = 1.0) -> Iterator[dict]:
    """Yield one record per user, in input order, as `service.batch.recommend_users` does, computed by
    `actors` Ray actors. Needs a running Ray (see `ray_runtime`)."""
    import pyarrow as pa
    import ray

    if not user_ids:
        return
    path = Path(bundle).resolve()
    if (path / "LATEST").exists():
        path = resolve_latest(path)  # once, here: every actor loads the same version
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False  # the command has its own
    context.print_on_execution_start = False
    quiet_ray_data()
    blocks = [pa.table({"user_id": pa.array(user_ids[i : i + batch_size], pa.string())})
              for i in range(0, len(user_ids), batch_size)]
    dataset = ray.data.from_arrow(blocks).map_batches(
        Recommender, batch_size=batch_size, batch_format="pyarrow", num_cpus=cpus_per_actor,
        compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={"bundle": str(path), "k": k, "batch_size": batch_size,
                               "exclude_history": exclude_history, "cpus": cpus_per_actor})
    for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        if table.column("user_id").null_count:  # an actor that could not load the bundle
            raise BatchInputError(table.filter(table.column("user_id").is_null()).column("error")[0].as_py())
        yield from table_to_records(table)
