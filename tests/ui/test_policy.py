"""Public mode switches, the allow-list from the environment, and what a public message may say."""

from __future__ import annotations

import pytest

from explorer.ui.policy import PUBLIC_DEFAULT_MODELS, ModelPolicy, allowed_models, is_public


@pytest.mark.parametrize(("flag", "env", "public"), [
    (False, {}, False),
    (True, {}, True),
    (False, {"EXPLORER_PUBLIC": "1"}, True),
    (False, {"EXPLORER_PUBLIC": "0"}, False),
    (False, {"SPACE_ID": "someone/dinov3-explorer"}, True),  # on a Hugging Face Space
])
def test_public_switches(flag: bool, env: dict, public: bool) -> None:
    assert is_public(flag, env) is public


def test_allow_list_from_env_with_the_start_model_first() -> None:
    env = {"DINOV3_MODELS": " facebook/dinov2-small, bundled ,,timm:convnext_tiny.dinov3_lvd1689m"}
    assert allowed_models("bundled", env) == ("bundled", "facebook/dinov2-small", "timm:convnext_tiny.dinov3_lvd1689m")
    assert allowed_models(None, {}) == PUBLIC_DEFAULT_MODELS


def test_refusal_quotes_names_but_never_paths() -> None:
    policy = ModelPolicy(True, ("bundled",))
    assert policy.refusal("bundled") is None
    assert policy.refusal("facebook/dinov3-vit7b16").startswith("'facebook/dinov3-vit7b16' is not on this server's")
    for path in ("/etc/passwd", "../x", "~/m", "a/../../b", "C:\\models"):
        message = policy.refusal(path)
        assert message.startswith("This source is not on this server's allow-list") and path not in message
    assert ModelPolicy(False).refusal("/any/folder") is None


def test_redact_removes_absolute_paths_but_keeps_urls() -> None:
    policy = ModelPolicy(True, ())
    text = "Could not load the model in '/srv/app/pretrained/tiny': see https://huggingface.co/docs/hub."
    assert policy.redact(text) == "Could not load the model in '<server path>': see https://huggingface.co/docs/hub."
    assert ModelPolicy(False).redact(text) == text
