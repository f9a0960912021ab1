"""Which package may import which: `bundle/` is the contract both sides share, `training/` never imports
`service/`, and neither `service/` nor `bundle/` imports torch, models/ or training/ (the serving image has none)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "training": {"service"},
    "models": {"service", "training"},
    "bundle": {"service", "training", "models", "torch", "transformers"},
    "service": {"training", "models", "torch", "transformers"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package):
    offenders = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
                 for path in sorted((ROOT / package).rglob("*.py"))}
    assert {file: bad for file, bad in offenders.items() if bad} == {}


def test_the_check_sees_function_level_imports(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from service.batch import load_for_batch\n")
    assert "service" in imported_packages(path)


def test_the_serving_image_gets_the_service_commands_alone():
    """Without training/ and models/ (the serving image), `recserve` still parses its service commands."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['training'] = sys.modules['models'] = None\n"
            "from recserve.cli import build_parser\n"
            "sub = build_parser()._subparsers._group_actions[0]\n"
            "assert sorted(sub.choices) == ['evaluate', 'experiments', 'logs', 'prune', 'recommend', 'serve'], sorted(sub.choices)\n"
            "assert 'torch' not in sys.modules\n"
            "assert 'ray' not in sys.modules and 'pyarrow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
