"""DINOv3 Explorer: `python app.py [--model SOURCE] [--port N] [--host H] [--public]` (also the HF Spaces entry point).

Public mode (`--public`, `EXPLORER_PUBLIC=1`, or on a Hugging Face Space) offers only the
allow-listed models (`DINOV3_MODELS`); `EXPLORER_MEMORY_MB` bounds what the caches hold.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry calls
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="DINOv3 Explorer")
    parser.add_argument("--model", default=None,
                        help="auto | bundled | local folder | hub id | timm:<name> (default: $DINOV3_MODEL, else auto: the ungated "
                             "timm DINOv3 ViT-S/16 when the hub answers or it is cached, else bundled)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--public", action="store_true",
                        help="serve strangers: only allow-listed models ($DINOV3_MODELS), no server paths in messages "
                             "(also on with EXPLORER_PUBLIC=1 or SPACE_ID)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default=None,
                        help="backbone forward precision (default: $DINOV3_PRECISION, else auto = bfloat16 on CPUs "
                             "with native bf16 and on CUDA; every analysis runs in float32)")
    args = parser.parse_args(argv)
    if args.precision:
        os.environ["DINOV3_PRECISION"] = args.precision  # read by every Backbone this process builds

    from explorer.backbone.sources import requested_source
    from explorer.ui.policy import ModelPolicy
    from explorer.ui.service import ExplorerService

    source = requested_source(args.model)
    service = ExplorerService(source, policy=ModelPolicy.from_env(args.public, source))
    service.load_in_background()  # the model loads while Gradio imports and the page is first served

    from explorer.ui.layout import build_app

    demo = build_app(service, source)
    demo.queue(default_concurrency_limit=2).launch(
        server_name=args.host, server_port=args.port, show_error=True, max_file_size="50mb",
        footer_links=["api"],
    )


if __name__ == "__main__":
    main()
