"""Segmentation models: shapes at any input size, sizes of the published models, pretrained
loading from torchvision / timm / official DDRNet key names, optimizer groups and ONNX parity."""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from tests.helpers import trained_like
from vsda_train.models import SegmentationModel, create_model, model_names
from vsda_train.models.pretrained import load_pretrained

TINY = {"ddrnet23_slim": {"width": 8}, "deeplabv2_r18": {"width": 8}}


def _tiny(name: str, num_classes: int = 5, **kwargs) -> SegmentationModel:
    torch.manual_seed(0)
    return create_model(name, num_classes, **TINY[name], **kwargs)


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("hw", [(64, 128), (61, 97), (17, 9)])
def test_logits_match_input_size(name: str, hw: tuple[int, int]) -> None:
    model = _tiny(name).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, *hw))
    assert tuple(logits.shape) == (2, 5, *hw)
    assert torch.isfinite(logits).all()


def test_ddrnet_forward_train_outputs() -> None:
    model = _tiny("ddrnet23_slim").eval()
    x = torch.randn(1, 3, 61, 97)
    with torch.no_grad():
        out, logits = model.forward_train(x), model(x)
    # Each stride-2 conv rounds up: 61 -> 31 -> 16 -> 8 and 97 -> 49 -> 25 -> 13 at 1/8.
    assert tuple(out.features.shape) == (1, 4 * 8, 8, 13)
    assert tuple(out.aux_logits.shape) == (1, 5, 61, 97)
    assert torch.equal(out.logits, logits)  # forward is the export path of the same computation
    assert _tiny("ddrnet23_slim", aux_head=False).eval().forward_train(x).aux_logits is None


def test_deeplabv2_forward_train_outputs() -> None:
    model = _tiny("deeplabv2_r18", multi_level=True).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out, logits = model.forward_train(x), model(x)
    assert tuple(out.features.shape) == (1, 8 * 8, 8, 12)  # output stride 8, layer4 channels 8 * width
    assert tuple(out.aux_logits.shape) == (1, 5, 64, 96)
    assert torch.equal(out.logits, logits)
    assert _tiny("deeplabv2_r18").forward_train(x).aux_logits is None  # single level by default


def test_deeplabv2_aspp_sums_four_dilated_branches() -> None:
    head = _tiny("deeplabv2_r18").head
    assert [c.dilation for c in head.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    x = torch.randn(1, 64, 8, 12)
    with torch.no_grad():
        assert torch.allclose(head(x), sum(conv(x) for conv in head.branches), atol=1e-6)


def test_ddrnet_training_needs_two_images() -> None:
    model = _tiny("ddrnet23_slim").train()
    with pytest.raises(ValueError, match="batch >= 2"):
        model.forward_train(torch.randn(1, 3, 64, 64))
    out = model.forward_train(torch.randn(2, 3, 64, 64))
    (out.logits.mean() + out.aux_logits.mean()).backward()
    assert all(p.grad is not None for p in model.parameters())


# ---------------------------------------------------------------- factory


def test_unknown_model_lists_the_names() -> None:
    with pytest.raises(ValueError, match="model 'pidnet' is unknown") as err:
        create_model("pidnet", 19)
    for name in ("ddrnet23_slim", "ddrnet23", "deeplabv2_r101", "deeplabv2_r18"):
        assert name in str(err.value) and name in model_names()


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="has no option depth; options: width, aux_head"):
        create_model("ddrnet23_slim", 19, depth=50)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        create_model("deeplabv2_r18", 0)
    with pytest.raises(ValueError, match="width must be an integer >= 1, got 0"):
        create_model("ddrnet23_slim", 19, width=0)
    with pytest.raises(ValueError, match="width must be an integer >= 1, got '32'"):
        create_model("ddrnet23_slim", 19, width="32")


def test_config_rebuilds_the_same_architecture() -> None:
    model = _tiny("deeplabv2_r18", multi_level=True)
    assert model.config == {"name": "deeplabv2_r18", "num_classes": 5, "width": 8, "multi_level": True,
                            "stride_in_1x1": False}
    rebuilt = create_model(**model.config)
    rebuilt.load_state_dict(model.state_dict())  # strict: same keys, same shapes
    assert _tiny("ddrnet23_slim").config == {"name": "ddrnet23_slim", "num_classes": 5, "width": 8,
                                             "aux_head": True}


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("ddrnet23_slim", 5.6e6, 5.8e6),  # paper: 5.7M
     ("ddrnet23", 19.9e6, 20.5e6),  # paper: 20.1M
     ("deeplabv2_r101", 43.5e6, 44.3e6)],  # ResNet-101 without fc 42.5M + ASPP for 19 classes 1.4M
)
def test_published_parameter_counts(name: str, low: float, high: float) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = create_model(name, 19)
    assert low <= _n_params(model) <= high


def test_deeplabv2_r101_layout() -> None:
    with torch.device("meta"):
        model = create_model("deeplabv2_r101", 19)
    backbone = model.backbone
    assert [len(backbone.layer3), len(backbone.layer4)] == [23, 3]
    assert _n_params(backbone) == 42_500_160  # torchvision resnet101: 44_549_160 minus fc (2048*1000+1000)
    assert backbone.layer4[0].conv2.dilation == (4, 4) and backbone.layer3[5].conv2.dilation == (2, 2)
    assert backbone.layer3[0].conv2.stride == (1, 1) and backbone.layer2[0].conv2.stride == (2, 2)


@pytest.mark.parametrize("name", sorted(TINY))
def test_param_groups_cover_every_parameter_once(name: str) -> None:
    model = _tiny(name, **({"multi_level": True} if name.startswith("deeplab") else {}))
    backbone, head = model.param_groups(lr=2.5e-4)
    ids = [id(p) for group in (backbone, head) for p in group["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert backbone["lr"] == 2.5e-4 and head["lr"] == pytest.approx(2.5e-3)
    assert {id(p) for p in model.head.parameters()} <= {id(p) for p in head["params"]}
    assert {id(p) for p in model.aux_head.parameters()} <= {id(p) for p in head["params"]}
    assert model.param_groups(1.0, head_lr_mult=1.0)[1]["lr"] == 1.0
    torch.optim.SGD(model.param_groups(0.01), lr=0.01, momentum=0.9)  # the groups are what SGD takes


# ---------------------------------------------------------------- pretrained


def _backbone_state(model: SegmentationModel) -> dict[str, torch.Tensor]:
    """Return the backbone tensors under their own (torchvision-style) names, with new values."""
    g = torch.Generator().manual_seed(1)
    return {k.removeprefix("backbone."): torch.rand(v.shape, generator=g) if v.is_floating_point() else v
            for k, v in model.state_dict().items() if k.startswith("backbone.")}


def test_pretrained_torchvision_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = _tiny("deeplabv2_r18")
    state = _backbone_state(model)
    n_backbone = len(state)
    # Old torchvision files have no BN counters.
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    del state["layer4.1.bn2.running_var"]
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 64), torch.zeros(1000)
    state["conv1.weight"] = torch.zeros(8, 3, 3, 3)  # wrong shape: reported, not loaded
    path = tmp_path / "resnet18_tv.pth"
    torch.save(state, path)
    head_before = model.head.branches[0].weight.clone()
    with caplog.at_level(logging.INFO, logger="vsda_train.models.pretrained"):
        report = load_pretrained(model, path)
    n_counters = sum(k.endswith("num_batches_tracked") for k in model.backbone.state_dict())
    assert len(report.matched) == n_backbone - n_counters - 2
    assert report.missing == ("backbone.conv1.weight", "backbone.layer4.1.bn2.running_var")
    assert report.mismatched == ("backbone.conv1.weight",)
    assert report.unexpected == ("fc.weight", "fc.bias")
    assert torch.equal(model.backbone.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert torch.equal(model.backbone.bn1.running_mean, state["bn1.running_mean"])
    assert torch.equal(model.head.branches[0].weight, head_before)  # heads untouched
    assert "2 backbone keys missing, 2 unexpected, 1 shape mismatches" in caplog.text
    assert caplog.text.count("\n") == 1  # one line


def test_pretrained_timm_train_checkpoint(tmp_path: Path) -> None:
    """timm's train.py saves {'epoch', 'arch', 'state_dict': DDP 'module.'-prefixed keys, ...}."""
    reference = _tiny("deeplabv2_r18")
    state = _backbone_state(reference)
    path = tmp_path / "checkpoint-3.pth.tar"
    torch.save({"epoch": 3, "arch": "resnet18", "version": 2,
                "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = create_model("deeplabv2_r18", 5, pretrained=str(path), width=8)
    assert torch.equal(model.backbone.layer2[0].downsample[0].weight, state["layer2.0.downsample.0.weight"])
    report = load_pretrained(model, path)
    assert len(report.matched) == len(state)
    assert report.missing == report.unexpected == report.mismatched == ()


def test_pretrained_safetensors_as_timm_publishes(tmp_path: Path) -> None:
    conv = torch.arange(8 * 3 * 7 * 7, dtype=torch.float32).reshape(8, 3, 7, 7) / 100
    mean = torch.tensor([0.5, -1.0, 2.0, 0.25, 0.0, 1.5, -0.5, 3.0], dtype=torch.float16)
    n = conv.numel() * 4  # bytes of the float32 tensor; the float16 one follows it
    header = {"__metadata__": {"format": "pt"},
              "conv1.weight": {"dtype": "F32", "shape": [8, 3, 7, 7], "data_offsets": [0, n]},
              "bn1.running_mean": {"dtype": "F16", "shape": [8], "data_offsets": [n, n + 16]}}
    encoded = json.dumps(header).encode()
    path = tmp_path / "model.safetensors"
    data = conv.numpy().tobytes() + mean.numpy().tobytes()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + data)
    model = _tiny("deeplabv2_r18")
    report = load_pretrained(model, path)
    assert report.matched == ("backbone.conv1.weight", "backbone.bn1.running_mean")
    assert torch.equal(model.backbone.conv1.weight.detach(), conv)
    assert model.backbone.bn1.running_mean.tolist() == [0.5, -1.0, 2.0, 0.25, 0.0, 1.5, -0.5, 3.0]
    path.write_bytes(b"\x10" + b"\x00" * 7 + b"{not json")
    with pytest.raises(ValueError, match=f"^{path}: not a valid safetensors file"):
        load_pretrained(model, path)


# Official DDRNet-23-slim names and shapes, read off the reference code (width 32, 19 classes).
DDRNET_OFFICIAL = {
    "conv1.0.weight": (32, 3, 3, 3), "conv1.0.bias": (32,), "conv1.4.running_var": (32,),
    "layer3_.0.conv1.weight": (64, 64, 3, 3), "compression3.0.weight": (64, 128, 1, 1),
    "down4.3.weight": (256, 128, 3, 3), "layer5_.0.downsample.0.weight": (128, 64, 1, 1),
    "layer5.0.conv3.weight": (512, 256, 1, 1),
}
DDRNET_OFFICIAL_SEG = {  # the segmentation checkpoints add these (wrapped as 'model.' by their trainer)
    "spp.scale4.3.weight": (128, 512, 1, 1), "spp.compression.2.weight": (128, 640, 1, 1),
    "final_layer.conv2.weight": (19, 64, 1, 1), "seghead_extra.conv1.weight": (64, 64, 3, 3),
}
DDRNET_IMAGENET_ONLY = {"down5.0.weight": (256, 128, 3, 3), "last_layer.0.weight": (1024, 512, 1, 1),
                        "linear.weight": (1000, 1024)}


def test_pretrained_official_ddrnet_names(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(2)
    imagenet = {f"module.{k}": torch.rand(shape, generator=g)
                for k, shape in {**DDRNET_OFFICIAL, **DDRNET_IMAGENET_ONLY}.items()}
    torch.save({"state_dict": imagenet}, tmp_path / "DDRNet23s_imagenet.pth")
    model = create_model("ddrnet23_slim", 19)
    report = load_pretrained(model, tmp_path / "DDRNet23s_imagenet.pth")
    assert set(report.matched) == {f"backbone.{k}" for k in DDRNET_OFFICIAL}
    assert set(report.unexpected) == {f"module.{k}" for k in DDRNET_IMAGENET_ONLY}
    assert report.mismatched == ()
    assert torch.equal(model.backbone.down4[3].weight, imagenet["module.down4.3.weight"])

    seg = {f"model.{k}": torch.rand(shape, generator=g) for k, shape in DDRNET_OFFICIAL_SEG.items()}
    torch.save(seg, tmp_path / "ddrnet23s_cityscapes.pth")
    report = load_pretrained(model, tmp_path / "ddrnet23s_cityscapes.pth")
    assert set(report.matched) == {"context.scale4.3.weight", "context.compression.2.weight",
                                   "head.conv2.weight", "aux_head.conv1.weight"}
    assert torch.equal(model.context.scale4[3].weight, seg["model.spp.scale4.3.weight"])


def test_pretrained_torchvision_resnet101_shapes(tmp_path: Path) -> None:
    shapes = {"conv1.weight": (64, 3, 7, 7), "bn1.running_var": (64,),
              "layer1.0.downsample.0.weight": (256, 64, 1, 1), "layer3.22.conv3.weight": (1024, 256, 1, 1),
              "layer4.2.bn3.bias": (2048,), "fc.weight": (1000, 2048)}
    torch.save({k: torch.ones(shape) for k, shape in shapes.items()}, tmp_path / "resnet101.pth")
    model = create_model("deeplabv2_r101", 15)
    report = load_pretrained(model, tmp_path / "resnet101.pth")
    assert report.matched == tuple(f"backbone.{k}" for k in list(shapes)[:-1])
    assert report.unexpected == ("fc.weight",) and report.mismatched == ()
    assert float(model.backbone.layer3[22].conv3.weight.detach().sum()) == 1024 * 256


def test_pretrained_bad_files_name_the_path(tmp_path: Path) -> None:
    model = _tiny("ddrnet23_slim")
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=f"^{missing}: pretrained checkpoint not found"):
        create_model("ddrnet23_slim", 5, pretrained=str(missing), width=8)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"^{garbage}: not a weights-only torch checkpoint"):
        load_pretrained(model, garbage)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 1}, empty)
    with pytest.raises(ValueError, match=f"^{empty}: holds no tensors"):
        load_pretrained(model, empty)
    other = tmp_path / "vit.pth"
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match=f"^{other}: no tensor fits ddrnet23_slim"):
        load_pretrained(model, other)


# ---------------------------------------------------------------- ONNX


@pytest.mark.parametrize("name", sorted(TINY))
def test_onnx_export_dynamic_hw_matches_pytorch(name: str) -> None:
    model = trained_like(_tiny(name, num_classes=15))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated, not gone; it gives dynamic H x W in one self-contained file.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.randn(1, 3, 64, 128),), buffer, dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={io: {2: "height", 3: "width"} for io in ("image", "logits")})
    graph = onnx.load_from_string(buffer.getvalue()).graph
    ops = [node.op_type for node in graph.node]
    assert "GlobalAveragePool" not in ops and not any("Adaptive" in op for op in ops)
    for node in graph.node:
        if node.op_type == "AveragePool":  # DAPPM's fixed kernels 5, 9, 17
            kernel = next(a.ints for a in node.attribute if a.name == "kernel_shape")
            assert list(kernel) in ([5, 5], [9, 9], [17, 17])
        if node.op_type == "Resize":  # align_corners=False
            mode = next(a.s for a in node.attribute if a.name == "coordinate_transformation_mode")
            assert mode == b"half_pixel"
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim[2:]] == ["height", "width"]
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for hw in [(64, 128), (61, 97)]:
        x = torch.randn(1, 3, *hw)
        with torch.no_grad():
            expected = model(x).numpy()
        (logits,) = session.run(None, {"image": x.numpy()})
        assert logits.shape == (1, 15, *hw)
        assert np.abs(expected).max() > 1.0  # not a degenerate all-zero comparison
        assert np.abs(logits - expected).max() <= 1e-4


def test_instance_head_leaves_the_semantic_model_unchanged() -> None:
    """The instance head is built on a forked RNG and reads detached features: same weights, same logits,
    and no gradient from its loss into the trunk."""
    torch.manual_seed(0)
    plain = create_model("ddrnet23_slim", 15, width=8)
    torch.manual_seed(0)
    with_head = create_model("ddrnet23_slim", 15, width=8, instance_head=True)
    extra = set(with_head.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("instance_head.") for k in extra)
    assert all(torch.equal(v, with_head.state_dict()[k]) for k, v in plain.state_dict().items())
    x = torch.randn(2, 3, 64, 96)
    with_head.eval(), plain.eval()
    logits, instances = with_head.forward_instances(x)
    assert torch.equal(logits, plain(x)) and torch.equal(with_head(x), plain(x))
    assert instances.shape == (2, 3, 64, 96) and with_head.config["instance_head"] is True
    with_head.train()
    out = with_head.forward_train(x)
    out.instances.sum().backward()
    assert all(p.grad is None for n, p in with_head.named_parameters() if not n.startswith("instance_head."))
    with pytest.raises(ValueError, match="without an instance head"):
        plain.forward_instances(x)
