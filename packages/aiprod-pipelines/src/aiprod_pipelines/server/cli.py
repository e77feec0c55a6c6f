"""``aiprod-serve``: run the AIPROD HTTP server (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType

import uvicorn

from aiprod_core.config import api_token, load_config
from aiprod_core.errors import AiprodError
from aiprod_pipelines.server.app import create_app
from aiprod_pipelines.server.generator import PipelineVideoGenerator
from aiprod_pipelines.server.logs import configure_logging
from aiprod_pipelines.server.settings import DEFAULT_SHUTDOWN_GRACE_S, ServerSettings

PROG = "aiprod-serve"
#: The distribution that installs the ``aiprod-serve`` command (``--version``).
DISTRIBUTION = "aiprod-pipelines"
EXAMPLES = """examples:
  aiprod-serve                                  serving.default_model on serving.host:port
  aiprod-serve --model aiprod-small --device cuda
  aiprod-serve --checkpoint models/checkpoints/run1.safetensors --port 8080
  aiprod-serve --random-weights --preset tiny   untrained model, to try the API
  AIPROD_API_TOKEN=... aiprod-serve --env production --open-path /readyz

The API is described at /docs and /openapi.json once the server runs.
"""


def version_text() -> str:
    """What ``--version`` prints: ``aiprod-serve`` and the installed version."""
    try:
        return f"{PROG} {version(DISTRIBUTION)}"
    except PackageNotFoundError:  # run from a source tree without installing it
        return f"{PROG} (version unknown: {DISTRIBUTION} is not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve AIPROD text-to-video generation over HTTP (see /docs once running).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_text())
    model = parser.add_argument_group("model (default: serving.default_model)")
    model.add_argument("--model", metavar="NAME", help="registered model name (config 'models')")
    model.add_argument("--checkpoint", metavar="PATH", type=Path, help="a .safetensors checkpoint")
    model.add_argument(
        "--random-weights",
        action="store_true",
        help="serve an UNTRAINED model with random weights (videos are noise; for API trials)",
    )
    model.add_argument("--preset", metavar="NAME", help="preset of --random-weights")
    model.add_argument("--device", metavar="DEVICE", help="torch device, e.g. cpu, cuda, cuda:1")
    server = parser.add_argument_group("server")
    server.add_argument("--host", help="address to bind (default: serving.host)")
    server.add_argument("--port", type=int, help="port to bind (default: serving.port)")
    server.add_argument(
        "--env", help="configuration environment (default: $AIPROD_ENV or development)"
    )
    server.add_argument(
        "--shutdown-grace",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_SHUTDOWN_GRACE_S,
        help="how long a running job may finish on shutdown (default: %(default)g)",
    )
    server.add_argument(
        "--open-path",
        metavar="PATH",
        action="append",
        default=[],
        help="also answer PATH without the token, e.g. /readyz for a probe (repeatable; /healthz always is)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until interrupted; 0 after a clean stop, 1 if it could not start, 2 on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.port is not None and not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    if args.shutdown_grace < 0:
        parser.error(f"--shutdown-grace must be >= 0, got {args.shutdown_grace:g}")
    bad = [path for path in args.open_path if not path.startswith("/")]
    if bad:
        parser.error(f"--open-path must start with '/', got {bad[0]!r}")
    try:
        config = load_config(env=args.env)
        generator = PipelineVideoGenerator(
            config,
            model=args.model,
            checkpoint=args.checkpoint,
            random_weights=args.random_weights,
            preset=args.preset,
            device=args.device,
        )
        generator.check()
    except AiprodError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    settings = ServerSettings.from_config(
        config,
        api_token=api_token(),
        shutdown_grace_seconds=args.shutdown_grace,
        open_paths=frozenset(args.open_path),
    )
    host = args.host or config.serving.host
    port = config.serving.port if args.port is None else args.port
    configure_logging(config.logging)
    if generator.random_weights:
        print(
            f"{PROG}: serving RANDOM WEIGHTS of preset {generator.preset!r} (untrained): "
            "videos will be noise",
            file=sys.stderr,
        )
    print(
        f"{PROG}: model {generator.model_name} on http://{host}:{port} "
        f"(environment {config.env}; auth {'on' if settings.api_token else 'off'}; "
        f"videos in {settings.output_dir})",
        file=sys.stderr,
    )
    app = create_app(settings, generator)
    server = GracefulServer(
        uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="on")
    )
    server.run()
    if server.stopped_by is not None:
        print(f"{PROG}: stopped ({server.stopped_by})", file=sys.stderr)
    return 0 if server.started else 1


class GracefulServer(uvicorn.Server):
    """uvicorn's server, stopping on SIGINT/SIGTERM without re-raising the signal.

    uvicorn re-raises a captured Ctrl-C once it has shut down, which interrupts the app's
    own shutdown (jobs finishing or being marked failed) with a KeyboardInterrupt. Here
    the first signal asks for a graceful stop and a second one forces it.
    """

    stopped_by: str | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        stop_signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in stop_signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True
        self.stopped_by = signal.Signals(signum).name


if __name__ == "__main__":
    raise SystemExit(main())
