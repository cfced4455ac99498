"""Knot(), attach() and the CLI import only the selected backend's package.

Other backends' plugin modules (``spmd_aws.plugin``: a few registrations) load, their
packages' code does not. Each check runs in a fresh interpreter and reads sys.modules.
"""
import json
import subprocess
import sys

import pytest

OTHERS = {"local": ("spmd_aws.", "boto3"), "aws": ("spmd_local.",)}


def loaded(code: str, cwd) -> list[str]:
    script = code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def backend_modules(modules, prefixes):
    return [m for m in modules if m.startswith(prefixes) and not m.endswith(".plugin")]


@pytest.mark.parametrize("code, backend", [
    ("import spmd; spmd.Knot(len, config={'store_dir': '/tmp/x', 'max_vcpus': 1})", "local"),
    # what map() does before it submits: the image holds every built-in backend's runtime
    ("import spmd; spec = spmd.Knot(len, config={'store_dir': '/tmp/x', 'max_vcpus': 1})"
     ".image_spec(); assert 'spmd_aws' in spec.runtime_packages and 'boto3' in "
     "' '.join(spec.runtime_requirements)", "local"),
    ("import spmd; spmd.Knot(len, backend='aws', config={'bucket': 'b-1', 'region': 'us-east-1'})", "aws"),
    ("from spmd.cli import main; main(['config'])", "local"),
    ("from spmd.cli import main; main(['--backend', 'aws', 'config'])", "aws"),
    ("from spmd.cli import main; main(['status', 'nope'])", "local"),
])
def test_only_the_selected_backend_is_imported(code, backend, tmp_path):
    if "cli" in code:
        code = f"try:\n    {code}\nexcept SystemExit:\n    pass"
    modules = loaded(code, tmp_path)
    selected = {"local": "spmd_local.backend", "aws": "spmd_aws.backend"}[backend]
    assert selected in modules
    assert backend_modules(modules, OTHERS[backend]) == []


def test_a_top_level_key_of_another_backend_is_skipped_a_typo_is_not(tmp_path):
    from spmd.config import resolve
    from spmd.errors import ConfigError
    (tmp_path / "user.toml").write_text(f'trusted_projects = ["{tmp_path}"]\n')
    environ = {"SPMD_USER_CONFIG": str(tmp_path / "user.toml")}  # may set store_dir, bucket
    (tmp_path / "spmd.toml").write_text('store_dir = "/s"\n[profiles.cloud]\nbackend = "aws"\n'
                                        'bucket = "b-1"\n')
    assert resolve(profile="cloud", cwd=tmp_path, environ=environ)["bucket"] == "b-1"
    assert resolve(cwd=tmp_path, environ=environ)["store_dir"] == "/s"
    (tmp_path / "spmd.toml").write_text('[profiles.cloud]\nbackend = "aws"\nstore_dir = "/s"\n')
    with pytest.raises(ConfigError, match="belongs to the local backend"):
        resolve(profile="cloud", cwd=tmp_path, environ=environ)
    (tmp_path / "spmd.toml").write_text('stor_dir = "/s"\n')
    with pytest.raises(ConfigError, match="unknown configuration key 'stor_dir'"):
        resolve(cwd=tmp_path, environ=environ)


def test_plugins_add_command_groups_loaded_on_use():
    from spmd import plugins
    groups = plugins.command_groups()
    assert groups["aws"].target == "spmd_aws.cli:configure" and groups["aws"].plugin == "spmd_aws.plugin"
    modules = loaded("from spmd.cli import main\ntry:\n    main(['jobs', '--help'])\nexcept SystemExit:\n    pass",
                     None)
    assert "spmd_aws.cli" not in modules


def test_a_directory_stores_own_operations_import_no_libcloud(tmp_path):
    # A warm container's server and a scheduler open a DirectoryStore at each start; libcloud
    # (and requests under it) is imported only for the operations that use its driver.
    code = (f"from spmd.stores.directory import DirectoryStore\n"
            f"s = DirectoryStore({str(tmp_path / 'store')!r})\n"
            f"s.put('a/b', b'x'); assert s.get('a/b') == b'x' and s.exists('a/b')\n"
            f"assert list(s.list('a/')) == ['a/b']; s.delete('a/b')\n"
            f"from spmd.task import worker; worker.open_store(s.url)")
    modules = loaded(code, tmp_path)
    assert not [m for m in modules if m.startswith(("libcloud", "requests"))]
