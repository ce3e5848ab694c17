"""The CNNI-BCC network: the poster's layers exactly, and the fast form equal to the plain one."""

import pytest
import torch
import torch.nn.functional as F

from napari_mammo.models.cnni_bcc.depthwise import SameDepthwiseConv2d, same_padding
from napari_mammo.models.cnni_bcc.network import CNNIBCC

POSTER = {  # Keras output shapes (H, W, C) and parameter counts from the poster
    "conv2d_1": ((64, 64, 32), 320),
    "depthwise_conv2d_1": ((64, 64, 32), 32800),
    "conv2d_2": ((64, 64, 64), 2112),
    "depthwise_conv2d_2": ((32, 32, 64), 262208),
    "average_pooling2d_1": ((8, 8, 64), 0),
    "flatten_1": ((4096,), 0),
    "dense_1": ((3,), 12291),
}
MODULES = {"conv2d_1": "conv1", "depthwise_conv2d_1": "depthwise1", "conv2d_2": "conv2",
           "depthwise_conv2d_2": "depthwise2", "dense_1": "dense"}


def test_parameter_count_and_layer_shapes():
    model = CNNIBCC()
    assert sum(p.numel() for p in model.parameters()) == 309_731
    features = model.features(torch.rand(2, 1, 128, 128))
    assert list(features) == list(POSTER)
    for name, (shape, params) in POSTER.items():
        out = features[name]
        keras_shape = tuple(out.shape[1:]) if out.ndim == 2 else (out.shape[2], out.shape[3], out.shape[1])
        assert keras_shape == shape, name
        if name in MODULES:
            assert sum(p.numel() for p in getattr(model, MODULES[name]).parameters()) == params, name


def test_keras_same_padding():
    assert same_padding(128, 3, 2) == (0, 1)
    assert same_padding(64, 32, 1) == (15, 16)
    assert same_padding(64, 64, 2) == (31, 31)


def _compare(fast_model, plain_model, x, y):
    plain_model.load_state_dict(fast_model.state_dict())
    outputs = []
    for model in (fast_model, plain_model):
        model.zero_grad()
        out = model(x)
        F.cross_entropy(out, y).backward()
        outputs.append(out)
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-4, rtol=1e-4)
    for (name, a), b in zip(fast_model.named_parameters(), plain_model.parameters(), strict=True):
        scale = max(1.0, float(b.grad.abs().max()))
        assert float((a.grad - b.grad).abs().max()) <= 1e-4 * scale, name


def test_fast_model_equals_plain_model_in_outputs_and_gradients():
    torch.manual_seed(0)
    x = torch.rand(6, 1, 128, 128)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    _compare(CNNIBCC(fast=True), CNNIBCC(fast=False), x, y)


def test_fast_head_equals_layer_by_layer():
    torch.manual_seed(1)
    model = CNNIBCC(fast=True)
    x = torch.rand(3, 1, 128, 128)
    torch.testing.assert_close(model(x), model.features(x)["dense_1"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("size", "kernel", "stride"), [(64, 32, 1), (20, 7, 1), (17, 6, 1), (64, 64, 2), (15, 4, 2)])
def test_depthwise_layer_fast_equals_plain(size, kernel, stride):
    torch.manual_seed(2)
    fast = SameDepthwiseConv2d(3, kernel, stride, fast=True)
    plain = SameDepthwiseConv2d(3, kernel, stride, fast=False)
    plain.load_state_dict(fast.state_dict())
    x1 = torch.randn(2, 3, size, size, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    g = torch.randn(2, 3, -(-size // stride), -(-size // stride))
    (fast(x1) * g).sum().backward()
    (plain(x2) * g).sum().backward()
    torch.testing.assert_close(fast(x1), plain(x2), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast.weight.grad, plain.weight.grad, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(fast.bias.grad, plain.bias.grad, atol=1e-3, rtol=1e-4)


def test_gradcheck_of_fast_depthwise_in_double():
    torch.manual_seed(3)
    layer = SameDepthwiseConv2d(2, 5, 1, fast=True).double()
    x = torch.randn(1, 2, 7, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: layer(inp), (x,))


def test_wrong_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(N, 1, 128, 128\)"):
        CNNIBCC()(torch.rand(1, 1, 64, 64))


def test_cached_inference_head_follows_weight_changes():
    torch.manual_seed(4)
    model = CNNIBCC(fast=True).eval()
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        first = model(x)
        model.dense.weight.add_(0.1)
        second = model(x)
        torch.testing.assert_close(second, model.features(x)["dense_1"], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(first, second)
    model.load_state_dict(CNNIBCC(fast=True).state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.features(x)["dense_1"], atol=1e-5, rtol=1e-4)
