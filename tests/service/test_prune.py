"""`recserve prune`: keeps the newest N versions of each model and always LATEST's; touches nothing else."""
import json

from recserve.cli import main


def version(model_dir, name, size=10):
    folder = model_dir / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"version": name}))
    (folder / "item_vectors.npy").write_bytes(b"x" * size)
    return folder


def test_prune_keeps_the_newest_versions_and_latests(tmp_path, capsys):
    model = tmp_path / "bert4rec"
    names = [f"2026010{d}T000000Z-0000000{d}" for d in range(1, 6)]
    for name in names:
        version(model, name)
    (model / "LATEST").write_text(names[0] + "\n")  # rolled back to the oldest
    (model / "train").mkdir()
    (model / "train" / "best.pt").write_bytes(b"ckpt")
    (model / f".tmp-{names[-1]}-1").mkdir()  # an export being written
    other = tmp_path / "nrms"
    version(other, names[0])
    (other / "LATEST").write_text(names[0] + "\n")

    assert main(["prune", "--artifacts", str(tmp_path), "--keep", "2", "--dry-run"]) == 0
    assert len(list(model.iterdir())) == 8 and "would delete 2 version(s)" in capsys.readouterr().out
    assert main(["prune", "--artifacts", str(tmp_path), "--keep", "2"]) == 0
    assert sorted(p.name for p in model.iterdir()) == sorted(
        [names[0], names[3], names[4], "LATEST", "train", f".tmp-{names[-1]}-1"])
    assert (other / names[0]).is_dir()
    out = capsys.readouterr().out
    assert f"deleted {model / names[1]}" in out and "deleted 2 version(s)" in out


def test_prune_of_a_folder_that_does_not_exist_is_one_line(tmp_path, capsys):
    assert main(["prune", "--artifacts", str(tmp_path / "nope"), "--keep", "1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
