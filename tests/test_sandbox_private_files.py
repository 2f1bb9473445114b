"""What the sandbox shows of the host's files: a file's content only when it is meant for every user (A-01).

The cockpit often runs as root (a build box): it can read every file, and a name list of /etc's secrets
cannot know a GitLab runner's token, a cluster's admin.conf or apt's auth.conf. The /etc copy keeps a
file's content only when any user may read it (and search every directory on its way); the rest is
there, empty, with its mode. Each attack runs `cat` in a real bubblewrap sandbox over a fake /etc bound at
/etc; liveness: the same view with the mode rule switched off shows the secret.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cockpit.host.etc_view import EtcView
from cockpit.host.sandbox import Sandbox

TOKEN = "glrt-PRIVATE-RUNNER-TOKEN-0123456789"


@pytest.fixture
def etc(host_tmp: Path) -> Path:
    etc = host_tmp / "etc"
    etc.mkdir()
    os.chmod(etc, 0o755)
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    os.chmod(etc / "hosts", 0o644)
    runner = etc / "gitlab-runner"
    runner.mkdir(mode=0o755)
    (runner / "config.toml").write_text(f'token = "{TOKEN}-runner"\n')
    os.chmod(runner / "config.toml", 0o600)  # private by its mode, in a public directory
    (etc / "apt" / "auth.conf.d").mkdir(parents=True)
    (etc / "apt" / "auth.conf.d" / "pro.conf").write_text(f"machine esm login bearer password {TOKEN}-apt\n")
    os.chmod(etc / "apt" / "auth.conf.d" / "pro.conf", 0o640)  # group-readable only
    private = etc / "kubernetes" / "pki"
    private.mkdir(parents=True)
    os.chmod(private, 0o700)  # a world-readable file in a directory only root may search
    (private / "ca.key").write_text(f"{TOKEN}-k8s\n")
    os.chmod(private / "ca.key", 0o644)
    return etc


async def _show(etc: Path, wd: Path, *, by_mode: bool) -> str:
    sb = Sandbox("bwrap", etc_view=EtcView(etc, (), by_mode=by_mode))
    wd.mkdir(exist_ok=True)
    r = await sb.run("cat /etc/hosts /etc/gitlab-runner/config.toml /etc/apt/auth.conf.d/pro.conf "
                     "/etc/kubernetes/pki/ca.key 2>&1; stat -c '%n %a %s' /etc/gitlab-runner/config.toml",
                     cwd=wd, writable=[wd], timeout_s=20, output_cap_bytes=64_000)
    return r.output


@pytest.mark.parametrize("name", ["runner", "apt", "k8s"])
async def test_private_etc_files_are_empty_in_the_sandbox(etc, host_tmp, name):
    live = await _show(etc, host_tmp / "wd", by_mode=False)
    assert f"{TOKEN}-{name}" in live, f"liveness: without the mode rule the {name} secret shows:\n{live}"
    shown = await _show(etc, host_tmp / "wd", by_mode=True)
    assert f"{TOKEN}-{name}" not in shown, shown
    assert "127.0.0.1 localhost" in shown  # what every user may read stays
    assert "/etc/gitlab-runner/config.toml 600 0" in shown  # there, empty, with its mode


async def test_the_real_etc_keeps_what_a_build_reads(host_tmp):
    """On this machine's /etc: name resolution, users, certificates still work with the mode rule."""
    wd = host_tmp / "wd"
    wd.mkdir()
    r = await Sandbox("bwrap").run("getent passwd root | cut -d: -f1; getent hosts localhost | head -1 | wc -l; "
                                   "ls /etc/ssl/certs | head -1 | wc -l; test -s /etc/passwd && echo passwd-ok",
                                   cwd=wd, writable=[wd], timeout_s=20, output_cap_bytes=64_000)
    assert r.output.split() == ["root", "1", "1", "passwd-ok"], r.output
