"""Image maths for img2img and inpainting: pure PIL/numpy/OpenCV functions (spec §2.2-§2.13).

No torch and nothing from ``models``, ``engine``, ``server`` or ``cli``: images and arrays in, images and
arrays out; inputs are never mutated.
"""

from retouch.imaging.color import apply_color_correction, color_reference, luminosity_blend, match_histograms
from retouch.imaging.composite import apply_overlay, exact_paste, make_overlay, mask_composite, uncrop
from retouch.imaging.fill import fill_masked
from retouch.imaging.mask import (
    blur_kernel_size,
    blur_mask,
    conditioning_mask,
    crop_region,
    expand_crop_region,
    invert_mask,
    latent_mask_values,
    to_single_channel_mask,
    whole_picture_overlay_mask,
)
from retouch.imaging.resize import resize_image, scaled_size

__all__ = [
    "resize_image",
    "scaled_size",
    "blur_kernel_size",
    "to_single_channel_mask",
    "invert_mask",
    "blur_mask",
    "crop_region",
    "expand_crop_region",
    "whole_picture_overlay_mask",
    "latent_mask_values",
    "conditioning_mask",
    "fill_masked",
    "make_overlay",
    "uncrop",
    "apply_overlay",
    "mask_composite",
    "exact_paste",
    "color_reference",
    "apply_color_correction",
    "match_histograms",
    "luminosity_blend",
]
