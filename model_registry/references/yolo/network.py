"""YOLO11-pose in plain torch, built from an Ultralytics checkpoint's yaml layer table.

Ultralytics (AGPL, needs torchvision) is not part of the platform, so the network is rebuilt
here from its layer table with the channel/depth rules of Ultralytics' ``parse_model`` and the
blocks it uses (Conv, Bottleneck, C3k, C3k2, SPPF, Attention, PSABlock, C2PSA, Concat,
Upsample, Pose). Module names mirror Ultralytics' (``model.<i>.cv1.conv.weight``...), so the
checkpoint's tensors load with ``load_state_dict(strict=True)`` (see
``model_registry.references.yolo.detector.load_weights``).

The head decodes as Ultralytics' export mode does: boxes through DFL (``reg_max`` bins) and
``dist2bbox`` to cx, cy, w, h in input pixels, the class score through a sigmoid, keypoints as
``(raw * 2 + anchor - 0.5) * stride`` with a sigmoid confidence; output ``[B, 4 + nc + K*3, A]``.
The anchor grid is computed from the feature-map shapes, so any input divisible by 32 works in
torch; the ONNX export freezes it (and every size but the batch) for the traced 640 x 640.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from serving.errors import ModelValidationError

# YOLO11 was trained with BatchNorm eps 1e-3 (Ultralytics' initialize_weights sets it; eps is
# module state, not in the state dict). The converter passes the checkpoint's own value.
BN_EPS = 1e-3


class Conv(nn.Module):
    """Conv2d (no bias, 'same' padding) + BatchNorm2d + SiLU (or no activation)."""

    def __init__(
        self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        self.conv: nn.Module = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(c2, eps=BN_EPS)
        self.act: nn.Module = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold the BatchNorm into the conv (computed in float64, stored in float32)."""
        conv, bn = self.conv, self.bn
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
            return  # already fused
        assert bn.running_var is not None and bn.running_mean is not None
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        with torch.no_grad():
            conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).float())
            bias = bn.bias.double() - bn.running_mean.double() * scale
        conv.bias = nn.Parameter(bias.float(), requires_grad=False)
        self.bn = nn.Identity()


def dw_conv(c1: int, c2: int, k: int = 1, s: int = 1, act: bool = True) -> Conv:
    """Ultralytics' DWConv: a Conv with ``gcd(c1, c2)`` groups (same tensor names)."""
    return Conv(c1, c2, k, s, g=math.gcd(c1, c2), act=act)


class Bottleneck(nn.Module):
    def __init__(
        self, c1: int, c2: int, shortcut: bool = True, g: int = 1, k: int = 3, e: float = 0.5
    ) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, k, 1)
        self.cv2 = Conv(c_, c2, k, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3k(nn.Module):
    """CSP block (Ultralytics' C3) with ``n`` k x k bottlenecks."""

    def __init__(
        self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5,
        k: int = 3,
    ) -> None:  # fmt: skip
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, k=k, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k2(nn.Module):
    """C2f-style block whose inner blocks are C3k (``c3k=True``) or Bottlenecks."""

    def __init__(
        self, c1: int, c2: int, n: int = 1, c3k: bool = False, e: float = 0.5, g: int = 1,
        shortcut: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(
            C3k(self.c, self.c, 2, shortcut, g) if c3k else Bottleneck(self.c, self.c, shortcut, g)
            for _ in range(n)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, plus a depthwise positional conv."""

    def __init__(self, dim: int, num_heads: int = 8, attn_ratio: float = 0.5) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim**-0.5
        h = dim + self.key_dim * num_heads * 2
        self.qkv = Conv(dim, h, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, c, h, w = (int(d) for d in x.shape)  # see _flat: only the batch stays symbolic
        qkv = self.qkv(x).view(-1, self.num_heads, self.key_dim * 2 + self.head_dim, h * w)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.head_dim], dim=2)
        attn = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)
        out = (v @ attn.transpose(-2, -1)).view(-1, c, h, w) + self.pe(v.reshape(-1, c, h, w))
        return self.proj(out)


class PSABlock(nn.Module):
    def __init__(self, c: int, attn_ratio: float = 0.5, num_heads: int = 4) -> None:
        super().__init__()
        self.attn = Attention(c, attn_ratio=attn_ratio, num_heads=num_heads)
        self.ffn = nn.Sequential(Conv(c, c * 2, 1), Conv(c * 2, c, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.ffn(x)


class C2PSA(nn.Module):
    """Half the channels through ``n`` PSA blocks (``num_heads = c // 64``), half passed by."""

    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5) -> None:
        super().__init__()
        if c1 != c2:
            raise ModelValidationError(f"C2PSA needs c1 == c2, got {c1} and {c2}")
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(
            *(PSABlock(self.c, attn_ratio=0.5, num_heads=self.c // 64) for _ in range(n))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


class Concat(nn.Module):
    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, self.d)


class DFL(nn.Module):
    """Distribution focal loss integral: expected bin index of a softmax over ``c1`` bins.

    The 1x1 conv's weight is the constant ``arange(c1)``; the checkpoint stores it too, and
    the converter checks that it still is.
    """

    def __init__(self, c1: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(c1, dtype=torch.float32).view(1, c1, 1, 1))
        self.c1 = c1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = int(x.shape[2])
        bins = x.view(-1, 4, self.c1, a).transpose(2, 1).softmax(1)
        return self.conv(bins).view(-1, 4, a)


class Pose(nn.Module):
    """Detect head (box + class branches) plus the keypoint branch ``cv4``; decodes."""

    def __init__(
        self, nc: int, kpt_shape: Sequence[int], ch: Sequence[int], strides: Sequence[float]
    ) -> None:
        super().__init__()
        self.nc, self.nl, self.reg_max = nc, len(ch), 16
        self.kpt_shape = (int(kpt_shape[0]), int(kpt_shape[1]))
        self.nk = self.kpt_shape[0] * self.kpt_shape[1]
        self.strides = [float(s) for s in strides]
        c2 = max(16, ch[0] // 4, self.reg_max * 4)
        c3 = max(ch[0], min(nc, 100))
        c4 = max(ch[0] // 4, self.nk)
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * self.reg_max, 1))
            for x in ch
        )
        self.cv3 = nn.ModuleList(
            nn.Sequential(
                nn.Sequential(dw_conv(x, x, 3), Conv(x, c3, 1)),
                nn.Sequential(dw_conv(c3, c3, 3), Conv(c3, c3, 1)),
                nn.Conv2d(c3, nc, 1),
            )
            for x in ch
        )
        self.dfl = DFL(self.reg_max)
        self.cv4 = nn.ModuleList(
            nn.Sequential(Conv(x, c4, 3), Conv(c4, c4, 3), nn.Conv2d(c4, self.nk, 1)) for x in ch
        )

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        box = torch.cat([_flat(m(x)) for m, x in zip(self.cv2, xs, strict=True)], 2)
        cls = torch.cat([_flat(m(x)) for m, x in zip(self.cv3, xs, strict=True)], 2)
        kpt = torch.cat([_flat(m(x)) for m, x in zip(self.cv4, xs, strict=True)], 2)
        anchors, strides = make_anchors(xs, self.strides)  # [2, A], [1, A]
        n = int(anchors.shape[1])
        lt, rb = self.dfl(box).chunk(2, 1)
        a = anchors.unsqueeze(0)
        x1y1, x2y2 = a - lt, a + rb
        dbox = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides
        y = kpt.view(-1, self.kpt_shape[0], self.kpt_shape[1], n)
        xy = (y[:, :, :2] * 2.0 + (anchors - 0.5)) * strides
        parts = [xy, y[:, :, 2:3].sigmoid()] if self.kpt_shape[1] == 3 else [xy]
        kpts = torch.cat(parts, 2).view(-1, self.nk, n)
        return torch.cat((dbox, cls.sigmoid(), kpts), 1)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H*W] with C, H, W as constants.

    Under the ONNX tracer, sizes read from ``x.shape`` become graph ops; then ONNX cannot
    infer ``output0``'s rows and anchors and the export says ``[batch, ?, ?]`` instead of
    ``[batch, 56, 8400]`` (serving's ``check_io`` wants 56). ``int()`` freezes them for the
    traced input size; only the batch (``-1``) stays dynamic.
    """
    _, c, h, w = (int(d) for d in x.shape)
    return x.reshape(-1, c, h * w)


def make_anchors(
    feats: list[torch.Tensor], strides: Sequence[float], offset: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres (x, y) of every feature map, in cells, and each one's stride."""
    points, stride_rows = [], []
    for feat, stride in zip(feats, strides, strict=True):
        h, w = int(feat.shape[2]), int(feat.shape[3])
        sx = torch.arange(w, dtype=feat.dtype) + offset
        sy = torch.arange(h, dtype=feat.dtype) + offset
        gy, gx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((gx, gy), -1).view(-1, 2))
        stride_rows.append(torch.full_like(gx.reshape(-1, 1), stride))
    return torch.cat(points).transpose(0, 1), torch.cat(stride_rows).transpose(0, 1)


_BLOCKS: dict[str, Any] = {"Conv": Conv, "C3k2": C3k2, "SPPF": SPPF, "C2PSA": C2PSA}


def make_divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


class YoloPose(nn.Module):
    """The layer list of an Ultralytics PoseModel (``self.model``), run as ``_predict_once``."""

    def __init__(
        self,
        layers: dict[str, Any],
        nc: int,
        kpt_shape: Sequence[int],
        strides: Sequence[float],
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        modules, self.froms = build_layers(layers, nc, kpt_shape, strides)
        self.model = nn.ModuleList(modules)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = bn_eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[Any] = []
        y: Any = x
        for m, f in zip(self.model, self.froms, strict=True):
            if f != -1:
                y = outs[f] if isinstance(f, int) else [y if j == -1 else outs[j] for j in f]
            y = m(y)
            outs.append(y)
        return y  # type: ignore[no-any-return]


def build_layers(
    table: dict[str, Any], nc: int, kpt_shape: Sequence[int], strides: Sequence[float]
) -> tuple[list[nn.Module], list[int | list[int]]]:
    """Ultralytics' ``parse_model`` for the blocks YOLO11-pose uses.

    Channels: ``make_divisible(min(c, max_channels) * width, 8)``; repeats:
    ``max(round(n * depth), 1)``, folded into C3k2/C2PSA's own ``n``; C3k2 takes ``c3k`` from
    the yaml, forced True at scales m/l/x. ``nc`` is the checkpoint's class count (the yaml
    keeps the COCO 80 it was built from).
    """
    max_channels: float = math.inf
    depth, width = table.get("depth_multiple", 1.0), table.get("width_multiple", 1.0)
    scale = str(table.get("scale", ""))
    if table.get("scales"):
        depth, width, max_channels = table["scales"][scale]
    names = {"nc": nc, "kpt_shape": list(kpt_shape)}
    ch: list[int] = [int(table.get("ch", 3))]
    modules: list[nn.Module] = []
    froms: list[int | list[int]] = []
    for i, (f, n, kind, raw_args) in enumerate(table["backbone"] + table["head"]):
        args = [_literal(a, names) for a in raw_args]
        n = max(round(n * depth), 1) if n > 1 else n
        if kind in _BLOCKS:
            c1, c2 = ch[f], args[0]
            if c2 != nc:
                c2 = make_divisible(min(c2, max_channels) * width, 8)
            args = [c1, c2, *args[1:]]
            if kind in ("C3k2", "C2PSA"):
                args.insert(2, n)
                n = 1
            if kind == "C3k2" and scale and scale in "mlx":
                args = [*args[:3], True, *args[4:]]
            block = _BLOCKS[kind]
        elif kind == "Concat":
            c2, block = sum(ch[x] for x in f), Concat
        elif kind == "nn.Upsample":
            c2, block = ch[f], nn.Upsample
        elif kind == "Pose":
            args = [*args, [ch[x] for x in f], list(strides)]
            c2, block = ch[-1], Pose
        else:
            raise ModelValidationError(f"layer {i}: block {kind!r} is not supported")
        module = nn.Sequential(*(block(*args) for _ in range(n))) if n > 1 else block(*args)
        modules.append(module)
        froms.append(f)
        if i == 0:
            ch = []
        ch.append(c2)
    return modules, froms


def _literal(value: Any, names: dict[str, Any]) -> Any:
    """parse_model's argument rule: known names, else ``ast.literal_eval`` ('None' -> None)."""
    if not isinstance(value, str):
        return value
    if value in names:
        return names[value]
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
