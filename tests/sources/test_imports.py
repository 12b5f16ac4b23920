"""The sources package stays on its side (DESIGN.md): it never imports the worker, and loading
its CLI loads neither faust nor any optional provider library (``--help`` stays fast and the
package works without the ``sources`` extra until a command needs it)."""

from __future__ import annotations

from tests.test_layers import imported, loaded_by, modules


def test_no_module_of_the_sources_imports_the_worker() -> None:
    bad = [
        f"{path.name} imports {name}"
        for path in modules("streams.sources")
        for name in sorted(imported(path))
        if name == "streams.worker" or name.startswith("streams.worker.")
    ]
    assert not bad, bad


def test_the_cli_loads_no_provider_library_faust_or_worker() -> None:
    loaded = loaded_by("streams.sources.cli")
    heavy = ("faust", "gridstatus", "watttime", "openapi", "electricitymaps", "pandas")
    leaked = sorted(
        name for name in loaded if name.split(".")[0] in heavy or name.startswith("streams.worker")
    )
    assert not leaked, leaked
