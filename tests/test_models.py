"""Model registry: parameter counts, shapes, prunable weights, layer names, determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepfake_lth.core.errors import UserError
from deepfake_lth.models import (
    MODELS,
    ModelSpec,
    build_model,
    count_parameters,
    get_spec,
    prunable_parameters,
)

torch.set_num_threads(1)

NAMES = ["mesonet", "cnn5", "resnet18", "xception"]
# a side that is not the default for each model; xception is only run at small sides
SMALL = {"mesonet": 64, "cnn5": 48, "resnet18": 40, "xception": 80}


def test_registry_names_and_defaults():
    assert sorted(MODELS) == sorted(NAMES)
    defaults = {name: get_spec(name).input_size for name in NAMES}
    assert defaults == {"mesonet": 256, "cnn5": 128, "resnet18": 224, "xception": 299}
    for name, spec in MODELS.items():
        assert isinstance(spec, ModelSpec) and spec.name == name
        assert spec.min_input_size <= spec.input_size
        assert spec.description


def test_mesonet_parameter_count():
    assert count_parameters(build_model("mesonet")) == 27_977  # default side 256
    assert count_parameters(build_model("mesonet", input_size=256)) == 27_977
    small = count_parameters(build_model("mesonet", input_size=128))
    assert 15_000 <= small <= 16_500  # the paper's "0.015M"
    assert small == 15_689


def test_cnn5_parameter_count():
    n = count_parameters(build_model("cnn5"))
    assert abs(n - 300_000) <= 30_000
    # the head does not depend on the input side
    assert count_parameters(build_model("cnn5", input_size=64)) == n


def test_resnet18_parameter_count():
    assert count_parameters(build_model("resnet18")) == 11_177_025


@pytest.mark.parametrize("num_outputs", [1, 2])
def test_xception_parameter_count(num_outputs):
    n = count_parameters(build_model("xception", num_outputs=num_outputs))
    assert abs(n - 20.8e6) <= 0.02 * 20.8e6


def test_count_parameters_only_trainable():
    model = build_model("mesonet", input_size=64)
    total = count_parameters(model)
    model.block1.conv.weight.requires_grad_(False)
    assert count_parameters(model) == total - model.block1.conv.weight.numel()


def _cases(name: str) -> list[tuple[int, int]]:
    """(input side, num_outputs): a non-default side, the minimum, and the default side
    (except for xception, which runs at small sides only)."""
    spec = get_spec(name)
    cases = [(SMALL[name], 2), (spec.min_input_size, 1)]
    if name != "xception":
        cases.append((spec.input_size, 1))
    return cases


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape(name):
    for size, num_outputs in _cases(name):
        model = build_model(name, input_size=size, num_outputs=num_outputs).eval()
        batch = 1 if size > 200 else 2
        with torch.no_grad():
            out = model(torch.randn(batch, 3, size, size))
        assert out.shape == (batch, num_outputs), (name, size)
        assert torch.isfinite(out).all()


def test_mesonet_odd_sizes_build_and_run():
    for size in (33, 100, 257):
        model = build_model("mesonet", input_size=size).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, size, size)).shape == (1, 1)


def test_unknown_model_is_user_error():
    with pytest.raises(UserError) as err:
        build_model("vgg16")
    msg = str(err.value)
    assert "vgg16" in msg
    assert all(name in msg for name in NAMES)
    with pytest.raises(UserError):
        get_spec("MesoNet")


@pytest.mark.parametrize("name", NAMES)
def test_too_small_input_is_user_error(name):
    spec = get_spec(name)
    with pytest.raises(UserError) as err:
        build_model(name, input_size=spec.min_input_size - 1)
    assert name in str(err.value) and str(spec.min_input_size) in str(err.value)


def test_bad_num_outputs_is_user_error():
    with pytest.raises(UserError):
        build_model("cnn5", num_outputs=0)


@pytest.mark.parametrize("name", NAMES)
def test_prunable_parameters(name):
    model = build_model(name, input_size=get_spec(name).min_input_size)
    prunable = prunable_parameters(model)
    state = model.state_dict()
    modules = dict(model.named_modules())
    expected = [
        f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    assert list(prunable) == expected  # every Conv/Linear weight, in module order
    params = dict(model.named_parameters())
    for key, param in prunable.items():
        assert key in state and key.endswith(".weight")
        assert param is params[key]
        assert state[key].data_ptr() == param.data_ptr()
        assert isinstance(modules[key.rsplit(".", 1)[0]], (nn.Conv2d, nn.Linear))
    # nothing from norm layers, no biases
    norm_params = {
        f"{n}.{p}"
        for n, m in model.named_modules()
        if isinstance(m, nn.BatchNorm2d)
        for p in ("weight", "bias")
    }
    assert norm_params and not norm_params & set(prunable)
    assert not any(k.endswith("bias") for k in prunable)
    # the prunable weights are most, but not all, of the model's parameters
    n_prunable = sum(p.numel() for p in prunable.values())
    assert 0.9 * count_parameters(model) < n_prunable < count_parameters(model)


def test_prunable_parameters_rejects_pruning_hooks():
    from torch.nn.utils import prune

    model = build_model("cnn5", input_size=32)
    prune.l1_unstructured(model.fc, "weight", amount=0.5)
    with pytest.raises(TypeError, match="fc"):
        prunable_parameters(model)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_weights(name):
    size = get_spec(name).min_input_size
    torch.manual_seed(7)
    a = build_model(name, input_size=size).state_dict()
    torch.manual_seed(7)
    b = build_model(name, input_size=size).state_dict()
    torch.manual_seed(8)
    c = build_model(name, input_size=size).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in _weight_keys(a))


def _weight_keys(state: dict) -> list[str]:
    return [k for k, v in state.items() if k.endswith("weight") and v.dim() >= 2]


@pytest.mark.parametrize("name", NAMES)
def test_layers_resolve_and_features_feed_the_head(name):
    spec = get_spec(name)
    size = SMALL[name]
    model = build_model(name, input_size=size, num_outputs=2).eval()
    target = model.get_submodule(spec.target_layer)
    feature = model.get_submodule(spec.feature_layer)
    captured: dict[str, torch.Tensor] = {}
    h1 = target.register_forward_hook(lambda m, i, o: captured.__setitem__("target", o))
    h2 = feature.register_forward_hook(lambda m, i, o: captured.__setitem__("feature", o))
    with torch.no_grad():
        logits = model(torch.randn(3, 3, size, size))
    h1.remove()
    h2.remove()
    # the target is a convolutional feature map (B, C, H, W)
    assert captured["target"].dim() == 4 and captured["target"].shape[0] == 3
    # the feature layer's flattened output is exactly what the final linear layer sees
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    feats = captured["feature"].flatten(1)
    assert feats.shape == (3, head.in_features)
    with torch.no_grad():
        assert torch.allclose(head(feats), logits, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_target_layer_output_not_modified_in_place(name):
    spec = get_spec(name)
    size = SMALL[name]
    model = build_model(name, input_size=size).train()
    seen: dict[str, torch.Tensor] = {}

    def hook(module, inputs, output):
        seen["output"] = output
        seen["clone"] = output.detach().clone()
        output.register_hook(lambda g: seen.__setitem__("grad", g))

    handle = model.get_submodule(spec.target_layer).register_forward_hook(hook)
    x = torch.randn(2, 3, size, size, requires_grad=True)
    model(x).sum().backward()
    handle.remove()
    assert torch.equal(seen["output"].detach(), seen["clone"])
    assert seen["grad"].shape == seen["clone"].shape
    assert seen["grad"].abs().sum() > 0


def test_pretrained_resnet18_skips_head(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(1)
    imagenet = resnet18(weights=None)  # 1000-class head, as an ImageNet file has
    path = tmp_path / "resnet18_imagenet.pt"
    torch.save(imagenet.state_dict(), path)
    torch.manual_seed(2)
    model = build_model("resnet18", input_size=64, pretrained=str(path))
    src = imagenet.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            assert value.shape[0] == 1
        else:
            assert torch.equal(value, src[key]), key
    torch.manual_seed(2)
    scratch = build_model("resnet18", input_size=64)
    assert not torch.equal(scratch.conv1.weight, model.conv1.weight)


def test_pretrained_xception_2d_pointwise_and_last_linear(tmp_path):
    torch.manual_seed(3)
    source = build_model("xception", input_size=71, num_outputs=3)
    state = {}
    for key, value in source.state_dict().items():
        if "pointwise" in key:
            value = value[:, :, 0, 0]  # older checkpoints store 1×1 convs as matrices
        if key.startswith("fc."):
            key = "last_linear" + key[2:]
        state[key] = value
    path = tmp_path / "xception.pt"
    torch.save(state, path)
    model = build_model("xception", input_size=71, pretrained=str(path))
    assert torch.equal(model.block5.rep[1].pointwise.weight, source.block5.rep[1].pointwise.weight)
    assert torch.equal(model.bn4.running_var, source.bn4.running_var)
    assert model.fc.weight.shape == (1, 2048)


def test_pretrained_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_model("resnet18", pretrained=str(tmp_path / "missing.pt"))
    wrong = tmp_path / "mesonet.pt"
    torch.save(build_model("mesonet", input_size=64).state_dict(), wrong)
    with pytest.raises(UserError, match="cnn5"):
        build_model("cnn5", pretrained=str(wrong))
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(UserError, match="garbage.pt"):
        build_model("cnn5", pretrained=str(garbage))


def test_registry_declarations_match_the_model_modules():
    """The torch-free declarations agree with each model module's own MIN_INPUT_SIZE, and every
    model has a GPU share in (0, 1]."""
    from deepfake_lth.models import cnn5, mesonet, resnet, xception
    from deepfake_lth.models.registry import gpu_share_percent

    modules = {"mesonet": mesonet, "cnn5": cnn5, "resnet18": resnet, "xception": xception}
    assert set(modules) == set(MODELS)
    for name, module in modules.items():
        assert MODELS[name].min_input_size == module.MIN_INPUT_SIZE, name
        assert 0 < MODELS[name].gpu_share <= 1, name
    assert gpu_share_percent("xception") == 100 and gpu_share_percent("mesonet") == 25


def test_the_registry_imports_without_torch():
    import subprocess
    import sys

    code = ("import sys, deepfake_lth.models.registry, deepfake_lth.pruning.plan; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
