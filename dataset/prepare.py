"""Write the file lists of a named dataset by walking its own folder layout (a command-line module).

    python -m dataset.prepare hypersim --root DIR [--out dataset/splits/hypersim] [--val-fraction 0.05] [--split-csv F]
    python -m dataset.prepare vkitti2  --root DIR [--out dataset/splits/vkitti2] [--val-scenes Scene20 ...]
    python -m dataset.prepare kitti    --root DIR [--out dataset/splits/kitti] [--eigen-test F] [--depth-dir D]
    python -m dataset.prepare nyu      --root DIR [--out dataset/splits/nyu]

Each writes OUT/{train,val[,test]}.txt with `image depth intrinsics` lines whose data paths are relative to the
root (resolved with --data-root at training time) and whose intrinsics are `intrinsics/<file>.txt` (fx fy cx cy)
under OUT, found through the list's folder. Train and evaluate with `train.py --dataset NAME --data-root DIR`;
the lists are looked up in DIR/splits/ first, then dataset/splits/NAME/.
"""

from __future__ import annotations

import argparse
import inspect
from collections import defaultdict
from pathlib import Path

from .adapters import hypersim
from .io import DataError
from .registry import NAMED_DATASETS, SPLITS_DIR

SPLIT_NAMES = ("train", "val", "test")


def prepare_dataset(name: str, root: str | Path, out: str | Path, **options) -> dict:
    """Walk `root` with the adapter of `name` and write `out/<split>.txt` and `out/intrinsics/*.txt`.

    Args:
        name: one of NAMED_DATASETS.
        root: the dataset's root folder.
        out: folder for the lists (created); list files of splits the adapter does not produce are removed.
        options: the adapter's `scan` options (e.g. val_fraction, val_scenes, eigen_test, depth_dir).

    Returns:
        The adapter's scan result: {'splits': {split: lines}, 'intrinsics': {file: K}, 'skipped': [(path,
        reason)], optionally 'notes': [str]}.
    """
    root, out = Path(root), Path(out)
    if name not in NAMED_DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(NAMED_DATASETS)}")
    if not root.is_dir():
        raise DataError(f"{root}: {name} root folder not found")
    result = NAMED_DATASETS[name].scan(root, **options)
    (out / "intrinsics").mkdir(parents=True, exist_ok=True)
    for file_name, K in result["intrinsics"].items():
        fx, fy, cx, cy = (float(K[i, j]) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
        (out / "intrinsics" / file_name).write_text(f"{fx!r} {fy!r} {cx!r} {cy!r}\n")
    for split in SPLIT_NAMES:
        path = out / f"{split}.txt"
        if split in result["splits"]:
            path.write_text("".join(f"{line}\n" for line in result["splits"][split]))
        elif path.exists():
            path.unlink()  # a stale list from an earlier run with other options
    return result


def format_report(name: str, root: Path, out: Path, result: dict, examples: int = 3) -> str:
    """Human-readable summary of a `prepare_dataset` result: counts per split, skips grouped by reason."""
    counts = ", ".join(f"{split} {len(lines)}" for split, lines in result["splits"].items())
    lines = [f"{name}: wrote {counts} lines and {len(result['intrinsics'])} intrinsics file(s) to {out}"]
    lines += [f"warning: the {split} list is empty" for split, items in result["splits"].items() if not items]
    by_reason = defaultdict(list)
    for path, reason in result["skipped"]:
        by_reason[reason].append(path)
    if by_reason:
        lines.append(f"skipped {len(result['skipped'])}:")
        for reason, paths in sorted(by_reason.items(), key=lambda item: -len(item[1])):
            lines.append(f"  {len(paths)} x {reason}, e.g. {', '.join(paths[:examples])}")
    lines += [f"note: {note}" for note in result.get("notes", [])]
    if out.resolve() not in ((root / "splits").resolve(), (SPLITS_DIR / name).resolve()):
        lines.append(f"note: training looks for lists in {root / 'splits'} or {SPLITS_DIR / name}, not {out}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = parser.add_subparsers(dest="name", required=True, metavar="NAME")
    commands = {}
    for name, named in NAMED_DATASETS.items():
        summary = (inspect.getmodule(named.scan).__doc__ or "").splitlines()[0]
        command = names.add_parser(name, help=summary)
        command.add_argument("--root", type=Path, required=True, help="the dataset's root folder")
        command.add_argument("--out", type=Path, help=f"list folder (default {SPLITS_DIR / name})")
        commands[name] = command
    commands["hypersim"].add_argument("--val-fraction", type=float, default=0.05, help="share of scenes in val")
    commands["hypersim"].add_argument(
        "--split-csv", type=Path, help=f"official split (default ROOT/{hypersim.SPLIT_CSV})"
    )
    commands["vkitti2"].add_argument("--val-scenes", nargs="+", default=["Scene20"], help="scenes held out for val")
    commands["kitti"].add_argument("--eigen-test", type=Path, help="Eigen test file list: val/test = its frames")
    commands["kitti"].add_argument("--depth-dir", default="data_depth_annotated", help="annotated depth, under ROOT")
    args = parser.parse_args(argv)
    options = {key: value for key, value in vars(args).items() if key not in ("name", "root", "out")}
    if "val_scenes" in options:
        options["val_scenes"] = tuple(options["val_scenes"])
    out = args.out or SPLITS_DIR / args.name
    try:
        result = prepare_dataset(args.name, args.root, out, **options)
    except DataError as err:
        raise SystemExit(f"error: {err}") from None
    print(format_report(args.name, args.root, out, result))


if __name__ == "__main__":
    main()
