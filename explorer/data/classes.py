"""The 64 object classes of the offline world and the emoji that depict them.

Names are plain English words (one token, no spaces) so they work as ImageFolder
directory names, VOC ``<name>`` tags and COCO category names alike. The list is
sorted alphabetically on purpose: torchvision's ImageFolder numbers classes by
sorted directory name, so a dataset written to disk and read back with any
standard ImageFolder reader gets the same class indices as ``CLASS_NAMES``.

Classes were picked by eye from a 32 px contact sheet of Noto Color Emoji:
near-duplicates (several faces, red fruits, yellow crescents, white vans) were
left out so every class stays recognisable at the smallest object size.
"""

from __future__ import annotations

# name -> Unicode code point (hex) of the Noto Color Emoji glyph that depicts it.
CLASS_CODEPOINTS: dict[str, str] = {
    # animals (20)
    "bee": "1F41D", "butterfly": "1F98B", "cat": "1F408", "cow": "1F404", "crab": "1F980",
    "dog": "1F415", "duck": "1F986", "elephant": "1F418", "fish": "1F41F", "giraffe": "1F992",
    "horse": "1F40E", "octopus": "1F419", "owl": "1F989", "penguin": "1F427", "pig": "1F416",
    "rabbit": "1F407", "rooster": "1F413", "snail": "1F40C", "snake": "1F40D", "turtle": "1F422",
    # food (11)
    "apple": "1F34E", "banana": "1F34C", "broccoli": "1F966", "carrot": "1F955", "grapes": "1F347",
    "hamburger": "1F354", "icecream": "1F366", "mushroom": "1F344", "pineapple": "1F34D",
    "pizza": "1F355", "watermelon": "1F349",
    # vehicles (10)
    "airplane": "2708", "bicycle": "1F6B2", "bus": "1F68C", "car": "1F697", "helicopter": "1F681",
    "locomotive": "1F682", "motorcycle": "1F3CD", "rocket": "1F680", "sailboat": "26F5",
    "tractor": "1F69C",
    # objects and tools (13)
    "balloon": "1F388", "book": "1F4D5", "camera": "1F4F7", "clock": "23F0", "gift": "1F381",
    "guitar": "1F3B8", "hammer": "1F528", "key": "1F511", "laptop": "1F4BB", "lightbulb": "1F4A1",
    "scissors": "2702", "telephone": "260E", "umbrella": "2602",
    # places and nature (10)
    "cactus": "1F335", "castle": "1F3F0", "fire": "1F525", "house": "1F3E0", "rainbow": "1F308",
    "snowman": "26C4", "star": "2B50", "sunflower": "1F33B", "tree": "1F333", "volcano": "1F30B",
}

CLASS_NAMES: list[str] = sorted(CLASS_CODEPOINTS)
NUM_CLASSES: int = len(CLASS_NAMES)
CLASS_TO_INDEX: dict[str, int] = {name: k for k, name in enumerate(CLASS_NAMES)}
