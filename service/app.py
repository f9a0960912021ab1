"""The FastAPI app: `create_app(settings)`; `uvicorn service.app:app` serves one built from the environment."""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service import docs, errors
from service.access import AccessControl
from service.body_limit import BodyLimit
from service.cache import RedisStore, make_store
from service.config import Settings, SettingsError, load_settings
from service.experiments.canary import Canaries
from service.experiments.shadow import Shadows
from service.feedback.online import Feedback
from service.hot_routes import HotRoutes, accept, served_routes
from service.metrics import Metrics
from service.middleware import LatencyMiddleware
from service.ranking import Ranker
from service.registry import Registry
from service.routes import admin, health, rank, routers
from service.state import RedisState
from service.sync import follow_added_items

log = logging.getLogger("recserve")


def _watch_sighup(registry: Registry) -> bool:
    """Reload the bundles on SIGHUP; only possible from the main thread's event loop (the server's)."""
    loop = asyncio.get_running_loop()

    def on_hup() -> None:
        log.info("SIGHUP: reloading bundles")
        loop.create_task(run_in_threadpool(registry.load))

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        return True
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        return False


def _configure_logging(level: str) -> None:
    """Give the recserve loggers a stderr handler (uvicorn configures only its own)."""
    logger = logging.getLogger("recserve")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)


def _single_blas_thread() -> None:
    """numpy's OpenBLAS on one thread, unless OPENBLAS_NUM_THREADS says otherwise. Its threads spin after each
    product, waiting for the next; a serving worker's products are small (the index head: [2,048, D] x [D, B])
    and come between requests, so its threads only take the cores that the other requests, the index search
    and onnxruntime need (in process at 1M items: searches ~1.5x slower beside them; docs/benchmarks.md 6.6).
    Set at start-up rather than through the environment, as `recserve serve` has loaded numpy by then. Only
    OpenBLAS: other thread pools in the process (torch's, in tests) are left alone."""
    if "OPENBLAS_NUM_THREADS" in os.environ:
        return
    from threadpoolctl import ThreadpoolController

    ThreadpoolController().select(internal_api="openblas").limit(limits=1)


def _freeze_imports() -> None:
    """Once per process, before the models load: collect, then freeze what the imports left (~78k objects of
    fastapi, pydantic, onnxruntime, numpy...). The collector's full passes skip frozen objects: they took 55-70
    ms (in the middle of some request: 1M bench, cold /recommend at concurrency 1, p99 10-27 ms against 5 with
    the collector off), ~1 ms after (docs/benchmarks.md 6.6). The models are not frozen, so a reload still
    frees the one it replaces, reference cycles and all."""
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Connect the cache, load and warm every model, then serve; reloads swap models in while serving."""
    settings, metrics = app.state.settings, app.state.metrics
    _configure_logging(settings.log_level)
    store = make_store(settings.redis_url, settings.redis_timeout_s, settings.redis_retry_s,
                       settings.local_cache_size, lambda down: metrics.cache_degraded.set(int(down)))
    if isinstance(store, RedisStore) and await run_in_threadpool(store.check) != "up":  # said loudly, once
        log.error("Redis at %s (RECSERVE_REDIS_URL) does not answer: clicks and added items cannot be kept; %s",
                  store.url, "/readyz answers 503 until it does (RECSERVE_WAIT_FOR_REDIS)" if settings.wait_for_redis
                  else "serving without it (RECSERVE_WAIT_FOR_REDIS=false)")
    state = None
    if isinstance(store, RedisStore):  # clicks and added items shared by every worker and replica
        state = RedisState(store, settings.cache_prefix, settings.events_ttl_s, settings.state_copies_size,
                           settings.state_copies_max_age_s)
    registry = Registry(settings, store, metrics, state)
    app.state.store, app.state.registry = store, registry
    feedback = Feedback.make(settings, metrics, store)
    feedback.start()
    shadows = canaries = None
    try:
        app.state.ranker = ranker = Ranker(store, settings, metrics, feedback)
        shadows = Shadows(registry, ranker, metrics, settings.shadow_queue, settings.shadow_thread)
        app.state.shadows = shadows
        shadows.start()
        redis = store if isinstance(store, RedisStore) else None
        app.state.canaries = canaries = Canaries(registry.experiments, metrics, redis, settings.cache_prefix,
                                                 settings.canary_check_s, feedback.counts)
        canaries.start()
        _single_blas_thread()
        _freeze_imports()
        await run_in_threadpool(registry.load)
        hup = _watch_sighup(registry)
        sync = asyncio.create_task(follow_added_items(registry, settings)) if state is not None else None
        yield
        if sync is not None:
            sync.cancel()
        if hup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
    finally:  # also when start-up fails: the recorder's task and thread end with the app
        if canaries is not None:
            await canaries.close()
        if shadows is not None:
            await shadows.close()  # first: its last jobs may still queue records
        await feedback.close()  # what is buffered is written before the process goes


def _open_to_all(app: FastAPI, settings: Settings) -> dict:
    """What answers without a key (`AccessControl`'s open paths and prefixes): the health probes, and the docs
    when RECSERVE_PUBLIC_DOCS says so (the OpenAPI document lists every route and its inputs)."""
    probes = {route.path for route in health.router.routes}
    if not settings.public_docs:
        return {"open_paths": probes}
    pages, assets = docs.paths(app)
    return {"open_paths": probes | pages, "open_prefixes": (assets,)}


def create_app(settings: Settings | None = None) -> FastAPI:
    """An app serving the bundles under `settings.artifacts` (models load when the app starts)."""
    # docs_url and redoc_url None: FastAPI's pages load their assets from a CDN; service.docs serves them.
    app = FastAPI(title="Recserve", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Rank and recommend with the model bundles found under the artifacts folder "
                              "(`<artifacts>/<model>/LATEST`); GET /models lists the models being served.")
    app.state.settings = settings = settings or Settings()
    app.state.metrics = Metrics()
    errors.install(app)
    docs.install(app)
    for router in routers:
        app.include_router(router)
    # Added first, so it sits inside the latency middleware. Checked here as well as when Starlette builds the
    # middleware at the first event: a route it refuses then fails this import, where uvicorn's default
    # lifespan mode would log the error at info level and answer every request with a 500.
    hot = served_routes(app, rank.router)
    accept(hot)
    app.add_middleware(HotRoutes, routes=hot)
    # These two outside HotRoutes, so the hot routes are covered too; inside the latency middleware, so
    # refusals count; the key first, so a client without it learns nothing, not even the body limit.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessControl, api_key=settings.api_key, admin_key=settings.admin_key,
                       admin_paths={route.path for route in admin.router.routes}, **_open_to_all(app, settings))
    app.add_middleware(LatencyMiddleware, metrics=app.state.metrics, access_log=settings.access_log)
    return app



def _app_from_environment() -> FastAPI:
    """The app `uvicorn service.app:app` serves (the images' command): a setting it cannot use stops it in one
    line, exit status 2, as `recserve serve` does, not with a pydantic traceback from inside uvicorn's import."""
    try:
        return create_app(load_settings())
    except SettingsError as err:
        print(f"recserve: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


app = _app_from_environment()
