"""The fallback ranking training puts in the bundle data: from training data only, in the documented order."""
from pathlib import Path

import numpy as np
import pytest

from bundle.contract import FALLBACK_FILE
from training.bundle_data import load_bundle_data, save_bundle_data
from training.fallback import popularity_order, recency_popularity
from training.data.mind import read_mind
from training.train import DataOptions, prepare
from tests.training.mind.conftest import NEWS, write


def fallback_ids(data) -> list[str]:
    return [data.items[i - 1] for i in data.fallback.tolist()]


@pytest.mark.parametrize("kind", ["bert4rec", "convncf"])  # a model of histories, a model of user ids
def test_interaction_models_rank_by_training_interactions_only(tmp_path, kind):
    # Leave-one-out keeps each user's last two interactions out of training: v (validation) and w (test)
    # are everyone's targets, so counting every interaction would rank them first (4 each against hot's 3).
    rows = ["u1 hot", "u1 b", "u1 v", "u1 w", "u2 hot", "u2 c", "u2 v", "u2 w",
            "u3 hot", "u3 c", "u3 b", "u3 v", "u3 w", "u4 d", "u4 v", "u4 w"]
    write(tmp_path / "t.inter", ["user_id:token\titem_id:token\ttimestamp:float"]
          + [f"{r.replace(' ', chr(9))}\t{t}" for t, r in enumerate(rows)])
    _, _, data = prepare(kind, tmp_path, DataOptions(), seed=0)
    # training counts: hot 3, b 2, c 2, d 1; b and c tie, and b was seen first (the lower index)
    assert fallback_ids(data) == ["hot", "b", "c", "d"] and data.fallback_kind == "popularity"


def test_news_ranks_by_recency_weighted_training_clicks(tmp_path):
    write(tmp_path / "news.tsv", NEWS)
    write(tmp_path / "behaviors.tsv", [
        # two early clicks on N1, 39 h before the end of training: 2 x 0.5 ** (39 / 24) = 0.65
        "1\tU1\t11/11/2019 8:00:00 AM\t\tN1-1 N4-0",
        "2\tU2\t11/11/2019 8:00:00 AM\t\tN1-1 N4-0",
        # one click on N2 at the end of the training window: weight 1, so N2 leads despite fewer clicks
        "3\tU3\t11/12/2019 11:00:00 PM\tN1\tN2-1 N4-0",
        # the validation day (the last one): its many N3 clicks must not count
        "4\tU1\t11/13/2019 9:00:00 AM\t\tN3-1 N4-0",
        "5\tU2\t11/13/2019 9:00:00 AM\t\tN3-1 N4-0",
        "6\tU3\t11/13/2019 9:00:00 AM\t\tN3-1 N4-0",
    ])
    _, _, data = prepare("nrms", tmp_path, DataOptions(), seed=0)
    # shown but never clicked (N4) or clicked only in validation (N3): not listed
    assert fallback_ids(data) == ["N2", "N1"] and data.fallback_kind == "recency_popularity"
    # the same clicks by plain count would put N1 first: the decay is what ranks N2 above it
    train = read_mind(tmp_path).train
    assert recency_popularity(train, 7, half_life_days=1e6).tolist() == [1, 2]


def test_popularity_order_skips_padding_and_zero_ties_by_index_and_caps():
    weights = np.array([9.0, 0.0, 2.0, 5.0, 2.0, 0.0])
    assert popularity_order(weights).tolist() == [3, 2, 4]
    assert popularity_order(weights, cap=2).tolist() == [3, 2]


def test_bundle_data_round_trips_the_fallback(tmp_path):
    write(tmp_path / "news.tsv", NEWS)
    write(tmp_path / "behaviors.tsv", ["1\tU1\t11/11/2019 8:00:00 AM\t\tN5-1 N4-0",
                                       "2\tU1\t11/12/2019 8:00:00 AM\t\tN6-1 N5-1 N4-0"])
    _, _, data = prepare("nrms", tmp_path, DataOptions(), seed=0)
    save_bundle_data(data, tmp_path / "saved")
    again = load_bundle_data(tmp_path / "saved")
    assert again.fallback.tolist() == data.fallback.tolist() == [5]
    assert again.fallback_kind == "recency_popularity"
    data.fallback = None  # bundle data saved before fallbacks existed: none comes back, and no stale file stays
    save_bundle_data(data, tmp_path / "saved")
    assert not (Path(tmp_path / "saved") / FALLBACK_FILE).exists()
    assert load_bundle_data(tmp_path / "saved").fallback is None
