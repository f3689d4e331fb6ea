"""Model families as data: what differs between SD1, SD2, SD2-v, SDXL, inpainting and pix2pix models.

Nothing here loads weights; ``detect.py`` maps a state dict to one of these, ``loading.py`` uses
``config_dir`` to find the bundled diffusers config folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Prediction = Literal["epsilon", "v_prediction"]
Conditioning = Literal["plain", "inpaint", "edit"]


@dataclass(frozen=True)
class Family:
    """One checkpoint family.

    ``unet_in_channels`` is 4 for plain models, 9 for inpainting ([x, mask, masked-image latent], spec
    §4.1) and 8 for instruct-pix2pix ([x, image latent], spec §4.2). ``latent_scale`` is the VAE
    scale factor (0.18215 for SD1/SD2, 0.13025 for SDXL).
    """

    name: str
    base: Literal["sd1", "sd2", "sdxl"]
    prediction: Prediction
    conditioning: Conditioning
    unet_in_channels: int
    latent_scale: float
    native_size: int
    config_dir: str

    @property
    def is_sdxl(self) -> bool:
        return self.base == "sdxl"

    @property
    def is_inpaint(self) -> bool:
        return self.conditioning == "inpaint"

    @property
    def is_edit(self) -> bool:
        return self.conditioning == "edit"


SD1 = Family("sd1", "sd1", "epsilon", "plain", 4, 0.18215, 512, "sd1")
SD1_INPAINT = Family("sd1-inpaint", "sd1", "epsilon", "inpaint", 9, 0.18215, 512, "sd1-inpaint")
PIX2PIX = Family("pix2pix", "sd1", "epsilon", "edit", 8, 0.18215, 512, "pix2pix")
SD2 = Family("sd2", "sd2", "epsilon", "plain", 4, 0.18215, 512, "sd2")
SD2_V = Family("sd2-v", "sd2", "v_prediction", "plain", 4, 0.18215, 768, "sd2-v")
SD2_INPAINT = Family("sd2-inpaint", "sd2", "epsilon", "inpaint", 9, 0.18215, 512, "sd2-inpaint")
SDXL = Family("sdxl", "sdxl", "epsilon", "plain", 4, 0.13025, 1024, "sdxl")
SDXL_INPAINT = Family("sdxl-inpaint", "sdxl", "epsilon", "inpaint", 9, 0.13025, 1024, "sdxl-inpaint")

FAMILIES: dict[str, Family] = {
    f.name: f for f in (SD1, SD1_INPAINT, PIX2PIX, SD2, SD2_V, SD2_INPAINT, SDXL, SDXL_INPAINT)
}


def family_by_name(name: str) -> Family:
    """The family called ``name``; an unknown name raises ValueError listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known families: {', '.join(FAMILIES)}") from None
