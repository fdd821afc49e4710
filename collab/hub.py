"""Models named by a Hugging Face Hub id ("user/repo"): offline first.

The local Hub cache is looked up first (`HF_HUB_CACHE` / `HF_HOME`, as every Hugging Face library
does); only when the snapshot is not there, and the user has not asked for offline mode
(`HF_HUB_OFFLINE=1`), is it downloaded. Nothing else in the package touches the network.
"""
from __future__ import annotations

import re
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(source: str) -> bool:
    """"user/repo" that is not a local path."""
    return bool(HUB_ID.match(source)) and not Path(source).exists()


def snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The local folder of a Hub model repository: the cached snapshot, else a download."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as e:
        raise ImportError(f"{repo_id!r} looks like a Hugging Face Hub id; loading one needs "
                          "`pip install huggingface_hub`") from e
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise FileNotFoundError(f"{repo_id!r} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) "
                                "and HF_HUB_OFFLINE is set, so it is not downloaded")
    return Path(snapshot_download(repo_id, revision=revision))
