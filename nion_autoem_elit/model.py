"""A stack of tiny U-Nets evaluated as one network.

Every convolution is a grouped convolution with one group per ensemble member,
so ``M`` members cost one pass of an ``M``-times wider network instead of ``M``
Python-level passes. Member ``m`` only ever sees input channel ``m``; feeding
different images to different members (training) or the same image to all
(inference) is just a choice of input tensor.

The network works at half resolution after folding 2x2 pixels into channels: atom columns are
several pixels wide at realistic sampling, and a quarter of the pixels is what
makes five members fit a live frame budget on a laptop CPU.
"""

from __future__ import annotations

import typing

import torch
import torch.nn.functional as F
from torch import nn

import nion_autoem_checks as _checks


class _GroupedConv(nn.Conv2d):
    """3x3 (or 1x1) convolution applied independently per member."""

    def __init__(self, members: int, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(members * c_in, members * c_out, kernel, stride=stride, padding=kernel // 2, groups=members)


class EnsembleUNet(nn.Module):
    """``members`` independent small U-Nets packed into grouped convolutions.

    Parameters
    ----------
    members : int
        Number of ensemble members.
    classes : int
        Output classes including background.
    base_channels : int
        Channels per member at the first level.

    Notes
    -----
    Input is ``(batch, members, H, W)``, or ``(batch, 1, H, W)`` when every
    member sees the same image; output logits are
    ``(batch, members, classes, H, W)``. ``H`` and ``W`` must be multiples of 8.

    Examples
    --------
    >>> net = EnsembleUNet(members=3, classes=5, base_channels=8)
    >>> net(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 3, 5, 64, 64])
    """

    def __init__(self, members: int, classes: int, base_channels: int = 8) -> None:
        members = _checks.whole(members, "members", 1)
        classes = _checks.whole(classes, "classes", 2)
        base_channels = _checks.whole(base_channels, "base_channels", 1)
        super().__init__()
        m, c = members, base_channels
        self.members = members
        self.classes = classes
        self.base_channels = base_channels
        # Pixels are folded 2x2 into channels first, so no feature map is ever
        # stored at full resolution (memory traffic, not arithmetic, dominates on CPU).
        self.stem = _GroupedConv(m, 4, c)
        self.enc1 = _GroupedConv(m, c, c)
        self.down1 = _GroupedConv(m, c, 2 * c, stride=2)
        self.enc2 = _GroupedConv(m, 2 * c, 2 * c)
        self.down2 = _GroupedConv(m, 2 * c, 4 * c, stride=2)
        self.bottom = _GroupedConv(m, 4 * c, 4 * c)
        # Skips are added, not concatenated: a concatenation per member is a copy
        # of the whole feature map, which costs more than the convolutions here.
        self.lateral3 = _GroupedConv(m, 4 * c, 2 * c, kernel=1)
        self.up2 = _GroupedConv(m, 2 * c, 2 * c)
        self.lateral2 = _GroupedConv(m, 2 * c, c, kernel=1)
        self.up1 = _GroupedConv(m, c, c)
        # A grouped 1x1 convolution is slow in oneDNN; the head is a matrix product instead
        # (see half_logits). Its parameters keep the saved (members, classes, channels) layout.
        self.head_weight = nn.Parameter(torch.randn(m, classes, c) / c**0.5)
        self.head_bias = nn.Parameter(torch.zeros(m, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, rows, cols = x.shape
        # Class scores vary smoothly on the scale of a column; bilinear upsampling
        # of logits keeps sub-pixel centroids unbiased.
        logits = F.interpolate(self.half_logits(x), size=(rows, cols), mode="bilinear", align_corners=False)
        return logits.view(batch, self.members, self.classes, rows, cols)

    def half_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at half resolution, before the bilinear upsampling of :meth:`forward`.

        Parameters
        ----------
        x : (batch, members, H, W) or (batch, 1, H, W) tensor
            One image per member, or one image that every member sees (inference).

        Returns
        -------
        (batch, members * classes, H / 2, W / 2) tensor
            Member-major channels (member ``m``'s class ``k`` is channel
            ``m * classes + k``); logit pixel ``i`` is centred on input coordinate ``2 i + 0.5``.
        """
        batch = x.shape[0]
        # oneDNN runs grouped convolutions about twice as fast in channels-last layout.
        folded = F.pixel_unshuffle(x, 2).contiguous(memory_format=torch.channels_last)
        if x.shape[1] == 1:
            # Every member sees the same image: the grouped stem over M copies of it is
            # one dense convolution of it with the same weights (and no copies to make).
            stem = F.conv2d(folded, self.stem.weight, self.stem.bias, padding=self.stem.padding)
        else:
            stem = self.stem(folded)
        # Without autograd the skips are added in place (no upsampled copy; see _add_upsampled).
        in_place = not torch.is_grad_enabled()
        h1 = F.relu(self.enc1(F.relu(stem, inplace=True)), inplace=True)  # 1/2
        h2 = F.relu(self.enc2(F.relu(self.down1(h1), inplace=True)), inplace=True)  # 1/4
        h3 = F.relu(self.bottom(F.relu(self.down2(h2), inplace=True)), inplace=True)  # 1/8
        u2 = F.relu(self.up2(_add_upsampled(h2, self.lateral3(h3), in_place)), inplace=True)
        u1 = F.relu(self.up1(_add_upsampled(h1, self.lateral2(u2), in_place)), inplace=True)
        half_rows, half_cols = u1.shape[-2:]
        # The head is the same per-member 1x1 map as before, as one matrix product with a
        # block-diagonal (members * classes, members * base_channels) weight: a grouped 1x1
        # convolution is slow in oneDNN and a matmul per pixel and member is slower still.
        features = u1.permute(0, 2, 3, 1).reshape(batch, half_rows * half_cols, self.members * self.base_channels)
        weight = torch.block_diag(*self.head_weight).expand(batch, -1, -1)  # type: ignore[no-untyped-call]
        bias = self.head_bias.reshape(self.members * self.classes, 1)
        logits = torch.baddbmm(bias, weight, features.transpose(1, 2))
        return logits.view(batch, self.members * self.classes, half_rows, half_cols)

    def member(self, index: int) -> EnsembleUNet:
        """A standalone single-member network with member ``index``'s weights."""
        index = _checks.whole(index, "index", 0, self.members - 1)
        single = EnsembleUNet(1, self.classes, self.base_channels)
        state = {}
        for name, tensor in self.state_dict().items():
            per_member = tensor.shape[0] // self.members
            state[name] = tensor[index * per_member : (index + 1) * per_member].clone()
        single.load_state_dict(state)
        return single

    def config(self) -> dict[str, int]:
        """Constructor arguments, for saving."""
        return {"members": self.members, "classes": self.classes, "base_channels": self.base_channels}


def _add_upsampled(skip: torch.Tensor, low: torch.Tensor, in_place: bool) -> torch.Tensor:
    """``skip`` plus ``low`` upsampled 2x (nearest): in place on ``skip`` when allowed and both are channels-last."""
    channels_last = torch.channels_last
    if not (in_place and skip.is_contiguous(memory_format=channels_last) and low.is_contiguous(memory_format=channels_last)):
        return F.interpolate(low, scale_factor=2.0, mode="nearest") + skip
    batch, channels, rows, cols = skip.shape
    # In channels-last memory, pixel (2i + a, 2j + b) of skip is [i, a, j, b] of this view.
    blocks = skip.permute(0, 2, 3, 1).view(batch, rows // 2, 2, cols // 2, 2, channels)
    blocks.add_(low.permute(0, 2, 3, 1).view(batch, rows // 2, 1, cols // 2, 1, channels))
    return skip


def build(config: dict[str, typing.Any]) -> EnsembleUNet:
    """Network from :meth:`EnsembleUNet.config` output.

    Raises
    ------
    TypeError, ValueError
        If ``config`` is not a mapping with whole-number ``members`` (>= 1),
        ``classes`` (>= 2) and ``base_channels`` (>= 1).
    """
    keys = ("members", "classes", "base_channels")
    if not isinstance(config, typing.Mapping):
        raise TypeError(f"config must be a mapping with the keys {list(keys)}, got {type(config).__name__}")
    missing = [key for key in keys if key not in config]
    if missing:
        raise ValueError(f"config must be a mapping with the keys {list(keys)}, got {sorted(config)}: missing {missing}")
    return EnsembleUNet(config["members"], config["classes"], config["base_channels"])
