"""`braincam version`: print the versions braincam records in every run."""

from __future__ import annotations

from braincam.cli._app import app


@app.command()
def version() -> None:
    """Print braincam's version and the versions of the libraries it relies on."""
    from braincam.provenance import library_versions

    for name, ver in library_versions().items():
        print(f"{name} {ver}")
