"""Typed settings, read from the environment with the prefix RECSERVE_ (e.g. RECSERVE_REDIS_URL)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class SettingsError(ValueError):
    """Settings that cannot work together; `recserve serve` reports it in one line."""


class Settings(BaseSettings):
    """Every knob of the service. Defaults suit a laptop; production sets the Redis URL and an API key."""

    model_config = SettingsConfigDict(env_prefix="RECSERVE_", extra="ignore")

    artifacts: Path = Field(Path("artifacts"), description="Folder of ARTIFACTS/<model>/LATEST bundles")
    redis_url: str | None = Field(
        None, description="redis://host:port/db (rediss:// TLS, unix:///path); a Redis Cluster: redis+cluster://"
                          "host:port[,host:port...] (rediss+cluster:// TLS); unset = in-process LRU cache")
    wait_for_redis: bool = Field(
        True, description="With a Redis URL: /readyz answers 503 until Redis has answered once, so no traffic "
                          "reaches a replica that cannot keep clicks; after that an outage leaves it ready but "
                          "degraded (reads fail open, writes 503), so a Redis blip never empties the balancer. "
                          "false: ready without Redis")
    redis_timeout_s: float = Field(0.05, gt=0, description="Redis connect and per-operation timeout")
    redis_retry_s: float = Field(1.0, ge=0, description="After a Redis failure, wait this long before retrying")
    cache_prefix: str = Field("recserve", description="First part of every cache key")
    local_cache_size: int = Field(100_000, ge=1, description="Entries kept by the in-process LRU cache")
    user_near_cache_size: int = Field(
        10_000, ge=0, description="User vectors each worker also keeps in process, in front of Redis; 0 = none")
    user_ttl_s: int = Field(300, ge=1, description="Lifetime of a cached user vector")
    providers: Literal["auto", "cpu", "cuda"] = Field("auto", description="onnxruntime execution provider")
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime intra-op threads; 0 = its default")
    inter_op_threads: int = Field(0, ge=0, description="onnxruntime inter-op threads; 0 = its default")
    encode_batch: int = Field(1024, ge=1, description="Items per item-encoder call when encoding new items")
    pairwise_chunk: int = Field(2048, ge=1, description="Items per scorer call for pairwise (ConvNCF) models")
    pairwise_score_cache_size: int = Field(
        1000, ge=0, description="Users whose pairwise (ConvNCF) scores each worker keeps; 0 = none")
    retrieval_min_items: int = Field(
        100_000, ge=0, description="/recommend goes through the bundle's nearest-neighbour index (when it has one) "
                                   "for catalogs of at least this many bundle items; smaller ones are scanned exactly")
    index_expansion: int = Field(
        0, ge=0, description="Search effort of the nearest-neighbour index (HNSW ef: more finds more of the exact "
                             "top k, slower); 0 = the bundle's, calibrated at export on its own users for a "
                             "recall@10 of 0.96")
    index_search_threads: int = Field(
        0, ge=0, description="Threads one batched search of the nearest-neighbour index may use (the searches of "
                             "concurrent /recommend requests run as one call); 0 = the CPUs of the process")
    rerank_candidates: int = Field(
        500, ge=1, description="Pairwise scorers (ConvNCF) through the index: how many items the first stage (dot "
                               "product of the model's embeddings) hands to the scorer")
    max_candidates: int = Field(1000, ge=1, description="Most candidates one /rank request may send")
    max_k: int = Field(1000, ge=1, description="Largest k of /recommend")
    max_history: int | None = Field(None, ge=1, description="History items used; default: the model's")
    history_cap_factor: int = Field(10, ge=1, description="Histories longer than factor x max_history: 422")
    max_new_items: int = Field(1000, ge=1, description="Most items one /items request may add")
    fallback_fresh_items: int = Field(
        10, ge=0, description="Newest items added through /items that the fallback ranking (users a model cannot "
                              "score) shows, every second place from the 2nd; 0 = none")
    max_added_items: int = Field(
        100_000, ge=0, description="Distinct item ids /items may add or update per model (kept in memory to "
                                   "be re-encoded after a reload); a request past it is refused (429)")
    max_event_users: int = Field(
        100_000, ge=1, description="Users whose runtime events each model keeps in process; one more drops the "
                                   "least recently updated (its history falls back to the bundle's)")
    events_ttl_s: int = Field(
        0, ge=0, description="With Redis: a user's runtime events expire after this long without a new one; 0 = kept")
    state_copies_size: int = Field(
        100_000, ge=0, description="With Redis: users whose runtime events each worker keeps in process until a "
                                   "write announces a change (service/tracking.py); 0 = read Redis every request")
    state_copies_max_age_s: float = Field(
        60.0, gt=0, description="With Redis: longest a kept copy of a user's events is trusted; bounds how long a "
                                "change made outside the service (a DEL, an events_ttl_s expiry) goes unseen")
    state_poll_s: float = Field(
        0.25, gt=0, le=1.0, description="With Redis: how often each worker looks for items other replicas added")
    max_body_bytes: int = Field(1_048_576, ge=1, description="Larger request bodies are refused (413) unread")
    # min_length: an empty key would open the door to any `Authorization: Bearer` header (e.g. an unset variable
    # passed through by compose as ""), so it is an error at start, not a silent no-op.
    api_key: SecretStr | None = Field(
        None, min_length=1, description="If set, routes but /healthz and /readyz need it")
    admin_key: SecretStr | None = Field(
        None, min_length=1, description="If set, admin routes need it (and only it); unset: loopback clients only")
    public_docs: bool = Field(
        False, description="Serve /docs, /redoc, /openapi.json and their assets without the API key")
    log_level: str = Field("info", description="Logging level of the recserve loggers")
    # The feedback log (docs/deploy.md, Feedback loop): every answer and click, written off the request path.
    feedback_sink: Literal["auto", "redis", "files", "off"] = Field(
        "auto", description="Where impressions and events are recorded: a Redis Stream, rotating JSON Lines files "
                            "(feedback_dir), or nowhere; auto = redis when a Redis URL is set, else files")
    feedback_redis_url: str | None = Field(
        None, description="The Redis of the feedback log (its stream and click attribution); default: redis_url. "
                          "A Redis of its own keeps the log's traffic off the cache and state")
    feedback_dir: Path | None = Field(
        None, description="Folder of the files sink; default: `feedback` beside the artifacts folder")
    feedback_sample: float = Field(
        1.0, ge=0, le=1, description="Share of users whose /rank and /recommend answers are recorded and counted: "
                                     "a fixed draw per user id, all of a user's answers or none, the same users in "
                                     "every process (requests without a user_id: a draw each; 0: none); events and "
                                     "added items are always recorded")
    feedback_buffer: int = Field(
        20_000, ge=1, description="Records waiting to be written, per process; past it new ones are dropped "
                                  "(recserve_log_dropped_total), never waited for")
    feedback_batch: int = Field(2000, ge=1, description="Most records written at once (one XADD or file write)")
    feedback_flush_s: float = Field(
        1.0, gt=0, le=10, description="Longest a record waits to be written; the recorder wakes this often "
                                      "(fewer, larger batches cost the serving thread less: docs/benchmarks.md)")
    feedback_max_entries: int = Field(
        200_000, ge=1, description="Redis sink: the stream is trimmed to about this many entries, each a batch of "
                                   "up to feedback_batch records (XADD MAXLEN ~)")
    feedback_retention_s: int = Field(
        7 * 86_400, ge=60, description="Records older than this are dropped: from the stream (XTRIM MINID ~) or, "
                                       "with the files sink, as whole files")
    feedback_file_bytes: int = Field(
        64 * 1_048_576, ge=4096, description="Files sink: a file is closed and a new one begun past this size")
    feedback_user_salt: SecretStr | None = Field(
        None, min_length=1, description="If set, user ids are recorded as a salted hash (h:<32 hex>), never raw")
    attribution_window_s: int = Field(
        900, ge=1, description="A click names its impression by request_id; it is counted as attributed (online "
                               "metrics) if it comes within this long of the answer")
    attribution_items: int = Field(
        20, ge=1, le=1000, description="Positions of an answer kept for attributing clicks online (deeper clicks "
                                       "count as attributed at position +Inf); the log keeps every position")
    experiments: Path | None = Field(
        None, description="A YAML or JSON file of A/B experiments between model versions (docs/deploy.md, "
                          "Experiments), re-read by /admin/reload and SIGHUP; a bad file is refused and the "
                          "previous one keeps serving")
    canary_check_s: float = Field(1.0, gt=0, description="How often each worker judges the canary arms and "
                                  "reads the rollbacks (service/experiments/canary.py)")
    shadow_queue: int = Field(
        1000, ge=1, description="Shadow-arm jobs waiting to be scored, per process; past it new ones are dropped "
                                "(recserve_shadow_dropped_total), never waited for")
    shadow_thread: bool = Field(
        False, description="Score a shadow arm's /rank jobs in a thread of their own (onnxruntime releases the "
                           "GIL) rather than on the event loop between requests (docs/deploy.md, Experiments)")
    access_log: bool = Field(
        False, description="One log line per request (method, path, status, milliseconds, request id)")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        """Checked here: a level logging does not know failed inside the app's start-up, as a traceback."""
        if level.lower() not in LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
        return level.lower()

    @field_validator("redis_url", "feedback_redis_url")
    @classmethod
    def _redis_url_parses(cls, url: str | None) -> str | None:
        """A malformed URL is a settings error naming the forms understood, not a traceback at start-up."""
        if url:
            from service.cache import redis_factory

            redis_factory(url, 1.0)  # parses only; raises ValueError listing the forms
        return url


def load_settings() -> Settings:
    """The settings from the environment; a value that cannot be used is a SettingsError naming each variable,
    its value and what is wrong, in one line (pydantic's own report is a multi-line traceback)."""
    try:
        return Settings()
    except ValidationError as err:
        raise SettingsError("; ".join(_problem(e) for e in err.errors()) + " (see the README's Settings table)") from None


def _problem(error: dict) -> str:
    name = "RECSERVE_" + "_".join(str(part) for part in error["loc"]).upper()
    value = error.get("input")
    if name.endswith("_KEY"):
        shown = "<hidden>"
    else:  # a Redis URL may carry a password
        from service.cache import redacted

        shown = repr(redacted(value) if name == "RECSERVE_REDIS_URL" and isinstance(value, str) else value)
    return f"{name}={shown}: {error['msg'].removeprefix('Value error, ')}"
