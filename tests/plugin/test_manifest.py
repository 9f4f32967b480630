"""The npe2 manifest, the sample data contribution, and the core staying free of napari and Qt."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

COMMANDS = {
    "napari-seamless-unet.make_train_widget",
    "napari-seamless-unet.make_predict_widget",
    "napari-seamless-unet.make_sample_data",
    "napari-seamless-unet.make_annotate_widget",
}


def test_manifest_is_valid_and_its_commands_import():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution("napari-seamless-unet")
    assert manifest.name == "napari-seamless-unet"
    assert {c.id for c in manifest.contributions.commands} == COMMANDS
    assert {w.display_name for w in manifest.contributions.widgets} == {
        "Train U-Net",
        "Segment with U-Net",
        "Annotate next",
    }
    segment_menu = manifest.contributions.menus["napari/layers/segment"]
    assert {item.command for item in segment_menu} == COMMANDS - {"napari-seamless-unet.make_sample_data"}
    manifest.validate_imports()  # every python_name resolves to an importable object


def test_npe2_validate_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-seamless-unet"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


@pytest.mark.parametrize(
    "module",
    [
        "napari_seamless_unet",
        "napari_seamless_unet.core.predict",
        "napari_seamless_unet.plugin._jobs",
        "napari_seamless_unet.plugin._predict_job",
        "napari_seamless_unet.plugin._relabel",
        "napari_seamless_unet.plugin._annotate_job",
    ],
)
def test_importing_the_package_does_not_import_napari_or_qt(module):
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'PySide2', 'magicgui'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_sample_data_opens_two_matching_layers(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-seamless-unet", "touching_discs")
    assert [layer.name for layer in viewer.layers] == ["touching discs", "touching discs labels"]
    image, labels = viewer.layers["touching discs"], viewer.layers["touching discs labels"]
    assert type(image).__name__ == "Image" and type(labels).__name__ == "Labels"
    assert image.data.shape == labels.data.shape == (256, 256)
    assert image.data.dtype == np.float32
    # Touching objects, as in the paper: some label borders another label directly.
    data = labels.data
    touching = (data[:, 1:] != data[:, :-1]) & (data[:, 1:] > 0) & (data[:, :-1] > 0)
    assert touching.any()
    assert len(np.unique(data)) > 10


@pytest.mark.parametrize(("name", "cls"), [("Train U-Net", "TrainWidget"), ("Segment with U-Net", "PredictWidget")])
def test_widgets_dock_from_the_plugin_menu(make_napari_viewer, name, cls):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="img")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-seamless-unet", name)
    assert type(widget).__name__ == cls
    # napari passed in (a proxy of) its viewer, and the widget sees its layers through it.
    assert [layer.name for layer in widget.viewer.layers] == ["img"]
    chosen = widget.image.value if cls == "PredictWidget" else widget.pairs[0][0]
    assert chosen is not None and chosen.name == "img"
    assert dock.name.startswith(name)


def test_readme_pictures_show_on_pypi_and_the_napari_hub():
    """Relative links break on PyPI and the hub: pictures are absolute URLs of files that are in docs/images."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    raw = "https://raw.githubusercontent.com/napari-seamless-unet/napari-seamless-unet/main/"
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert pictures
    for url in pictures:
        assert url.startswith(raw), url
        assert (root / url[len(raw) :]).is_file(), url
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert all(link.startswith(("http://", "https://")) for link in links), links


def test_project_urls_for_the_napari_hub():
    tomllib = pytest.importorskip("tomllib")
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    urls = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["urls"]
    assert {"Bug Tracker", "Documentation", "Source Code", "User Support"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")
    from pathlib import Path

    return tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"
    ]


def test_package_metadata_has_what_the_napari_hub_shows():
    project = _project()
    assert project["description"] and len(project["description"]) < 200  # the hub's summary
    assert project["readme"] == "README.md" and project["license"] == "BSD-3-Clause"
    classifiers = project["classifiers"]
    assert "Framework :: napari" in classifiers
    versions = [c.rsplit(" ", 1)[-1] for c in classifiers if c.startswith("Programming Language :: Python :: 3.")]
    minimum = project["requires-python"].removeprefix(">=")
    assert versions and min(versions, key=lambda v: tuple(map(int, v.split(".")))) == minimum
    assert "napari" in project["keywords"]


def test_citation_cff_cites_the_paper_and_the_software():
    from pathlib import Path

    import yaml

    from napari_seamless_unet import __version__

    path = Path(__file__).resolve().parents[2] / "CITATION.cff"
    cff = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["version"] == __version__ and cff["license"] == _project()["license"]
    assert cff["repository-code"] == _project()["urls"]["Source Code"]
    paper = cff["preferred-citation"]
    assert paper["type"] == "conference-paper" and paper["title"].startswith("U-Net: Convolutional Networks")
    assert [a["family-names"] for a in paper["authors"]] == ["Ronneberger", "Fischer", "Brox"]
    assert (paper["year"], paper["volume"], paper["start"], paper["end"]) == (2015, 9351, 234, 241)
    assert paper["doi"] == "10.1007/978-3-319-24574-4_28" and "MICCAI" in paper["collection-title"]
    try:  # the schema itself, where cffconvert is installed (pip install cffconvert)
        from cffconvert.cli.create_citation import create_citation
    except ImportError:
        return
    create_citation(str(path), None).validate()
