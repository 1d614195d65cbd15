"""UI plumbing: an unexpected error reaches the visitor as one line without server paths."""

from __future__ import annotations

import gradio as gr
import pytest

from explorer.ui.common import guard
from explorer.ui.service import UserError


def test_unexpected_errors_hide_server_paths() -> None:
    def broken() -> None:
        raise OSError("[Errno 2] No such file or directory: '/srv/app/secret/weights.safetensors'")

    with pytest.raises(gr.Error) as err:
        guard(broken)()
    assert "/srv" not in str(err.value) and "OSError" in str(err.value) and "<server path>" in str(err.value)


def test_user_errors_pass_as_written() -> None:
    def refused() -> None:
        raise UserError("Layer 9 is out of range.")

    with pytest.raises(gr.Error) as err:
        guard(refused)()
    assert err.value.message == "Layer 9 is out of range."
