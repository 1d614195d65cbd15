"""DINO loss on CLS tokens: teacher soft assignments vs student log-softmax, across crops.

Why all non-identical pairs: every student crop (global and local) must predict the
teacher's view of each *other* global crop — local-to-global correspondence is what
makes the CLS token semantic. One einsum computes every pair at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def dino_loss(student_logits: Tensor, teacher_probs: Tensor, student_temp: float = 0.1) -> Tensor:
    """Mean cross-entropy over pairs (teacher crop t, student crop s), s != t.

    student_logits: [S, B, K] (crops 0..T-1 are the global crops, in the teacher's order)
    teacher_probs: [T, B, K] (already centred, e.g. by Sinkhorn-Knopp; rows sum to 1)
    """
    n_student, batch, _ = student_logits.shape
    n_teacher = teacher_probs.shape[0]
    # float32 even under bf16 autocast (which would run the einsum in bf16): near-uniform targets differ
    # from 1/K by less than bf16's 3 significant digits, and the loss itself would be quantised to 1/16
    with torch.autocast(device_type=student_logits.device.type, enabled=False):
        log_p = F.log_softmax(student_logits.float() / student_temp, dim=-1)
        ce = -torch.einsum("tbk,sbk->ts", teacher_probs.float(), log_p) / batch  # [T, S]
    keep = torch.ones(n_teacher, n_student, dtype=torch.bool, device=ce.device)
    idx = torch.arange(min(n_teacher, n_student), device=ce.device)
    keep[idx, idx] = False
    return ce[keep].mean()
