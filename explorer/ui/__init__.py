"""Gradio UI: one module per tab, wired in `explorer.ui.layout.build_tabs`; no math lives here.

Adding a tab (detection, segmentation, classification, ...):

1. `explorer/ui/<name>.py` with a pure view function and a builder::

       def detection_view(svc, image, model, size, layer, threshold) -> tuple[np.ndarray, str]:
           p = svc.prepare(image, model, size, layer)      # cached Features, no forward on a hit
           ...                                               # call explorer.heads / analysis + viz
       def build_tab(inp: Inputs) -> None:
           with gr.Tab("Detection", id="detection"):
               ...components...
           btn.click(guard(fn), inputs=[*inp.base, ...], outputs=[...], api_name="detection")
           inp.on_new_features(fn, [*inp.base, ...], [...])   # re-render on new image/model/size/layer

2. one line in `build_tabs` (layout.py) at the marked place.

`inp.base` is `[image, model, size, layer]`; `svc.prepare(...)` raises `UserError` for bad input,
which `guard` turns into a plain message.
"""
