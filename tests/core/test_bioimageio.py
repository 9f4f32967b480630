"""bioimage.io export and import: the package validates with bioimageio.spec, passes bioimageio.core's
test_model offline, and load_model of it predicts what the original network predicts."""

from __future__ import annotations

import sys
import zipfile

import numpy as np
import pytest

from napari_seamless_unet import UNet, UNetInputError, load_model, predict, segment
from napari_seamless_unet.core.bioimageio import export_bioimageio
from napari_seamless_unet.core.bioimageio_load import infer_config, is_bioimageio_package
from napari_seamless_unet.core.errors import ModelFileError
from napari_seamless_unet.core.model_io import read_model_file, save_model
from napari_seamless_unet.core.synthetic import touching_discs, touching_nuclei_3d

pytest.importorskip("bioimageio.core")
from bioimageio.spec import load_description
from bioimageio.spec.model import v0_5

PACKAGE = {"name": "Tiny test U-Net", "description": "A tiny U-Net for the tests.", "authors": ["Test Person"]}


@pytest.fixture(scope="module", autouse=True)
def offline():
    """No request leaves the machine, from the first export on: an HTTP call of bioimageio.spec/core fails."""
    import httpx

    def refuse(*args, **kwargs):
        raise AssertionError(f"bioimage.io tried to go online: {args} {kwargs}")

    with pytest.MonkeyPatch.context() as patch:
        for name in ("request", "stream", "get", "head"):
            patch.setattr(httpx, name, refuse)
        yield


def _model(**kwargs) -> UNet:
    import torch

    torch.manual_seed(0)
    return UNet(1, 2, base_channels=4, depth=2, **kwargs).eval()


@pytest.fixture(scope="module")
def exported_2d(tmp_path_factory):
    model = _model()
    image = touching_discs((150, 170), seed=3)[0] * 1000  # not a valid size: the export takes its centre
    path = export_bioimageio(model, tmp_path_factory.mktemp("bioimageio") / "tiny.zip", test_image=image, **PACKAGE)
    return model, path


@pytest.fixture(scope="module")
def exported_3d(tmp_path_factory):
    model = _model(ndim=3, voxel_size=(2.0, 1.0, 1.0))
    path = export_bioimageio(model, tmp_path_factory.mktemp("bioimageio") / "tiny3d.zip", **PACKAGE)
    return model, path


def _passes_test_model(path) -> None:
    from bioimageio.core import test_model

    summary = test_model(path, devices=["cpu"])
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed
    names = " ".join(d.name for d in summary.details)
    assert "pytorch_state_dict" in names and "torchscript" in names


def test_the_package_validates_and_describes_the_network(exported_2d):
    model, path = exported_2d
    assert is_bioimageio_package(path)
    descr = load_description(path)  # with the io checks: every file there, every hash right
    assert isinstance(descr, v0_5.ModelDescr), descr.validation_summary.format()
    assert descr.validation_summary.status == "valid-format"
    assert descr.format_version.startswith("0.5")

    (raw,) = descr.inputs
    assert [a.type for a in raw.axes] == ["batch", "channel", "space", "space"]
    space = raw.axes[2:]
    assert [a.size.min for a in space] == list(model.geometry.min_input_shape)
    assert [a.size.step for a in space] == list(model.geometry.step)
    (scale,) = [p for p in raw.preprocessing if p.id == "scale_range"]
    assert (scale.kwargs.min_percentile, scale.kwargs.max_percentile) == (1.0, 99.8)
    assert [str(a) for a in scale.kwargs.axes] == ["y", "x"]  # per sample and channel, as prediction does

    (out,) = descr.outputs
    assert out.axes[1].channel_names == ["background", "foreground"]
    for axis in out.axes[2:]:
        assert str(axis.size.tensor_id) == "raw" and axis.size.offset == -2 * model.halo

    arch = descr.weights.pytorch_state_dict.architecture
    assert (str(arch.callable), arch.import_from) == ("SoftmaxUNet", "napari_seamless_unet.core.model")
    assert dict(arch.kwargs) == model.config
    assert descr.weights.torchscript is not None and descr.weights.torchscript.parent == "pytorch_state_dict"
    assert any(str(c.doi) == "10.1007/978-3-319-24574-4_28" for c in descr.cite)
    assert descr.covers and descr.training_data is not None and descr.documentation is not None


def test_the_test_tensors_are_our_prediction_of_the_test_image(exported_2d):
    model, path = exported_2d
    descr = load_description(path)
    (x,), (y,) = descr.get_input_test_arrays(), descr.get_output_test_arrays()
    assert x.shape[:2] == (1, 1) and model.geometry.output_shape(x.shape[2:]) == y.shape[2:]
    halo = model.halo
    expected = predict(model, x[0, 0], device="cpu", precision="fp32")[:, halo:-halo, halo:-halo]
    np.testing.assert_allclose(y[0], expected, atol=1e-6)
    # the centre of the 150 x 170 image at the largest valid size within it and within an output of 128
    assert x.shape[2:] == (148, 128 + 2 * halo)


@pytest.mark.slow  # about 10 s: six inference runs for each of the two weight formats
def test_bioimageio_core_test_model_passes_2d(exported_2d):
    _passes_test_model(exported_2d[1])


@pytest.mark.slow
def test_bioimageio_core_test_model_passes_3d(exported_3d):
    _passes_test_model(exported_3d[1])


def test_load_model_of_the_package_predicts_the_same(exported_2d, tmp_path):
    model, path = exported_2d
    loaded = load_model(path)
    assert loaded.config == model.config
    assert loaded.metadata["bioimageio"]["name"] == PACKAGE["name"]
    image = touching_discs((90, 110), seed=5)[0]
    np.testing.assert_allclose(predict(loaded, image, device="cpu"), predict(model, image, device="cpu"), atol=1e-6)
    # the unpacked package too: its folder, or its rdf.yaml
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tmp_path)
    for source in (tmp_path, tmp_path / "rdf.yaml"):
        assert load_model(source).config == model.config
    # and it round-trips into a .unet.pt file
    again = load_model(save_model(loaded, tmp_path / "again.unet.pt"))
    np.testing.assert_allclose(predict(again, image, device="cpu"), predict(model, image, device="cpu"), atol=1e-6)


def test_load_model_of_the_3d_package_predicts_the_same(exported_3d):
    model, path = exported_3d
    loaded = load_model(path)
    assert loaded.ndim == 3 and loaded.voxel_size == (2.0, 1.0, 1.0)
    volume = touching_nuclei_3d((20, 60, 60), seed=1)[0]
    np.testing.assert_allclose(predict(loaded, volume, device="cpu"), predict(model, volume, device="cpu"), atol=1e-6)
    descr = load_description(path)
    assert [a.unit for a in descr.inputs[0].axes[2:]] == ["micrometer"] * 3
    assert [a.scale for a in descr.inputs[0].axes[2:]] == [2.0, 1.0, 1.0]


def test_an_instance_model_with_minmax_keeps_its_task_and_normalisation(tmp_path):
    model = _model(task="instances", normalization="minmax")
    path = export_bioimageio(model, tmp_path / "instances.zip", **PACKAGE)
    descr = load_description(path)
    (scale,) = [p for p in descr.inputs[0].preprocessing if p.id == "scale_range"]
    assert (scale.kwargs.min_percentile, scale.kwargs.max_percentile) == (0.0, 100.0)
    assert "instance-segmentation" in descr.tags
    loaded = load_model(path)
    assert loaded.task == "instances" and loaded.normalization == model.normalization
    image = touching_discs((96, 96), seed=2)[0]
    np.testing.assert_array_equal(segment(loaded, image, device="cpu"), segment(model, image, device="cpu"))


def test_an_ensemble_exports_and_passes_bioimageio_test_model(tmp_path):
    model = _model(members=2)
    path = export_bioimageio(model, tmp_path / "ensemble.zip", **PACKAGE)
    _passes_test_model(path)  # the traced weights give the members' mean probabilities, as the state dict does
    loaded = load_model(path)
    assert loaded.members == 2 and loaded.config == model.config
    image = touching_discs((90, 110), seed=5)[0]
    np.testing.assert_allclose(predict(loaded, image, device="cpu"), predict(model, image, device="cpu"), atol=1e-6)


def test_a_trained_model_describes_its_training(tmp_path):
    from napari_seamless_unet.core.train import TrainConfig, train

    image, labels = touching_discs((64, 64), n_objects=5, seed=0)
    model = train([image], [labels], config=TrainConfig(base_channels=4, depth=2, steps=2, device="cpu")).model
    descr = load_description(export_bioimageio(model, tmp_path / "trained.zip", **PACKAGE))
    assert "Trained with napari-seamless-unet" in descr.training_data.description
    assert "2 optimisation steps" in descr.training_data.description
    training = descr.config.bioimageio.training
    assert (training.optimizer, training.initial_learning_rate) == ("adam", 0.001)
    loaded = load_model(tmp_path / "trained.zip")
    assert loaded.metadata["train_config"] == model.metadata["train_config"]
    assert loaded.metadata["history"]["best_step"] == model.metadata["history"]["best_step"]


def test_no_normalisation_means_no_scale_range(tmp_path):
    model = _model(normalization="none")
    descr = load_description(export_bioimageio(model, tmp_path / "none.zip", **PACKAGE))
    assert {p.id for p in descr.inputs[0].preprocessing} == {"ensure_dtype"}


def _rewrite_rdf(path, target, replace: dict[str, str]) -> None:
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as out:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "rdf.yaml":
                text = data.decode()
                for old, new in replace.items():
                    assert old in text
                    text = text.replace(old, new)
                data = text.encode()
            out.writestr(item, data)


def test_a_foreign_package_of_our_unet_opens_from_its_weights(exported_2d, tmp_path):
    model, path = exported_2d
    foreign = tmp_path / "foreign.zip"
    _rewrite_rdf(
        path,
        foreign,
        {
            "callable: SoftmaxUNet": "callable: UNet2d",
            "import_from: napari_seamless_unet.core.model": "import_from: x.y",
        },
    )
    loaded = load_model(foreign)  # no code of x.y is imported: the architecture is read off the weights
    assert {k: loaded.config[k] for k in ("in_channels", "num_classes", "base_channels", "depth", "ndim")} == {
        "in_channels": 1,
        "num_classes": 2,
        "base_channels": 4,
        "depth": 2,
        "ndim": 2,
    }
    assert loaded.normalization == model.normalization and loaded.class_names == model.class_names
    image = touching_discs((90, 90), seed=4)[0]
    np.testing.assert_allclose(predict(loaded, image, device="cpu"), predict(model, image, device="cpu"), atol=1e-6)


def test_a_foreign_network_is_refused_with_advice(exported_2d):
    state = {k.replace("down.", "encoder."): v for k, v in exported_2d[0].state_dict().items()}
    assert infer_config(state) is None
    assert infer_config(exported_2d[0].state_dict())["base_channels"] == 4


def test_read_model_file_names_a_package(exported_2d):
    with pytest.raises(ModelFileError, match=r"bioimage\.io model package"):
        read_model_file(exported_2d[1])


def test_bad_names_and_missing_authors_are_refused(tmp_path):
    model = _model()
    with pytest.raises(UNetInputError, match="5 to 128 characters"):
        export_bioimageio(model, tmp_path / "x.zip", name="my/model!", description="d", authors=["A"])
    with pytest.raises(UNetInputError, match="at least one author"):
        export_bioimageio(model, tmp_path / "x.zip", name="Good name", description="d", authors=[])
    with pytest.raises(UNetInputError, match="refused the package description"):
        export_bioimageio(model, tmp_path / "x.zip", **PACKAGE, license="Not-A-Licence")
    assert not (tmp_path / "x.zip").exists()


def test_an_almost_constant_test_image_is_refused(tmp_path):
    image = np.zeros((100, 100), np.float32)
    image[40:44, 40:44] = 1  # percentiles 1 and 99.8 both 0: prediction's fallback has no bioimage.io equivalent
    with pytest.raises(UNetInputError, match="almost all one value"):
        export_bioimageio(_model(), tmp_path / "x.zip", test_image=image, **PACKAGE)


def test_without_the_extra_the_message_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "bioimageio.spec.model", None)
    with pytest.raises(UNetInputError, match=r'pip install "napari-seamless-unet\[bioimageio\]"'):
        export_bioimageio(_model(), tmp_path / "x.zip", **PACKAGE)
