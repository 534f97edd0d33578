"""Where a model's files are: a local folder or file, or a hub id resolved through huggingface_hub.

A hub id (``facebook/convnext-tiny-224``, ``timm/convnext_tiny.fb_in1k``, timm's
``hf-hub:timm/convnext_tiny.fb_in1k``, any of them with ``@revision``) is resolved the way
transformers resolves it: ``huggingface_hub.hf_hub_download`` one file at a time into the standard
cache (``HF_HOME``, ``HF_HUB_CACHE``, ``cache_dir=``), honouring ``HF_HUB_OFFLINE``, ``HF_TOKEN``,
``local_files_only=`` and ``token=``. :func:`model_folder` fetches only what a load needs
(config.json, preprocessor_config.json when the repo has one, and the first weights file of the
caller's preference order that the repo has, with its shards) and returns the cache's snapshot
folder, which is then read like any local hub-layout folder.

Every failure is one :class:`HubError` line naming the repo and saying what to do: offline and not
cached, no such repo or revision, gated or private (the token), a missing file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

#: timm writes hub ids as ``hf-hub:org/name`` (``hf_hub:`` is accepted by timm too).
HUB_PREFIXES = ("hf-hub:", "hf_hub:")
CONFIG_NAME = "config.json"
PREPROCESSOR_NAME = "preprocessor_config.json"
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_FILE_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".h5", ".hdf5", ".keras", ".json", ".npz")
_LOGIN_HINT = "log in with `hf auth login`, set HF_TOKEN, or pass token="


class HubError(OSError):
    """A hub id could not be resolved; the one-line message names the repo and the remedy."""


@dataclass(frozen=True)
class HubOptions:
    """The hub arguments of every ``from_pretrained`` (the names and meanings of transformers')."""

    revision: Optional[str] = None
    cache_dir: Union[str, os.PathLike, None] = None
    local_files_only: bool = False
    token: Union[str, bool, None] = None

    @classmethod
    def pop_from(cls, kwargs: dict[str, Any]) -> "HubOptions":
        """Take the hub arguments out of a ``**kwargs`` dict (the rest are config/processor overrides)."""
        return cls(**{k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only", "token")
                      if k in kwargs})


@dataclass(frozen=True)
class HubId:
    repo_id: str
    revision: Optional[str] = None

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


def parse_hub_id(name: Union[str, os.PathLike]) -> Optional[HubId]:
    """The hub id ``name`` stands for, or None when it is a local path or cannot be an id.

    An existing local path always wins (as in transformers). Accepted: ``org/name``, ``name``,
    ``hf-hub:org/name`` and any of these with ``@revision`` (timm's spelling of a revision).
    """
    if not isinstance(name, str) or Path(name).exists():
        return None
    text = name
    for prefix in HUB_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    repo_id, _, revision = text.partition("@")
    if not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id or len(repo_id) > 96:
        return None
    if repo_id.lower().endswith(_FILE_SUFFIXES):
        return None  # a missing file (model.safetensors, ckpt.pth), not a repo
    return HubId(repo_id, revision or None)


def _merge_revision(hub_id: HubId, options: HubOptions) -> HubOptions:
    if hub_id.revision and options.revision and hub_id.revision != options.revision:
        raise ValueError(f"{hub_id}: the id names revision {hub_id.revision!r} but revision={options.revision!r} "
                         f"was given")
    return replace(options, revision=hub_id.revision or options.revision)


def _offline_mode() -> bool:
    from huggingface_hub import constants

    check = getattr(constants, "is_offline_mode", None)
    return bool(check() if callable(check) else constants.HF_HUB_OFFLINE)


def _cache_dir(options: HubOptions) -> str:
    from huggingface_hub import constants

    return str(options.cache_dir or constants.HF_HUB_CACHE)


def _where(repo: str, options: HubOptions) -> str:
    return repo + (f" (revision {options.revision})" if options.revision else "")


class _Missing(Exception):
    """The file is not available: ``offline`` when it is only absent from the local cache."""

    def __init__(self, offline: bool):
        self.offline = offline


def _download(repo: str, filename: str, options: HubOptions) -> Path:
    """``hf_hub_download`` with its errors turned into HubError lines; _Missing for an absent file."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import (
            EntryNotFoundError, GatedRepoError, HfHubHTTPError, HFValidationError, LocalEntryNotFoundError,
            RepositoryNotFoundError, RevisionNotFoundError,
        )
    except ImportError:
        raise HubError(f"{repo}: no such local folder, and hub ids need huggingface_hub "
                       f"(pip install huggingface_hub)") from None
    where = _where(repo, options)
    try:
        return Path(hf_hub_download(repo, filename, revision=options.revision, cache_dir=options.cache_dir,
                                    local_files_only=options.local_files_only, token=options.token))
    except LocalEntryNotFoundError:  # (a subclass of EntryNotFoundError: test it first)
        raise _Missing(offline=True) from None
    except GatedRepoError:  # (a subclass of RepositoryNotFoundError)
        raise HubError(f"{repo}: a gated repo: accept its conditions on its hub page, then {_LOGIN_HINT} "
                       f"with a token that has access") from None
    except RevisionNotFoundError:
        raise HubError(f"{repo}: no revision {options.revision!r} on the hub (a branch, tag or commit hash)") \
            from None
    except RepositoryNotFoundError:
        raise HubError(f"{repo}: no such local folder and no such repo on the hub; if it is private or gated, "
                       f"{_LOGIN_HINT}") from None
    except EntryNotFoundError:
        raise _Missing(offline=False) from None
    except HFValidationError as e:
        raise HubError(f"{repo}: not a valid hub id ({' '.join(str(e).split())})") from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            raise HubError(f"{where}: access refused (HTTP {status}); {_LOGIN_HINT}") from None
        raise HubError(f"{where}: the hub answered HTTP {status} for {filename}") from None


def _offline_error(repo: str, what: str, options: HubOptions) -> HubError:
    if options.local_files_only:
        why = "local_files_only=True"
    elif _offline_mode():
        why = "HF_HUB_OFFLINE is set"
    else:
        why = "the hub could not be reached (no network?)"
    return HubError(f"{_where(repo, options)}: {what} not in the local hub cache ({_cache_dir(options)}) and {why}; "
                    f"download it once with network access, or pass a local folder")


def hub_file(hub_id: HubId, filename: str, options: Optional[HubOptions] = None,
             required: bool = True) -> Optional[Path]:
    """The cached path of one file of a hub repo, downloaded if needed (None if absent and not required)."""
    options = _merge_revision(hub_id, options or HubOptions())
    try:
        return _download(hub_id.repo_id, filename, options)
    except _Missing as missing:
        if not required:
            return None
        if missing.offline:
            raise _offline_error(hub_id.repo_id, filename, options) from None
        raise HubError(f"{_where(hub_id.repo_id, options)}: the repo has no {filename}") from None


def resolve_file(path_or_id: Union[str, os.PathLike], filename: str, required: bool = True,
                 options: Optional[HubOptions] = None) -> Optional[Path]:
    """Path of ``filename`` for ``path_or_id`` (a folder, the file itself, or a hub id).

    Returns None when the file is absent and not ``required``; raises FileNotFoundError (a local
    path) or HubError (a hub id) naming what was looked for otherwise.
    """
    p = Path(path_or_id)
    if p.is_dir():
        f = p / filename
        if f.is_file():
            return f
        if required:
            raise FileNotFoundError(f"{p}: no {filename} in this folder")
        return None
    if p.is_file():
        if p.name == filename or (p.suffix == ".json" and filename.endswith(".json")):
            return p  # the file itself, possibly under another name (my_config.json)
        # a weights file was named directly: its config lives beside it
        return resolve_file(p.parent, filename, required)
    hub_id = parse_hub_id(str(path_or_id))
    if hub_id is not None:
        return hub_file(hub_id, filename, options, required)
    if required:
        raise FileNotFoundError(f"{path_or_id}: no such file or folder (looking for {filename})")
    return None


def _snapshot_revision(file: Path, options: HubOptions) -> HubOptions:
    """Pin the rest of a load to the commit the first file came from (``snapshots/<commit>/``), so
    that config and weights are of one revision even if the branch moves meanwhile."""
    commit = file.parent.name
    if file.parent.parent.name == "snapshots" and _COMMIT.match(commit):
        return replace(options, revision=commit)
    return options


def _shard_names(index: Path) -> list[str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise HubError(f"{index}: not a valid shard index ({type(e).__name__}: {e})") from None


def _first_weights(hub_id: HubId, candidates: Sequence[str], options: HubOptions) -> Path:
    """Download the first of ``candidates`` the repo has (and the shards of an index); only that one."""
    offline_misses = []
    for name in candidates:
        try:
            file = _download(hub_id.repo_id, name, options)
        except _Missing as missing:
            if missing.offline:
                offline_misses.append(name)
            continue
        if name.endswith(".index.json"):
            for shard in _shard_names(file):
                hub_file(HubId(hub_id.repo_id), shard, options)
        return file
    listed = ", ".join(candidates)
    if offline_misses:
        raise _offline_error(hub_id.repo_id, f"no weights file ({listed})", options)
    raise HubError(f"{_where(hub_id.repo_id, options)}: the repo has no weights file of these: {listed}")


def model_folder(path_or_id: Union[str, os.PathLike], weight_files: Sequence[str] = (),
                 options: Optional[HubOptions] = None,
                 check_config: Optional[Callable[[Path, str], None]] = None,
                 optional_files: Sequence[str] = (PREPROCESSOR_NAME,)) -> Path:
    """A local path as it is; for a hub id, the cache's snapshot folder holding config.json, the
    ``optional_files`` the repo has and the first of ``weight_files`` the repo has.

    ``check_config(config_path, name)`` runs before any weights are downloaded (e.g. to refuse a
    repo that is not a ConvNeXt without fetching its weights).
    """
    p = Path(path_or_id)
    if p.exists():
        if check_config is not None:
            config = resolve_file(p, CONFIG_NAME, required=False)
            if config is not None:
                check_config(config, str(config))
        return p
    hub_id = parse_hub_id(str(path_or_id))
    if hub_id is None:
        raise FileNotFoundError(f"{path_or_id}: no such file or folder (looking for {CONFIG_NAME})")
    options = _merge_revision(hub_id, options or HubOptions())
    config = hub_file(HubId(hub_id.repo_id), CONFIG_NAME, options)
    if check_config is not None:
        check_config(config, str(hub_id))
    pinned = _snapshot_revision(config, options)
    for name in optional_files:
        hub_file(HubId(hub_id.repo_id), name, pinned, required=False)
    if weight_files:
        _first_weights(HubId(hub_id.repo_id), weight_files, pinned)
    return config.parent


def cached_config(repo_id: str, options: Optional[HubOptions] = None) -> Optional[Path]:
    """The repo's config.json in the local hub cache, without asking the hub (None when not cached)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    options = options or HubOptions()
    found = try_to_load_from_cache(repo_id, CONFIG_NAME, cache_dir=options.cache_dir,
                                   revision=options.revision)
    return Path(found) if isinstance(found, str) else None


def is_hub_id(path_or_id: Union[str, os.PathLike]) -> bool:
    """True when ``path_or_id`` is not a local path but reads as a hub id."""
    return parse_hub_id(str(path_or_id)) is not None
