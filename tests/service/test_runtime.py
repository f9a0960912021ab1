"""Provider choice and the serving image's import hygiene."""
import logging
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
