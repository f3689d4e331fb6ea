"""``GET /api/v1/fields``: every job setting a form needs, with A1111's name, default, range and help.

The list is generated from the job API's own request schema (:class:`Img2ImgRequest`), so a field
added to the API appears in every client that renders this list, with its type, default and
description, under the group "More". The fields A1111 users know get their web-UI label, group,
slider range and default (A1111's UI defaults, spec §8.9, not the API's), and the infotext key that
records them (spec §6.2), from the table :data:`_KNOWN`. ``min``/``max`` are what this server accepts
(the job's own validation and the server's limits); ``ui_min``/``ui_max``/``step`` are A1111's slider.
Two A1111 options a user sets per job (Clip skip, live preview interval) are listed under their
``override_settings.<option>`` name. Request fields a form has no use for (images, scripts, styles,
saving, task ids) are left out: :data:`HIDDEN`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from retouch.server.a1111.routes import get_state
from retouch.server.a1111.schemas import Img2ImgRequest
from retouch.server.config import ServerConfig
from retouch.server.state import ServerState

__all__ = ["router", "FieldSpec", "FieldGroup", "FieldsResponse", "form_fields", "HIDDEN"]

router = APIRouter(prefix="/api/v1", tags=["jobs"])

Kind = Literal["string", "integer", "number", "boolean"]
Widget = Literal["textarea", "select", "radio", "slider", "number", "seed", "checkbox", "text"]


class Choice(BaseModel):
    value: Any
    label: str


class FieldSpec(BaseModel):
    """One setting. ``name`` is the request field (``override_settings.X`` for an option);
    ``default`` is A1111's UI default (``api_default`` what the API assumes when the field is absent;
    null: the server decides); ``choices`` a fixed list, ``choices_from`` a listing route instead."""

    name: str
    label: str
    group: str
    type: Kind
    widget: Widget
    nullable: bool = False
    default: Any = None
    api_default: Any = None
    min: float | None = None
    max: float | None = None
    ui_min: float | None = None
    ui_max: float | None = None
    step: float | None = None
    choices: list[Choice] | None = None
    choices_from: str | None = None
    infotext: str | None = None
    help: str = ""


class FieldGroup(BaseModel):
    id: str
    label: str


class FieldsResponse(BaseModel):
    groups: list[FieldGroup]
    fields: list[FieldSpec]


GROUPS = (
    ("prompt", "Prompt"), ("sampling", "Sampling"), ("size", "Size"), ("seed", "Seed"),
    ("batch", "Batch"), ("inpaint", "Inpaint"), ("more", "More"),
)

#: Request fields a form does not show: images and masks travel separately; the rest this server
#: refuses or a page has no use for.
HIDDEN = frozenset({
    "init_images", "mask", "latent_mask", "styles", "sampler_index", "mask_blur_x", "mask_blur_y",
    "restore_faces", "tiling", "do_not_save_samples", "do_not_save_grid", "override_settings",
    "override_settings_restore_afterwards", "refiner_checkpoint", "refiner_switch_at", "firstpass_image",
    "comments", "force_task_id", "include_init_images", "script_name", "script_args", "send_images",
    "save_images", "alwayson_scripts", "infotext", "image_cfg_scale", "disable_extra_networks",
})


def _choices(*pairs: tuple[Any, str]) -> list[Choice]:
    return [Choice(value=v, label=label) for v, label in pairs]


def _known(config: ServerConfig, preview_every: int) -> list[dict[str, Any]]:
    """The A1111 web-UI fields, in A1111's order within each group."""
    limit_size = 16384
    return [
        dict(name="prompt", label="Prompt", group="prompt", type="string", widget="textarea", default="",
             infotext="Prompt", help="What to draw. A1111 syntax: (word:1.2) emphasis, [a:b:0.5] editing, "
             "<lora:name:1>. Ctrl+Up/Down changes the emphasis of the selected words."),
        dict(name="negative_prompt", label="Negative prompt", group="prompt", type="string", widget="textarea",
             default="", infotext="Negative prompt", help="What to avoid."),
        dict(name="sampler_name", label="Sampling method", group="sampling", type="string", widget="select",
             default="DPM++ 2M", choices_from="/sdapi/v1/samplers", infotext="Sampler",
             help="The sampler that removes the noise."),
        dict(name="scheduler", label="Schedule type", group="sampling", type="string", widget="select",
             default="Automatic", choices_from="/sdapi/v1/schedulers", infotext="Schedule type",
             help="How the noise levels are spaced; Automatic takes the sampler's own."),
        dict(name="steps", label="Sampling steps", group="sampling", type="integer", widget="slider", default=20,
             min=1, max=config.max_steps, ui_min=1, ui_max=min(150, config.max_steps), step=1, infotext="Steps",
             help="Denoising steps of the full schedule; img2img runs about steps x denoising strength."),
        dict(name="cfg_scale", label="CFG Scale", group="sampling", type="number", widget="slider", default=7.0,
             min=0, max=100, ui_min=1, ui_max=30, step=0.5, infotext="CFG scale",
             help="How strongly the image follows the prompt."),
        dict(name="denoising_strength", label="Denoising strength", group="sampling", type="number",
             widget="slider", default=0.75, min=0, max=1, ui_min=0, ui_max=1, step=0.01,
             infotext="Denoising strength", help="0 keeps the input, 1 replaces it completely."),
        dict(name="override_settings.CLIP_stop_at_last_layers", label="Clip skip", group="sampling",
             type="integer", widget="slider", default=1, min=1, max=12, ui_min=1, ui_max=12, step=1,
             infotext="Clip skip", help="Stop the text encoder this many layers before its end."),
        dict(name="resize_mode", label="Resize mode", group="size", type="integer", widget="radio", default=0,
             choices=_choices((0, "Just resize"), (1, "Crop and resize"), (2, "Resize and fill"),
                              (3, "Just resize (latent upscale)")),
             help="How the input is fitted to the output size."),
        dict(name="width", label="Width", group="size", type="integer", widget="slider", default=512, min=8,
             max=limit_size, ui_min=64, ui_max=2048, step=8, infotext="Size-1", help="Output width in pixels."),
        dict(name="height", label="Height", group="size", type="integer", widget="slider", default=512, min=8,
             max=limit_size, ui_min=64, ui_max=2048, step=8, infotext="Size-2", help="Output height in pixels."),
        dict(name="seed", label="Seed", group="seed", type="integer", widget="seed", default=-1, min=-1,
             max=2**32 - 1, infotext="Seed", help="-1 draws a random seed."),
        dict(name="subseed", label="Variation seed", group="seed", type="integer", widget="seed", default=-1,
             min=-1, max=2**32 - 1, infotext="Variation seed", help="Seed of the noise mixed in."),
        dict(name="subseed_strength", label="Variation strength", group="seed", type="number", widget="slider",
             default=0.0, min=0, max=1, ui_min=0, ui_max=1, step=0.01, infotext="Variation seed strength",
             help="How much of the variation seed's noise is mixed in."),
        dict(name="seed_resize_from_w", label="Resize seed from width", group="seed", type="integer",
             widget="slider", default=0, min=-1, max=limit_size, ui_min=0, ui_max=2048, step=8,
             infotext="Seed resize from-1", help="Make the noise as for this width (0: off)."),
        dict(name="seed_resize_from_h", label="Resize seed from height", group="seed", type="integer",
             widget="slider", default=0, min=-1, max=limit_size, ui_min=0, ui_max=2048, step=8,
             infotext="Seed resize from-2", help="Make the noise as for this height (0: off)."),
        dict(name="n_iter", label="Batch count", group="batch", type="integer", widget="slider", default=1,
             min=1, max=config.max_n_iter, ui_min=1, ui_max=min(100, config.max_n_iter), step=1,
             help="Batches run one after another."),
        dict(name="batch_size", label="Batch size", group="batch", type="integer", widget="slider", default=1,
             min=1, max=config.max_batch_size, ui_min=1, ui_max=min(8, config.max_batch_size), step=1,
             help="Images made together in one batch."),
        dict(name="mask_blur", label="Mask blur", group="inpaint", type="integer", widget="slider", default=4,
             nullable=True, min=0, max=256, ui_min=0, ui_max=64, step=1, infotext="Mask blur",
             help="Gaussian blur of the mask's edge, in pixels."),
        dict(name="inpainting_mask_invert", label="Mask mode", group="inpaint", type="integer", widget="radio",
             default=0, choices=_choices((0, "Inpaint masked"), (1, "Inpaint not masked")), infotext="Mask mode",
             help="Repaint the painted part, or everything else."),
        dict(name="inpainting_fill", label="Masked content", group="inpaint", type="integer", widget="radio",
             default=1, infotext="Masked content",
             choices=_choices((0, "fill"), (1, "original"), (2, "latent noise"), (3, "latent nothing")),
             help="What the masked part starts from."),
        dict(name="inpaint_full_res", label="Inpaint area", group="inpaint", type="boolean", widget="radio",
             default=False, choices=_choices((False, "Whole picture"), (True, "Only masked")),
             infotext="Inpaint area", help="Only masked: repaint a crop around the mask at full size."),
        dict(name="inpaint_full_res_padding", label="Only masked padding, pixels", group="inpaint",
             type="integer", widget="slider", default=32, min=0, max=limit_size, ui_min=0, ui_max=256, step=4,
             infotext="Masked area padding", help="Context kept around the mask's crop."),
        dict(name="override_settings.show_progress_every_n_steps", label="Live preview every N steps",
             group="more", type="integer", widget="number", default=preview_every, min=-1, max=1000,
             help="Decode a preview image this often while a job runs (each costs one VAE decode); "
             "0 or -1: none."),
    ]


def _kind(prop: dict[str, Any]) -> tuple[str | None, bool]:
    """The JSON-schema type of ``prop`` and whether it may be null."""
    options = prop.get("anyOf", [prop])
    types = [o.get("type") for o in options]
    nullable = "null" in types
    scalar = [t for t in types if t in ("string", "integer", "number", "boolean")]
    return (scalar[0] if len(scalar) == 1 and len(types) - nullable == 1 else None), nullable


def _generic(name: str, prop: dict[str, Any]) -> dict[str, Any] | None:
    """A field the table does not know, from its JSON schema alone (group "More")."""
    kind, nullable = _kind(prop)
    if kind is None:
        return None
    bounds = next((o for o in prop.get("anyOf", [prop]) if o.get("type") == kind), prop)
    widget = {"boolean": "checkbox", "string": "text"}.get(kind, "number")
    default = prop.get("default")
    choices = None
    if "enum" in bounds:
        choices = _choices(*((v, str(v)) for v in bounds["enum"]))
        widget = "select"
    return dict(
        name=name, label=prop.get("title", name), group="more", type=kind, widget=widget, nullable=nullable,
        default=default, min=bounds.get("minimum"), max=bounds.get("maximum"), choices=choices,
        help=prop.get("description", ""),
    )


def form_fields(
    config: ServerConfig, options: dict[str, Any], request_model: type[BaseModel] = Img2ImgRequest
) -> FieldsResponse:
    """The form of this server: known fields first (A1111's order), then every other field of
    ``request_model`` (the job API's request body) that :data:`HIDDEN` does not leave out."""
    props: dict[str, Any] = request_model.model_json_schema()["properties"]
    preview_every = int(options.get("show_progress_every_n_steps", 10))
    fields = []
    for spec in _known(config, preview_every):
        top = spec["name"]
        spec.setdefault("nullable", False)
        spec["api_default"] = props[top].get("default") if top in props else options.get(top.split(".", 1)[-1])
        fields.append(FieldSpec(**spec))
    known = {f.name for f in fields}
    for name, prop in props.items():
        if name in known or name in HIDDEN:
            continue
        generic = _generic(name, prop)
        if generic is not None:
            generic["api_default"] = generic["default"]
            fields.append(FieldSpec(**generic))
    return FieldsResponse(groups=[FieldGroup(id=i, label=label) for i, label in GROUPS], fields=fields)


@router.get("/fields", response_model=FieldsResponse)
async def fields(state: ServerState = Depends(get_state)) -> FieldsResponse:
    """Every job setting a form shows, grouped as in A1111's img2img tab, with name, default, range,
    choices (or the listing route that has them), infotext key and help; new request fields appear
    under "More" with the type and description of the request schema."""
    return form_fields(state.config, state.options.snapshot())
