"""Architecture source shipped inside exported bioimage.io packages (``cardioseg_arch.py``).

bioimage.io consumers rebuild ``pytorch_state_dict`` weights by calling ``build(**kwargs)`` from
this file, where ``kwargs`` is the model card's ``spec``. The exported copy must run without
napari-cardioseg installed: :mod:`bioimageio_export` replaces the marked import below by the
source of :mod:`napari_cardioseg.core.nets.unet` (which needs only PyTorch) and the smp name table
of :mod:`napari_cardioseg.core.nets.smp2d` by its values. smp nets
(Ronneberger et al. 2015 U-Net on a MobileNetV2 or other encoder) need
segmentation-models-pytorch. Keys of the returned module's ``state_dict`` equal those saved by
napari-cardioseg.
"""

from torch import nn

from .nets.smp2d import DECODER_CHANNELS, SMP_NETS  # cardioseg-export: constants
from .nets.unet import UNet  # cardioseg-export: inline


def build(arch: str, in_channels: int, classes: int, **options: int) -> nn.Module:
    """Build a randomly initialised net mapping ``(N, in_channels, [D,] H, W)`` to class logits.

    Parameters
    ----------
    arch : str
        ``unet2d``, ``unet3d`` or one of ``SMP_NETS``.
    in_channels, classes : int
        Input channels and output classes.
    **options : int
        ``depth``/``base`` (own U-Nets) or ``encoder_depth`` (smp U-Net, UNet++).
    """
    if arch in ("unet2d", "unet3d"):
        return UNet(2 if arch == "unet2d" else 3, in_channels, classes,
                    depth=int(options.get("depth", 3)), base=int(options.get("base", 16)))
    if arch not in SMP_NETS:
        raise ValueError(f"architecture {arch!r} is not rebuilt by this file")
    import segmentation_models_pytorch as smp

    name, encoder = SMP_NETS[arch]
    kwargs: dict = {}
    if name in ("unet", "unetplusplus"):
        depth = int(options.get("encoder_depth", 5))
        kwargs = {"encoder_depth": depth, "decoder_channels": DECODER_CHANNELS[-depth:]}
    return smp.create_model(name, encoder_name=encoder, encoder_weights=None,
                            in_channels=in_channels, classes=classes, **kwargs)
