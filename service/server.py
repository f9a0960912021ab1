"""`recserve serve`: run the app under uvicorn. Imports lazily so the CLI stays light."""
from __future__ import annotations

import os
from pathlib import Path


def serve(artifacts: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          timeout_graceful_shutdown: int | None = None) -> None:
    """Serve the bundles under `artifacts` (other settings come from RECSERVE_* variables). Each worker
    loads every model; SIGHUP to a worker, or POST /admin/reload, swaps in the newest bundles.

    On SIGTERM uvicorn stops accepting connections and lets the requests in flight finish; with
    `timeout_graceful_shutdown` it waits at most that many seconds for them (then cancels what is left and
    shuts the app down), else as long as they take. An orchestrator kills the process after its own grace
    period, so set this below that (docs/deploy.md, Kubernetes)."""
    import uvicorn

    if artifacts is not None:  # else RECSERVE_ARTIFACTS or the default applies
        os.environ["RECSERVE_ARTIFACTS"] = str(artifacts)
    from service.config import SettingsError, load_settings

    settings = load_settings()
    if workers > 1 and not settings.redis_url:
        # Each worker would keep its own clicks and added items, and answer the same user differently.
        raise SettingsError(
            f"--workers {workers} needs RECSERVE_REDIS_URL: without Redis each worker keeps its own user events "
            "and added items, so the workers could not agree; use one worker or set RECSERVE_REDIS_URL")
    uvicorn.run("service.app:app", host=host, port=port, workers=workers, log_level=settings.log_level.lower(),
                access_log=False, timeout_graceful_shutdown=timeout_graceful_shutdown)
