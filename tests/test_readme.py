"""The README's Python examples run as written.

```python blocks are complete programs and run here; ```py blocks are fragments (they need a
mesh or a checkpoint path) shown for reading, and the code they show is tested elsewhere.
"""

import contextlib
import io
import re

from helpers import REPO


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
