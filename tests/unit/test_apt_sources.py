"""The Debian mirror comes from the machine's apt configuration or the debian_mirror key."""
import pytest

import spmd
from spmd.images import apt
from spmd import config

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main
"""


def write(root, name, text):
    path = root / "etc" / "apt" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_deb822_sources_file_gives_its_debian_uri(tmp_path):
    write(tmp_path, "sources.list.d/debian.sources", DEB822)
    assert apt.machine_mirror(tmp_path) == "http://mirror.example.org/debian"


def test_one_line_format_skips_sources_security_and_other_distributions(tmp_path):
    write(tmp_path, "sources.list", "\n".join([
        "# deb http://commented.example.org/debian bookworm main",
        "deb-src http://src.example.org/debian bookworm main",
        "deb http://security.example.org/debian-security bookworm-security main",
        "deb http://ubuntu.example.org/ubuntu noble main",
        "deb [arch=amd64 signed-by=/k.gpg] https://proxy.example.org/deb/ trixie main",
    ]))
    assert apt.machine_mirror(tmp_path) == "https://proxy.example.org/deb"


def test_disabled_deb822_stanza_and_no_debian_entry_give_none(tmp_path):
    write(tmp_path, "sources.list.d/a.sources", "Enabled: no\n" + DEB822.split("\n\n")[0])
    write(tmp_path, "sources.list.d/b.list", "deb http://ubuntu.example.org/ubuntu jammy main\n")
    assert apt.machine_mirror(tmp_path) is None
    assert apt.machine_mirror(tmp_path / "nowhere") is None


def test_debian_mirror_key_wins_and_is_read_from_the_environment(tmp_path):
    settings = config.resolve(environ={"SPMD_DEBIAN_MIRROR": "http://inst.example.org/debian",
                                       "SPMD_USER_CONFIG": str(tmp_path / "none.toml")},
                              cwd=tmp_path)
    assert settings.get("debian_mirror") == "http://inst.example.org/debian"
    assert apt.debian_mirror(settings.get("debian_mirror")) == "http://inst.example.org/debian"
    with pytest.raises(spmd.SystemPackageError, match="http"):
        apt.debian_mirror("ftp.example.org/debian")


def test_bad_package_name_is_refused_at_knot_construction():
    with pytest.raises(spmd.SystemPackageError) as info:
        spmd.Knot(len, system_packages=["mrtrix3", "Bad Name"])
    assert info.value.package == "Bad Name" and "apt-cache search" in str(info.value)


def test_the_layer_installs_from_the_mirror_for_the_image_release_only():
    text = apt.install_script(("mrtrix3", "jq=1.6-2.1"), "http://m.example.org/debian")
    assert "echo 'deb http://m.example.org/debian' \"$VERSION_CODENAME main\"" in text
    assert "Dir::Etc::SourceParts=/nonexistent" in text and "install -y" in text
    assert "mrtrix3 jq=1.6-2.1" in text
    assert "Acquire::Retries" in text
    assert "SourceList" not in apt.install_script(("mrtrix3",), None)


def test_build_log_failures_name_the_package_or_the_unreachable_mirror():
    # apt-get update only warns when the mirror is unreachable; install then misses every package.
    offline = ("W: Failed to fetch http://m.example.org/debian/dists/bookworm/InRelease  "
               "Temporary failure resolving 'm.example.org'\n"
               "\x1b[91mE: Unable to locate package jq\x1b[0m\n")
    error = apt._failure(offline, ("jq",), "http://m.example.org/debian")
    assert not isinstance(error, spmd.SystemPackageError) and "debian_mirror" in str(error)
    missing = apt._failure("\x1b[91mE: Unable to locate package no-such-pkg\x1b[0m\n",
                           ("jq", "no-such-pkg"), None)
    assert isinstance(missing, spmd.SystemPackageError) and missing.package == "no-such-pkg"
