"""The mutation gate over the decision paths (``make mutation``, ``make mutation-ci``).

mutmut (``[tool.mutmut]`` in pyproject.toml names the modules) copies the source into
``mutants/`` and runs the unit tests that cover each single-token change. This module turns its
results into the committed report (``tests/mutation/REPORT.md``) and judges them:

- a module's **score** is detected / (mutants - equivalent), where detected = killed or timed
  out (a test that hangs on the mutant is a test that noticed it), and *equivalent* mutants are
  the ones ``kept.toml`` shows to be equivalent (same behaviour for every input), with the
  argument written down. Mutants no test reaches ("no tests") count as survivors.
- every survivor that stays is justified in ``kept.toml`` (``equivalent`` or ``not worth a
  test``, with the reason); the gate fails on an unjustified survivor and on a module under
  ``MIN_SCORE``.

``ci`` is the subset CI runs in at most five minutes (``--budget``, mutant generation and
mutmut's test mapping included): the mutants of modules changed since the report's commit,
else a seeded sample of the mutants the report says are killed (the seed is printed); any of
them surviving now fails the build.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
REPORT = HERE / "REPORT.md"
RESULTS = HERE / "results.json"  # the report's data: what CI compares against
KEPT = HERE / "kept.toml"
MIN_SCORE = 0.85
MUTMUT = [sys.executable, "-m", "mutmut"]

# mutmut's exit codes per mutant (mutmut/stats.py).
DETECTED = {
    1: "killed",
    3: "killed",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "killed",
}
UNCOVERED = {5, 33}
SURVIVED = {0}


def gate_modules() -> list[str]:
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    return list(conf["only_mutate"])


def status_of(code: int | None) -> str:
    if code is None:
        return "not checked"
    if code in DETECTED:
        return DETECTED[code]
    if code in SURVIVED:
        return "survived"
    if code in UNCOVERED:
        return "no tests"
    return "suspicious"


def read_results(root: Path = REPO) -> dict[str, dict[str, str]]:
    """module path -> {mutant name: status}, from mutmut's ``mutants/<path>.meta`` files."""
    out: dict[str, dict[str, str]] = {}
    for module in gate_modules():
        meta = root / "mutants" / f"{module}.meta"
        if not meta.exists():
            out[module] = {}
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        out[module] = {name: status_of(code) for name, code in sorted(codes.items())}
    return out


@dataclass
class Kept:
    kind: str  # "equivalent" or "not worth a test"
    reason: str


def read_kept() -> dict[str, Kept]:
    if not KEPT.exists():
        return {}
    raw = tomllib.loads(KEPT.read_text())
    kept: dict[str, Kept] = {}
    for entry in raw.get("survivor", []):
        kind = entry["kind"]
        if kind not in ("equivalent", "not worth a test"):
            raise SystemExit(f"kept.toml: {entry['name']}: unknown kind {kind!r}")
        for name in entry["names"] if "names" in entry else [entry["name"]]:
            kept[name] = Kept(kind, entry["reason"].strip())
    return kept


@dataclass
class Score:
    module: str
    counts: Counter[str] = field(default_factory=Counter)
    equivalent: int = 0

    @property
    def total(self) -> int:
        return sum(n for s, n in self.counts.items() if s != "not checked")

    @property
    def detected(self) -> int:
        return self.counts["killed"] + self.counts["timeout"]

    @property
    def score(self) -> float | None:
        judged = self.total - self.equivalent
        return None if judged <= 0 else self.detected / judged


def scores(results: dict[str, dict[str, str]], kept: dict[str, Kept]) -> list[Score]:
    out = []
    for module, by_name in results.items():
        s = Score(module, Counter(by_name.values()))
        s.equivalent = sum(
            1
            for name, status in by_name.items()
            if status in ("survived", "no tests")
            and kept.get(name, Kept("", "")).kind == "equivalent"
        )
        out.append(s)
    return out


def diff_of(name: str) -> str:
    """The mutant as a diff of its function (mutmut's own rendering)."""
    r = subprocess.run(
        [*MUTMUT, "show", name], cwd=REPO, capture_output=True, text=True, check=False
    )
    lines = [
        ln
        for ln in r.stdout.splitlines()
        if ln.startswith(("-", "+")) and not ln.startswith(("---", "+++"))
    ]
    return "\n".join(lines)


def write_report(before: dict[str, tuple[float | None, int]] | None = None) -> list[str]:
    """Write REPORT.md and results.json; returns the gate's failures.

    ``before`` is module -> (score, mutants judged) of an earlier run; a module whose earlier
    run was a sample has its sample size (0 for a full run), and the column says so."""
    results, carried = carried_over(read_results())
    kept = read_kept()
    table = scores(results, kept)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    failures = []
    lines = [
        "# Mutation report (generated by `make mutation`; do not edit by hand)",
        "",
        f"Commit `{commit[:12]}`, {time.strftime('%Y-%m-%d')}, mutmut over the unit tests in "
        "`tests/unit/serving/` and `tests/unit/drift/`. Score = (killed + timeout) / "
        "(mutants - equivalent); the gate needs "
        f"{MIN_SCORE:.0%} per module. Justifications live in `tests/mutation/kept.toml`.",
        "",
        "| module | mutants | killed | timeout | survived | no tests | equivalent | score |"
        + (" before |" if before else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if before else ""),
    ]
    for s in table:
        score = "n/a" if s.score is None else f"{s.score:.1%}"
        row = (
            f"| `{s.module}` | {s.total} | {s.counts['killed']} | {s.counts['timeout']} | "
            f"{s.counts['survived']} | {s.counts['no tests']} | {s.equivalent} | {score} |"
        )
        if before:
            b, judged = before.get(s.module, (None, 0))
            sampled = f" ({judged} of {s.total} sampled)" if 0 < judged < s.total else ""
            row += f" {'n/a' if b is None else f'{b:.1%}'}{sampled} |"
        lines.append(row)
        if s.counts["not checked"]:
            failures.append(f"{s.module}: {s.counts['not checked']} mutants not checked")
        if s.score is not None and s.score < MIN_SCORE:
            failures.append(f"{s.module}: score {s.score:.1%} < {MIN_SCORE:.0%}")
    all_detected = sum(s.detected for s in table)
    all_judged = sum(s.total - s.equivalent for s in table)
    lines += [
        "",
        f"All modules: {all_detected}/{all_judged} = {all_detected / max(all_judged, 1):.1%}.",
    ]
    if carried:
        lines += [
            "",
            "Carried over from the previous report (unchanged since, and not run in this work "
            "tree): " + ", ".join(f"`{m}`" for m in carried) + ".",
        ]
    lines += [
        "",
        "## Survivors",
        "",
    ]
    for module, by_name in results.items():
        names = [n for n, st in by_name.items() if st in ("survived", "no tests", "suspicious")]
        if not names:
            continue
        lines += [f"### `{module}`", ""]
        for name in names:
            why = kept.get(name)
            if why is None:
                failures.append(f"{name}: survived with no justification in kept.toml")
            lines.append(
                f"- `{name.rpartition('.')[2]}` ({by_name[name]}): "
                + (
                    f"**{why.kind}**: {' '.join(why.reason.split())}"
                    if why
                    else "**not justified**"
                )
            )
            lines += ["  ```diff", *("  " + ln for ln in diff_of(name).splitlines()), "  ```"]
        lines.append("")
    REPORT.write_text("\n".join(lines) + "\n")
    RESULTS.write_text(
        json.dumps({"commit": commit, "results": results}, indent=1, sort_keys=True) + "\n"
    )
    return failures


def changed_modules(since: str) -> list[str]:
    r = subprocess.run(
        ["git", "diff", "--name-only", since, "--", *gate_modules()],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:  # the report's commit is not in this clone: treat all as changed
        return gate_modules()
    return [p for p in r.stdout.split() if p]


def carried_over(
    results: dict[str, dict[str, str]],
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """``results`` with the recorded results of every module that no mutant ran for here and
    that has not changed since the recorded report: a fresh work tree has no ``mutants/``
    cache, and an unchanged module's mutants are the same ones (CI's sample re-checks them).
    In a changed module, a mutant not checked here keeps its recorded result when its function
    is the same at the report's commit as now (mutmut's own cache works per function the same
    way: same function, same mutants, same names). Returns the results and what was carried
    over (``module`` for a whole module, ``module: N mutants`` for a part of one)."""
    if not RESULTS.exists():
        return results, []
    recorded = json.loads(RESULTS.read_text())
    changed = set(changed_modules(recorded["commit"]))
    out, carried = dict(results), []
    for module, by_name in results.items():
        ran = any(status != "not checked" for status in by_name.values())
        old = recorded["results"].get(module)
        if not old:
            continue
        if module in changed:
            if ran:
                same = same_functions(module, recorded["commit"])
                kept = {
                    n: old[n]
                    for n, st in by_name.items()
                    if st == "not checked" and n in old and function_of(n) in same
                }
                if kept:
                    out[module] = {**by_name, **kept}
                    carried.append(f"{module}: {len(kept)} mutants of unchanged functions")
            continue
        if ran:
            continue
        out[module] = old
        carried.append(module)
    return out, carried


def function_of(mutant: str) -> str:
    """``serving.x.y.xǁRolloutǁto_dict__mutmut_3`` -> ``Rollout.to_dict``; ``…x_start__…``
    -> ``start``."""
    head = mutant.partition("__mutmut_")[0].rpartition(".")[2]
    if head.startswith("xǁ"):
        return ".".join(p for p in head[2:].split("ǁ") if p)
    return head.removeprefix("x_")


def _functions(source: str) -> dict[str, str]:
    """Qualified name (``f``, ``Class.f``) -> the function's AST dump, of every top-level
    function and method in ``source``."""
    import ast

    out: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out[node.name] = ast.dump(node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    out[f"{node.name}.{item.name}"] = ast.dump(item)
    return out


def same_functions(module: str, commit: str) -> set[str]:
    """Functions of ``module`` whose code (AST, so comments aside) is the same at ``commit``."""
    r = subprocess.run(
        ["git", "show", f"{commit}:{module}"], cwd=REPO, capture_output=True, text=True
    )
    if r.returncode != 0:
        return set()
    then, now = _functions(r.stdout), _functions((REPO / module).read_text())
    return {name for name, code in now.items() if then.get(name) == code}


def mutant_module(name: str) -> str:
    """``serving.canary.split.xǁRouterǁdecide__mutmut_3`` -> ``serving/canary/split.py``."""
    head = name.partition("__mutmut_")[0].rpartition(".")[0]
    return head.replace(".", "/") + ".py"


def ci(sample: int, seed: int | None, budget_s: int) -> int:
    recorded = json.loads(RESULTS.read_text())
    changed = changed_modules(recorded["commit"])
    seed = int(time.time()) if seed is None else seed
    if changed:
        names = [f"{m.removesuffix('.py').replace('/', '.')}.*" for m in changed]
        print(f"mutation-ci: modules changed since {recorded['commit'][:12]}: {changed}")
    else:
        killed = sorted(
            n
            for by_name in recorded["results"].values()
            for n, st in by_name.items()
            if st in ("killed", "timeout")
        )
        names = random.Random(seed).sample(killed, min(sample, len(killed)))
        print(f"mutation-ci: no gate module changed; {len(names)} killed mutants, seed {seed}")
    try:
        subprocess.run(
            [*MUTMUT, "run", *names],
            cwd=REPO,
            check=False,
            timeout=budget_s,
            stdout=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        print(f"mutation-ci: budget of {budget_s}s spent; judging what ran")
    now, kept = read_results(), read_kept()
    failures = []
    if changed:
        for s in scores({m: now[m] for m in changed if m in now}, kept):
            if s.score is not None and s.score < MIN_SCORE:
                failures.append(f"{s.module}: score {s.score:.1%} < {MIN_SCORE:.0%}")
            for n, st in now[s.module].items():
                if st in ("survived", "no tests") and n not in kept:
                    failures.append(f"{n}: survives, not in kept.toml")
    else:
        judged = 0
        for n in names:
            st = now.get(mutant_module(n), {}).get(n, "not checked")
            judged += st != "not checked"
            if st in ("survived", "no tests", "suspicious"):
                failures.append(f"{n}: was killed at the report's commit, now {st}")
        print(
            f"mutation-ci: {judged} of {len(names)} sampled mutants judged, "
            f"{judged - len(failures)} still killed"
        )
        if not judged:
            failures.append(f"the budget of {budget_s}s judged no mutant at all")
    for f in failures:
        print("mutation-ci: FAIL", f)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.mutation.gate")
    sub = p.add_subparsers(dest="cmd", required=True)
    rep = sub.add_parser("report", help="write REPORT.md from mutants/ and judge it")
    rep.add_argument("--before", type=Path, help="results.json of an earlier run")
    c = sub.add_parser("ci", help="the CI subset")
    c.add_argument("--sample", type=int, default=60)
    c.add_argument("--seed", type=int)
    c.add_argument("--budget", type=int, default=300, help="seconds for mutmut, all included")
    args = p.parse_args(argv)
    if args.cmd == "report":
        before = None
        if args.before:
            doc = json.loads(args.before.read_text())
            sampled = set(doc.get("sampled", []))  # modules whose earlier run was a sample
            before = {
                s.module: (s.score, s.total if s.module in sampled else 0)
                for s in scores(doc["results"], read_kept())
            }
        failures = write_report(before)
        for f in failures:
            print("mutation gate:", f)
        print(f"wrote {REPORT.relative_to(REPO)}")
        return 1 if failures else 0
    return ci(args.sample, args.seed, args.budget)


if __name__ == "__main__":
    sys.exit(main())
