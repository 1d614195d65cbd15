"""DINOv3 Explorer: `python app.py [--model SOURCE] [--port N] [--host H]` (also the HF Spaces entry point)."""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry calls
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="DINOv3 Explorer")
    parser.add_argument("--model", default=None,
                        help="bundled | local HF folder | hub id | timm:<name> (default: $DINOV3_MODEL or bundled)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    args = parser.parse_args(argv)

    from explorer.ui.layout import build_app

    source = args.model or os.environ.get("DINOV3_MODEL") or "bundled"
    demo = build_app(default_source=source)
    demo.queue(default_concurrency_limit=2).launch(
        server_name=args.host, server_port=args.port, show_error=True, max_file_size="50mb",
        footer_links=["api"],
    )


if __name__ == "__main__":
    main()
