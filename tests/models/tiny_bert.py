"""A tiny randomly initialised BERT of MiniLM's architecture, its WordPiece tokenizer, and a pretrained-model
folder holding both (config.json, model.safetensors, tokenizer.json), as plm_nrms reads the packaged MiniLM:
the plm_nrms tests never need the real weights."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from models.plm_nrms import Bert, PLMNRMSConfig
from training.data.mind_synthetic import COMMON, TOPICS

# MiniLM-L6's config.json, shrunk: same keys, same kind of model.
CONFIG = {"vocab_size": 256, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
          "intermediate_size": 64, "max_position_embeddings": 64, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
          "hidden_act": "gelu", "initializer_range": 0.02, "model_type": "bert", "architectures": ["BertModel"]}
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TITLE_SIZE = 12


def vocab() -> dict[str, int]:
    words = sorted({w for topic in TOPICS.values() for w in topic} | set(COMMON) | {"prince", "visits", "!", ","})
    pieces = SPECIAL + words + ["##s", "##ing", "##ed"]
    assert len(pieces) <= CONFIG["vocab_size"]
    return {p: i for i, p in enumerate(pieces)}


def tokenizer_spec(title_size: int = TITLE_SIZE) -> dict:
    """A BERT WordPiece tokenizer.json (normaliser, pre-tokenizer and [CLS] ... [SEP] as MiniLM's)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordPiece(vocab(), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.enable_truncation(title_size)
    return json.loads(tok.to_str())


def bert_config() -> dict:
    from models.plm_nrms import BERT_KEYS

    return {k: CONFIG[k] for k in BERT_KEYS}


def tiny_config(n_news: int, folder: Path | str = "tiny") -> PLMNRMSConfig:
    return PLMNRMSConfig(n_news=n_news, bert=bert_config(), pretrained=str(folder), title_size=TITLE_SIZE,
                         head_num=4, attention_hidden_dim=16, scale=1.0)


def write_pretrained(folder: Path, seed: int = 0) -> Path:
    """A Hugging Face BERT folder with random weights (as `bert.`-less BertModel keys, plus a pooler that is
    not used), for `recserve train --model plm_nrms --pretrained <folder>`."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    bert = Bert(bert_config())
    weights = {k: v.contiguous() for k, v in bert.state_dict().items()}
    weights["pooler.dense.weight"] = torch.zeros(CONFIG["hidden_size"], CONFIG["hidden_size"])
    weights["pooler.dense.bias"] = torch.zeros(CONFIG["hidden_size"])
    save_file(weights, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_spec(title_size=512)))
    return folder
