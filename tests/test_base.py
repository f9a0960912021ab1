import torch

from models.base import DotScorer
from training.data.errors import DataError


def test_dot_scorer_matches_manual_dot_and_sigmoid():
    user = torch.randn(3, 4)
    items = torch.randn(3, 5, 4)
    raw = DotScorer()(user, items)
    expected = (user.unsqueeze(1) * items).sum(-1)
    assert raw.shape == (3, 5)
    assert torch.allclose(raw, expected, atol=1e-6)
    assert torch.allclose(DotScorer(sigmoid=True)(user, items), torch.sigmoid(expected), atol=1e-6)


def test_data_error_names_file_line_and_problem():
    err = DataError("data/x.inter", 7, "expected 4 fields, got 3")
    assert str(err) == "data/x.inter:7: expected 4 fields, got 3"
    assert err.line == 7
