"""Host memory of loading a float32 checkpoint in bfloat16: no float32 copy of the model.

A model of the tiny architecture, widened to ~170 MB of float32 weights, is loaded in a
child process while a thread samples the process's anonymous resident memory (RssAnon:
what the process itself allocated, not the file's pages that the kernel maps in and can
drop). Loading must grow it by about the bf16 weights alone; the control, which reads the
whole file into memory and then casts, grows it by about three times that, so the gauge
does see a full float32 copy. Linux only (it reads /proc/self/status).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiprod_core.checkpoints import save_checkpoint
from aiprod_core.models import build_model
from aiprod_core.models.presets import TINY

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc"),
]

CHILD = r"""
import gc, json, sys, threading, time
from pathlib import Path

import safetensors.torch
import torch

from aiprod_core.checkpoints import load_model


def anon() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon")


warm, big, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if mode == "streamed":
    load_model(warm, dtype=torch.bfloat16)  # one-time costs (imports, allocator) first
gc.collect()
base = anon()
peak = [base]
done = threading.Event()


def sample() -> None:
    while not done.is_set():
        peak[0] = max(peak[0], anon())
        time.sleep(0.0005)


sampler = threading.Thread(target=sample)
sampler.start()
if mode == "streamed":
    model, _ = load_model(big, dtype=torch.bfloat16)
    kept = [t for t in model.state_dict().values()]
else:  # the control: the whole file in memory in float32, then cast
    whole = {k: v.clone() for k, v in safetensors.torch.load_file(big).items()}
    kept = [t.to(torch.bfloat16) if t.is_floating_point() else t for t in whole.values()]
done.set()
sampler.join()
peak[0] = max(peak[0], anon())
print(json.dumps({"peak_growth": peak[0] - base}))
"""


def widened_checkpoints(folder: Path) -> tuple[Path, Path, int]:
    """A tiny checkpoint, a widened one (~170 MB in float32) and the widened one's bf16
    bytes."""
    warm = folder / "tiny.safetensors"
    save_checkpoint(build_model(TINY, device="cpu"), TINY, warm)
    wide = TINY.model_copy(
        update={
            "transformer": TINY.transformer.model_copy(
                update={"hidden_dim": 768, "depth": 4, "num_heads": 8}
            )
        }
    )
    model = build_model(wide, device="cpu")
    big = folder / "wide.safetensors"
    save_checkpoint(model, wide, big)
    bf16_bytes = sum(
        t.numel() * (2 if t.is_floating_point() else t.element_size())
        for t in model.state_dict().values()
    )
    return warm, big, bf16_bytes


def peak_growth(warm: Path, big: Path, mode: str) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(warm), str(big), mode],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(json.loads(done.stdout.strip().splitlines()[-1])["peak_growth"])


def test_loading_float32_in_bfloat16_holds_no_float32_copy(tmp_path: Path) -> None:
    warm, big, bf16_bytes = widened_checkpoints(tmp_path)
    assert bf16_bytes > 80e6
    assert big.stat().st_size > 2 * bf16_bytes * 0.99  # the file is float32
    streamed = peak_growth(warm, big, "streamed")
    control = peak_growth(warm, big, "control")
    assert streamed < 1.5 * bf16_bytes, (streamed, bf16_bytes)
    assert control > 2.5 * bf16_bytes, (control, bf16_bytes)  # a float32 copy is visible
