"""A hub cache and a stand-in hub for tests, with no network.

``build_cache`` lays out repos the way huggingface_hub stores them (``models--org--name/refs/main``,
``blobs/<sha256>``, ``snapshots/<commit>/<file>`` linking to the blob), so that huggingface_hub's
own offline lookup reads them. ``FakeHub`` answers huggingface_hub's HTTP calls through its
client factory (a mock transport: nothing leaves the process), serving repos from memory and the
hub's error answers (missing repo, revision or file, gated repo), and records what was fetched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import types
from pathlib import Path
from typing import Optional

FIXTURES = Path(__file__).parent / "fixtures"
HUB_FIXTURES = FIXTURES / "hub"
PROCESSOR_224 = FIXTURES / "image-processor" / "hub_tiny_224" / "preprocessor_config.json"

#: the repos of the test hub: id -> {file name in the repo: source file or bytes}
HF_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5")
REPOS: dict[str, dict[str, object]] = {
    "test-org/convnext-hf": {**{n: FIXTURES / "hf-convnext" / n for n in HF_FILES},
                             "preprocessor_config.json": PROCESSOR_224},
    "test-org/convnextv2-hf": {**{n: FIXTURES / "hf-convnextv2" / n for n in HF_FILES},
                               "preprocessor_config.json": PROCESSOR_224},
    # as timm's save_for_hf writes it (config.json from timm itself; the weights are the fixture's)
    "timm/convnext_test.fixture": {"config.json": HUB_FIXTURES / "timm-convnext" / "config.json",
                                   "model.safetensors": FIXTURES / "timm-convnext" / "model.safetensors"},
    "timm/convnextv2_test.fixture": {"config.json": HUB_FIXTURES / "timm-convnextv2" / "config.json",
                                     "model.safetensors": FIXTURES / "timm-convnextv2" / "model.safetensors"},
    "test-org/vit-hf": {"config.json": json.dumps({
        "architectures": ["ViTForImageClassification"], "model_type": "vit", "hidden_size": 768,
        "image_size": 224, "patch_size": 16}).encode()},
    "timm/vit_tiny_patch16_224.augreg_in21k": {"config.json": json.dumps({
        "architecture": "vit_tiny_patch16_224", "num_classes": 21843, "num_features": 192,
        "pretrained_cfg": {"input_size": [3, 224, 224], "mean": [0.5] * 3, "std": [0.5] * 3}}).encode()},
}
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


def _content(source: object) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def build_cache(hub_cache: Path, repos: Optional[dict[str, dict[str, object]]] = None,
                commit: str = COMMIT) -> Path:
    """Write ``repos`` (default: all of REPOS) into ``hub_cache`` as huggingface_hub lays them out."""
    for repo_id, files in (REPOS if repos is None else repos).items():
        root = hub_cache / ("models--" + repo_id.replace("/", "--"))
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(commit)
        snapshot = root / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        (root / "blobs").mkdir(exist_ok=True)
        for name, source in files.items():
            data = _content(source)
            blob = root / "blobs" / hashlib.sha256(data).hexdigest()
            blob.write_bytes(data)
            link = snapshot / name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                os.symlink(os.path.relpath(blob, link.parent), link)
    return hub_cache


def _httpx():
    """The httpx module huggingface_hub's client factory uses (httpx2 in 2.x, httpx in 1.x)."""
    from huggingface_hub.utils import _http

    return getattr(_http, "httpx2", None) or getattr(_http, "httpx")


class FakeHub:
    """huggingface_hub's HTTP layer answered in-process from REPOS (see the module docstring)."""

    _RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+|[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")

    def __init__(self, repos: Optional[dict[str, dict[str, object]]] = None, gated: tuple[str, ...] = ()):
        self.repos = REPOS if repos is None else repos
        self.gated = gated
        self.requests: list[tuple[str, str, str]] = []  # (method, repo, file)

    def downloads(self, repo: str) -> list[str]:
        return [f for m, r, f in self.requests if m == "GET" and r == repo]

    def handler(self, request):
        httpx = _httpx()
        from urllib.parse import unquote

        m = self._RESOLVE.match(unquote(request.url.path))
        if m is None:
            return httpx.Response(404, headers={"X-Error-Code": "RepoNotFound"}, request=request)
        repo, rev, name = m["repo"], m["rev"], m["file"]
        self.requests.append((request.method, repo, name))
        if repo in self.gated:
            return httpx.Response(403, headers={"X-Error-Code": "GatedRepo",
                                                "X-Error-Message": "Access to this repo is restricted"},
                                  request=request)
        if repo not in self.repos:
            return httpx.Response(401, headers={"X-Error-Code": "RepoNotFound",
                                                "X-Error-Message": "Repository not found"}, request=request)
        if rev not in ("main", COMMIT):
            return httpx.Response(404, headers={"X-Error-Code": "RevisionNotFound",
                                                "X-Error-Message": "Invalid rev id"}, request=request)
        files = self.repos[repo]
        if name not in files:
            return httpx.Response(404, headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT,
                                                "X-Error-Message": "Entry not found"}, request=request)
        data = _content(files[name])
        etag = hashlib.sha256(data).hexdigest()
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "Content-Length": str(len(data))}
        return httpx.Response(200, headers=headers, content=b"" if request.method == "HEAD" else data,
                              request=request)

    def install(self, monkeypatch) -> "FakeHub":
        """Route huggingface_hub's client to this hub for the test (online mode)."""
        import huggingface_hub
        import huggingface_hub.constants

        httpx = _httpx()
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        huggingface_hub.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(self.handler)))
        # no retry back-off waits: huggingface_hub's HTTP module sees a time module whose sleep returns at once
        quick_time = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("_")})
        quick_time.sleep = lambda seconds: None
        monkeypatch.setattr(huggingface_hub.utils._http, "time", quick_time)
        return self

    @staticmethod
    def uninstall() -> None:
        import huggingface_hub
        from huggingface_hub.utils import _http

        huggingface_hub.set_client_factory(_http.default_client_factory)
