"""``storyreel enhancer serve``: start the server an enhancer talks to and keep it up until Ctrl-C."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from .app import app, err, errors_reported, out

enhancer_app = typer.Typer(help="Run the LLM server an enhancer talks to.", no_args_is_help=True)
app.add_typer(enhancer_app, name="enhancer")


@enhancer_app.command("serve")
def enhancer_serve(
    backend: Annotated[str, typer.Option(help="the enhancer whose server to start")] = "vllm",
    model: Annotated[
        str | None,
        typer.Option(
            help="model to serve (hub id or folder)",
            show_default="Qwen/Qwen2.5-32B-Instruct for vllm",
        ),
    ] = None,
    tensor_parallel_size: Annotated[
        int | None,
        typer.Option(min=1, help="GPUs to split the model over", show_default="1 for vllm"),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="port (0 picks a free one)", show_default="8000 for vllm"),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="interface to listen on (loopback keeps it private)",
            show_default="127.0.0.1 for vllm",
        ),
    ] = None,
    max_model_len: Annotated[
        int | None,
        typer.Option(min=512, help="context length to reserve memory for", show_default="4096 for vllm"),
    ] = None,
) -> None:
    """Start the server an enhancer talks to (vLLM's OpenAI-compatible one), wait until it answers, print its URL, keep it up."""
    with errors_reported():
        from storyreel.enhance import serve_enhancer

        server = serve_enhancer(
            backend,
            model,
            host=host,
            port=port,
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            note=lambda message: err.print(escape(message)),
        )
        try:  # from the moment the URL is out, Ctrl-C stops the server (it must not outlive the command)
            out.print(server.url)
            err.print(
                f"[green]ready:[/] serving {escape(', '.join(server.models))}; render with --enhancer {escape(backend)} "
                f"--enhancer-url {server.url} (or export STORYREEL_ENHANCER_URL={server.url}); log: {server.log_path}; "
                "Ctrl-C stops it",
                soft_wrap=True,
            )
            code = server.wait()
        except KeyboardInterrupt:
            server.stop()
            err.print("server stopped")
            return
        if code:
            err.print(f"[red]error:[/] the server exited with code {code}; see {server.log_path}")
            raise typer.Exit(1)
