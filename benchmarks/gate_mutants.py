"""Mutation test of the regression gate: realistic bugs, one at a time, in a copy of the package, each
followed by the gate exactly as CI runs it (``dfabench check --scale gate --fail-fast``); prints the mutation score.

    python benchmarks/gate_mutants.py [--jobs 2] [--only NAME,...] [--out results/bench/gate-mutants.txt]

The copy is ``git archive HEAD`` of the package, its tasks and baselines (so commit first), installed
once per job slot in its own virtual environment (editable, with this interpreter's site packages);
each mutant rewrites one line of it, and the unmutated copy runs first as the control (it must pass).
A mutant is *caught* when the gate exits 1. Mutants declared equivalent carry the argument why no
gate can catch them; one that is caught anyway is reported as such. A mutant that names the unit test
guarding it (``unit_test``) and that the gate misses has that test run on the mutated copy: CI runs the
tests before the gate, so the two layers together are what a regression meets.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["dfabench", "tasks", "leaderboard", "baselines", "tests", "examples", "setup.py", "pyproject.toml",
           "README.md", "LICENSE"]


@dataclass(frozen=True)
class Mutant:
    name: str
    area: str  # engine | methods | harness | optimiser | task model | data loader
    path: str
    old: str
    new: str
    what: str
    equivalent: str = ""  # why no gate can see it ('' for a real regression)
    unit_test: str = ""  # the pytest node that guards it, run when the gate misses it


MUTANTS = [
    # engine
    Mutant("last-point-only", "engine", "dfabench/engine/projection.py",
           "indices = [i for i, (p, _) in enumerate(points) if p.group == group]",
           "indices = [i for i, (p, _) in enumerate(points) if p.group == group][-1:]",
           "only the last feedback point of a group receives its signal"),
    Mutant("noisy-feedback", "engine", "dfabench/engine/projection.py",
           "            projected = projected * self.post\n        for d in self.deliveries:",
           "            projected = projected * self.post\n"
           "        projected = projected + projected.std() * torch.randn_like(projected)\n"
           "        for d in self.deliveries:",
           "the feedback signal arrives with noise as large as itself (signal-to-noise 1)"),
    Mutant("feedback-scale-x10", "engine", "dfabench/engine/feedback.py",
           "        return u / math.sqrt(max_point)\n", "        return 10 * u / math.sqrt(max_point)\n",
           "B drawn ten times too large (the global scaling rule)",
           equivalent="Adam divides each parameter's update by the root of its own second moment, so a "
                      "constant factor on a block's gradient cancels (up to epsilon); the output layer keeps its "
                      "true gradient. Only gradient clipping (the LM's 0.5 on the global norm) could see it."),
    # methods
    Mutant("dfa-wrong-example", "methods", "dfabench/methods/dfa.py",
           "for index, signal in plan.signals(self._feedback_error(record, error)):",
           "for index, signal in plan.signals(self._feedback_error(record, error).roll(1, 0)):",
           "DFA's error reaches the wrong example (the batch rolled by one)"),
    Mutant("dfa-error-sign", "methods", "dfabench/methods/dfa.py",
           "        return error\n", "        return -error\n",
           "DFA projects -e instead of e",
           equivalent="-e B = e (-B), and -B has the distribution of B (uniform or sign entries, symmetric about "
                      "0): the mutant is DFA with another draw of its random matrix, which no finite set of "
                      "seeds can tell from DFA."),
    Mutant("fa-weight-transport", "methods", "dfabench/methods/fa.py",
           "        ctx.save_for_backward(x, feedback)\n        ctx.has_bias = bias is not None",
           "        ctx.save_for_backward(x, weight)\n        ctx.has_bias = bias is not None",
           "FA's backward uses the forward weight (it becomes BP on linear layers)"),
    Mutant("drtp-projects-error", "methods", "dfabench/methods/drtp.py",
           "        return -recover_target(record.leaf.detach(), error, record.batch_dims, self.tolerance)",
           "        return error",
           "DRTP projects the error instead of the target (it becomes DFA)"),
    Mutant("hybrid-coin-inverted", "methods", "dfabench/methods/hybrid.py",
           "torch.rand((), generator=self.coin) < self.options.bp_probability",
           "torch.rand((), generator=self.coin) > self.options.bp_probability",
           "hybrid takes BP steps with probability 0.8 instead of 0.2"),
    # harness
    Mutant("half-the-batches", "harness", "dfabench/harness/runner.py",
           "                losses.add(step, meter(batch))",
           "                if step % 2:\n                    continue\n                losses.add(step, meter(batch))",
           "the training loop skips every other batch, for every method"),
    Mutant("eval-in-train-mode", "harness", "dfabench/harness/runner.py",
           "    model.eval()\n    with torch.no_grad():\n        metrics = task.evaluate(model, data, split, hp)",
           "    model.train()\n    with torch.no_grad():\n        metrics = task.evaluate(model, data, split, hp)",
           "evaluation runs in training mode (dropout on, batch statistics)"),
    Mutant("test-at-last-epoch", "harness", "dfabench/harness/runner.py",
           "    if best_weights is not None:\n        model.load_state_dict(best_weights)",
           "    if False:\n        model.load_state_dict(best_weights)",
           "the test metric is taken at the last epoch, not at the best validation point",
           unit_test="tests/test_harness.py::test_test_metrics_are_taken_at_the_best_validation_point"),
    # optimiser settings
    Mutant("weight-decay-dropped", "optimiser", "dfabench/harness/optim.py",
           'eps=getattr(hp, "adam_eps", 1e-8), weight_decay=hp.weight_decay, **extra)',
           'eps=getattr(hp, "adam_eps", 1e-8), weight_decay=0.0, **extra)',
           "Adam ignores the configured weight decay",
           unit_test="tests/test_harness.py::test_the_optimiser_gets_every_configured_setting"),
    Mutant("betas-default", "optimiser", "dfabench/harness/optim.py",
           "return cls(params, lr=lr, betas=hp.betas,", "return cls(params, lr=lr, betas=(0.9, 0.999),",
           "Adam ignores the configured betas (the LM's beta2 0.98 becomes 0.999)",
           unit_test="tests/test_harness.py::test_the_optimiser_gets_every_configured_setting"),
    # task models
    Mutant("lm-no-positions", "task model", "tasks/lm/models.py",
           "self.embedding(input_ids) * math.sqrt(self.d_model) + self.positions[:length])",
           "self.embedding(input_ids) * math.sqrt(self.d_model))",
           "the paper Transformer loses its sinusoidal positions"),
    Mutant("nerf-sin-twice", "task model", "tasks/nerf/models.py",
           "return torch.cat([x, angles.sin().flatten(-2), angles.cos().flatten(-2)], -1)",
           "return torch.cat([x, angles.sin().flatten(-2), angles.sin().flatten(-2)], -1)",
           "NeRF's positional encoding repeats the sines instead of the cosines"),
    # data loaders
    Mutant("lm-targets-unshifted", "data loader", "tasks/lm/task.py",
           "    y = ids[1: n * context + 1].view(n, context)", "    y = ids[: n * context].view(n, context)",
           "LM targets are the inputs, not the next tokens"),
    Mutant("ctr-labels-misaligned", "data loader", "tasks/ctr/task.py",
           "            batch = (data.x[index], data.y[index])",
           "            batch = (data.x[index], data.y[index.sort().values])",
           "CTR training labels are taken in row order while the features are shuffled"),
    Mutant("vision-no-std", "data loader", "tasks/vision/task.py",
           "            return ((a - mean) / std).to(device), b.to(device)",
           "            return (a - mean).to(device), b.to(device)",
           "images are centred but not divided by their standard deviation"),
    Mutant("vision-no-255", "data loader", "tasks/vision/task.py",
           ".float() / 255.0  # a copy", ".float()  # a copy",
           "pixels are not divided by 255",
           equivalent="the standardisation that follows ((x - mean) / std, from the training images) removes any "
                      "constant factor: the network sees the same inputs up to float rounding."),
    Mutant("graph-few-train-nodes", "data loader", "tasks/graph/data.py",
           "def planetoid_split(y: torch.Tensor, seed: int, per_class: int = 20,",
           "def planetoid_split(y: torch.Tensor, seed: int, per_class: int = 5,",
           "the graph split keeps 5 training nodes per class instead of 20"),
]


def archive(dest: Path) -> None:
    """HEAD's shipped files into ``dest`` (the committed code, not the working tree)."""
    dest.mkdir(parents=True, exist_ok=True)
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", *SHIPPED], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)


def make_slot(base: Path) -> tuple[Path, Path]:
    """A pristine copy (``base/pristine``), a working copy (``base/pkg``) and a venv with it installed."""
    archive(base / "pristine")
    shutil.copytree(base / "pristine", base / "pkg")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "-e",
                    str(base / "pkg")], check=True)
    return base / "pkg", venv


def apply(pkg: Path, pristine: Path, mutant: Mutant | None) -> None:
    """Reset the copy's file(s) to pristine, then rewrite the mutant's line (exactly once)."""
    for m in MUTANTS:
        shutil.copyfile(pristine / m.path, pkg / m.path)
    if mutant is None:
        return
    text = (pkg / mutant.path).read_text()
    if text.count(mutant.old) != 1:
        raise SystemExit(f"mutant {mutant.name}: the line to change occurs {text.count(mutant.old)} times in "
                         f"{mutant.path} (the code moved: update the mutant)")
    (pkg / mutant.path).write_text(text.replace(mutant.old, mutant.new))


def gate(pkg: Path, venv: Path, results: Path) -> tuple[int, list[str], float]:
    """CI's gate command in the copy: (exit code, its FAIL lines, seconds)."""
    env = {**os.environ, "TQDM_DISABLE": "1", "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    start = time.perf_counter()
    done = subprocess.run(["dfabench", "check", "--scale", "gate", "--fail-fast", "--results", str(results)], cwd=pkg, env=env,
                          capture_output=True, text=True)
    fails = [line[5:] for line in done.stdout.splitlines() if line.startswith("FAIL ")]
    if done.returncode not in (0, 1):
        fails = [f"exit {done.returncode}: " + (done.stderr.strip().splitlines() or ["?"])[-1]]
    return done.returncode, fails, time.perf_counter() - start


def unit_test(pkg: Path, venv: Path, node: str) -> int:
    """The mutant's unit test in the copy: pytest's exit code (1: it fails on the mutant, so it is caught)."""
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
                          cwd=pkg, env=env, capture_output=True, text=True).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="mutants gated at once (one slot each)")
    parser.add_argument("--only", help="comma-separated mutant names (default: all; the control always runs)")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    names = {m.name for m in MUTANTS}
    only = args.only.split(",") if args.only else sorted(names)
    unknown = sorted(set(only) - names)
    if args.jobs < 1 or unknown:
        print(f"error: {'--jobs must be at least 1' if args.jobs < 1 else f'unknown mutant {unknown[0]}'}",
              file=sys.stderr)
        return 2
    if args.out and not Path(args.out).parent.is_dir():
        print(f"error: --out {args.out}: no such folder", file=sys.stderr)
        return 2
    chosen = [None] + [m for m in MUTANTS if m.name in only]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    with tempfile.TemporaryDirectory(prefix="dfabench-mutants-") as tmp:
        slots = [make_slot(Path(tmp) / f"slot{i}") for i in range(min(args.jobs, len(chosen)))]
        free = list(range(len(slots)))
        import threading

        lock = threading.Lock()

        def one(mutant: Mutant | None):
            with lock:
                slot = free.pop()
            pkg, venv = slots[slot]
            try:
                apply(pkg, pkg.parent / "pristine", mutant)
                results = pkg.parent / f"results-{mutant.name if mutant else 'control'}"
                outcome = gate(pkg, venv, results)
                tested = (unit_test(pkg, venv, mutant.unit_test)
                          if mutant is not None and mutant.unit_test and outcome[0] == 0 else None)
                return mutant, (*outcome, tested)
            finally:
                with lock:
                    free.append(slot)

        say(f"gate mutants at {head}: `dfabench check --scale gate --fail-fast` (as .ci/run runs it) on a copy with one bug each")
        outcomes = []
        with ThreadPoolExecutor(len(slots)) as pool:
            # the control (a gate that fails the unmutated code catches nothing) is submitted first
            for mutant, (code, fails, seconds, tested) in pool.map(one, chosen):
                if mutant is None:
                    control = (code, fails, seconds)
                    say(f"control (no mutation): exit {code} in {seconds:.0f} s" + "".join(f"\n    FAIL {f}" for f in fails))
                    continue
                outcomes.append((mutant, code, tested))
                kind = "equivalent" if mutant.equivalent else "regression"
                verdict = "CAUGHT" if code == 1 else "missed" if code == 0 else "ERROR"
                say(f"{verdict:7} {mutant.name} [{mutant.area}; {kind}] {mutant.what} ({mutant.path}); "
                    f"exit {code} in {seconds:.0f} s, {len(fails)} FAIL lines")
                for f in fails[:4]:
                    say(f"    FAIL {f}")
                if len(fails) > 4:
                    say(f"    ... {len(fails) - 4} more")
                if mutant.equivalent:
                    say(f"    equivalent because: {mutant.equivalent}")
                if tested is not None:
                    say(f"    its unit test {mutant.unit_test}: "
                        + ("fails on the mutant: caught by the tests" if tested == 1 else f"exit {tested}: NOT caught"))
    real = [(m, c, t) for m, c, t in outcomes if not m.equivalent]
    caught = sum(c == 1 for _, c, _ in real)
    by_tests = [m.name for m, c, t in real if c != 1 and t == 1]
    missed = [m.name for m, c, t in real if c != 1 and t != 1]
    equivalent = [m.name for m, _, _ in outcomes if m.equivalent]
    say(f"mutation score: the gate catches {caught} of {len(real)} non-equivalent mutants"
        + (f"; their unit tests catch {len(by_tests)} more ({', '.join(by_tests)})" if by_tests else "")
        + (f"; missed by both: {', '.join(missed)}" if missed else "; none is missed by both")
        + (f"; equivalent, not counted: {', '.join(equivalent)}" if equivalent else "")
        + f"; control {'passed' if control[0] == 0 else 'FAILED'}")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0 if control[0] == 0 and not missed else 1


if __name__ == "__main__":
    sys.exit(main())
