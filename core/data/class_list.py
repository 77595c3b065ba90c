"""``data.classes``: which class folders of an imagefolder/tarball tree to use.

The setting is a list of class names, a text file of them (one per line, ``#`` starts a comment)
or the name of a list shipped in ``core/data/classes/`` (``imagenet100``). Whatever the form and
order, the selection is the sorted, de-duplicated set of names: labels then follow sorted order,
as torchvision's ``ImageFolder`` numbers the folders of a tree that holds only those classes.

Failure modes: a file that is missing or unreadable, or a list with no names in it, raises
DataError naming the file; names the tree does not hold are reported by ``folders.plan_tree``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from core.data.errors import DataError

_PACKAGE_DIR = "classes"


def builtin_lists() -> list[str]:
    """Names of the class lists shipped with the package (``imagenet100``)."""
    folder = resources.files("core.data") / _PACKAGE_DIR
    return sorted(p.name.removesuffix(".txt") for p in folder.iterdir() if p.name.endswith(".txt"))


def parse_class_file(text: str) -> list[str]:
    """Class names from a file's text: one per line, blank lines and ``#`` comments ignored."""
    return [name for line in text.splitlines() if (name := line.split("#", 1)[0].strip())]


def _read_list(value: str) -> list[str]:
    if value in builtin_lists():
        text = (resources.files("core.data") / _PACKAGE_DIR / f"{value}.txt").read_text()
        return parse_class_file(text)
    path = Path(value).expanduser()
    try:
        names = parse_class_file(path.read_text())
    except OSError as exc:
        raise DataError(
            f"data.classes {value}: {'does not exist' if not path.exists() else f'cannot read ({exc.strerror})'} "
            f"(expected a built-in list: {', '.join(builtin_lists())}; a text file with one class name per "
            "line; or a list such as [n01440764, n01443537])"
        ) from None
    if not names:
        raise DataError(f"data.classes {path}: holds no class names (one per line, # starts a comment)")
    return names


def selected_classes(value: list[str] | str | None) -> list[str] | None:
    """The sorted class names ``data.classes`` selects, or None for every class of the tree."""
    if value is None:
        return None
    names = _read_list(value) if isinstance(value, str) else [c.strip() for c in value]
    return sorted(set(names))
