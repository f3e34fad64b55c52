"""Write train/val file lists for data in the generic layout, pairing files by stem.

    python -m dataset.make_filelist --images data/images --depths data/depths [--intrinsics data/intrinsics] \
        --out dataset/splits/my_data [--val-fraction 0.1] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

from .io import DEPTH_SUFFIXES, IMAGE_SUFFIXES


def files_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """{stem: path} of the files in `folder` with one of `suffixes`; a stem found twice is an error."""
    if not folder.is_dir():
        raise SystemExit(f"{folder}: folder not found")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in suffixes:
            if path.stem in found:
                raise SystemExit(
                    f"{folder}: two files share the stem {path.stem!r}: {found[path.stem].name}, {path.name}"
                )
            found[path.stem] = path
    return found


def make_filelists(
    images: Path, depths: Path, out: Path, intrinsics: Path | None = None, val_fraction: float = 0.1, seed: int = 0
) -> dict[str, list]:
    """Pair images, depths (and intrinsics) by stem and write `out/train.txt` and `out/val.txt`.

    Paths are written relative to `out` when possible, else absolute. Images with a depth but no intrinsics
    file get a two-field line. Returns {'train': lines, 'val': lines, 'unpaired': [paths]}.
    """
    image_files = files_by_stem(images, IMAGE_SUFFIXES)
    depth_files = files_by_stem(depths, DEPTH_SUFFIXES)
    k_files = files_by_stem(intrinsics, (".npy", ".txt")) if intrinsics else {}
    stems = sorted(set(image_files) & set(depth_files))
    unpaired = sorted(str(image_files.get(s) or depth_files.get(s)) for s in set(image_files) ^ set(depth_files))
    unpaired += sorted(str(k_files[s]) for s in set(k_files) - set(stems))
    out.mkdir(parents=True, exist_ok=True)

    def rel(path: Path) -> str:
        return os.path.relpath(path.resolve(), out.resolve())

    lines = [" ".join(rel(p) for p in (image_files[s], depth_files[s], k_files.get(s)) if p is not None) for s in stems]
    random.Random(seed).shuffle(lines)
    n_val = round(len(lines) * val_fraction) if len(lines) > 1 else 0
    splits = {"val": sorted(lines[:n_val]), "train": sorted(lines[n_val:])}
    for name, split in splits.items():
        (out / f"{name}.txt").write_text("".join(f"{line}\n" for line in split))
    return {**splits, "unpaired": unpaired}


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
    print(f"wrote {len(result['train'])} train and {len(result['val'])} val lines to {args.out}")
    if result["unpaired"]:
        print(f"{len(result['unpaired'])} unpaired files (no partner with the same stem):")
        for path in result["unpaired"]:
            print(f"  {path}")


if __name__ == "__main__":
    main()
