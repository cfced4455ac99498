import pytest

from spmd.config import resolve
from spmd.errors import ConfigError, UnknownBackendError


def write(path, text):
    path.write_text(text)
    return path


def test_defaults(tmp_path):
    settings = resolve(cwd=tmp_path, environ={})
    assert settings.backend == "local"
    assert settings.sources.get("backend", "default") == "default"


def test_precedence_argument_env_project_user(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    user = write(tmp_path / "user.toml", 'base_image = "from-user"\nstore_dir = "/u"\nmax_vcpus = 3\n'
                 f'trusted_projects = ["{project}"]\n')
    write(project / "spmd.toml", 'base_image = "from-project"\nstore_dir = "/p"\n')
    environ = {"SPMD_USER_CONFIG": str(user), "SPMD_STORE_DIR": "/e"}
    settings = resolve({"store_dir": "/a"}, cwd=project, environ=environ)
    assert settings["store_dir"] == "/a"
    assert settings.sources["store_dir"] == "argument"
    assert resolve(cwd=project, environ=environ)["store_dir"] == "/e"
    assert settings["base_image"] == "from-project"
    assert settings["max_vcpus"] == 3.0
    assert settings.sources["max_vcpus"] == str(user)


def test_profile_from_env_and_pyproject(tmp_path):
    write(tmp_path / "pyproject.toml", """
[tool.spmd]
max_memory = "8GiB"
[tool.spmd.profiles.big]
max_memory = "64GiB"
""")
    assert resolve(cwd=tmp_path, environ={})["max_memory"] == 8 * 2**30
    big = resolve(cwd=tmp_path, environ={"SPMD_PROFILE": "big"})
    assert big["max_memory"] == 64 * 2**30
    assert big.profile == "big"
    assert "[profiles.big]" in big.sources["max_memory"]


def test_project_file_found_from_a_subfolder(tmp_path):
    write(tmp_path / "spmd.toml", 'max_vcpus = 7\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert resolve(cwd=sub, environ={})["max_vcpus"] == 7.0


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path / "spmd.toml", 'bakcend = "local"\n')
    with pytest.raises(ConfigError) as info:
        resolve(cwd=tmp_path, environ={})
    assert "'bakcend'" in str(info.value) and str(path) in str(info.value)
    assert info.value.key == "bakcend"


def test_bad_value_names_key_value_and_file(tmp_path):
    path = write(tmp_path / "spmd.toml", '[profiles.x]\nmax_memory = "lots"\n')
    with pytest.raises(ConfigError) as info:
        resolve(profile="x", cwd=tmp_path, environ={})
    message = str(info.value)
    assert "max_memory" in message and "'lots'" in message and str(path) in message


def test_bad_env_value_names_the_environment(tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve(cwd=tmp_path, environ={"SPMD_MAX_VCPUS": "-2"})
    assert "max_vcpus" in str(info.value) and "environment" in str(info.value)


def test_missing_profile_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="profile 'nope' is not defined"):
        resolve(profile="nope", cwd=tmp_path, environ={})


def test_broken_toml_names_the_file(tmp_path):
    path = write(tmp_path / "spmd.toml", 'backend = \n')
    with pytest.raises(ConfigError) as info:
        resolve(cwd=tmp_path, environ={})
    assert str(path) in str(info.value)


def test_unknown_backend_lists_known_ones(tmp_path):
    import spmd
    with pytest.raises(UnknownBackendError) as info:
        spmd.Knot(len, backend="gcp-batch-typo")
    assert "'gcp-batch-typo'" in str(info.value) and "local" in str(info.value)


def test_describe_shows_values_and_sources(tmp_path):
    text = resolve({"store_dir": "/x"}, cwd=tmp_path, environ={}).describe()
    assert "store_dir = '/x'  # argument" in text
    assert "backend = 'local'  # default" in text


def test_spmd_config_hides_passwords_in_urls(tmp_path, monkeypatch):
    from spmd.config import resolve
    monkeypatch.setenv("SPMD_DEBIAN_MIRROR", "https://lab:s3cr3t-token@mirror.example.org/debian")
    text = resolve({}).describe()
    assert "s3cr3t-token" not in text
    assert "https://lab:***@mirror.example.org/debian" in text
