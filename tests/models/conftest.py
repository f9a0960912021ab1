import numpy as np
import pytest
import torch

from bundle.data import BundleData
from models.registry import KINDS, recipe

N_ITEMS = 40
ITEMS = [f"item{i}" for i in range(1, N_ITEMS)]
FALLBACK = [7, 3, 12, 1, 30]  # the tiny bundles' fallback ranking (indices into ITEMS, 1-based), best first


def tiny_gru4recf():
    r = recipe("gru4recf")
    gru = r.model(r.config(n_items=N_ITEMS, feature_vocab_sizes={"class": 6}, feature_lengths={"class": 2}))
    gru.set_item_features({"class": torch.randint(0, 6, (N_ITEMS, 2))})
    return gru


def tiny_nrms():
    r = recipe("nrms")
    nrms = r.model(r.config(n_news=N_ITEMS, vocab_size=60, head_num=4, head_dim=8, attention_hidden_dim=16))
    titles = torch.randint(1, 60, (N_ITEMS, 30)) * (torch.arange(30)[None, :] < torch.randint(1, 30, (N_ITEMS, 1)))
    titles[0] = 0
    nrms.set_titles(titles)
    return nrms


def tiny_plm_nrms():
    from bundle.tokenizers import HFTokenizer
    from tests.models import tiny_bert

    model = recipe("plm_nrms").model(tiny_bert.tiny_config(N_ITEMS))
    with torch.no_grad():  # weights larger than BERT's 0.02 init: titles far apart, scores without near-ties
        for p in model.item_encoder.bert.parameters():
            if p.dim() == 2:
                p.normal_(std=1.0)
        model.item_encoder.head.proj.weight.normal_(std=0.15)  # a trained-looking head and user encoder
        model.user_encoder.self_attention.qkv.weight.normal_(std=0.3)
        model.user_encoder.attention.query.weight.normal_(std=0.3)
    words = list(tiny_bert.vocab())[5:]
    titles = [""] + [" ".join(words[(7 * i + j) % len(words)] for j in range(1 + i % 14)) for i in range(1, N_ITEMS)]
    tokens = HFTokenizer(tiny_bert.tokenizer_spec()).encode(titles, pad_to=tiny_bert.TITLE_SIZE)
    tokens["input_ids"][0] = tokens["attention_mask"][0] = 0
    model.set_titles(torch.from_numpy(tokens["input_ids"]), torch.from_numpy(tokens["attention_mask"]))
    model.titles = titles  # for tests that tokenise them again
    return model


# One small randomly initialised instance per registered kind: a new kind adds its fixture here.
TINY = {
    "convncf": lambda: recipe("convncf").model(recipe("convncf").config(n_users=15, n_items=N_ITEMS)),
    "gru4recf": tiny_gru4recf,
    "bert4rec": lambda: recipe("bert4rec").model(recipe("bert4rec").config(n_items=N_ITEMS, max_seq_length=10)),
    "nrms": tiny_nrms,
    "plm_nrms": tiny_plm_nrms,
}


def tiny_models() -> dict:
    """One small instance of every registered kind (eval mode), seeded."""
    torch.manual_seed(0)
    return {kind: TINY[kind]().eval() for kind in KINDS}


@pytest.fixture
def models():
    return tiny_models()


def tiny_bundle_data(kind: str, model, histories: dict | None = None) -> BundleData:
    """What export needs besides the model, for the tiny models above (items item1..item39): chosen by what the
    model declares, as training does (user ids or histories; titles with a tokenizer or item ids)."""
    if "title_tokens" in model.onnx_parts()["item_encoder"].inputs:
        inputs = {"title_tokens": model.title_tokens[1:].numpy()}
        tokenizer = {"type": "word-regex", "title_size": 30, "vocab": {"a": 1}}
    elif "input_ids" in model.onnx_parts()["item_encoder"].inputs:
        from tests.models.tiny_bert import tokenizer_spec
        inputs = {"input_ids": model.input_ids[1:].numpy(), "attention_mask": model.attention_mask[1:].numpy()}
        tokenizer = tokenizer_spec()
    else:
        inputs, tokenizer = {"item_idx": np.arange(1, N_ITEMS, dtype=np.int64)}, None
    by_id = model.user_input == "user_id"
    return BundleData(items=ITEMS, item_inputs=inputs, max_history=10, tokenizer=tokenizer,
                      users=[f"u{i}" for i in range(1, model.cfg.n_users)] if by_id else None,
                      histories=None if by_id else (histories or {"u1": ["item1", "item2"]}),
                      fallback=np.array(FALLBACK, dtype=np.int32),
                      fallback_kind="recency_popularity" if tokenizer else "popularity",
                      metrics={"valid": {"ndcg@10": 0.1}})
