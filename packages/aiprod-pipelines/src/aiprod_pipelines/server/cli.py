"""``aiprod-serve``: run the AIPROD HTTP server (FastAPI on uvicorn).

Before anything is announced or loaded it checks the configuration, the weights, the
address (the port is bound here and handed to uvicorn) and the job store (opened and
migrated: SQLite in the videos folder, or PostgreSQL from ``AIPROD_DATABASE_URL``). On
SIGINT/SIGTERM it stops taking jobs (queued ones stay in the store), lets a running job
finish within ``--shutdown-grace``, cancels it otherwise, and joins its worker and loader
threads before exiting; the exit statuses are in ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import NoReturn

import uvicorn

from aiprod_core.config import AiprodConfig, api_token, database_url, load_config
from aiprod_core.errors import AiprodError
from aiprod_core.precision import DTYPES, dtype_name
from aiprod_pipelines.cli.outputs import folder_problem
from aiprod_pipelines.server import jobs as job_queue
from aiprod_pipelines.server.app import ServerState, create_app
from aiprod_pipelines.server.generator import (
    PipelineVideoGenerator,
    ServerSetupError,
    VideoGenerator,
)
from aiprod_pipelines.server.listener import open_listener
from aiprod_pipelines.server.logs import configure_logging
from aiprod_pipelines.server.settings import DEFAULT_SHUTDOWN_GRACE_S, ServerSettings
from aiprod_pipelines.server.store import JobStore, open_store

PROG = "aiprod-serve"
#: Exit statuses (listed in ``--help``).
EXIT_STOPPED = 0
EXIT_NOT_STARTED = 1
EXIT_USAGE = 2
EXIT_THREADS_LEFT = 3
#: The distribution that installs the ``aiprod-serve`` command (``--version``).
DISTRIBUTION = "aiprod-pipelines"
EXAMPLES = """examples:
  aiprod-serve                                  serving.default_model on serving.host:port
  aiprod-serve --model aiprod-small --device cuda
  aiprod-serve --model aiprod-19b --dtype bf16  bfloat16 (the default on CUDA anyway)
  aiprod-serve --checkpoint models/checkpoints/run1.safetensors --port 8080
  aiprod-serve --random-weights --preset tiny   untrained model, to try the API
  AIPROD_API_TOKEN=... aiprod-serve --env production --open-path /readyz

The API is described at /docs and /openapi.json once the server runs.

precision:
  The model runs in serving.dtype (--dtype overrides it): "auto" is bfloat16 on a CUDA
  device (float32 on GPUs older than Ampere), with TF32 for float32 work, and float32 on
  the CPU. serving.offload_text_encoder keeps the text encoder on the CPU between
  requests (AIPROD_SERVING__OFFLOAD_TEXT_ENCODER=true).

job store:
  Jobs live in a SQLite file, <paths.outputs>/server/jobs.sqlite3, unless
  AIPROD_DATABASE_URL names a PostgreSQL database (postgresql://user:password@host/db)
  that several replicas share. Its migrations are applied at start-up. A job whose
  replica died is queued again after its lease (serving.lease_seconds) ran out, once;
  then it fails with the reason.

shutdown:
  On SIGINT or SIGTERM queued jobs stay queued in the job store (another replica, or
  this one restarted, runs them) and a running job gets --shutdown-grace seconds to
  finish; after that it is cancelled at its next denoising step (up to {cancel_wait:g} s
  more) and marked failed. A model still loading gets the same total. A second signal
  stops waiting.

exit status:
  0 stopped cleanly after SIGINT/SIGTERM
  1 the server could not start (see the log)
  2 bad arguments or configuration, missing weights, the address cannot be listened on,
    or the job store cannot be opened
  3 stopped, but a generation or model load was still running after those waits; the
    process exits without waiting for it
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
        description="Serve AIPROD video generation (text or images to video) over HTTP "
        "(see /docs once running).",
        epilog=EXAMPLES.format(cancel_wait=job_queue.CANCEL_WAIT_S),
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
    model.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        metavar="DTYPE",
        help="weights and compute dtype: float32, bfloat16 or float16 (also fp32, bf16, fp16); "
        "default: serving.dtype",
    )
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
        help="how long a running job may finish on shutdown before it is cancelled "
        "(default: %(default)g)",
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
    """Run the server until interrupted; the exit status as ``--help`` lists it.

    0 after a clean stop, 1 if it could not start, 2 on bad input (the address included),
    3 when a thread was still inside the model after the shutdown waits: the process then
    exits at once (``os._exit``), as finalising the interpreter around such a thread would
    abort it.
    """
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
            dtype=args.dtype,
        )
        generator.check()
        check_videos_folder(config)
        host = args.host or config.serving.host
        listener = open_listener(host, config.serving.port if args.port is None else args.port)
    except AiprodError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with listener:
        try:
            store = open_job_store(config)
        except AiprodError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return _serve(args, config, generator, host, listener, store)


def open_job_store(config: AiprodConfig) -> JobStore:
    """The job store of ``AIPROD_DATABASE_URL`` (unset: SQLite in the videos folder), migrated.

    Raises:
        StoreError: the database cannot be reached or opened, or its schema is newer
            than this server.
    """
    store = open_store(database_url(), ServerSettings.videos_folder(config))
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store


def check_videos_folder(config: AiprodConfig) -> None:
    """Refuse to start when the server's videos folder cannot be created or written.

    Not checked when the folder holds nothing: videos in object storage
    (``serving.output_url``) and jobs in PostgreSQL (``AIPROD_DATABASE_URL``), as in the
    rendered manifests of several replicas, whose root file system is read-only.
    """
    if config.serving.output_url is not None and database_url() is not None:
        return
    folder = ServerSettings.videos_folder(config)
    problem = folder_problem(folder)
    if problem is not None:
        raise ServerSetupError(
            f"videos folder {folder} (paths.outputs in config, or AIPROD_PATHS__OUTPUTS): {problem}"
        )


def _serve(
    args: argparse.Namespace,
    config: AiprodConfig,
    generator: PipelineVideoGenerator,
    host: str,
    listener: socket.socket,
    store: JobStore,
) -> int:
    """Serve on ``listener`` until a signal stops the server; the exit status."""
    port = listener.getsockname()[1]
    settings = ServerSettings.from_config(
        config,
        api_token=api_token(),
        database_url=database_url(),
        shutdown_grace_seconds=args.shutdown_grace,
        open_paths=frozenset(args.open_path),
    )
    configure_logging(config.logging)
    if generator.random_weights:
        print(
            f"{PROG}: serving RANDOM WEIGHTS of preset {generator.preset!r} (untrained): "
            "videos will be noise",
            file=sys.stderr,
        )
    app = create_app(settings, generator, store=store)
    state: ServerState = app.state.server
    print(
        f"{PROG}: model {generator.model_name}{_precision(generator)} on http://{host}:{port} "
        f"(environment {config.env}; auth {'on' if settings.api_token else 'off'}; "
        f"jobs in {store.url}; videos in {state.videos.url})",
        file=sys.stderr,
    )
    server = GracefulServer(
        uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="on"),
        on_force=state.hurry,
    )
    try:
        server.run(sockets=[listener])
    except SystemExit:  # uvicorn exits this way when the app's startup fails (logged)
        print(f"{PROG}: error: the server could not start; see the log above", file=sys.stderr)
    if state.unfinished is None:  # a forced stop skips the app's shutdown: do it, unwaited
        state.hurry()
        state.stop()
    if server.stopped_by is not None:
        print(f"{PROG}: stopped ({server.stopped_by})", file=sys.stderr)
    if state.unfinished:
        print(
            f"{PROG}: {', '.join(state.unfinished)} still running after the shutdown waits; "
            f"exiting without it (status {EXIT_THREADS_LEFT})",
            file=sys.stderr,
        )
        exit_now(EXIT_THREADS_LEFT)
    return EXIT_STOPPED if server.started else EXIT_NOT_STARTED


def exit_now(status: int) -> NoReturn:
    """Flush the logs and streams and end the process with ``status`` at once.

    Used when a thread is still inside the model: finalising the interpreter around it
    aborts the process ("terminate called without an active exception", status 134).
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


class GracefulServer(uvicorn.Server):
    """uvicorn's server, stopping on SIGINT/SIGTERM without re-raising the signal.

    uvicorn re-raises a captured Ctrl-C once it has shut down, which interrupts the app's
    own shutdown (jobs finishing or being marked failed) with a KeyboardInterrupt. Here
    the first signal asks for a graceful stop and a second one forces it: uvicorn stops
    waiting for connections and ``on_force`` (the app's :meth:`ServerState.hurry`) ends
    the shutdown waits for jobs and loading.
    """

    stopped_by: str | None = None

    def __init__(self, config: uvicorn.Config, on_force: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.on_force = on_force

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
            if self.on_force is not None:
                self.on_force()
        self.should_exit = True
        self.stopped_by = signal.Signals(signum).name


def _precision(generator: VideoGenerator) -> str:
    """`` (bfloat16 on cuda, text encoder offloaded to the CPU)`` for a generator with torch
    weights; empty for one without (the synthetic generator of tests and load tests)."""
    dtype = getattr(generator, "torch_dtype", None)
    if dtype is None:
        return ""
    text = f"{dtype_name(dtype)} on {getattr(generator, 'torch_device', 'cpu')}"
    if getattr(generator, "offload_text_encoder", False):
        text += ", text encoder offloaded to the CPU"
    return f" ({text})"


if __name__ == "__main__":
    raise SystemExit(main())
