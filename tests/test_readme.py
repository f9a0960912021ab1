"""The README's claims about the models match the registry: its model table lists every registered kind (and
nothing else), and the count it states is the table's."""
import re
from pathlib import Path

from models.registry import KINDS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
WORDS = {3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}


def table_kinds() -> list[str]:
    """The kind of each row of the first table (`| model | for | learns from |`): the `code` name given beside
    the bold one, else the bold name in lower case."""
    table = README[README.index("| model |"):].split("\n\n")[0].splitlines()[2:]
    kinds = []
    for row in table:
        cell = row.split("|")[1]
        code = re.search(r"`([a-z0-9_]+)`", cell)
        kinds.append(code.group(1) if code else re.search(r"\*\*(.+?)\*\*", cell).group(1).lower())
    return kinds


def test_the_model_table_lists_every_registered_kind():
    assert sorted(table_kinds()) == sorted(KINDS)


def test_the_stated_number_of_models_is_the_registrys():
    assert f"trains {WORDS[len(KINDS)]} recommendation models" in README


def test_no_file_that_counts_the_models_gives_another_count():
    """pyproject's description, the compose file and the k8s training job said four after the fifth kind."""
    root = Path(__file__).resolve().parents[1]
    files = ["README.md", "pyproject.toml", "docker-compose.yml", "deploy/k8s/base/train-cronjob.yaml",
             "docs/deploy.md", "Makefile"]
    counts = {(f, m.group(0)) for f in files
              for m in re.finditer(r"\b(three|four|five|six|seven) (recommenders|recommendation models|models)\b",
                                   (root / f).read_text())}
    assert counts and {said.split()[0] for _, said in counts} == {WORDS[len(KINDS)]}, counts
