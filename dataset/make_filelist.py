"""Write train/val file lists for data in the generic layout, pairing the files of the folders by name.

    python -m dataset.make_filelist --images data/images --depths data/depths [--intrinsics data/intrinsics] \
        --out dataset/splits/my_data [--val-fraction 0.1] [--seed 0]

Files pair by identical stem (images/001.jpg, depths/001.npy), or by the key left after removing each folder's
common prefix and suffix (images/image_001.jpg, depths/depth_001.npy, intrinsics/intrinsics_001.npy: key 001).
Unpaired files and ambiguous keys (two files of one folder for one key) are listed; paths holding spaces are
quoted (dataset/filelist.py). Exits non-zero when no pair is found, without writing anything.
"""

from __future__ import annotations

import argparse
import os
import random
from collections import defaultdict
from pathlib import Path

from .filelist import format_line
from .io import DEPTH_SUFFIXES, IMAGE_SUFFIXES

_SEPARATORS = "_-. "


def files_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    """{stem: paths} of the files in `folder` with one of `suffixes` (several paths: an ambiguous stem)."""
    if not folder.is_dir():
        raise SystemExit(f"{folder}: folder not found")
    found: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            found[path.stem].append(path)
    return dict(found)


def folder_affixes(stems: list[str]) -> tuple[str, str]:
    """(prefix, suffix) shared by every stem of a folder, each ending at a separator (_ - . space) or between a
    digit and a non-digit, and leaving a non-empty key: ['image_001', 'image_002'] -> ('image_', '')."""
    if not stems:
        return "", ""
    prefix = _common_start(stems)
    suffix = _common_start([stem[len(prefix) :][::-1] for stem in stems])[::-1]
    return prefix, suffix


def _common_start(strings: list[str]) -> str:
    """The longest common start of `strings`, shorter than each, cut back to a boundary (see folder_affixes)."""
    end = min(len(s) for s in strings) - 1
    first = strings[0]
    common = next((i for i in range(max(end, 0)) if any(s[i] != first[i] for s in strings)), max(end, 0))
    for i in range(common, 0, -1):
        before, after = first[i - 1], first[i]
        if before in _SEPARATORS or after in _SEPARATORS or before.isdigit() != after.isdigit():
            return first[:i]
    return ""


def keyed(files: dict[str, list[Path]], strip: bool) -> tuple[dict[str, list[Path]], str]:
    """(files by key, the prefix...suffix removed) of one folder; without `strip` the key is the stem."""
    if not strip:
        return files, ""
    prefix, suffix = folder_affixes(list(files))
    by_key: dict[str, list[Path]] = defaultdict(list)
    for stem, paths in files.items():
        by_key[stem[len(prefix) : len(stem) - len(suffix)]].extend(paths)
    return dict(by_key), f"{prefix}*{suffix}" if prefix or suffix else ""


def make_filelists(
    images: Path, depths: Path, out: Path, intrinsics: Path | None = None, val_fraction: float = 0.1, seed: int = 0
) -> dict[str, list]:
    """Pair images, depths (and intrinsics) by stem or shared key and write `out/train.txt` and `out/val.txt`.

    Keys are the stems, or (when that pairs more images with depths) what is left after each folder's common
    prefix and suffix. Paths are written relative to `out` when possible, quoted where needed. Images with a depth
    but no intrinsics file get a two-field line. With `val_fraction` > 0 and two or more pairs, val gets at
    least one. Returns {'train': lines, 'val': lines, 'unpaired': [paths], 'left_out': [why, per sample: an
    ambiguous key or a path that cannot be written], 'pairing': how the files were paired}. SystemExit (nothing
    written) when no image pairs with a depth.
    """
    folders = {"images": (images, IMAGE_SUFFIXES), "depths": (depths, DEPTH_SUFFIXES)}
    if intrinsics:
        folders["intrinsics"] = (intrinsics, (".npy", ".txt"))
    stems = {name: files_by_stem(folder, suffixes) for name, (folder, suffixes) in folders.items()}
    pairings = {strip: {name: keyed(files, strip) for name, files in stems.items()} for strip in (False, True)}
    count = {strip: len(set(p["images"][0]) & set(p["depths"][0])) for strip, p in pairings.items()}
    chosen = pairings[count[True] > count[False]]
    files = {name: by_key for name, (by_key, _) in chosen.items()}
    ambiguous = sorted({key for by_key in files.values() for key, paths in by_key.items() if len(paths) > 1})
    left_out = [
        f"key {key!r} is ambiguous: {', '.join(str(p) for by_key in files.values() for p in by_key.get(key, []))}"
        for key in ambiguous
    ]
    keys = sorted((set(files["images"]) & set(files["depths"])) - set(ambiguous))
    unpaired = sorted(
        str(paths[0]) for by_key in files.values() for key, paths in by_key.items() if key not in {*keys, *ambiguous}
    )

    def rel(path: Path) -> str:
        return os.path.relpath(path.resolve(), out.resolve())

    lines = []
    for key in keys:
        try:
            lines.append(format_line([rel(by_key[key][0]) for by_key in files.values() if key in by_key]))
        except ValueError as err:
            left_out.append(str(err))
    if not lines:
        raise SystemExit(_nothing_paired(folders, stems, left_out))
    random.Random(seed).shuffle(lines)
    n_val = min(max(round(len(lines) * val_fraction), 1 if val_fraction > 0 else 0), len(lines) - 1)
    splits = {"val": sorted(lines[:n_val]), "train": sorted(lines[n_val:])}
    out.mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        (out / f"{name}.txt").write_text("".join(f"{line}\n" for line in split))
    affixes = ", ".join(f"{name} {pattern}" for name, (_, pattern) in chosen.items() if pattern)
    pairing = f"paired by the key * of {affixes}" if affixes else "paired by identical stems"
    return {**splits, "unpaired": unpaired, "left_out": left_out, "pairing": pairing}


def _nothing_paired(folders: dict, stems: dict, left_out: list[str]) -> str:
    found = "; ".join(
        f"{len(stems[name])} file(s) in {folder}" + (f", e.g. {next(iter(stems[name]))!r}" if stems[name] else "")
        for name, (folder, _) in folders.items()
    )
    return (
        f"no image pairs with a depth map, nothing was written ({found}). Files pair by identical stem, or by the key "
        "left after each folder's common prefix and suffix (image_001.jpg, depth_001.npy: key 001)"
        + "".join(f"\n  {message}" for message in left_out)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--depths", type=Path, required=True)
    parser.add_argument("--intrinsics", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder for train.txt and val.txt")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = make_filelists(args.images, args.depths, args.out, args.intrinsics, args.val_fraction, args.seed)
    print(f"wrote {len(result['train'])} train and {len(result['val'])} val lines to {args.out} ({result['pairing']})")
    if result["unpaired"]:
        print(f"{len(result['unpaired'])} unpaired files (no partner with the same stem or key):")
        for path in result["unpaired"]:
            print(f"  {path}")
    if result["left_out"]:
        print(f"{len(result['left_out'])} sample(s) left out:")
        for message in result["left_out"]:
            print(f"  {message}")


if __name__ == "__main__":
    main()
