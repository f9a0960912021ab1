"""Settings by name (training/settings.py): every kind's fields set and refused through the registry, the
precedence of --config, the explicit options and --set, and the effective settings in metrics.json and the manifest."""
import json

import pytest
import yaml

from models.limits import OneOf, Range, SettingError
from models.registry import KINDS, recipe
from recserve.cli import main
from training.data.synthetic import write_synthetic_atomic
from training.settings import defaults, model_fields, resolve, section_types
from training.train import DataOptions, prepare


def out_of_range(limit):
    """A value the limit refuses."""
    if isinstance(limit, OneOf):
        return "no-such-choice"
    assert isinstance(limit, Range)
    if limit.low is not None:
        return limit.low if limit.low_open else limit.low - 1
    return limit.high if limit.high_open else limit.high + 1


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_model_field_with_a_default_is_settable_and_a_change_is_kept(kind):
    fields = model_fields(recipe(kind))
    assert fields, f"{kind} has no settable model field"
    for name, default in fields.items():
        t = section_types(recipe(kind))["model"][name]
        if t is int:
            value = default * 2 if name not in ("n_heads", "head_num") else 1
        elif t is float:
            value = default / 2
        elif t is str and name == "train_mode":
            value = "prefix" if default == "window" else "window"
        else:
            continue
        settings = resolve(kind, assignments=[f"model.{name}={value}"])
        assert settings.model[name] == value
        assert settings.model_changes() == {name: value}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_unknown_field_is_refused_listing_the_known_ones(kind):
    with pytest.raises(SettingError) as err:
        resolve(kind, assignments=["model.no_such_field=1"])
    message = str(err.value)
    assert "'model.no_such_field'" in message and "\n" not in message
    for name in model_fields(recipe(kind)):
        assert f"model.{name}" in message
    assert "train.lr" in message


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_wrong_type_is_refused_naming_the_field_and_type(kind):
    types = section_types(recipe(kind))["model"]
    name = next(n for n, t in types.items() if t is int)
    with pytest.raises(SettingError, match=rf"^model\.{name}: expected an integer, got 'many'$"):
        resolve(kind, assignments=[f"{name}=many"])
    with pytest.raises(SettingError, match=r"^train\.lr: expected a number, got 'fast'$"):
        resolve(kind, assignments=["lr=fast"])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_limit_refuses_a_value_out_of_range(kind):
    limits = recipe(kind).limits
    assert limits, f"{kind} declares no limits"
    for name, limit in limits.items():
        bad = out_of_range(limit)
        text = f"[{bad}]" if isinstance(model_fields(recipe(kind))[name], list) else str(bad)
        with pytest.raises(SettingError, match=rf"^model\.{name}: must ") as err:
            resolve(kind, assignments=[f"model.{name}={text}"])
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("setting, message", [
    ("bert4rec:n_heads=3", "model.n_heads: must divide model.hidden_size (64); got 3"),
    ("bert4rec:dropout=0.5", "unknown setting 'dropout' for bert4rec"),
    ("bert4rec:hidden_dropout_prob=1", "model.hidden_dropout_prob: must be in [0, 1), got 1"),
    ("gru4recf:train_mode=both", "model.train_mode: must be one of prefix, window; got 'both'"),
    ("convncf:cnn_kernels=[4, 4, 2]", "model.cnn_channels: needs one entry more than"),
    ("convncf:embedding_size=8", "model.cnn_kernels: layer 2's kernel 4 is larger than the 2x2 map"),
    ("nrms:monitor=ndcg@20", "train.monitor: must be one of group_auc, mrr, ndcg@5, ndcg@10; got 'ndcg@20'"),
    ("gru4recf:max_seq_length=0", "data.max_seq_length: must be >= 1, got 0"),
    ("gru4recf:features=[]", "data.features: must name at least one"),
    ("convncf:cnn_strides=4,4,two,2", "model.cnn_strides: expected a list of integers, got '4,4,two,2'"),
    ("gru4recf:epochs=0", "train.epochs: must be >= 1, got 0"),
    ("gru4recf:device=tpu", "train.device: must be one of auto, cpu, cuda; got 'tpu'"),
    ("gru4recf:max_steps_per_epoch=-2", "train.max_steps_per_epoch: must be >= 1, got -2"),
    ("gru4recf:progress=1", "train.progress: expected true or false, got 1"),
    ("gru4recf:lr", "--set 'lr': expected name=value"),
])
def test_refusals_name_the_field_and_what_it_takes(setting, message):
    kind, assignment = setting.split(":", 1)
    with pytest.raises(SettingError) as err:
        resolve(kind, assignments=[assignment])
    assert str(err.value).startswith(message)


def test_values_are_read_by_type():
    s = resolve("gru4recf", assignments=["lr=1e-3", "max_steps_per_epoch=null", "features=genre,class",
                                         "train.seed=7", "min_rating=3"])
    assert s.train["lr"] == 0.001 and s.train["max_steps_per_epoch"] is None and s.train["seed"] == 7
    assert s.data["features"] == ["genre", "class"] and s.data["min_rating"] == 3.0
    assert resolve("convncf", assignments=["cnn_strides=2,2,2,2"]).model["cnn_strides"] == [2, 2, 2, 2]
    s = resolve("nrms", assignments=["word_vectors=glove"])
    assert s.data["word_vectors"] == "glove"


def test_precedence_defaults_config_options_set():
    config = {"kind": "bert4rec", "train": {"epochs": 4, "lr": 0.01}, "model": {"hidden_size": 32, "n_layers": 3}}
    s = resolve("bert4rec", config=config, options={"train.epochs": 6}, assignments=["n_layers=1", "n_layers=4"])
    assert s.train["epochs"] == 6           # the explicit option beats the file
    assert s.train["lr"] == 0.01            # the file beats the defaults
    assert s.model["hidden_size"] == 32
    assert s.model["n_layers"] == 4         # --set beats the file, the last --set wins
    assert s.train["batch_size"] == recipe("bert4rec").defaults["batch_size"]
    with pytest.raises(SettingError, match="--config is for gru4recf, not bert4rec"):
        resolve("bert4rec", config={"kind": "gru4recf"})
    with pytest.raises(SettingError, match="unknown setting 'model.size' for bert4rec"):
        resolve("bert4rec", config={"model": {"size": 3}})


@pytest.fixture(scope="module")
def atomic(tmp_path_factory):
    return write_synthetic_atomic(tmp_path_factory.mktemp("atomic"), n_users=60, n_items=40, n_classes=4, seed=1)


@pytest.mark.parametrize("kind", ["convncf", "gru4recf", "bert4rec"])
def test_model_settings_reach_the_model_built_from_the_data(atomic, kind):
    name = {"convncf": "dropout_prob", "gru4recf": "hidden_size", "bert4rec": "inner_size"}[kind]
    value = {"convncf": 0.5, "gru4recf": 24, "bert4rec": 40}[kind]
    settings = resolve(kind, assignments=[f"{name}={value}", "max_seq_length=7"] if kind != "convncf"
                       else [f"{name}={value}"])
    model, task, _ = prepare(kind, atomic, settings.data_options(), 0, settings.model_changes())
    assert getattr(model.cfg, name) == value
    if kind != "convncf":
        assert model.cfg.max_seq_length == 7 and task.max_len == 7


def test_a_setting_the_data_fixes_otherwise_is_refused():
    from training.settings import apply_model_settings
    from models.nrms import NRMSConfig

    built = NRMSConfig(n_news=5, vocab_size=9, word_emb_dim=300)  # as build_config leaves it with 300-d vectors
    with pytest.raises(SettingError, match=r"^model.word_emb_dim: this data fixes it at 300; got 100$"):
        apply_model_settings(recipe("nrms"), built, {"word_emb_dim": 100})
    assert apply_model_settings(recipe("nrms"), built, {"head_num": 4}).head_num == 4


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("recserve: error: "), err
    return lines[0]


def test_show_config_prints_yaml_that_config_reads_back(tmp_path, capsys):
    assert main(["train", "--model", "gru4recf", "--show-config", "--set", "hidden_size=32", "--epochs", "3",
                 "--features", "genre"]) == 0
    text = capsys.readouterr().out
    shown = yaml.safe_load(text)
    assert shown["kind"] == "gru4recf" and shown["model"]["hidden_size"] == 32
    assert shown["train"]["epochs"] == 3 and shown["data"]["features"] == ["genre"]
    assert set(shown["model"]) == set(model_fields(recipe("gru4recf")))
    (tmp_path / "c.yaml").write_text(text)
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--show-config"]) == 0  # the kind from the file
    assert yaml.safe_load(capsys.readouterr().out) == shown
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--show-config", "--set", "hidden_size=16",
                 "--epochs", "5"]) == 0
    again = yaml.safe_load(capsys.readouterr().out)
    assert again["model"]["hidden_size"] == 16 and again["train"]["epochs"] == 5


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_reference_recipe_is_settings_that_differ_from_the_defaults(kind):
    reference = recipe(kind).reference
    if not reference:
        with pytest.raises(SettingError, match=f"{kind}'s defaults are its reference recipe already"):
            resolve(kind, reference=True)
        return
    before, after = defaults(kind).as_dict(), resolve(kind, reference=True).as_dict()
    for name, value in reference.items():  # every name a setting, every value allowed, and each a change
        section, field_name = name.split(".")
        assert after[section][field_name] == value and before[section][field_name] != value, name
    changed = {f"{s}.{n}" for s in ("train", "data", "model") for n in after[s] if after[s][n] != before[s][n]}
    assert changed == set(reference)


def test_reference_recipe_is_recboles_bert4rec_and_the_rest_applies_over_it(capsys):
    assert main(["train", "--model", "bert4rec", "--reference-recipe", "--show-config", "--epochs", "4",
                 "--set", "mask_ratio=0.25"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    # RecBole 1.2.1's BERT4Rec: one sample per prefix, half of them masking only the last item, dropout 0.2,
    # Adam at a constant 1e-3 on batches of 2048, early stopping after 3 epochs; our options and --set still win
    assert shown["model"]["train_mode"] == "prefix" and shown["model"]["ft_ratio"] == 0.5
    assert shown["model"]["hidden_dropout_prob"] == shown["model"]["attn_dropout_prob"] == 0.2
    assert shown["train"]["batch_size"] == 2048 and shown["train"]["lr"] == 1e-3 and shown["train"]["patience"] == 3
    assert shown["train"]["lr_schedule"] == "constant"
    assert shown["train"]["epochs"] == 4 and shown["model"]["mask_ratio"] == 0.25


@pytest.mark.parametrize("args, message", [
    (["--model", "bert4rec", "--set", "n_heads=3"], "model.n_heads: must divide model.hidden_size (64); got 3"),
    (["--model", "bert4rec", "--set", "hiden_size=3"], "unknown setting 'hiden_size' for bert4rec; known: train.epochs"),
])
def test_train_refuses_a_bad_setting_in_one_line_before_reading_data(tmp_path, capsys, args, message):
    assert main(["train", *args, "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "a")]) == 2
    assert one_error_line(capsys).startswith(f"recserve: error: {message}")
    assert not (tmp_path / "a").exists()


def test_a_config_file_that_is_not_settings_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {hidden_size: [}\n")
    assert main(["train", "--model", "bert4rec", "--config", str(bad), "--show-config"]) == 2
    assert one_error_line(capsys).startswith(f"recserve: error: --config {bad}: not YAML")
    bad.write_text("kind: bert4rec\nlayers: 3\n")
    assert main(["train", "--config", str(bad), "--show-config"]) == 2
    assert "unknown key 'layers'; expected kind, train, data, model" in one_error_line(capsys)


def test_the_effective_settings_land_in_metrics_and_the_manifest(atomic, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"kind": "bert4rec", "model": {"hidden_size": 16, "n_heads": 4},
                                      "train": {"batch_size": 64}}))
    assert main(["train", "--model", "bert4rec", "--data", str(atomic), "--out", str(tmp_path / "a"),
                 "--config", str(config), "--set", "inner_size=24", "--epochs", "1", "--max-steps", "2",
                 "--no-progress", "--max-seq-length", "9"]) == 0
    capsys.readouterr()
    metrics = json.loads((tmp_path / "a/bert4rec/train/metrics.json").read_text())
    bundle = tmp_path / "a/bert4rec" / (tmp_path / "a/bert4rec/LATEST").read_text().strip()
    manifest = json.loads((bundle / "manifest.json").read_text())
    for recorded in (metrics["settings"], manifest["training"]["settings"]):
        assert recorded["kind"] == "bert4rec"
        assert recorded["model"]["hidden_size"] == 16 and recorded["model"]["inner_size"] == 24
        assert recorded["train"]["batch_size"] == 64 and recorded["train"]["epochs"] == 1
        assert recorded["data"]["max_seq_length"] == 9
    assert manifest["config"]["hidden_size"] == 16 and manifest["config"]["max_seq_length"] == 9
    # what was recorded is a config file that gives the same settings back
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(metrics["settings"]))
    assert resolve("bert4rec", config=yaml.safe_load(again.read_text())).as_dict() == metrics["settings"]


def test_defaults_match_what_training_used_before_settings():
    for kind in KINDS:
        s = defaults(kind)
        assert {k: s.train[k] for k in recipe(kind).defaults} == recipe(kind).defaults
        assert s.train["device"] == "auto"
        for name, value in s.data.items():
            assert getattr(DataOptions(), name) == value
