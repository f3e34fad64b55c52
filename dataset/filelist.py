"""File lists: one sample per line, `image depth [intrinsics]`, and the cheap checks run on every line.

Format: fields are separated by spaces or tabs; a field that holds a space or a tab, or starts with `#` or a
quote, is written between double quotes (or single quotes when it holds a double quote). Nothing is escaped,
so Windows paths keep their backslashes and lists without quotes read as before. Blank lines and lines
starting with `#` are skipped.

    images/a.png depths/a.npy intrinsics/a.npy
    "my photos/b 1.jpg" "depth maps/b 1.png"
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_anything_v2.geometry import intrinsics_problem

from .headers import ImageHeader, read_image_header
from .io import DataError, read_intrinsics
from .progress import progress

logger = logging.getLogger(__name__)

EMPTY_LIST = "the file list is empty (no 'image depth [intrinsics]' lines)"
# A field: "double quoted", 'single quoted' or a run without spaces that does not start with a quote, followed by a
# space or the end of the line.
_FIELD = re.compile(r"""\s*(?:"([^"]*)"|'([^']*)'|([^\s"'][^\s]*))(?=\s|$)""")


@dataclass
class ListEntry:
    """One usable line of a file list: its number, the resolved paths, K (pixels of the image) and the size the
    image decodes to (from its header)."""

    line: int
    image: Path
    depth: Path
    intrinsics: np.ndarray | None
    image_size: ImageHeader | None = None


def split_line(text: str) -> list[str]:
    """The fields of one list line (see the module docstring); ValueError names an unbalanced quote."""
    fields, position, text = [], 0, text.rstrip()
    while position < len(text):
        match = _FIELD.match(text, position)
        if match is None:
            raise ValueError(
                f"cannot split at column {position + 1}: quote a path holding spaces or quotes as a whole, "
                f'"like this" (nothing is escaped inside quotes)'
            )
        fields.append(next(group for group in match.groups() if group is not None))
        position = match.end()
    return fields


def format_line(fields: list[str]) -> str:
    """One list line holding `fields`, quoted where needed, such that `split_line` returns them.

    Raises:
        ValueError: a field is empty, holds a line break, or needs quotes and holds both kinds.
    """
    written = []
    for field in fields:
        if not field or "\n" in field or "\r" in field:
            raise ValueError(f"{field!r} cannot be written in a file list (empty or holding a line break)")
        if not (re.search(r"\s", field) or field[0] in "#\"'"):
            written.append(field)
        elif '"' not in field:
            written.append(f'"{field}"')
        elif "'" not in field:
            written.append(f"'{field}'")
        else:
            raise ValueError(f"{field!r} cannot be written in a file list (spaces or a leading quote, and both quotes)")
    return " ".join(written)


def resolve_path(raw: str, list_path: Path, root: Path | None = None) -> Path | None:
    """A list entry's path: absolute, else relative to `root` (a named dataset's --data-root), the working
    directory, the list's folder, or its parent."""
    path = Path(raw)
    if path.is_absolute():
        return path if path.exists() else None
    for base in (*([root] if root else []), Path.cwd(), list_path.parent, list_path.parent.parent):
        if (base / path).exists():
            return base / path
    return None


def read_filelist(
    list_path: str | Path, root: str | Path | None = None, allow_offcentre: bool = False
) -> tuple[list[ListEntry], list[str]]:
    """Read a list and run the cheap checks on every line: (usable entries, one message per bad line).

    Checks: the line splits into 2 or 3 fields; the files exist (see `resolve_path`); the image header (type,
    size); the intrinsics are readable, valid and plausible for the image's size (`intrinsics_problem`: pixels,
    not millimetres or normalised, no skew, principal point near the image centre unless `allow_offcentre`).
    Each message starts with `<list>:<line>:` and names the path and the problem.
    """
    list_path = Path(list_path)
    if not list_path.is_file():
        raise DataError(f"{list_path}: file list not found")
    root = Path(root) if root else None
    entries, problems = [], []
    known_K: dict[Path, np.ndarray] = {}  # one K file is often shared by every frame of a camera
    lines = list_path.read_text().splitlines()
    for number, text in progress(enumerate(lines, start=1), len(lines), f"reading {list_path}", "line", logger):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            entries.append(_entry(text, number, list_path, root, known_K, allow_offcentre))
        except DataError as err:
            problems.append(f"{list_path}:{number}: {err}")
    return entries, problems


def parse_filelist(list_path: str | Path, root: str | Path | None = None) -> list[ListEntry]:
    """The entries of a list (see `read_filelist`); one DataError lists every bad line, or says it is empty."""
    entries, problems = read_filelist(list_path, root)
    if problems:
        raise bad_lines(list_path, problems)
    if not entries:
        raise DataError(f"{list_path}: {EMPTY_LIST}")
    return entries


def bad_lines(list_path: str | Path, problems: list[str]) -> DataError:
    """One DataError listing every problem (one per bad line) of a list."""
    return DataError(f"{len(problems)} bad line(s) in {list_path}:\n  " + "\n  ".join(problems))


def _entry(
    text: str, number: int, list_path: Path, root: Path | None, known_K: dict[Path, np.ndarray], allow_offcentre: bool
) -> ListEntry:
    try:
        fields = split_line(text)
    except ValueError as err:
        raise DataError(f"{err}: {text.strip()!r}") from None
    if len(fields) not in (2, 3):
        raise DataError(
            f"expected 'image depth [intrinsics]', found {len(fields)} fields: {text.strip()!r} "
            '(quote paths that hold spaces: "my images/a.png")'
        )
    paths = [resolve_path(field, list_path, root) for field in fields]
    missing = [field for field, path in zip(fields, paths) if path is None]
    if missing:
        raise DataError("; ".join(f"{field}: file not found" for field in missing))
    try:
        size = read_image_header(paths[0])
    except (DataError, OSError) as err:
        raise DataError(f"{paths[0]}: {err}") from None
    K = None
    if len(paths) == 3:
        if paths[2] not in known_K:
            known_K[paths[2]] = read_intrinsics(paths[2])
        K = known_K[paths[2]]
        problem = intrinsics_problem(K, size.width, size.height, allow_offcentre)
        if problem:
            raise DataError(f"{paths[2]}: {problem} (image {paths[0]} is {size.width}x{size.height})")
    return ListEntry(number, paths[0], paths[1], K, size)
