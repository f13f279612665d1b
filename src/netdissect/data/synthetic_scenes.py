"""The synthetic dataset's vocabulary and painter: labels, scenes, object kinds, and the
canvas that draws backgrounds and objects with their annotations (see :mod:`netdissect.data.synthetic`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .writer import LabelSpec

CATEGORIES: tuple[str, ...] = ("color", "object", "part", "material", "scene", "texture")

PALETTE: dict[str, tuple[int, int, int]] = {
    "red-c": (205, 40, 40),
    "orange-c": (240, 135, 30),
    "yellow-c": (240, 215, 50),
    "green-c": (55, 160, 60),
    "blue-c": (45, 90, 205),
    "purple-c": (130, 55, 170),
    "pink-c": (245, 155, 185),
    "brown-c": (125, 75, 35),
    "black-c": (25, 25, 25),
    "white-c": (240, 240, 240),
    "grey-c": (128, 128, 128),
}
OBJECTS: tuple[str, ...] = ("wall", "floor", "sky", "ground", "ball", "box", "tent", "ring", "star", "cross")
PARTS: tuple[str, ...] = ("window", "rug", "cloud", "lid", "handle", "door", "peak", "spot", "gem", "core")
MATERIALS: tuple[str, ...] = ("wood", "metal", "fabric", "glass", "plastic")
SCENES: tuple[str, ...] = ("kitchen-s", "bedroom-s", "beach-s", "street-s", "forest-s")
TEXTURES: tuple[str, ...] = ("striped", "dotted", "chequered", "zigzagged", "grid")

#: The label table: ``(name, category)``; a label's number is its position + 1.
LABELS: tuple[tuple[str, str], ...] = tuple(
    (name, category)
    for category, names in zip(CATEGORIES, (tuple(PALETTE), OBJECTS, PARTS, MATERIALS, SCENES, TEXTURES))
    for name in names
)
_NUMBER: dict[str, int] = {name: number for number, (name, _) in enumerate(LABELS, 1)}

RARE_OBJECT = "cross"
RARE_PROBABILITY = 0.03  # share of images holding the rare object
VAL_FRACTION = 0.2
NOISE_SIGMA = 4.0


def label_number(name: str) -> int:
    """Global label number of a label name (``"ball"``, ``"red-c"`` ...)."""
    return _NUMBER[name]


def label_table() -> list[tuple[int, str, str]]:
    """The fixed label table as ``(number, name, category)`` rows."""
    return [(number, name, category) for number, (name, category) in enumerate(LABELS, 1)]


def label_specs() -> list[LabelSpec]:
    """The label table as :class:`LabelSpec` for :class:`BrodenWriter`."""
    return [LabelSpec(number, name) for number, name, _ in label_table()]


# --------------------------------------------------------------------------- scene and kinds


@dataclass(frozen=True)
class _Scene:
    indoor: bool
    objects: Mapping[str, float]  # weights of the common foreground kinds
    upper: Mapping[str, float]  # colour weights of wall / sky
    lower: Mapping[str, float]  # colour weights of floor / ground


@dataclass(frozen=True)
class _Kind:
    colors: tuple[str, ...]
    materials: Mapping[str, float]
    parts: Mapping[str, tuple[str, ...]]  # part name -> its colour choices


# Background colours do not depend on the scene: a scene is told by its objects (each scene has
# a signature kind), so a classifier trained on scenes has to learn object detectors.
_UPPER = {"white-c": 2, "blue-c": 2, "grey-c": 2, "yellow-c": 1, "pink-c": 1}
_LOWER = {"grey-c": 2, "brown-c": 2, "green-c": 1, "yellow-c": 1, "black-c": 1}

SCENE_STYLES: dict[str, _Scene] = {
    "kitchen-s": _Scene(True, {"box": 6, "ring": 1, "ball": 0.5, "star": 0.3, "tent": 0.2}, _UPPER, _LOWER),
    "bedroom-s": _Scene(True, {"star": 6, "ball": 1, "box": 0.5, "ring": 0.3, "tent": 0.2}, _UPPER, _LOWER),
    "beach-s": _Scene(False, {"ball": 6, "star": 1, "tent": 0.5, "ring": 0.3, "box": 0.2}, _UPPER, _LOWER),
    "street-s": _Scene(False, {"ring": 6, "box": 1, "tent": 0.5, "ball": 0.3, "star": 0.2}, _UPPER, _LOWER),
    "forest-s": _Scene(False, {"tent": 6, "ring": 1, "star": 0.5, "box": 0.3, "ball": 0.2}, _UPPER, _LOWER),
}

_KINDS: dict[str, _Kind] = {
    "ball": _Kind(
        ("red-c", "orange-c", "blue-c", "yellow-c"),
        {"plastic": 3, "fabric": 2, "glass": 1.5, "metal": 0.5},
        {"spot": ("white-c", "yellow-c", "black-c")},
    ),
    "box": _Kind(
        ("brown-c", "orange-c", "grey-c", "red-c"),
        {"wood": 3, "metal": 2, "plastic": 1, "glass": 1.5},
        {"lid": ("black-c", "grey-c", "white-c"), "handle": ("black-c", "yellow-c")},
    ),
    "tent": _Kind(
        ("green-c", "orange-c", "yellow-c", "red-c", "blue-c"),
        {"fabric": 4, "plastic": 1, "glass": 1},
        {"door": ("black-c", "brown-c"), "peak": ("white-c", "red-c", "blue-c")},
    ),
    "ring": _Kind(
        ("yellow-c", "grey-c", "pink-c", "red-c"),
        {"metal": 3, "plastic": 2, "glass": 1.5, "wood": 0.5},
        {"gem": ("red-c", "blue-c", "purple-c", "green-c")},
    ),
    "star": _Kind(
        ("yellow-c", "orange-c", "purple-c", "pink-c"),
        {"plastic": 2, "metal": 2, "wood": 1, "glass": 1.5},
        {"core": ("red-c", "white-c", "orange-c", "blue-c")},
    ),
    "cross": _Kind(("red-c", "green-c", "white-c"), {"wood": 2, "metal": 2, "glass": 1}, {}),
}

_BACKGROUND_PARTS: dict[str, tuple[float, tuple[str, ...]]] = {
    # part -> (probability, colour choices)
    "window": (0.6, ("blue-c", "white-c")),
    "rug": (0.5, ("red-c", "purple-c", "pink-c", "orange-c")),
    "cloud": (0.7, ("white-c", "grey-c")),
}


def _pick(rng: np.random.Generator, weights: Mapping[str, float] | tuple[str, ...]) -> str:
    """One key of ``weights`` (or one item of a tuple, uniformly)."""
    if isinstance(weights, tuple):
        return weights[int(rng.integers(len(weights)))]
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _rgb(rng: np.random.Generator, color: str) -> np.ndarray:
    """The palette colour with a small random jitter, float32 (3,)."""
    return np.clip(np.array(PALETTE[color], np.float32) + rng.integers(-12, 13, 3), 0, 255).astype(np.float32)


# --------------------------------------------------------------------------- canvas


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(x, y)``, float32 (size, size); read-only, shared."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + np.float32(0.5)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


_Window = tuple[slice, slice]


class Canvas:
    """The image being drawn and its full-resolution label maps.

    Drawing works on a window (a pair of slices) so that its cost follows the drawn area; masks
    passed to the methods have the window's shape.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.x, self.y = _grid(size)
        self.image = np.zeros((size, size, 3), np.float32)
        self.color = np.zeros((size, size), np.int32)
        self.object = np.zeros((size, size), np.int32)
        self.material = np.zeros((size, size), np.int32)
        self.parts: list[np.ndarray] = [np.zeros((size, size), np.int32)]

    def window(self, x0: float, y0: float, x1: float, y1: float) -> _Window:
        """The window of the pixels whose centres may lie in the box ``[x0, x1] x [y0, y1]``."""

        def clamp(v: float) -> int:
            return min(max(int(v), 0), self.size)

        return slice(clamp(np.floor(y0)), clamp(np.ceil(y1) + 1)), slice(clamp(np.floor(x0)), clamp(np.ceil(x1) + 1))

    def coords(self, win: _Window) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates of a window."""
        return self.x[win], self.y[win]

    def paint(
        self, win: _Window, mask: np.ndarray | None, rgb: np.ndarray, color: np.ndarray | int, alpha: float = 1.0
    ) -> None:
        """Paint ``rgb`` ((3,), or (N, 3) for the N pixels of ``mask``) and its colour labels.

        ``mask=None`` paints the whole window.
        """
        image, labels = self.image[win], self.color[win]
        if mask is None:
            image[...] = rgb
            labels[...] = color
        elif alpha >= 1.0:
            image[mask] = rgb
            labels[mask] = color
        else:
            image[mask] = alpha * rgb + (1.0 - alpha) * image[mask]
            labels[mask] = color

    def occlude_parts(self, win: _Window, mask: np.ndarray) -> None:
        """An opaque object hides the parts behind it."""
        for layer in self.parts:
            layer[win][mask] = 0

    def add_part(self, win: _Window, mask: np.ndarray, number: int) -> None:
        """Label a part; pixels already holding a part go to the next free layer."""
        for layer in self.parts:
            view = layer[win]
            free = mask & (view == 0)
            view[free] = number
            mask = mask & ~free
            if not mask.any():
                return
        layer = np.zeros_like(self.parts[0])
        layer[win][mask] = number
        self.parts.append(layer)


# --------------------------------------------------------------------------- background


def _pattern_mask(x: np.ndarray, y: np.ndarray, size: int, rng: np.random.Generator, texture: str) -> np.ndarray:
    """Pixels (coordinates ``x, y``) covered by the ink of a background pattern."""
    period = size * rng.uniform(0.05, 0.09)
    ox, oy = rng.uniform(0, period, 2)
    if texture == "striped":
        angle = rng.uniform(0, np.pi)
        u = x * np.float32(np.cos(angle) / period) + y * np.float32(np.sin(angle) / period)
        return (u % 1.0) < 0.45
    if texture == "dotted":
        dx = (x + ox) % period - period / 2
        dy = (y + oy) % period - period / 2
        return dx * dx + dy * dy <= (0.28 * period) ** 2
    if texture == "chequered":
        return ((np.floor((x + ox) / period) + np.floor((y + oy) / period)) % 2) == 0
    if texture == "zigzagged":
        wave = np.abs(((x + ox) / period) % 2.0 - 1.0) * period * 0.8
        return (((y + oy + wave) / period) % 1.0) < 0.4
    if texture == "grid":
        return (((x + ox) / period) % 1.0 < 0.18) | (((y + oy) / period) % 1.0 < 0.18)
    raise ValueError(f"unknown texture {texture!r}")


def _draw_half(
    canvas: Canvas, rng: np.random.Generator, rows: slice, name: str, colors: Mapping[str, float], p_texture: float
) -> str | None:
    """Fill one background half (a band of rows), maybe with a pattern; returns its texture."""
    win = (rows, slice(None))
    base = _pick(rng, colors)
    canvas.paint(win, None, _rgb(rng, base), label_number(base))
    canvas.object[win] = label_number(name)
    if rng.random() >= p_texture:
        return None
    texture = _pick(rng, TEXTURES)
    ink_color = _pick(rng, tuple(c for c in PALETTE if c != base))
    ink = _pattern_mask(*canvas.coords(win), canvas.size, rng, texture)
    canvas.paint(win, ink, _rgb(rng, ink_color), label_number(ink_color))
    return texture


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Pixels inside an axis-aligned ellipse."""
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _background_part(canvas: Canvas, rng: np.random.Generator, part: str, horizon: int) -> tuple[_Window, np.ndarray]:
    """Window and mask of a background part: a window or cloud above the horizon, a rug below."""
    s = canvas.size
    if part == "window":
        w, h = s * rng.uniform(0.08, 0.15), s * rng.uniform(0.06, 0.12)
        cx, cy = rng.uniform(w, s - w), rng.uniform(h, max(h, horizon - h))
        win = canvas.window(cx - w, cy - h, cx + w, min(cy + h, horizon - 1))
        x, y = canvas.coords(win)
        return win, (np.abs(x - cx) <= w) & (np.abs(y - cy) <= h) & (y < horizon)
    if part == "rug":
        rx, ry = s * rng.uniform(0.12, 0.25), s * rng.uniform(0.04, 0.08)
        cx, cy = rng.uniform(0.2 * s, 0.8 * s), rng.uniform(horizon + ry, max(horizon + ry, s - ry))
        win = canvas.window(cx - rx, max(cy - ry, horizon), cx + rx, cy + ry)
        x, y = canvas.coords(win)
        return win, _ellipse(x, y, cx, cy, rx, ry) & (y >= horizon)
    if part == "cloud":
        r = s * rng.uniform(0.04, 0.07)
        cx, cy = rng.uniform(0.1 * s, 0.9 * s), rng.uniform(r, max(r, horizon - 1.5 * r))
        win = canvas.window(cx - 2 * r, cy - 1.5 * r, cx + 2 * r, min(cy + r, horizon - 1))
        x, y = canvas.coords(win)
        mask = _ellipse(x, y, cx, cy, 1.8 * r, r)
        for dx in (-1.0, 1.0):
            mask |= _ellipse(x, y, cx + dx * r, cy - 0.5 * r, r, r)
        return win, mask & (y < horizon)
    raise ValueError(f"unknown background part {part!r}")


def draw_background(canvas: Canvas, rng: np.random.Generator, scene: _Scene) -> list[int]:
    """Draw the background pair, its patterns and parts; returns the texture label numbers."""
    horizon = int(canvas.size * rng.uniform(0.42, 0.62))  # the first row of the lower half
    upper_name, lower_name = ("wall", "floor") if scene.indoor else ("sky", "ground")
    textures = [
        _draw_half(canvas, rng, slice(0, horizon), upper_name, scene.upper, 0.6),
        _draw_half(canvas, rng, slice(horizon, None), lower_name, scene.lower, 0.45),
    ]
    parts = ("window", "rug") if scene.indoor else ("cloud",)
    for part in parts:
        probability, colors = _BACKGROUND_PARTS[part]
        if rng.random() < probability:
            win, mask = _background_part(canvas, rng, part, horizon)
            color = _pick(rng, colors)
            canvas.paint(win, mask, _rgb(rng, color), label_number(color))
            canvas.add_part(win, mask, label_number(part))
    return list(dict.fromkeys(label_number(t) for t in textures if t is not None))


# --------------------------------------------------------------------------- objects

# A shape: (x, y, cx, cy, r, rng) -> (object mask, {part name: part mask}) over the pixels x, y.
_ShapeResult = tuple[np.ndarray, dict[str, np.ndarray]]
_Shape = Callable[[np.ndarray, np.ndarray, float, float, float, np.random.Generator], _ShapeResult]


def _ball(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float, rng: np.random.Generator) -> _ShapeResult:
    """Disc with a round spot."""
    mask = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    angle = rng.uniform(0, 2 * np.pi)
    sx, sy = cx + 0.45 * r * np.cos(angle), cy + 0.45 * r * np.sin(angle)
    spot = mask & ((x - sx) ** 2 + (y - sy) ** 2 <= (0.32 * r) ** 2)
    return mask, {"spot": spot}


def _box(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float, rng: np.random.Generator) -> _ShapeResult:
    """Rectangle with a lid (top band) and a handle."""
    w, h = r * rng.uniform(0.8, 1.0), r * rng.uniform(0.75, 1.0)
    mask = (np.abs(x - cx) <= w) & (np.abs(y - cy) <= h)
    lid = mask & (y <= cy - 0.5 * h)
    handle = (np.abs(x - cx) <= 0.3 * w) & (np.abs(y - cy - 0.25 * h) <= 0.1 * h)
    return mask, {"lid": lid, "handle": handle}


def _tent(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float, rng: np.random.Generator) -> _ShapeResult:
    """Triangle with a door at the base and a peak at the apex."""
    w, h = 1.1 * r, r * rng.uniform(0.8, 1.0)
    top = cy - h
    mask = (y >= top) & (y <= cy + h) & (np.abs(x - cx) <= w * (y - top) / (2 * h))
    door = mask & (np.abs(x - cx) <= 0.22 * w) & (y >= cy + 0.1 * h)
    peak = mask & (y <= top + 0.5 * h)
    return mask, {"door": door, "peak": peak}


def _ring(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float, rng: np.random.Generator) -> _ShapeResult:
    """Annulus with a gem on the band."""
    d2 = (x - cx) ** 2 + (y - cy) ** 2
    mask = (d2 <= r * r) & (d2 >= (0.6 * r) ** 2)
    angle = rng.uniform(0, 2 * np.pi)
    gx, gy = cx + 0.8 * r * np.cos(angle), cy + 0.8 * r * np.sin(angle)
    gem = mask & ((x - gx) ** 2 + (y - gy) ** 2 <= (0.25 * r) ** 2)
    return mask, {"gem": gem}


def _star(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float, rng: np.random.Generator) -> _ShapeResult:
    """Five-pointed star with a round core."""
    dx, dy = x - cx, y - cy
    dist = np.sqrt(dx * dx + dy * dy)
    turn = (np.arctan2(dy, dx) / (2 * np.pi) + rng.uniform(0, 1)) * 5 % 1.0
    mask = dist <= r * (0.42 + 0.58 * np.abs(2 * turn - 1))
    core = dist <= 0.32 * r
    return mask, {"core": core}


def _cross(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float, rng: np.random.Generator) -> _ShapeResult:
    """Plus sign."""
    ax, ay = np.abs(x - cx), np.abs(y - cy)
    arm = 0.3 * r
    return ((ax <= arm) & (ay <= r)) | ((ay <= arm) & (ax <= r)), {}


_SHAPES: dict[str, _Shape] = {"ball": _ball, "box": _box, "tent": _tent, "ring": _ring, "star": _star, "cross": _cross}


def _material(
    name: str,
    rgb: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    cx: float,
    cy: float,
    r: float,
    size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    """Colours of an object's pixels (coordinates ``x, y``) made of ``name``, and their opacity."""
    shade = np.ones_like(x)
    add = np.zeros_like(x)
    alpha = 1.0
    if name == "wood":
        angle = rng.uniform(-0.3, 0.3)
        u = x * np.sin(angle) + y * np.cos(angle)
        v = x * np.cos(angle) - y * np.sin(angle)
        shade = 0.78 + 0.22 * np.sin(2 * np.pi * (u + 0.02 * size * np.sin(v / (0.05 * size))) / (0.035 * size))
        rgb = 0.75 * rgb + 0.25 * np.array(PALETTE["brown-c"], np.float32)
    elif name == "metal":
        angle = rng.uniform(0, 2 * np.pi)
        t = ((x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)) / r
        shade = 0.7 + 0.55 * np.exp(-(((t - rng.uniform(-0.4, 0.4)) / 0.35) ** 2))
        rgb = 0.65 * rgb + 0.35 * np.array((150, 150, 160), np.float32)
    elif name == "fabric":
        cell = max(1.0, 0.012 * size)
        shade = 0.8 + 0.2 * ((np.floor(x / cell) + np.floor(y / cell)) % 2)
    elif name == "plastic":
        add = 110.0 * np.exp(-((x - cx + 0.35 * r) ** 2 + (y - cy + 0.35 * r) ** 2) / (0.2 * r) ** 2)
    elif name == "glass":
        alpha = 0.6
        rgb = 0.6 * rgb + 0.4 * np.array((210, 235, 245), np.float32)
        add = 70.0 * ((((x + y) / (0.06 * size)) % 1.0) < 0.12)
    else:
        raise ValueError(f"unknown material {name!r}")
    return rgb * shade[:, None] + add[:, None], alpha


def draw_object(canvas: Canvas, rng: np.random.Generator, kind_name: str) -> None:
    """Draw one foreground object with its parts and material at a random place and size."""
    kind = _KINDS[kind_name]
    s = canvas.size
    r = s * rng.uniform(0.09, 0.2)
    cx, cy = s * rng.uniform(0.08, 0.92), s * rng.uniform(0.25, 0.9)
    win = canvas.window(cx - 1.2 * r, cy - 1.2 * r, cx + 1.2 * r, cy + 1.2 * r)  # holds every shape
    x, y = canvas.coords(win)
    mask, parts = _SHAPES[kind_name](x, y, cx, cy, r, rng)
    if not mask.any():
        return
    color = _pick(rng, kind.colors)
    material = _pick(rng, kind.materials)
    base = np.broadcast_to(_rgb(rng, color), (int(mask.sum()), 3)).copy()
    colors = np.full(len(base), label_number(color), np.int32)
    for part, part_mask in parts.items():
        part_color = _pick(rng, kind.parts[part])
        inside = part_mask[mask]
        base[inside] = _rgb(rng, part_color)
        colors[inside] = label_number(part_color)
    rgb, alpha = _material(material, base, x[mask], y[mask], cx, cy, r, s, rng)
    canvas.paint(win, mask, rgb, colors, alpha)
    canvas.object[win][mask] = label_number(kind_name)
    canvas.material[win][mask] = label_number(material)
    if alpha >= 1.0:
        canvas.occlude_parts(win, mask)
    for part, part_mask in parts.items():
        canvas.add_part(win, part_mask & mask, label_number(part))


def choose_objects(rng: np.random.Generator, scene: _Scene) -> list[str]:
    """1-4 common object kinds drawn from the scene's weights, and maybe the rare one (last)."""
    kinds = [_pick(rng, scene.objects) for _ in range(int(rng.integers(1, 5)))]
    if rng.random() < RARE_PROBABILITY:
        kinds = kinds[:3] + [RARE_OBJECT]
    return kinds
