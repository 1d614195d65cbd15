"""Sinkhorn-Knopp over 2 gloo processes, each with half the batch, equals the single-process result."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from explorer.ssl.sinkhorn import sinkhorn_knopp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, scores: torch.Tensor, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        half = scores.shape[0] // 2
        mine = scores[:half] if rank == 0 else scores[half:]
        q = sinkhorn_knopp(mine, temperature=0.1, iterations=3)
        from safetensors.torch import save_file

        save_file({"q": q.contiguous()}, str(Path(out_dir) / f"q{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_matches_single_process(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    scores = torch.randn(24, 7, generator=torch.Generator().manual_seed(0))
    scores[:12] += 0.5  # the halves differ, so local-only normalisation would give another answer
    mp.spawn(_worker, args=(_free_port(), scores, str(tmp_path)), nprocs=2, join=True)
    q = torch.cat([load_file(str(tmp_path / f"q{r}.safetensors"))["q"] for r in range(2)])
    assert torch.allclose(q, sinkhorn_knopp(scores, temperature=0.1, iterations=3), atol=1e-5)
    local = torch.cat([sinkhorn_knopp(h, 0.1, 3) for h in scores.chunk(2)])
    assert not torch.allclose(q, local, atol=1e-3)
