"""Where the guest kernel comes from, scripted (the real build runs in the lab tests)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from drorch.lab.image import ImageBuilder, ImageError
from drorch.testing.runner import Expect, ScriptedRunner

DEPENDS = """linux-image-cloud-amd64
  Depends: linux-image-6.1.0-56-cloud-amd64
"""
PACKAGE = "linux-image-6.1.0-56-cloud-amd64"


def download(debs: Path) -> list[str]:
    return ["sh", "-c", f"cd {shlex.quote(str(debs))} && apt-get download {PACKAGE}"]


def test_the_kernel_package_is_what_the_cloud_meta_package_depends_on(tmp_path: Path) -> None:
    runner = ScriptedRunner([Expect(["apt-cache", "depends", "linux-image-cloud-amd64"],
                                    stdout=DEPENDS)])  # fmt: skip
    assert ImageBuilder(tmp_path, runner).kernel_package() == PACKAGE


def test_a_cached_deb_is_used_without_asking_apt(tmp_path: Path) -> None:
    debs = tmp_path / "debs"
    debs.mkdir()
    deb = debs / f"{PACKAGE}_6.1.192-2_amd64.deb"
    deb.write_bytes(b"deb")
    assert ImageBuilder(tmp_path, ScriptedRunner()).kernel_deb() == deb  # no command run


def test_offline_the_copy_in_apts_archive_is_used(tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    archives.mkdir()
    old = archives / f"{PACKAGE}_6.1.187-1_amd64.deb"
    old.write_bytes(b"deb")
    runner = ScriptedRunner(
        [
            Expect(["apt-cache", "depends", "linux-image-cloud-amd64"], stdout=DEPENDS),
            Expect(download(tmp_path / "images" / "debs"), returncode=100,
                   stderr="E: Failed to fetch"),
        ]
    )  # fmt: skip
    (tmp_path / "images").mkdir()
    assert ImageBuilder(tmp_path / "images", runner, archives).kernel_deb() == old
    runner.assert_done()


def test_no_kernel_anywhere_is_a_clear_error(tmp_path: Path) -> None:
    runner = ScriptedRunner(
        [
            Expect(["apt-cache", "depends", "linux-image-cloud-amd64"], stdout=DEPENDS),
            Expect(download(tmp_path / "debs"), returncode=100, stderr="E: Failed to fetch"),
        ]
    )
    with pytest.raises(ImageError, match=f"apt-get download {PACKAGE} failed"):
        ImageBuilder(tmp_path, runner, tmp_path / "empty-archives").kernel_deb()


def test_a_meta_package_without_a_kernel_dependency_is_an_error(tmp_path: Path) -> None:
    runner = ScriptedRunner(
        [Expect(["apt-cache", "depends", "linux-image-cloud-amd64"], stdout="nothing\n")]
    )
    with pytest.raises(ImageError, match="names no linux-image package"):
        ImageBuilder(tmp_path, runner).kernel_package()
