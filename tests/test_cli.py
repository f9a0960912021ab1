"""Every numeric option of every `recserve` command refuses a value out of its range in one line, exit status 2,
before doing anything. The options are found by walking the parser itself, so a new command is covered as soon
as it exists."""
import argparse

import pytest

from recserve.cli import build_parser, main
from recserve.options import Number


def commands(parser: argparse.ArgumentParser, path=()):
    """(command words, its parser) for every command and sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from commands(sub, (*path, name))


def numeric_options():
    """Every option whose type is a number: a `Number`, or a plain int or float (which the test refuses)."""
    return [(path, action) for path, parser in commands(build_parser()) for action in parser._actions
            if isinstance(action.type, Number) or action.type in (int, float)]


OPTIONS = numeric_options()


def bad_values(number: Number) -> list[str]:
    """Values outside `number`'s range, and values that are no number of its kind at all."""
    bad = ["abc", "nan", "inf"]
    if number.low is not None:
        bad.append(str(number.low - 1))
    if number.above is not None:
        bad.append(str(number.above))
    if number.high is not None:
        bad.append(str(number.high + 1))
    if number.kind is int:
        bad.append("1.5")
    return bad


def test_the_walk_finds_the_numeric_options_of_both_halves():
    found = {(" ".join(path), action.option_strings[-1]) for path, action in OPTIONS}
    assert {("train", "--epochs"), ("recommend", "--k"), ("serve", "--port"), ("data synthetic", "--items")} <= found


@pytest.mark.parametrize("path, action", OPTIONS, ids=[f"{' '.join(p)} {a.option_strings[-1]}" for p, a in OPTIONS])
def test_every_numeric_option_refuses_out_of_range_values_in_one_line(path, action, capsys):
    assert isinstance(action.type, Number), (f"{' '.join(path)} {action.option_strings[-1]}: a plain "
                                             f"{action.type.__name__} takes any value; give it a Number with its range")
    option = action.option_strings[-1]
    for value in bad_values(action.type):
        with pytest.raises(SystemExit) as stop:
            main([*path, f"{option}={value}"])
        err = capsys.readouterr().err
        assert stop.value.code == 2, (option, value)
        assert err.count("\n") == 1 and option in err and repr(value) in err, err
        assert "Traceback" not in err and "--help" in err


@pytest.mark.parametrize("argv, words", [
    (["recommend", "--k", "-5"], "--k: expected a whole number at least 1, got '-5'"),
    (["recommend", "--k", "0"], "got '0'"),
    (["train", "--epochs", "0"], "--epochs: expected a whole number at least 1, got '0'"),
    (["train", "--lr", "-1"], "--lr: expected a number at least 0, got '-1'"),
])
def test_the_issues_cases(argv, words, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and words in capsys.readouterr().err


def test_options_that_do_not_fit_together_are_one_line_and_status_2(capsys):
    assert main(["train", "--model", "bert4rec"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recserve: error: recserve train needs --model and --data") and err.count("\n") == 1


def test_verbose_shows_the_traceback_of_a_user_error():
    from recserve.options import UsageError

    with pytest.raises(UsageError):
        main(["-v", "train", "--model", "bert4rec"])


def test_resume_with_nothing_to_resume_is_refused_before_reading_data(tmp_path, capsys):
    assert main(["train", "--model", "bert4rec", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path),
                 "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"--resume: no {tmp_path / 'bert4rec' / 'train' / 'last.pt'}" in err and err.count("\n") == 1


def test_a_path_that_cannot_be_used_is_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    assert main(["data", "synthetic", "--dest", str(tmp_path / "a-file" / "x"), "--users", "5", "--items", "5"]) == 2
    err = capsys.readouterr().err
    assert err == f"recserve: error: {tmp_path / 'a-file' / 'x' / 'mind'}: Not a directory\n"
