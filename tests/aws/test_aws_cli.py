"""`spmd aws up` and `spmd aws down` from the command line, on moto, with an aws profile."""
import pytest

from spmd import cli


def write_profile(tmp_path, config, monkeypatch):
    """The profile in the user's own config file (a project file may not set endpoint_url)."""
    lines = ["[profiles.lab]"] + [f"{key} = {value!r}".replace("'", '"') for key, value in config.items()]
    (tmp_path / "user.toml").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SPMD_USER_CONFIG", str(tmp_path / "user.toml"))


def test_up_then_up_then_down(tmp_path, monkeypatch, capsys, aws_config):
    write_profile(tmp_path, aws_config, monkeypatch)
    monkeypatch.chdir(tmp_path)
    stack = aws_config["stack"]

    assert cli.main(["--profile", "lab", "aws", "up"]) == 0
    first = capsys.readouterr().out
    assert f"job queue  {stack}-ec2" in first and "created" in first

    assert cli.main(["--profile", "lab", "aws", "up"]) == 0
    second = capsys.readouterr().out
    assert "created" not in second and "found" in second

    # --wait and --force are each other's opposites
    with pytest.raises(SystemExit):
        cli.main(["--profile", "lab", "aws", "up", "--wait", "--force"])
    assert "not allowed with" in capsys.readouterr().err
    assert cli.main(["--profile", "lab", "aws", "up", "--force"]) == 0
    assert "created" not in capsys.readouterr().out

    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert cli.main(["--profile", "lab", "aws", "down"]) == 2  # no --yes, no terminal: refuses
    assert "--yes" in capsys.readouterr().err

    assert cli.main(["--profile", "lab", "aws", "down", "--yes"]) == 0
    gone = capsys.readouterr().out
    assert f"job queue  {stack}-ec2" in gone and "deleted" in gone


def test_aws_commands_refuse_another_backend(tmp_path, monkeypatch, capsys):
    (tmp_path / "spmd.toml").write_text('[profiles.here]\nbackend = "local"\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--profile", "here", "aws", "up"]) == 2
    assert "works on the aws backend" in capsys.readouterr().err
