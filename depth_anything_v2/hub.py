"""Checkpoint names of the Hugging Face hub: a repository id resolved to its files in the local hub cache.

    depth-anything/Depth-Anything-V2-Small                    -> depth_anything_v2_vits.pth (relative)
    depth-anything/Depth-Anything-V2-Metric-Hypersim-Large    -> depth_anything_v2_metric_hypersim_vitl.pth (20 m)
    depth-anything/Depth-Anything-V2-Metric-VKITTI-Base       -> depth_anything_v2_metric_vkitti_vitb.pth (80 m)
    depth-anything/Depth-Anything-V2-Small-hf, any other org/name -> a model folder (config.json, model.safetensors)
    org/name/path/file.pth                                    -> that file of that repository

Files go into huggingface_hub's standard cache (HF_HUB_CACHE, ~/.cache/huggingface/hub by default) with its
progress bar. Offline (HF_HUB_OFFLINE=1), or when the hub cannot be reached, a cached name loads from the cache and
one that is not cached fails at once naming the `hf download` command that fetches it. A local file or folder of
the same name always wins. huggingface_hub is imported only when a hub name is resolved.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .checkpoint_file import CheckpointError
from .configs import OFFICIAL_METRIC_RANGES, OFFICIAL_SIZES

logger = logging.getLogger(__name__)

OFFICIAL_ORG = "depth-anything"
ENCODER_BY_SIZE = {size: encoder for encoder, size in OFFICIAL_SIZES.items()}
# Repository spelling -> (file-name key, metric range in metres).
METRIC_DATASETS = {"Hypersim": ("hypersim", OFFICIAL_METRIC_RANGES["hypersim"]),
                   "VKITTI": ("vkitti", OFFICIAL_METRIC_RANGES["vkitti"])}  # fmt: skip
_RELATIVE_REPO = re.compile(r"Depth-Anything-V2-(Small|Base|Large|Giant)")
_METRIC_REPO = re.compile(r"Depth-Anything-V2-Metric-(Hypersim|VKITTI)-(Small|Base|Large)")
# The published repositories, for "did you mean" on a misspelt official name.
KNOWN_REPOS = [
    *(f"Depth-Anything-V2-{size}{hf}" for size in ("Small", "Base", "Large") for hf in ("", "-hf")),
    *(f"Depth-Anything-V2-Metric-{d}-{size}" for d in METRIC_DATASETS for size in ("Small", "Base", "Large")),
    *(f"Depth-Anything-V2-Metric-{d}-{size}-hf" for d in ("Indoor", "Outdoor") for size in ("Small", "Base", "Large")),
]
FOLDER_FILES = ("config.json", "model.safetensors")
_FOLDER_EXTRAS = ("README.md", "preprocessor_config.json")
_WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(/[\w.-]+)*")


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """Where a checkpoint name points on this machine.

    Attributes:
        path: a local file, or a folder (ours or transformers' format).
        repo_id: the hub repository it came from, None for a local path.
        model_config: what the repository's documentation says of its model (encoder, max_depth in metres) for
            the official .pth repositories, whose files do not say it; None otherwise.
    """

    path: Path
    repo_id: str | None = None
    model_config: dict | None = None


@dataclass(frozen=True)
class HubName:
    """A hub checkpoint name: the repository and the file in it (None: a model folder)."""

    repo_id: str
    filename: str | None
    model_config: dict | None


def parse_hub_name(name: str) -> HubName | None:
    """The repository and file a hub name stands for (see the module docstring), or None for a local path.

    A name is local when it starts with '.', '/' or '~', when its first folder exists here, or when it has two parts
    and ends in a weights suffix (`checkpoints/model.pth`).
    """
    if not _HUB_NAME.fullmatch(name) or Path(name.split("/")[0]).is_dir():
        return None
    parts = name.split("/")
    if len(parts) == 2 and name.endswith(_WEIGHT_SUFFIXES):
        return None
    org, repo, filename = parts[0], parts[1], "/".join(parts[2:]) or None
    repo_id = f"{org}/{repo}"
    if org.lower() != OFFICIAL_ORG:
        return HubName(repo_id, filename, None)
    if match := _RELATIVE_REPO.fullmatch(repo):
        encoder = ENCODER_BY_SIZE[match.group(1)]
        official = f"depth_anything_v2_{encoder}.pth"
        config = {"encoder": encoder, "max_depth": None}
    elif match := _METRIC_REPO.fullmatch(repo):
        dataset, max_depth = METRIC_DATASETS[match.group(1)]
        encoder = ENCODER_BY_SIZE[match.group(2)]
        official = f"depth_anything_v2_metric_{dataset}_{encoder}.pth"
        config = {"encoder": encoder, "max_depth": max_depth}
    else:
        return HubName(repo_id, filename, None)
    if filename not in (None, official):
        return HubName(repo_id, filename, None)
    return HubName(repo_id, official, config)


def resolve_checkpoint(
    name: str | os.PathLike, revision: str | None = None, cache_dir: str | os.PathLike | None = None
) -> ResolvedCheckpoint:
    """The local file or folder of a checkpoint name: a local path as it is, a hub name from the hub cache
    (downloaded into it when not cached and the hub can be reached).

    Args:
        name: a local file or folder, or a hub name (module docstring).
        revision: branch, tag or commit of the hub repository (default: main).
        cache_dir: hub cache folder (default: huggingface_hub's, HF_HUB_CACHE).

    Raises:
        CheckpointError: no such local path, or a hub name that is not cached and cannot be fetched, with the
            `hf download` command that fetches it.
    """
    path = Path(name)
    if path.exists():
        return ResolvedCheckpoint(path)
    hub = parse_hub_name(str(name))
    if hub is None:
        raise CheckpointError(f"{name}: checkpoint file not found")
    return ResolvedCheckpoint(_download(hub, revision, cache_dir), hub.repo_id, hub.model_config)


def _hub_reachable() -> bool:
    """Whether the hub's host answers within 3 s: without a network huggingface_hub retries for about 20 s before
    it falls back to the cache. A configured proxy is trusted to know better."""
    from huggingface_hub import constants

    if any(os.environ.get(var) for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=3).close()
    except OSError:
        return False
    return True


def _download(hub: HubName, revision: str | None, cache_dir: str | os.PathLike | None) -> Path:
    from huggingface_hub import constants, hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = constants.HF_HUB_OFFLINE
    local_only = offline or not _hub_reachable()
    files = [hub.filename] if hub.filename else list(FOLDER_FILES)
    where = hub.repo_id + (f" (revision {revision})" if revision else "")
    options = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_only)
    try:
        if hub.filename:
            path = Path(hf_hub_download(hub.repo_id, hub.filename, **options))
        else:
            path = Path(snapshot_download(hub.repo_id, allow_patterns=[*FOLDER_FILES, *_FOLDER_EXTRAS], **options))
            missing = [f for f in FOLDER_FILES if not (path / f).is_file()]
            if missing and local_only:
                raise LocalEntryNotFoundError(f"{path} lacks {missing}")
            if missing:
                raise CheckpointError(
                    f"{where} has no {' and '.join(missing)}, so it is no model folder; name its weights file as "
                    f"{hub.repo_id}/FILE"
                )
    except LocalEntryNotFoundError:
        why = "downloads are off (HF_HUB_OFFLINE=1)" if offline else "the hub cannot be reached (no network?)"
        command = f"hf download {hub.repo_id} {' '.join(files)}" + (f" --revision {revision}" if revision else "")
        command += f" --cache-dir {cache_dir}" if cache_dir else ""
        raise CheckpointError(
            f"{where}: {' and '.join(files)} not in the Hugging Face cache ({cache_dir or constants.HF_HUB_CACHE}) "
            f"and {why}; fetch {'it' if len(files) == 1 else 'them'} with `{command}`{_suggestion(hub.repo_id)}"
        ) from None
    except RepositoryNotFoundError:
        raise CheckpointError(
            f"{hub.repo_id}: no such model repository on the Hugging Face hub (or it is private or gated: log in "
            f"with `hf auth login`){_suggestion(hub.repo_id)}"
        ) from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{hub.repo_id}: no revision {revision!r} on the hub") from None
    except EntryNotFoundError:
        raise CheckpointError(
            f"{where} has no file {hub.filename}; name one of its weights files, org/name/FILE"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:  # ValueError: huggingface_hub's check of the name
        raise CheckpointError(f"{where}: cannot fetch it ({str(err).splitlines()[0]})") from None
    logger.info("%s: from the Hugging Face cache, %s", hub.repo_id, path)
    return path


def _suggestion(repo_id: str) -> str:
    org, _, repo = repo_id.partition("/")
    if org.lower() != OFFICIAL_ORG or repo in KNOWN_REPOS:
        return ""
    close = difflib.get_close_matches(repo, KNOWN_REPOS, n=1, cutoff=0.6)
    return f" (did you mean {OFFICIAL_ORG}/{close[0]}?)" if close else ""
