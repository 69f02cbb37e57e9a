"""README.md and docs/*.md: every relative link resolves, the README stays short, and every command shown is run by a test.

A command shown in a fenced ``bash`` block (or after ``$ `` in a plain block) is either a
``particle-nas`` command, whose subcommand and flags must be in SHOWN_COMMANDS with the test that
runs them, or another program listed in NOT_RUN_BY_TESTS with the reason no test runs it here.
Adding a page with a new command means adding its entry below (or a test first).
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 12_000  # characters: the README is the first page, the reference lives in docs/


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# "subcommand --flag ..." (flags sorted) -> "tests/FILE.py::test_function" that runs that combination.
SHOWN_COMMANDS: dict[str, str] = {
    "search": "tests/cli/test_cli.py::test_search_writes_the_run_outputs",
    "search --trials": "tests/cli/test_cli.py::test_rerun_resumes_without_redoing_trials",
    "search --name --seed --trials": "tests/cli/test_cli.py::test_flags_override_the_config_file",
    "search --workers": "tests/cli/test_resume.py::test_sigkilled_search_resumes_with_every_completed_trial",
    "search --gpus --workers": "tests/search/test_gpu_assignment.py::test_the_documented_gpus_command_runs",
    "search --early-stopping --name": "tests/cli/test_early_stopping_cli.py::test_a_config_with_mo_asha_runs_on_the_local_engine",
    "search --backend": "tests/search/test_ray_local.py::test_backend_flag_runs_the_search_on_a_local_ray",
    "search --address --backend": "tests/search/test_ray_cluster.py::test_search_through_a_running_cluster_matches_the_local_backend",
    "resume": "tests/cli/test_resume.py::test_sigkilled_search_resumes_with_every_completed_trial",
    "cost": "tests/cli/test_cli.py::test_cost_and_export",
    "cost --clip": "tests/cli/test_cli.py::test_cost_of_a_bare_particle_file",
    "export --pick": "tests/cli/test_cli.py::test_export_without_output_writes_into_the_run_within_the_budget",
    "export --pick -o": "tests/cli/test_cli.py::test_cost_and_export",
    "export --pick --weights -o": "tests/cli/test_deploy.py::test_exported_weights_reproduce_the_recorded_accuracy",
    "export --format --pick -o": "tests/cli/test_deploy.py::test_onnx_round_trip_matches_pytorch",
    "report": "tests/cli/test_deploy.py::test_search_and_report_write_the_dashboard",
    "report --pick": "tests/cli/test_cli.py::test_report_with_another_pick_rewrites_best_yaml",
    "presets": "tests/cli/test_cli_presets.py::test_presets_table_lists_published_and_counted",
    "presets --show": "tests/cli/test_cli_presets.py::test_presets_show_states_where_flops_were_counted",
    "search --name --seed": "tests/cli/test_cli_replay.py::test_the_replay_example_is_the_quickstart_answered_from_the_committed_table",
    "finetune --data --mode --new-head --quantize --weights": "tests/cli/test_finetune_cli.py::test_the_docs_example_on_generated_videos_runs_as_written",
    "finetune --data --inflate --weights": "tests/cli/test_finetune_cli.py::test_inflate_starts_from_the_2d_form_s_weights_inflated_and_a_resume_keeps_it",
    "finetune --data --new-head --weights": "tests/cli/test_finetune_rounds.py::test_the_two_round_example_runs_as_written",
    "finetune --data --from": "tests/cli/test_finetune_rounds.py::test_the_two_round_example_runs_as_written",
    "export --format --pick --weights -o": "tests/cli/test_finetune_rounds.py::test_the_two_round_example_runs_as_written",
    "predict --crops --csv --json --top-k --videos --views": "tests/cli/test_finetune_rounds.py::test_the_two_round_example_runs_as_written",
    "predict --json --runtime --videos": "tests/cli/test_finetune_rounds.py::test_the_two_round_example_runs_as_written",
}

# Other programs shown in the docs (matched by how the command starts), and why no test here runs them as shown.
NOT_RUN_BY_TESTS: dict[str, str] = {
    # The install and test commands: .ci/run runs exactly these, and tests/test_readme.py checks .ci/run against the README.
    "python3 -m venv": "run by .ci/run (checked by tests/test_readme.py)",
    "python -m pytest": "run by .ci/run (checked by tests/test_readme.py)",
    # Installing packages needs the network.
    "pip install": "installs packages from PyPI",
    "apt-get": "installs system packages, as root",
    'python -c "import torch;': "prints the installed torch and whether it sees a GPU: the answer is the machine's",
    # External servers: the tests start their own on random ports instead.
    "ray start": "starts a Ray cluster; tests/search/test_ray_cluster.py starts its own head",
    "optuna-dashboard": "a web server that runs until stopped; tests/cli/test_deploy.py serves a study through optuna-dashboard's app",
    # Measurement scripts take minutes to hours; tests/test_bench.py tests their pieces.
    "python bench/": "a measurement script (minutes to hours); tests/test_bench.py tests its pieces",
    "bash bench/gpu_session.sh": "the GPU machine's one command; tests/test_gpu_session.py runs it as --dry-run on the CPU",
    # Several processes: GPUs and machines are not here; tests/cli/test_finetune_distributed.py starts 2 CPU processes with python -m torch.distributed.run.
    "torchrun": "starts training on GPUs or several machines; tests/cli/test_finetune_distributed.py launches 2 CPU processes the same way",
    "python -m torch.distributed.run": "run by tests/cli/test_finetune_distributed.py::test_two_processes_train_shard_without_overlap_checkpoint_once_and_resume_after_sigkill (slow)",
    "python examples/finetune/make_ucf_demo.py": "run by tests/cli/test_finetune_cli.py::test_the_docs_example_on_generated_videos_runs_as_written",
}

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
_SHELL = {"bash", "sh", "shell", "console"}


def _split(text: str) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(language, stripped lines) of every fenced block, and the lines outside them."""
    blocks: list[tuple[str, list[str]]] = []
    prose: list[str] = []
    fence = None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            blocks.append((match.group(2).lower(), []))
        elif fence is not None and line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            fence = None
        elif fence is not None:
            blocks[-1][1].append(line.strip())
        else:
            prose.append(line)
    return blocks, prose


def shown_commands(text: str) -> list[str]:
    """Every command line of the fenced shell blocks: all lines of bash blocks, ``$ `` lines of others; comments dropped."""
    commands = []
    for lang, lines in _split(text)[0]:
        for line in lines:
            if line.startswith("$ "):
                line = line[2:]
            elif lang not in _SHELL or lang == "console" or line.startswith("#"):
                continue
            line = re.sub(r"(^|\s)#.*$", "", line).strip()  # a trailing comment
            if line:
                commands.append(line)
    return commands


def particle_nas_parts(command: str) -> list[str]:
    """The particle-nas commands of one line (``a && particle-nas b`` -> [``particle-nas b``])."""
    parts = (part.strip() for part in re.split(r"&&|\|\||;|\|", command))
    return [part for part in parts if part.split()[:1] == ["particle-nas"]]


def signature(command: str) -> str:
    """'particle-nas export runs/x --pick knee -o k.yaml' -> 'export --pick -o'."""
    words = shlex.split(command)[1:]
    sub = next((w for w in words if not w.startswith("-")), "")
    flags = sorted({w.split("=", 1)[0] for w in words if re.match(r"^--?[A-Za-z]", w)})
    return " ".join([sub, *flags]) if sub else " ".join(flags)


def _all_shown() -> dict[str, list[str]]:
    """Each command shown -> the pages that show it."""
    shown: dict[str, list[str]] = {}
    for page in _pages():
        for command in shown_commands(page.read_text()):
            shown.setdefault(command, []).append(page.relative_to(ROOT).as_posix())
    return shown


def _particle_nas(shown: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for command, pages in shown.items():
        for part in particle_nas_parts(command):
            out.setdefault(signature(part), []).extend(pages)
    return out


def test_the_readme_is_at_most_12000_characters():
    text = (ROOT / "README.md").read_text()
    assert len(text) <= README_LIMIT, f"README.md has {len(text)} characters; move reference text to a page in docs/ (limit {README_LIMIT})"


def test_every_particle_nas_command_shown_has_a_test():
    shown = _particle_nas(_all_shown())
    assert shown, "no particle-nas command found in the docs"
    missing = {sig: pages for sig, pages in shown.items() if sig not in SHOWN_COMMANDS}
    assert not missing, f"commands shown without a test in SHOWN_COMMANDS (tests/test_docs.py): {missing}"


def test_every_registered_command_is_still_shown():
    shown = _particle_nas(_all_shown())
    stale = sorted(set(SHOWN_COMMANDS) - set(shown))
    assert not stale, f"SHOWN_COMMANDS lists commands no page shows any more: {stale}"


def test_every_other_command_shown_is_allow_listed():
    others = {c: pages for c, pages in _all_shown().items() if c.split()[0] != "particle-nas"}
    unknown = {c: pages for c, pages in others.items() if not any(c.startswith(prefix) for prefix in NOT_RUN_BY_TESTS)}
    assert not unknown, f"commands shown that no test runs and NOT_RUN_BY_TESTS does not explain: {unknown}"


def _string_constants(tree: ast.AST) -> set[str]:
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


@pytest.mark.parametrize("sig", sorted(SHOWN_COMMANDS))
def test_the_registered_test_exists_and_runs_that_command(sig):
    path, _, name = SHOWN_COMMANDS[sig].partition("::")
    module = ROOT / path
    assert module.is_file(), f"{sig!r}: {path} does not exist"
    tree = ast.parse(module.read_text())
    functions = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert name in functions, f"{sig!r}: {path} has no test function {name!r}"
    words = _string_constants(tree)
    absent = [word for word in sig.split() if word not in words]
    assert not absent, f"{sig!r}: {path} never passes {absent} to the CLI"


# ---------------------------------------------------------------- links


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (code marks too), spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.strip().lower()
    return "".join(ch for ch in text if ch.isalnum() or ch in " -_").replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of the page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for line in _split(page.read_text())[1]:
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _links(page: Path) -> list[str]:
    """Relative link and image targets outside code (fenced blocks and inline code)."""
    prose = "\n".join(re.sub(r"`[^`]*`", "", line) for line in _split(page.read_text())[1])
    return [target for target in _LINK.findall(prose) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file})")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


def test_every_doc_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in _links(ROOT / "README.md") if t.partition("#")[0]}
    unlinked = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not unlinked, f"pages in docs/ that README.md does not link (add them under More): {unlinked}"


# ---------------------------------------------------------------- the checks themselves


def test_slugs_follow_github():
    assert slug("Install and quickstart") == "install-and-quickstart"
    assert slug("name, seed, output_dir") == "name-seed-output_dir"
    assert slug("Throughput: 1 vs 2 parallel trials") == "throughput-1-vs-2-parallel-trials"
    assert slug("Early stopping (Ray)") == "early-stopping-ray"
    assert slug("a [link](x.md) here") == "a-link-here"


def test_commands_are_read_from_shell_blocks_only():
    text = "\n".join(
        [
            "```bash",
            "particle-nas export runs/x --pick knee -o k.yaml   # a comment",
            "# a comment line",
            "python3 -m venv .venv && particle-nas presets",
            "```",
            "```yaml",
            "particle-nas: not a command",
            "```",
            "```",
            "$ python bench/throughput.py --threads 1",
            "output line",
            "```",
        ]
    )
    commands = shown_commands(text)
    assert commands == ["particle-nas export runs/x --pick knee -o k.yaml", "python3 -m venv .venv && particle-nas presets", "python bench/throughput.py --threads 1"]
    assert [p for c in commands for p in particle_nas_parts(c)] == ["particle-nas export runs/x --pick knee -o k.yaml", "particle-nas presets"]
    assert signature("particle-nas export runs/x --pick 'flops<=2e7' -o k.yaml --format onnx --format torchscript") == "export --format --pick -o"
    assert signature("particle-nas search c.yaml --include-dashboard=false") == "search --include-dashboard"
