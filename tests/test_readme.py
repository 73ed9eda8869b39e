"""The README's Python examples run as written.

```python blocks are complete programs and run here; ```py blocks are fragments (they need a
mesh or a checkpoint path) shown for reading, and the code they show is tested elsewhere.
"""

import contextlib
import importlib.util
import io
import re

from helpers import REPO, require


def _section(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def test_readme_python_blocks_run():
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "README has no python example"
    for block in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README.md", "exec"), {})
        loss = float(re.search(r"loss (\S+)", out.getvalue()).group(1))
        assert loss < 0.05  # the example trains: 200 steps take the loss from 1.0 to near 0


def test_the_two_commands_paste_into_a_fresh_clone():
    section = _section("The two commands")
    commands = re.findall(r"```bash\n(.*?)\n```", section, flags=re.DOTALL)
    assert len(commands) == 2, commands
    main_job, tests = commands
    fresh_venv = "python3 -m venv .venv && . .venv/bin/activate && "
    for command in commands:
        assert "\n" not in command and command.startswith(fresh_venv), command
    assert main_job.endswith('pip install -e ".[examples]" && python examples/quickstart.py')
    assert tests.endswith("bash tests/run.sh")
    assert (REPO / "examples" / "quickstart.py").is_file() and (REPO / "tests" / "run.sh").is_file()
    assert re.search(r"^examples = \[", (REPO / "pyproject.toml").read_text(), flags=re.M)


def test_the_quickstart_output_shown_names_its_lr_and_c2():
    for module in ("flax", "sklearn", "tqdm"):
        require(module, "for the quickstart")
    spec = importlib.util.spec_from_file_location("quickstart", REPO / "examples" / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    defaults = quickstart.parse_args([])
    line = quickstart.setup_line(defaults)
    assert f"lr {defaults.lr:g}" in line and f"c2 {defaults.c2:g}" in line
    assert f"\n{line}\n" in _section("The two commands")
