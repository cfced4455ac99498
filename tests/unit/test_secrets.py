"""spmd.Secret and Knot(secrets=...): what is refused at once, and that a value never shows."""
import pytest

import spmd
from spmd import secrets
from spmd.testing import functions


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="1BAD", value="x"), "must be an environment variable name"),
    (dict(name="SPMD_TOKEN", value="x"), "not starting with SPMD_"),
    (dict(name="TOKEN"), "exactly one of value= or file="),
    (dict(name="TOKEN", value="x", file="/etc/hostname"), "exactly one of value= or file="),
    (dict(name="LICENSE", file="/nonexistent/license.txt"), "no readable file there"),
    (dict(name="TOKEN", value=b"bytes"), "must be a string")])
def test_a_bad_secret_is_refused_naming_it(kwargs, match):
    with pytest.raises(spmd.ConfigError, match=match):
        spmd.Secret(**kwargs)


def test_a_value_never_shows_in_repr():
    secret = spmd.Secret("XNAT_TOKEN", value="s3cr3t-value")
    assert "s3cr3t-value" not in repr(secret) and "XNAT_TOKEN" in repr(secret)


def test_a_secret_given_twice_or_also_in_env_is_refused(knot):
    twice = [spmd.Secret("TOKEN", value="a"), spmd.Secret("TOKEN", value="b")]
    with pytest.raises(spmd.ConfigError, match="'TOKEN' is given twice"):
        knot(functions.square, secrets=twice)
    with pytest.raises(spmd.ConfigError, match="'TOKEN' is given twice"):
        knot(functions.square, env={"TOKEN": "a"}, secrets=[spmd.Secret("TOKEN", value="b")])


def test_a_backend_that_cannot_pass_secrets_refuses_them_at_map(knot):
    k = knot(functions.square, secrets=[spmd.Secret("TOKEN", value="a")])
    with pytest.raises(spmd.ConfigError, match="the memory backend cannot pass secrets"):
        k.map(range(2))


def test_the_task_side_sets_values_and_paths(tmp_path):
    (tmp_path / "TOKEN.value").write_text("abc")
    (tmp_path / "LICENSE.file").write_text("licence\n")
    (tmp_path / "LICENSE.file").chmod(0o600)
    environ = {secrets.SECRETS_DIR: str(tmp_path)}
    assert secrets.apply(environ) == ["LICENSE", "TOKEN"]
    assert environ["TOKEN"] == "abc" and environ["LICENSE"] == str(tmp_path / "LICENSE.file")
