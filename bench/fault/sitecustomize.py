"""A fault injected into one bundle version of a benchmark's server, for bench/experiment_sim.py's canary run:
`RECSERVE_BENCH_FAULT="<version>:error:<share>"` makes that version's rankings fail for a share of requests
(a RuntimeError, a 500), `"<version>:slow:<seconds>"` makes each take that much longer. Loaded by Python at
start-up when this folder is on PYTHONPATH; the service itself has no fault switch."""
import os
import random
import time

FAULT = os.environ.get("RECSERVE_BENCH_FAULT")
if FAULT:
    version, mode, amount = FAULT.split(":")
    from service.ranking import Ranker

    ranked = Ranker.ranked

    def faulty(self, model, *args, **kwargs):
        if model.version == version:
            if mode == "error" and random.random() < float(amount):
                raise RuntimeError("injected fault (bench/fault)")
            if mode == "slow":
                time.sleep(float(amount))
        return ranked(self, model, *args, **kwargs)

    Ranker.ranked = faulty
