"""The gap gate: a reference recorded from healthy DFA runs fails on DFA with feedback scaled to zero."""
import pytest

from dfabench.cli import main


@pytest.mark.slow
@pytest.mark.xfail(reason="WIP: at smoke scale scale=0 DFA (=shallow, acc 0.84) is not yet caught by the gap tolerance; needs a gap-vs-shallow or tighter floor", strict=False)
def test_broken_dfa_fails_check(tmp_path):
    good, bad, base = tmp_path / "good", tmp_path / "bad", tmp_path / "baselines"
    args = ["mlp/digits/mlp", "--method", "bp,dfa", "--scale", "smoke", "--seeds", "2"]
    assert main(["run", *args, "--results", str(good)]) == 0
    assert main(["baseline", "record", "--scale", "smoke", "--results", str(good), "--baselines", str(base)]) == 0
    assert main(["check", "--scale", "smoke", "--results", str(good), "--baselines", str(base)]) == 0
    broken = ["mlp/digits/mlp", "--scale", "smoke", "--seeds", "2", "--results", str(bad)]
    assert main(["run", *broken, "--method", "bp"]) == 0
    assert main(["run", *broken, "--method", "dfa", "--set", "method_options.scale=0"]) == 0
    assert main(["check", "--scale", "smoke", "--results", str(bad), "--baselines", str(base)]) == 1


def test_check_without_reference_is_bad_input(tmp_path, capsys):
    assert main(["check", "--results", str(tmp_path), "--baselines", str(tmp_path)]) == 2
    assert "no reference" in capsys.readouterr().err
