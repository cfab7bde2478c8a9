"""docs/how_a_step_runs.md names real functions: every linked ``module.name`` exists, and
lives in the file its link points to."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "how_a_step_runs.md"
LINK = re.compile(r"\[`([\w.]+)`\]\(\.\./([\w/]+\.py)\)")


def resolve(dotted: str):
    """The object ``dotted`` names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def links():
    found = LINK.findall(GUIDE.read_text())
    assert len(found) >= 30, "the guide links the functions it walks through"
    return sorted(set(found))


@pytest.mark.parametrize(("dotted", "path"), links())
def test_linked_name_exists_in_the_linked_file(dotted, path):
    obj = resolve(dotted)
    source = inspect.getsourcefile(obj if not isinstance(obj, property) else obj.fget)
    assert Path(source).resolve() == (ROOT / path).resolve(), (dotted, source)


def test_every_link_is_checked():
    # A link in another form would escape the test above.
    text = GUIDE.read_text()
    assert len(re.findall(r"\]\(\.\./", text)) == len(LINK.findall(text))
