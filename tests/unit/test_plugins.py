import textwrap

import pytest

from spmd import plugins
from spmd.errors import PluginError


def test_local_backend_and_file_store_are_registered():
    assert "local" in plugins.backend_names()
    assert plugins.backend_class("local").__name__ == "LocalBackend"
    assert plugins.store_class("file").__name__ == "DirectoryStore"


def test_incomplete_backend_names_plugin_and_missing_methods(tmp_path, monkeypatch):
    (tmp_path / "half_backend.py").write_text(textwrap.dedent("""
        from spmd.backend import Backend
        class Half(Backend):
            name = "half"
            def make_store(self):
                raise NotImplementedError
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = plugins.Entry("half", "half_backend:Half", "", "half-plugin")
    monkeypatch.setitem(plugins._backends, "half", entry)
    with pytest.raises(PluginError) as info:
        plugins.backend_class("half")
    message = str(info.value)
    assert "half-plugin" in message
    assert "make_queue" in message and "make_registry" in message and "capacity" in message
    assert "local" in plugins.backend_names()  # the others still work


def test_missing_module_gives_the_install_hint(monkeypatch):
    entry = plugins.Entry("ghost", "no_such_module_xyz:Backend", "pip install spmd-ghost", "ghost")
    monkeypatch.setitem(plugins._backends, "ghost", entry)
    with pytest.raises(PluginError, match="pip install spmd-ghost"):
        plugins.backend_class("ghost")


def test_not_a_backend_class(monkeypatch):
    monkeypatch.setitem(plugins._backends, "wrong", plugins.Entry("wrong", "json:dumps", "", "wrong"))
    with pytest.raises(PluginError, match="not a subclass of spmd.Backend"):
        plugins.backend_class("wrong")
