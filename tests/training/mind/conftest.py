from pathlib import Path

import pytest

NEWS = [
    "N1\tsports\tfootball\tThe Team Wins!\tA long game.\thttps://x/1\t[]\t[]",
    "N2\tfinance\t\tStocks fall, again\t\t\t[]\t[]",          # empty subcategory, abstract, url
    "N3\thealth\tdiet\tEat well\tabstract three\t\t[]\t[]",
    "N4\tsports\t\tCoach quits\t\t\t[]\t[]",
    "N5\ttravel\t\tBeach hotel\t\t\t[]\t[]",
    "N6\tsports\t\tGoal of the year\t\t\t[]\t[]",
]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def news_path(tmp_path):
    return write(tmp_path / "news.tsv", NEWS)
