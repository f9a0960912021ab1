"""plm_nrms (NRMS on a pretrained MiniLM) with a tiny random BERT of the same architecture (tests/models/
tiny_bert.py): it trains from the zero-shot point, exports with parity on padded and unpadded titles, the
service tokenises as training did and /items makes a new title rankable. One test, marked `real_weights`,
checks the exported encoder against sentence-transformers on the packaged MiniLM."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from bundle.tokenizers import HFTokenizer, load_tokenizer
from service.app import create_app
from service.config import Settings
from tests.models import tiny_bert
from tests.models.conftest import ITEMS, tiny_bundle_data, tiny_plm_nrms
from training.export import export_bundle
from training.parity import ort_session


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = tiny_plm_nrms().eval()
    with torch.no_grad():  # a trained-looking head, so the check is not of an identity map
        model.item_encoder.head.proj.weight.add_(0.1 * torch.randn_like(model.item_encoder.head.proj.weight))
        model.user_encoder.self_attention.qkv.weight.normal_(std=0.1)
    out = tmp_path_factory.mktemp("artifacts")
    return model, out, export_bundle(model, tiny_bundle_data("plm_nrms", model, {"u1": ITEMS[:6]}), out)


def test_the_untrained_model_scores_as_the_zero_shot_cosine():
    from models.plm_nrms import NewsHead, PLMUserEncoder

    torch.manual_seed(0)
    model = tiny_plm_nrms().eval()
    model.item_encoder.head = NewsHead(model.dim, 4.0)  # untrained (the fixture's are randomised)
    model.user_encoder = PLMUserEncoder(model.cfg)
    history = torch.tensor([[3, 5, 8, 0], [1, 0, 0, 0]])
    with torch.no_grad():
        frozen = model.frozen()
        users = model.user_vectors({"history": history})
        scores = users @ model.item_vectors()[1:].T
        mean = torch.stack([frozen[h[h > 0]].mean(0) for h in history])
        cosine = torch.nn.functional.normalize(mean, dim=1) @ frozen[1:].T
    assert torch.allclose(frozen[1:].norm(dim=1), torch.ones(len(frozen) - 1), atol=1e-5)  # normalised
    for row in range(len(history)):  # the same order within each user: the same group AUC
        assert torch.equal(torch.argsort(scores[row], stable=True), torch.argsort(cosine[row], stable=True))


def test_a_training_step_updates_the_head_and_user_encoder_not_the_frozen_encoder():
    torch.manual_seed(0)
    model = tiny_plm_nrms().train()
    bert = {k: v.clone() for k, v in model.item_encoder.bert.state_dict().items()}
    head = model.item_encoder.head.proj.weight.clone()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = {"history": torch.tensor([[1, 2, 0], [3, 4, 5]]), "candidates": torch.randint(1, 40, (2, 5))}
    losses = []
    for _ in range(5):
        loss = model.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert all(torch.equal(v, model.item_encoder.bert.state_dict()[k]) for k, v in bert.items())
    assert not torch.equal(model.item_encoder.head.proj.weight, head)


def test_onnx_item_encoder_matches_torch_on_padded_and_unpadded_titles(exported):
    model, _, bundle = exported
    session = ort_session(bundle / "item_encoder.onnx")
    ids, mask = model.input_ids[1:9], model.attention_mask[1:9]
    with torch.no_grad():
        expected = model.item_encoder(ids, mask).numpy()
    padded = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    wider = session.run(None, {"input_ids": torch.nn.functional.pad(ids, (0, 5)).numpy(),
                               "attention_mask": torch.nn.functional.pad(mask, (0, 5)).numpy()})[0]
    assert np.abs(padded - expected).max() < 1e-4 and np.abs(wider - expected).max() < 1e-4
    for row in range(len(ids)):  # each title alone, without a padding token
        n = int(mask[row].sum())
        alone = session.run(None, {"input_ids": ids[row:row + 1, :n].numpy(),
                                   "attention_mask": mask[row:row + 1, :n].numpy()})[0]
        assert np.abs(alone[0] - expected[row]).max() < 1e-4
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [t["name"] for t in manifest["graphs"]["item_encoder"]["inputs"]] == ["input_ids", "attention_mask"]
    assert all(t["dtype"] == "int64" for t in manifest["graphs"]["item_encoder"]["inputs"])


def test_the_bundle_tokenizer_gives_the_training_ids(exported):
    model, _, bundle = exported
    tokenizer = load_tokenizer(bundle / "tokenizer.json")
    assert isinstance(tokenizer, HFTokenizer) and tokenizer.input_names == ("input_ids", "attention_mask")
    got = tokenizer.item_inputs(model.titles[1:])
    width = got["input_ids"].shape[1]
    assert width == int(model.attention_mask.sum(1).max())  # padded to the longest title of the call
    assert np.array_equal(got["input_ids"], model.input_ids[1:, :width].numpy())
    assert np.array_equal(got["attention_mask"], model.attention_mask[1:, :width].numpy())
    long = tokenizer.item_inputs(["the " * 40])["input_ids"]
    assert long.shape == (1, tiny_bert.TITLE_SIZE) and long[0, -1] == 3  # truncated at title_size, [SEP] kept


def test_items_makes_a_new_title_rankable(exported):
    model, out, _ = exported
    title = "nasa telescope finds a new planet"
    with TestClient(create_app(Settings(artifacts=out))) as client:
        r = client.post("/items", json={"model": "plm_nrms", "items": [{"item_id": "FRESH", "title": title}]})
        assert r.status_code == 200 and r.json()["added"] == ["FRESH"], r.text
        body = client.post("/rank", json={"model": "plm_nrms", "user_id": "u1", "candidates": ["FRESH", ITEMS[9]]})
        assert body.status_code == 200 and body.json()["unknown"] == [], body.text
    tokens = HFTokenizer(tiny_bert.tokenizer_spec()).encode([title])
    with torch.no_grad():
        vector = model.item_encoder(torch.from_numpy(tokens["input_ids"]), torch.from_numpy(tokens["attention_mask"]))
        user = model.user_vectors({"history": torch.arange(1, 7)[None]})
    want = torch.sigmoid(user @ vector.T).item()
    assert abs(next(x["score"] for x in body.json()["results"] if x["item_id"] == "FRESH") - want) < 1e-4


def test_importing_the_service_imports_neither_torch_nor_transformers(exported):
    _, _, bundle = exported
    code = ("import sys\nfrom pathlib import Path\nfrom service.model import load_model\nimport service.app\n"
            "from bundle.tokenizers import load_tokenizer\n"
            f"tok = load_tokenizer(Path({str(bundle)!r}))\n"
            "assert tok.item_inputs(['nasa finds a planet'])['input_ids'].shape[0] == 1\n"
            "bad = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_trains_from_the_zero_shot_point_and_exports(tmp_path):
    from recserve.cli import main
    from training.data.mind_synthetic import write_synthetic_mind

    data = write_synthetic_mind(tmp_path / "mind", n_users=60, n_news=80, seed=1)
    pretrained = tiny_bert.write_pretrained(tmp_path / "tiny-bert")
    out = tmp_path / "artifacts"
    args = ["train", "--model", "plm_nrms", "--data", str(data), "--out", str(out), "--pretrained", str(pretrained),
            "--epochs", "1", "--no-progress"]
    assert main(args) == 0
    metrics = json.loads((out / "plm_nrms" / "train" / "metrics.json").read_text())
    assert set(metrics["initial"]) == {"group_auc", "mrr", "ndcg@5", "ndcg@10"}
    assert metrics["valid"]["group_auc"] >= metrics["initial"]["group_auc"]  # never below the starting point
    assert list((out / "plm_nrms" / "train").glob("plm_frozen-*.npy"))  # the frozen vectors' cache
    spec = json.loads((out / "plm_nrms" / (out / "plm_nrms" / "LATEST").read_text().strip() / "tokenizer.json").read_text())
    assert "model" in spec and spec["truncation"]["max_length"] == 32
    assert main(["export", "--checkpoint", str(out / "plm_nrms" / "train" / "best.pt")]) == 0

    # The int8 item encoder on offer: quantised weights, the catalog's vectors its own (close to fp32's), and
    # the service adds a title with it.
    import onnx
    from fastapi.testclient import TestClient

    from bundle.reader import load_bundle, resolve_latest
    from service.app import create_app
    from service.config import Settings

    fp32 = load_bundle(resolve_latest(out / "plm_nrms"))
    assert main(["export", "--checkpoint", str(out / "plm_nrms" / "train" / "best.pt"), "--int8-item-encoder"]) == 0
    int8 = load_bundle(resolve_latest(out / "plm_nrms"))
    assert int8.manifest["item_encoder_weights"] == "int8 dynamic, per channel" and int8.version != fp32.version
    ops = {node.op_type for node in onnx.load(str(int8.path / "item_encoder.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops
    assert np.abs(np.asarray(int8.item_vectors) - np.asarray(fp32.item_vectors)).max() < 0.05
    with TestClient(create_app(Settings(artifacts=out))) as client:
        added = client.post("/items", json={"model": "plm_nrms", "items": [{"item_id": "NEW", "title": "a new title"}]})
        assert added.status_code == 200 and added.json()["added"] == ["NEW"]
        rank = client.post("/rank", json={"model": "plm_nrms", "history": fp32.items.all()[:3], "candidates": ["NEW"]})
        assert rank.json()["unknown"] == [] and rank.json()["version"] == int8.version


@pytest.mark.real_weights
def test_the_exported_minilm_encoder_equals_sentence_transformers(tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from models.plm_nrms import PLMNRMS, PLMNRMSConfig, load_bert, pretrained_dir, title_tokenizer
    from training.export import export_graph

    folder = pretrained_dir("minilm")
    config, weights = load_bert(folder)
    model = PLMNRMS(PLMNRMSConfig(n_news=4, bert=config)).eval()
    model.item_encoder.bert.load_state_dict(weights, strict=False)
    export_graph(model.onnx_parts()["item_encoder"], tmp_path / "item_encoder.onnx")
    titles = ["The Brands Queen Elizabeth, Prince Charles, and Prince Philip Swear By",
              "50 Worst Habits For Belly Fat", "Walmart Slashes Prices on Last-Generation iPads"]
    inputs = title_tokenizer(model.cfg).item_inputs(titles)
    got = ort_session(tmp_path / "item_encoder.onnx").run(None, inputs)[0] / model.cfg.scale  # untrained head
    want = sentence_transformers.SentenceTransformer(str(folder), device="cpu").encode(titles)
    assert np.abs(got - want).max() < 1e-5


def test_a_pretrained_folder_that_is_no_bert_folder_is_named_with_the_way_out(tmp_path):
    from models.plm_nrms import pretrained_dir

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"--pretrained .*no model\.safetensors, tokenizer\.json.*'minilm'"):
        pretrained_dir(str(tmp_path))
