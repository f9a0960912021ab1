import numpy as np
import pytest
import torch

from models.bert4rec import BERT4Rec, BERT4RecConfig
from models.convncf import ConvNCF, ConvNCFConfig
from models.gru4recf import GRU4RecF, GRU4RecFConfig
from models.nrms import NRMS, NRMSConfig
from training.bundle_data import BundleData

N_ITEMS = 40
ITEMS = [f"item{i}" for i in range(1, N_ITEMS)]


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


def tiny_bundle_data(kind: str, model, histories: dict | None = None) -> BundleData:
    """What export needs besides the model, for the tiny models above (items item1..item39)."""
    if kind == "nrms":
        inputs = {"title_tokens": model.title_tokens[1:].numpy()}
        tokenizer = {"type": "word-regex", "title_size": 30, "vocab": {"a": 1}}
    else:
        inputs, tokenizer = {"item_idx": np.arange(1, N_ITEMS, dtype=np.int64)}, None
    return BundleData(items=ITEMS, item_inputs=inputs, max_history=10, tokenizer=tokenizer,
                      users=[f"u{i}" for i in range(1, 15)] if kind == "convncf" else None,
                      histories=None if kind == "convncf" else (histories or {"u1": ["item1", "item2"]}),
                      metrics={"valid": {"ndcg@10": 0.1}})
