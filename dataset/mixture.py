"""A mixture of datasets: `--dataset kitti:1,nyu:1,my_data:2` or `--dataset mix.toml`, parsed and checked.

The command-line form lists datasets separated by commas, each a named dataset (hypersim, vkitti2, kitti, nyu), a
name under dataset/splits/ or a folder with splits/, with an optional `:weight` (default 1). The TOML form holds
one `[[dataset]]` table per dataset (TOML_KEYS); its relative paths are read from the TOML file's folder:

    [[dataset]]
    path = "data/my_rig"          # or: name = "nyu" with data_root = "/data/nyu"
    weight = 2                    # share of the samples drawn, whatever the dataset's size
    depth_scale = 0.001           # metres per stored unit (a number or "1/256"); named datasets decode their own
    min_depth = 0.1               # ground truth outside [min_depth, max_depth] m is not used in training
    max_depth = 10
    eval = "eigen_nyu"            # evaluation crop, or a table {crop = "garg", min_depth = 0.001, max_depth = 80}
    label = "rig"                 # default: the name, else the folder's base name

A single `--dataset X` is a mixture of one. Every problem of a spec is a MixtureError with one line that names the
entry, the value and the fix, raised before any file list is read. TOML is read with the standard library's
`tomllib` (Python 3.11+), on Python 3.10 with the `tomli` package (a requirement there).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .protocol import EVAL_CROPS
from .registry import NAMED_DATASETS, SPLITS_DIR
from .units import format_depth_scale, parse_depth_scale

TOML_KEYS = ("path", "name", "data_root", "weight", "label", "depth_scale", "min_depth", "max_depth", "eval")
EVAL_KEYS = ("crop", "min_depth", "max_depth")
# TensorBoard tags are `eval/<label>/<metric>`: a label is one path component, and `mean` is the average's.
_LABEL = re.compile(r"[A-Za-z0-9_.-]+")
RESERVED_LABELS = ("mean",)


class MixtureError(ValueError):
    """A mixture spec that cannot be used; the message is one line naming the entry, the value and the fix."""


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a mixture; None settings take the run's flags (--depth-scale, --min-depth, ...).

    Attributes:
        label: unique name in logs and metrics (`eval/<label>/abs_rel`).
        source: a named dataset, a name under dataset/splits/, or a folder (resolved, absolute).
        weight: share of the samples drawn, relative to the other datasets' weights (> 0).
        data_root: a named dataset's root folder (the one given to `python -m dataset.prepare`).
        depth_scale: metres per stored depth unit.
        min_depth, max_depth: training ground-truth range, metres.
        eval_crop, eval_min_depth, eval_max_depth: evaluation protocol (default: the dataset's declared one).
    """

    label: str
    source: str
    weight: float = 1.0
    data_root: str | None = None
    depth_scale: float | None = None
    min_depth: float | None = None
    max_depth: float | None = None
    eval_crop: str | None = None
    eval_min_depth: float | None = None
    eval_max_depth: float | None = None

    @property
    def named(self) -> bool:
        return self.source in NAMED_DATASETS


def parse_mixture(text: str, data_root: str | None = None, flag: str = "--dataset") -> list[DatasetSpec]:
    """The datasets of a `--dataset` value: a `.toml` file, else a comma-separated list of `source[:weight]`.

    Args:
        text: the flag's value.
        data_root: --data-root, the root of a named dataset in the command-line form.
        flag: the flag's name, for messages.

    Raises:
        MixtureError: one line naming the problem (see the module docstring).
    """
    if text.strip().lower().endswith(".toml"):
        specs = read_toml_mixture(Path(text.strip()), flag)
        _check_labels(specs, f"{flag} {text.strip()}")
    else:
        specs = _parse_list(text, data_root, flag)
        _check_labels(specs, flag)
    return specs


def _parse_list(text: str, data_root: str | None, flag: str) -> list[DatasetSpec]:
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise MixtureError(f"{flag} {text!r}: an empty mixture; give at least one dataset, e.g. {flag} kitti:1,nyu:1")
    if not all(items):
        raise MixtureError(f"{flag} {text!r}: an empty entry between commas; remove the extra comma")
    named = [_split_weight(item, flag)[0] for item in items]
    named = [source for source in named if source in NAMED_DATASETS]
    if len(named) > 1 and data_root:
        raise MixtureError(
            f"{flag}: {', '.join(named)} are named datasets with a data root each, and --data-root gives one; "
            "use a TOML file with `data_root` per dataset (docs/MIXTURES.md)"
        )
    specs = []
    for item in items:
        source, weight = _split_weight(item, flag)
        root = str(Path(data_root).resolve()) if data_root and source in NAMED_DATASETS else None
        source = _resolve_source(source, root, flag, Path.cwd())
        specs.append(DatasetSpec(_default_label(source), source, weight, root))
    return specs


def _split_weight(item: str, flag: str) -> tuple[str, float]:
    """`source[:weight]`; a tail holding a path separator belongs to the path (`C:\\data`), not a weight."""
    source, sep, tail = item.rpartition(":")
    if not sep or not source or "/" in tail or "\\" in tail:
        return item, 1.0
    return source, _weight(tail, f"{flag} entry {item!r}")


def _weight(value: object, where: str) -> float:
    not_a_number = MixtureError(f"{where}: weight {value!r} is not a number; use a positive number such as 1 or 2.5")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise not_a_number
    try:
        weight = float(value)
    except ValueError:
        raise not_a_number from None
    if not (math.isfinite(weight) and weight > 0):
        raise MixtureError(f"{where}: weight {value!r} must be a positive number (a share of the samples drawn)")
    return weight


def _resolve_source(source: str, data_root: str | None, where: str, base: Path, kind: str = "either") -> str:
    """A named dataset (its data root must exist), a name under dataset/splits/, or a folder (made absolute);
    `kind` 'path' takes folders only, 'name' names only, 'either' (the command line) a folder first."""
    if source in NAMED_DATASETS and kind != "path":
        if not data_root:
            raise MixtureError(
                f"{where}: {source} is a named dataset and needs its data root: --data-root DIR, or `data_root` in a "
                "TOML file (the folder given to `python -m dataset.prepare`)"
            )
        if not (base / data_root).is_dir():
            raise MixtureError(f"{where}: data root {data_root} of {source} is not a folder")
        return source
    folder = base / source
    if kind != "name" and folder.is_dir():
        return str(folder.resolve())
    if kind != "path" and re.fullmatch(r"[\w.-]+", source) and (SPLITS_DIR / source).is_dir():
        return source
    shown = "" if folder == Path(source) else f" ({folder})"
    named = ", ".join(sorted(NAMED_DATASETS))
    problem = {
        "path": f"is not a folder{shown}",
        "name": f"is not a named dataset ({named}) or a name under {SPLITS_DIR}",
        "either": f"is not a folder{shown}, a named dataset ({named}) or a name under {SPLITS_DIR}",
    }[kind]
    raise MixtureError(f"{where}: {source!r} {problem}")


def _default_label(source: str) -> str:
    return Path(source).name if Path(source).is_absolute() else source


def read_toml_mixture(path: Path, flag: str = "--dataset") -> list[DatasetSpec]:
    """The `[[dataset]]` tables of a TOML file (see the module docstring), checked."""
    if not path.is_file():
        raise MixtureError(f"{flag} {path}: no such TOML file")
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        try:
            import tomli as tomllib
        except ImportError:
            raise MixtureError(f"{flag} {path}: reading TOML on Python 3.10 needs `pip install tomli`") from None
    try:
        document = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise MixtureError(f"{flag} {path}: not valid TOML ({err})") from None
    unknown = sorted(set(document) - {"dataset"})
    if unknown:
        raise MixtureError(f"{path}: unknown top-level key {unknown[0]!r}; a mixture holds [[dataset]] tables only")
    tables = document.get("dataset", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise MixtureError(f"{path}: `dataset` must be tables written [[dataset]], one per dataset")
    if not tables:
        raise MixtureError(f"{path}: an empty mixture; add one [[dataset]] table per dataset")
    return [_toml_spec(table, f"{path} [[dataset]] #{i}", path.parent) for i, table in enumerate(tables, start=1)]


def _toml_spec(table: dict, where: str, base: Path) -> DatasetSpec:
    unknown = sorted(set(table) - set(TOML_KEYS))
    if unknown:
        raise MixtureError(f"{where}: unknown key {unknown[0]!r}; the known keys are {', '.join(TOML_KEYS)}")
    if ("path" in table) == ("name" in table):
        raise MixtureError(f"{where}: give exactly one of `path` (a folder) or `name` (a named or listed dataset)")
    source = _text(table, "path", where) or _text(table, "name", where)
    data_root = _text(table, "data_root", where)
    if data_root is not None and source not in NAMED_DATASETS:
        raise MixtureError(f"{where}: `data_root` is for named datasets ({', '.join(sorted(NAMED_DATASETS))})")
    if "path" in table and source in NAMED_DATASETS and not (base / source).is_dir():
        raise MixtureError(f"{where}: {source} is a named dataset: write name = {source!r} and its data_root")
    resolved = _resolve_source(source, data_root, where, base, "path" if "path" in table else "name")
    depth_scale = table.get("depth_scale")
    if depth_scale is not None:
        if resolved in NAMED_DATASETS:
            raise MixtureError(f"{where}: {resolved} decodes its own depth units; remove depth_scale")
        depth_scale = _depth_scale(depth_scale, where)
    eval_crop, eval_min, eval_max = _eval(table.get("eval"), where)
    spec = DatasetSpec(
        label=_text(table, "label", where) or _default_label(resolved),
        source=resolved,
        weight=_weight(table.get("weight", 1.0), where),
        data_root=str((base / data_root).resolve()) if data_root else None,
        depth_scale=depth_scale,
        min_depth=_depth(table, "min_depth", where),
        max_depth=_depth(table, "max_depth", where),
        eval_crop=eval_crop,
        eval_min_depth=eval_min,
        eval_max_depth=eval_max,
    )
    _check_range(spec.min_depth, spec.max_depth, where, "min_depth", "max_depth")
    _check_range(spec.eval_min_depth, spec.eval_max_depth, where, "eval min_depth", "eval max_depth")
    return spec


def _text(table: dict, key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise MixtureError(f"{where}: {key} = {value!r} must be a non-empty string")
    return value


def _depth(table: dict, key: str, where: str) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise MixtureError(f"{where}: {key} = {value!r} must be a positive number of metres")
    return float(value)


def _depth_scale(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise MixtureError(f'{where}: depth_scale = {value!r} must be a number or a fraction such as "1/256"')
    try:
        return parse_depth_scale(str(value))
    except argparse.ArgumentTypeError as err:
        raise MixtureError(f"{where}: depth_scale: {err}") from None


def _eval(value: object, where: str) -> tuple[str | None, float | None, float | None]:
    """(crop, min_depth, max_depth) of an `eval` entry: a crop name or a table of EVAL_KEYS."""
    if value is None:
        return None, None, None
    table = {"crop": value} if isinstance(value, str) else value
    if not isinstance(table, dict):
        raise MixtureError(f"{where}: eval = {value!r} must be a crop name or a table {{crop = ..., max_depth = ...}}")
    unknown = sorted(set(table) - set(EVAL_KEYS))
    if unknown:
        raise MixtureError(f"{where}: unknown eval key {unknown[0]!r}; the known keys are {', '.join(EVAL_KEYS)}")
    crop = table.get("crop")
    if crop is not None and crop not in EVAL_CROPS:
        raise MixtureError(f"{where}: eval crop {crop!r} is not one of {', '.join(EVAL_CROPS)}")
    return crop, _depth(table, "min_depth", f"{where} eval"), _depth(table, "max_depth", f"{where} eval")


def _check_range(low: float | None, high: float | None, where: str, low_name: str, high_name: str) -> None:
    if low is not None and high is not None and low >= high:
        raise MixtureError(f"{where}: {low_name} {low:g} m is not below {high_name} {high:g} m")


def _check_labels(specs: list[DatasetSpec], where: str) -> None:
    seen: dict[str, str] = {}
    for spec in specs:
        if not _LABEL.fullmatch(spec.label) or spec.label in RESERVED_LABELS:
            raise MixtureError(
                f"{where}: label {spec.label!r} of {spec.source} must be letters, digits, '_', '-', '.' and not "
                f"{' or '.join(RESERVED_LABELS)}; set `label` in a TOML file"
            )
        if spec.label in seen:
            raise MixtureError(
                f"{where}: two datasets are labelled {spec.label!r} ({seen[spec.label]} and {spec.source}); labels "
                "must be unique: give each a `label` in a TOML file (docs/MIXTURES.md)"
            )
        seen[spec.label] = spec.source


def check_disjoint(train: list[DatasetSpec], held_out: list[DatasetSpec]) -> None:
    """--eval-datasets labels must differ from the training mixture's (their metrics share `eval/<label>/`)."""
    shared = sorted({s.label for s in train} & {s.label for s in held_out})
    if shared:
        raise MixtureError(
            f"--eval-datasets: label {shared[0]!r} is also a training dataset's; evaluation datasets need their own "
            "labels (a training dataset's validation split is evaluated anyway)"
        )


def mixture_record(specs: list[DatasetSpec]) -> list[dict]:
    """The mixture as plain values (config.json, the checkpoint's settings)."""
    return [asdict(spec) for spec in specs]


def mixture_differences(saved: list[dict], now: list[dict]) -> list[str]:
    """What changed between two `mixture_record`s, one phrase per change (new or missing label, changed weight,
    source or setting); empty when they are the same."""
    before, after = {d["label"]: d for d in saved}, {d["label"]: d for d in now}
    changes = [f"new dataset {label!r}" for label in after if label not in before]
    changes += [f"dataset {label!r} missing" for label in before if label not in after]
    for label in (label for label in after if label in before):
        for key in (f.name for f in fields(DatasetSpec) if f.name != "label"):
            old, new = before[label].get(key), after[label].get(key)
            if old != new:
                changes.append(f"{key} of {label!r} {_shown(key, old)} -> {_shown(key, new)}")
    return changes


def _shown(key: str, value: object) -> str:
    if value is None:
        return "(default)"
    if key == "depth_scale":
        return format_depth_scale(value)
    return f"{value:g}" if isinstance(value, float) else str(value)
