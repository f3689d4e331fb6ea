"""The ``retouch`` command (issue #5): img2img, inpaint, batch, upscale, loopback, info, models, serve.

:func:`build_app` makes the Typer application around a :class:`~retouch.cli.run.Session`, so the
model loader is chosen in one place (``main(argv, model_loader=...)``; tests pass a tiny model).
Errors the user can fix end as one line ``retouch: error: ...`` with exit code 2 (see
:mod:`retouch.cli.errors`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from retouch.cli.cluster import RAY_BATCH, RAY_SERVE, batch_on_ray, pop_ray_options, serve_on_ray
from retouch.cli.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CliError
from retouch.cli.jobs import run_inputs, settings_from
from retouch.cli.options import (
    DEVICE,
    GENERATION,
    MASK,
    BackendChoice,
    PrecisionChoice,
    engine_options,
    with_options,
)
from retouch.cli.run import Session
from retouch.cli.soft_options import SOFT

__all__ = ["build_app"]

_OUTDIR_HELP = "Output folder (created if missing)."


def build_app(session: Session) -> typer.Typer:
    """The Typer app; every generating command loads its model through ``session``."""
    app = typer.Typer(
        name="retouch",
        help="A1111-compatible img2img and inpainting from the terminal.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    _generating_commands(app, session)
    _script_commands(app, session)
    app.command("info")(_info)
    app.command("models")(_models)
    app.command("serve")(_serve)
    return app


def _generating_commands(app: typer.Typer, session: Session) -> None:
    @app.command("img2img")
    @with_options(GENERATION, DEVICE)
    def img2img(
        ctx: typer.Context,
        inputs: Annotated[list[Path], typer.Argument(help="Input image(s).", show_default=False)],
        outdir: Annotated[Path, typer.Option("--outdir", "-o", help=_OUTDIR_HELP)] = Path("outputs"),
        **opts: Any,
    ) -> None:
        """Redraw images from a prompt (A1111 img2img); saves NNNNN-SEED.png files."""
        _run(run_inputs, session, settings_from(ctx, opts), list(inputs), None, outdir)

    @app.command("inpaint")
    @with_options(GENERATION, MASK, SOFT, DEVICE)
    def inpaint(
        ctx: typer.Context,
        input: Annotated[Path, typer.Argument(help="Input image.", show_default=False)],
        mask: Annotated[Path, typer.Option("--mask", help="Mask: white is repainted.", show_default=False)],
        outdir: Annotated[Path, typer.Option("--outdir", "-o", help=_OUTDIR_HELP)] = Path("outputs"),
        **opts: Any,
    ) -> None:
        """Repaint the masked part of an image (A1111 inpaint); saves NNNNN-SEED.png files."""
        _run(run_inputs, session, settings_from(ctx, opts), [input], mask, outdir)

    @app.command("batch")
    @with_options(GENERATION, MASK, SOFT, DEVICE, RAY_BATCH)
    def batch(
        ctx: typer.Context,
        input_dir: Annotated[Path, typer.Argument(help="Folder of input images.", show_default=False)],
        outdir: Annotated[Path, typer.Option("--outdir", "-o", help="Output folder.", show_default=False)],
        mask_dir: Annotated[
            Path | None, typer.Option("--mask-dir", help="Masks matched by file stem, or one for all.")
        ] = None,
        mask: Annotated[Path | None, typer.Option("--mask", help="One mask for every input.")] = None,
        **opts: Any,
    ) -> None:
        """Process a folder (A1111 batch rules); existing outputs are skipped, so reruns resume."""
        from retouch.cli.batch import run_batch

        if mask is not None and mask_dir is not None:
            raise CliError("give either --mask or --mask-dir, not both")
        ray = pop_ray_options(opts)
        if ray.pop("ray"):
            _run(batch_on_ray, session, settings_from(ctx, opts), input_dir, outdir, mask_dir, mask, ray)
            return
        _run(run_batch, session, settings_from(ctx, opts), input_dir, outdir, mask_dir, mask)


def _script_commands(app: typer.Typer, session: Session) -> None:
    from retouch.cli.scripts import DEFAULT_TILE, run_script_command
    from retouch.recipes import Loopback, ScriptCall, SDUpscale

    def call(title: str, args: Any) -> Any:
        try:
            return ScriptCall(title, args())
        except ValueError as exc:  # ParamError
            raise CliError(str(exc)) from None

    @app.command("upscale")
    @with_options(GENERATION, DEVICE)
    def upscale(
        ctx: typer.Context,
        input: Annotated[Path, typer.Argument(help="Input image.", show_default=False)],
        scale: Annotated[float, typer.Option("--scale", help="Scale factor.")] = 2.0,
        overlap: Annotated[int, typer.Option("--overlap", help="Tile overlap, pixels.")] = 64,
        upscaler: Annotated[str, typer.Option("--upscaler", help="None, Lanczos or Nearest.")] = "Lanczos",
        outdir: Annotated[Path, typer.Option("--outdir", "-o", help=_OUTDIR_HELP)] = Path("outputs"),
        **opts: Any,
    ) -> None:
        """Upscale, then redraw tile by tile (A1111 SD upscale); --size is the tile size (512x512)."""
        settings = settings_from(ctx, opts)
        if settings.opts.get("size") is None and settings.opts.get("scale_by") is None:
            settings.opts["size"] = DEFAULT_TILE
        script = call("SD upscale", lambda: SDUpscale(overlap=overlap, upscaler=upscaler, scale=scale))
        _run(run_script_command, session, settings, input, None, outdir, script)

    @app.command("loopback")
    @with_options(GENERATION, MASK, DEVICE)
    def loopback(
        ctx: typer.Context,
        input: Annotated[Path, typer.Argument(help="Input image.", show_default=False)],
        loops: Annotated[int, typer.Option("--loops", help="Loops, 1 to 32.")] = 4,
        final_denoise: Annotated[float, typer.Option("--final-denoise", help="Strength of the last loop.")] = 0.5,
        curve: Annotated[str, typer.Option("--curve", help="Aggressive, Linear or Lazy.")] = "Linear",
        mask: Annotated[Path | None, typer.Option("--mask", help="Mask: white is repainted.")] = None,
        outdir: Annotated[Path, typer.Option("--outdir", "-o", help=_OUTDIR_HELP)] = Path("outputs"),
        **opts: Any,
    ) -> None:
        """Feed each result back as the next input (A1111 Loopback); saves the grid, then every loop."""
        script = call("Loopback", lambda: Loopback(loops=loops, final_denoising_strength=final_denoise,
                                                   denoising_curve=curve))
        _run(run_script_command, session, settings_from(ctx, opts), input, mask, outdir, script)


def _info(
    image: Annotated[Path, typer.Argument(help="Image file.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the parsed parameters as JSON.")] = False,
) -> None:
    """Print the A1111 infotext stored in an image (PNG parameters chunk, or EXIF UserComment)."""
    from retouch.formats.png import read_infotext
    from retouch.infotext import parse_infotext

    try:
        text = read_infotext(image)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if not text:
        typer.echo(f"retouch: {image} holds no generation parameters", err=True)
        raise typer.Exit(EXIT_FAILED)
    typer.echo(json.dumps(parse_infotext(text), ensure_ascii=False, indent=2) if as_json else text)


def _models(
    folder: Annotated[Path, typer.Argument(help="Folder to search (recursively).")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List checkpoints (single files and diffusers folders) with family and model hash."""
    from retouch.cli.listing import describe_checkpoint, find_checkpoints, format_table

    if not folder.is_dir():
        raise CliError(f"no such folder: {folder}")
    entries = [describe_checkpoint(p) for p in find_checkpoints(folder)]
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
    elif not entries:
        typer.echo(f"no checkpoints found in {folder}")
    else:
        typer.echo(format_table(entries))


@with_options(RAY_SERVE)
def _serve(
    model: Annotated[
        list[str],
        typer.Option("--model", "-m", help="Checkpoint file, diffusers folder or 'demo' (several with --ray)."),
    ] = ["demo"],  # noqa: B006 (typer reads the default, never mutates it)
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 7861,
    api_auth: Annotated[
        str | None, typer.Option("--api-auth", help="user:password[,user2:password2]")
    ] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Jobs that may wait.")] = 16,
    precision: Annotated[
        PrecisionChoice, typer.Option("--precision", help="Compute precision.")
    ] = PrecisionChoice.auto,
    device: Annotated[str | None, typer.Option("--device", help="torch device.")] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads (default: one per core).")
    ] = None,
    backend: Annotated[
        BackendChoice, typer.Option("--backend", help="UNet/VAE runtime: torch, or openvino (CPU).")
    ] = BackendChoice.torch,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    styles_file: Annotated[
        Path | None, typer.Option("--styles-file", help="A1111 styles.csv for the requests' styles.")
    ] = None,
    lora_dir: Annotated[
        Path | None, typer.Option("--lora-dir", help="Folder of LoRA/LyCORIS files for <lora:...> tags.")
    ] = None,
    embeddings_dir: Annotated[
        Path | None, typer.Option("--embeddings-dir", help="Folder of textual-inversion embeddings.")
    ] = None,
    webui: Annotated[
        bool, typer.Option("--webui/--no-webui", help="Serve the web page at / (--no-webui: API only).")
    ] = True,
    vae_cache: Annotated[int, typer.Option("--vae-cache", help="VAE encodes kept for repeated inputs (0: off).")] = 16,
    max_memory: Annotated[
        str | None, typer.Option("--max-memory", help="Memory budget, e.g. 6G (default: what is free); the VAE tiles to fit.")
    ] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Fast preset: bf16 where native, NGMS 1, token merging 0.5, feature cache 2/2.")] = False,
    **ray: Any,
) -> None:
    """Serve the A1111-compatible HTTP API (/sdapi/v1), the job API (/api/v1/jobs) and the web page (/)."""
    engine = engine_options(vae_cache, max_memory, fast)
    if ray.get("ray") and (vae_cache != 16 or max_memory is not None or fast):
        raise CliError("--vae-cache, --max-memory and --fast are not available with --ray yet")
    if ray.pop("ray"):
        server = {"max_queue": max_queue, "api_auth": api_auth, "precision": precision.value,
                  "device": device, "threads": threads, "lora_dir": lora_dir, "embeddings_dir": embeddings_dir,
                  "backend": backend.value}
        serve_on_ray(model, host, port, server, ray)
        return
    if len(model) != 1:
        raise CliError("several --model options need --ray (one server runs one model)")
    try:
        from retouch.server.app import serve
    except ImportError as exc:
        raise CliError(
            f"the server is not available ({exc}); install it with: pip install 'retouch[server]'",
            EXIT_FAILED,
        ) from None
    try:
        serve(
            model=model[0],
            host=host,
            port=port,
            api_auth=api_auth,
            max_queue=max_queue,
            precision=precision.value,
            device=device,
            log_level=log_level,
            threads=threads,
            webui=webui,
            engine_options=engine,
            backend=backend.value,
            **({} if styles_file is None else {"styles_file": str(styles_file)}),
            **{k: v for k, v in (("lora_dir", lora_dir), ("embeddings_dir", embeddings_dir)) if v is not None},
        )
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None


def _run(command: Any, *args: Any) -> None:
    """Run a generating command; a second Ctrl-C (KeyboardInterrupt) exits with 130, not click's 1."""
    try:
        code = command(*args)
    except KeyboardInterrupt:
        raise CliError("interrupted", EXIT_INTERRUPTED) from None
    _exit(code)


def _exit(code: int) -> None:
    """End a command with ``code`` (click's standalone mode turns a plain return into 0)."""
    if code != EXIT_OK:
        raise typer.Exit(code)


def _exit_code(code: object) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    typer.echo(str(code), err=True)
    return EXIT_FAILED


def run_app(app: typer.Typer, argv: list[str] | None) -> int:
    """Run ``app`` on ``argv`` in click's standalone mode (it prints usage errors and exits with 2);
    turn our errors into one-line messages; return the exit code instead of exiting."""
    from retouch.formats.images import ImageDecodeError
    from retouch.params import ParamError

    try:
        app(args=argv, prog_name="retouch", standalone_mode=True)
    except SystemExit as exc:
        return _exit_code(exc.code)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except (ParamError, ImageDecodeError) as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    return EXIT_OK


def _fail(message: str, code: int) -> int:
    typer.echo(f"retouch: error: {message}", err=True)
    return code
