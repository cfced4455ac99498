"""Plugins that fail to load or miss an interface: the error names the plugin and what is missing,
and every other backend keeps working.

Each test installs throwaway plugins the way pip would: a ``*.dist-info`` folder with an
``entry_points.txt`` on sys.path, beside the plugin's module. The plugin registry is emptied
before and restored after, so the real plugins load again from scratch with them.
"""
from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

import spmd
from spmd import plugins
from spmd.testing import functions as fn
from spmd.task.worker import open_store


@pytest.fixture
def install(monkeypatch, tmp_path):
    """``install(name, {entry point: module}, {module: source})``: a plugin distribution."""
    for name, value in (("_manager", None), ("_backends", {}), ("_stores", {}), ("_broken", {})):
        monkeypatch.setattr(plugins, name, value)
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def make(dist: str, eps: dict[str, str], sources: dict[str, str]) -> None:
        info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = "".join(f"{name} = {target}\n" for name, target in eps.items())
        (info / "entry_points.txt").write_text(f"[spmd]\n{lines}")
        for module, source in sources.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
            modules.append(module)
        importlib.invalidate_caches()

    yield make
    for module in modules:
        sys.modules.pop(module, None)


def still_working(tmp_path):
    """The built-in and the example backends are there, and a job runs on one of them."""
    assert {"local", "process"} <= set(plugins.backend_names())
    assert plugins.backend_class("local").__name__ == "LocalBackend"
    knot = spmd.Knot(fn.square, backend="process", config={"store_dir": str(tmp_path / "store")})
    assert knot.map([4]).results(timeout=120) == [16]


def test_plugin_that_cannot_be_imported(install, tmp_path):
    install("spmd-acme", {"acme": "acme_spmd_plugin"},
            {"acme_spmd_plugin": "import acme_cloud_sdk_not_installed\n"})
    assert "acme_cloud_sdk_not_installed" in plugins.broken_plugins()["acme"]
    with pytest.raises(spmd.PluginError) as info:
        spmd.Knot(fn.square, backend="acme")
    assert info.value.plugin == "acme"
    assert "'acme'" in str(info.value) and "acme_cloud_sdk_not_installed" in str(info.value)
    still_working(tmp_path)


def test_backend_that_misses_interface_methods(install, tmp_path):
    install("spmd-halfway", {"halfway": "halfway_plugin"}, {"halfway_plugin": """
        import spmd

        class HalfBackend(spmd.Backend):
            name = "halfway"

            def make_store(self):
                raise NotImplementedError

        @spmd.hookimpl
        def spmd_register_backends(register):
            register("halfway", "halfway_plugin:HalfBackend")
    """})
    with pytest.raises(spmd.PluginError) as info:
        spmd.Knot(fn.square, backend="halfway")
    message = str(info.value)
    assert info.value.plugin == "halfway" and "'halfway'" in message
    assert "halfway_plugin:HalfBackend" in message
    for method in ("capacity", "make_queue", "make_registry"):
        assert method in message
    assert "make_store" not in message.split("does not implement")[-1]
    still_working(tmp_path)


def test_registered_class_that_is_not_a_backend(install, tmp_path):
    install("spmd-wrong", {"wrong": "wrong_plugin"}, {"wrong_plugin": """
        import spmd

        class NotABackend:
            pass

        @spmd.hookimpl
        def spmd_register_backends(register):
            register("wrong", "wrong_plugin:NotABackend")
    """})
    with pytest.raises(spmd.PluginError, match="not a subclass of spmd.Backend") as info:
        spmd.Knot(fn.square, backend="wrong")
    assert info.value.plugin == "wrong"
    still_working(tmp_path)


def test_registered_path_that_does_not_exist(install, tmp_path):
    install("spmd-ghost", {"ghost": "ghost_plugin"}, {"ghost_plugin": """
        import spmd

        @spmd.hookimpl
        def spmd_register_backends(register):
            register("ghost", "ghost_plugin:NoSuchClass")
            register("phantom", "phantom_sdk_not_installed.backend:Backend",
                     install_hint="pip install spmd-phantom")
    """})
    with pytest.raises(spmd.PluginError) as info:
        spmd.Knot(fn.square, backend="ghost")
    assert info.value.plugin == "ghost" and "NoSuchClass" in str(info.value)
    with pytest.raises(spmd.PluginError) as info:
        spmd.Knot(fn.square, backend="phantom")
    assert info.value.plugin == "ghost"
    assert "phantom_sdk_not_installed" in str(info.value) and "pip install spmd-phantom" in str(info.value)
    still_working(tmp_path)


def test_hook_that_raises(install, tmp_path):
    install("spmd-raiser", {"raiser": "raiser_plugin"}, {"raiser_plugin": """
        import spmd

        @spmd.hookimpl
        def spmd_register_backends(register):
            raise RuntimeError("no credentials for the raiser cloud")
    """})
    assert "no credentials for the raiser cloud" in plugins.broken_plugins()["raiser"]
    with pytest.raises(spmd.PluginError, match="no credentials for the raiser cloud") as info:
        spmd.Knot(fn.square, backend="raiser")
    assert info.value.plugin == "raiser"
    still_working(tmp_path)


def test_plugin_with_a_misspelled_hook(install, tmp_path):
    install("spmd-typo", {"typo": "typo_plugin"}, {"typo_plugin": """
        import spmd

        @spmd.hookimpl
        def spmd_register_backend(register):  # "backends" misspelled
            register("typo", "typo_plugin:Nothing")
    """})
    assert "spmd_register_backend" in plugins.broken_plugins()["typo"]
    still_working(tmp_path)


def test_unknown_backend_mentions_the_plugins_that_failed(install, tmp_path):
    install("spmd-gcp", {"spmd-gcp": "gcp_spmd_plugin"},
            {"gcp_spmd_plugin": "import google_cloud_batch_not_installed\n"})
    with pytest.raises(spmd.SpmdError) as info:
        spmd.Knot(fn.square, backend="gcp")
    assert "spmd-gcp" in str(info.value) and "google_cloud_batch_not_installed" in str(info.value)
    still_working(tmp_path)


def test_store_that_misses_from_url(install, tmp_path):
    install("spmd-halfstore", {"halfstore": "halfstore_plugin"}, {"halfstore_plugin": """
        import spmd

        class HalfStore:
            pass

        @spmd.hookimpl
        def spmd_register_stores(register):
            register("half", "halfstore_plugin:HalfStore")
    """})
    with pytest.raises(spmd.PluginError) as info:
        open_store("half://bucket/prefix")
    assert info.value.plugin == "halfstore" and "from_url" in str(info.value)
    still_working(tmp_path)


def test_spmd_plugins_restricts_third_party_plugins(install, monkeypatch, tmp_path):
    monkeypatch.setenv("SPMD_PLUGINS", "builtin")
    assert "process" not in plugins.backend_names() and "local" in plugins.backend_names()
    with pytest.raises(spmd.UnknownBackendError, match="'process'"):
        spmd.Knot(fn.square, backend="process")
    monkeypatch.setattr(plugins, "_manager", None)
    monkeypatch.setenv("SPMD_PLUGINS", "process")
    still_working(tmp_path)


def test_example_plugin_is_loaded_from_its_entry_point(install):
    plugins.manager()
    entry = plugins._backends["process"]
    assert entry.plugin == "process"  # the entry point's name in the "spmd" group
    assert entry.target == "spmd_process.backend:ProcessBackend"
    cls = plugins.backend_class("process")
    assert cls.uses_images is False and issubclass(cls, spmd.Backend)
