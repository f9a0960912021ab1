import pytest
import torch

from models.bert4rec import BERT4Rec, BERT4RecConfig
from models.convncf import ConvNCF, ConvNCFConfig
from models.gru4recf import GRU4RecF, GRU4RecFConfig
from models.nrms import NRMS, NRMSConfig

N_ITEMS = 40


def tiny_models() -> dict:
    """One small randomly initialised instance of each model (eval mode)."""
    torch.manual_seed(0)
    gru = GRU4RecF(GRU4RecFConfig(n_items=N_ITEMS, feature_vocab_sizes={"class": 6}, feature_lengths={"class": 2}))
    gru.set_item_features({"class": torch.randint(0, 6, (N_ITEMS, 2))})
    nrms = NRMS(NRMSConfig(n_news=N_ITEMS, vocab_size=60, head_num=4, head_dim=8, attention_hidden_dim=16))
    titles = torch.randint(1, 60, (N_ITEMS, 30)) * (torch.arange(30)[None, :] < torch.randint(1, 30, (N_ITEMS, 1)))
    titles[0] = 0
    nrms.set_titles(titles)
    models = {
        "convncf": ConvNCF(ConvNCFConfig(n_users=15, n_items=N_ITEMS)),
        "gru4recf": gru,
        "bert4rec": BERT4Rec(BERT4RecConfig(n_items=N_ITEMS, max_seq_length=10)),
        "nrms": nrms,
    }
    return {k: m.eval() for k, m in models.items()}


@pytest.fixture
def models():
    return tiny_models()
