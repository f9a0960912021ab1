"""bundle/idmap.py: ids <-> positions over two arrays."""
import random

import numpy as np

from bundle.idmap import IdMap, write_idmap


def test_find_agrees_with_a_dict_on_mixed_ids(tmp_path):
    rng = random.Random(0)
    ids = list(dict.fromkeys(f"{rng.choice(['i', 'N', 'é', ''])}{rng.randint(0, 10**rng.randint(1, 6))}"
                             for _ in range(3000)))
    write_idmap(tmp_path, "items", ids)
    mapped = IdMap(np.load(tmp_path / "items.npy", mmap_mode="r"), np.load(tmp_path / "items_order.npy"))
    position = {item: p for p, item in enumerate(ids)}
    width = max(len(i.encode()) for i in ids)
    asked = ids[::7] + ["", "zz", "i", "x" * (width + 1), ids[0] + "0" * width, "I5"] + rng.sample(ids, 50)
    for idmap in (mapped, IdMap.of(ids)):
        assert idmap.find(asked).tolist() == [position.get(a, -1) for a in asked]
        assert idmap.get(ids[-1]) == len(ids) - 1 and idmap.get("nope") is None
        assert idmap.problem() is None


def test_an_empty_map_finds_nothing():
    assert IdMap.of([]).find(["a", "b"]).tolist() == [-1, -1]


def test_a_sort_order_out_of_range_is_refused_when_the_map_is_made():
    """A ValueError, which the bundle reader turns into an error naming the file."""
    import pytest

    ids = np.array([b"a", b"b", b"c"])
    for order in ([0, 1, 3], [-1, 0, 1]):
        with pytest.raises(ValueError, match="positions out of range"):
            IdMap(ids, np.array(order))
    unsorted = IdMap(ids, np.array([0, 2, 1])).problem()
    assert unsorted == "the sort order does not sort the ids into distinct, increasing ones"
