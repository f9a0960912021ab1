"""Provider choice and the serving image's import hygiene."""
import logging
import os
import subprocess
import sys

from service.runtime import CPU, choose_providers


def test_provider_probe_is_quiet_and_logs_one_line(caplog, capfd):
    choose_providers.cache_clear()
    with caplog.at_level(logging.INFO, logger="recserve.runtime"):
        first = choose_providers("auto")
        assert choose_providers("auto") == first  # probed once
    lines = [r.getMessage() for r in caplog.records if r.name == "recserve.runtime"]
    assert len(lines) == 1 and lines[0].startswith(f"onnxruntime: serving on {first[0]}")
    if first == (CPU,):  # this machine: no usable GPU
        assert "CUDA provider not usable" in lines[0]
    assert "onnxruntime" not in capfd.readouterr().err  # the probe's own complaints are swallowed
    assert choose_providers("cpu") == (CPU,)


def test_service_does_not_import_torch():
    code = "import sys, service.app; sys.exit(1 if 'torch' in sys.modules or 'models' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_a_serving_process_runs_numpys_blas_on_one_thread_unless_told_otherwise():
    """OpenBLAS threads spin between the worker's small products and take the cores requests need. Set at
    start-up, after numpy has loaded (as under `recserve serve`), and only OpenBLAS's pool."""
    code = ("import numpy; from fastapi.testclient import TestClient; from service.app import create_app; "
            "from service.config import Settings; from threadpoolctl import threadpool_info; "
            "before = sorted({i['num_threads'] for i in threadpool_info() if i['internal_api'] == 'openblas'}); "
            "TestClient(create_app(Settings(artifacts='/nonexistent'))).__enter__(); "
            "print(before, sorted({i['num_threads'] for i in threadpool_info() if i['internal_api'] == 'openblas'}))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    for setting, expected in ((None, "[1]"), ("2", "[2] [2]")):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env=env if setting is None else {**env, "OPENBLAS_NUM_THREADS": setting})
        assert done.stdout.strip().endswith(expected), (done.stdout, done.stderr[-500:])


def test_graph_sessions_do_not_spin_between_runs():
    import numpy as np
    from onnx import TensorProto, helper

    from service.runtime import Graph

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    served = Graph("scorer", model.SerializeToString(), (CPU,))
    options = served.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert served.run({"x": np.ones(1, np.float32)}).tolist() == [1.0]
