"""Renders synthetic persons for a cross-modal re-id problem that colour alone cannot solve.

Each identity has a body shape (height, shoulder and hip width, leg length, head size), a
clothing layout (top pattern: plain, horizontal stripes, two blocks, vertical stripes or a chest
band; trousers or a skirt; an optional bag on one side), clothing colours and dyes, and a
thermal signature (how warm the skin glows).

- Visible frames show the clothing and skin colours under the camera's illumination and cast.
- Infrared frames are single-channel renderings, as near-infrared cameras see people: skin
  glows with the person's warmth; clothing reflects mostly as its visible brightness suggests
  and partly by its own dye (``DYE_WEIGHT``), so no hue survives (a red and a green of equal
  brightness look alike), while the pattern survives as texture (its two colours always differ
  in brightness).
- Every camera has its own viewpoint (facing left or right), scale, vertical placement,
  illumination and background (cooler, smoother backgrounds in infrared); every frame has
  walking motion (leg swing, arm swing, a horizontal drift) and, sometimes, an occluder in front.

So what matches across modalities is shape, layout, pattern and brightness structure, as in
real VI-ReID. Deterministic for a seed: the same (pid, modality, camera, tracklet, frame)
gives the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RENDERER_VERSION = 4    # recorded by tools/make_synthetic.py: a set from another version is rewritten
VISIBLE, INFRARED = 0, 1
ACCENT_CONTRAST = 0.3  # least brightness difference of a pattern's two colours
DYE_WEIGHT = 0.25      # share of a clothing's infrared level set by its own dye, not its brightness
LUMA = np.array([0.299, 0.587, 0.114])  # brightness of an RGB colour in 0..1 (ITU-R 601)


@dataclass(frozen=True)
class Identity:
    height: float          # fraction of the frame height the person spans
    shoulder: float        # half-widths as fractions of the frame width
    hip: float
    leg_fraction: float    # share of the body height taken by the legs
    head: float            # head radius as a fraction of the body height
    top_pattern: int       # 0 plain, 1 horizontal stripes, 2 two vertical blocks, 3 vertical stripes, 4 chest band
    stripe_period: float   # stripe period (band position) as a fraction of the torso height / width
    skirt: bool
    bag_side: int          # 0 none, -1 left, +1 right (in the person's own frame)
    top_rgb: np.ndarray    # (3,) in 0..1
    accent_rgb: np.ndarray # (3,) differs from top_rgb in brightness by at least ACCENT_CONTRAST
    bottom_rgb: np.ndarray
    skin_rgb: np.ndarray
    dye: np.ndarray        # (4,) own near-infrared reflectance of top, accent, bottom, bag dyes in 0..1
    warmth: float          # infrared level of the skin (head) in 0..1
    gait_speed: float      # leg-swing phase advance per frame


@dataclass(frozen=True)
class Camera:
    faces_right: bool
    scale: float           # multiplies the identity's height
    baseline: float        # vertical position of the feet (fraction of frame height)
    brightness: float      # visible illumination
    cast: np.ndarray       # (3,) visible colour cast
    background: np.ndarray # (H, W, 3) visible background in 0..1
    ir_background: np.ndarray  # (H, W) infrared background in 0..1


class SyntheticPersonRenderer:
    """``renderer(pid, modality, camid, tracklet, frame) -> (H, W, 3) uint8``.

    ``modality`` is 0 (visible) or 1 (infrared, three equal channels)."""

    def __init__(self, num_ids: int, num_cameras: int, size: tuple[int, int] = (64, 32),
                 seed: int = 0) -> None:
        self.size = size
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.identities = [self._draw_identity(rng) for _ in range(num_ids)]
        self.cameras = [self._draw_camera(rng) for _ in range(num_cameras)]
        height, width = size
        self._ys, self._xs = np.mgrid[0:height, 0:width].astype(np.float32)

    # ------------------------------------------------------------------ drawing the world

    @staticmethod
    def _draw_identity(rng: np.random.Generator) -> Identity:
        top = rng.uniform(0, 1, 3)
        accent = rng.uniform(0, 1, 3)
        while abs(_brightness(accent) - _brightness(top)) < ACCENT_CONTRAST:
            accent = rng.uniform(0, 1, 3)
        return Identity(
            height=rng.uniform(0.7, 0.95),
            shoulder=rng.uniform(0.15, 0.32),
            hip=rng.uniform(0.1, 0.26),
            leg_fraction=rng.uniform(0.38, 0.56),
            head=rng.uniform(0.06, 0.11),
            top_pattern=int(rng.integers(0, 5)),
            stripe_period=rng.uniform(0.2, 0.5),
            skirt=bool(rng.random() < 0.3),
            bag_side=int(rng.choice([0, -1, 1])),
            top_rgb=top,
            accent_rgb=accent,
            bottom_rgb=rng.uniform(0, 1, 3),
            skin_rgb=np.array([0.85, 0.68, 0.55]) * rng.uniform(0.45, 1.1),
            dye=rng.uniform(0, 1, 4),
            warmth=rng.uniform(0.65, 1.0),
            gait_speed=rng.uniform(0.5, 1.1),
        )

    def _draw_camera(self, rng: np.random.Generator) -> Camera:
        height, width = self.size
        return Camera(
            faces_right=bool(rng.random() < 0.5),
            scale=rng.uniform(0.85, 1.05),
            baseline=rng.uniform(0.93, 0.99),
            brightness=rng.uniform(0.6, 1.25),
            cast=rng.uniform(0.8, 1.2, 3),
            background=_desaturate(_smooth_noise(rng, (height, width, 3), cells=4), 0.6) * 0.8 + 0.1,
            ir_background=_smooth_noise(rng, (height, width), cells=2) * 0.35 + 0.05,
        )

    # ------------------------------------------------------------------ one frame

    def __call__(self, pid: int, modality: int, camid: int, tracklet: int, frame: int) -> np.ndarray:
        person, camera = self.identities[pid], self.cameras[camid]
        rng = np.random.default_rng((self.seed, pid, modality, camid, tracklet, frame))
        start = np.random.default_rng((self.seed, pid, modality, camid, tracklet))
        phase = start.uniform(0, 2 * np.pi) + frame * person.gait_speed
        drift = start.uniform(-0.08, 0.08) + 0.01 * frame * (1 if camera.faces_right else -1)
        parts = self._body_parts(person, camera, phase, drift)  # name -> (H, W) bool mask

        if modality == VISIBLE:
            image = camera.background.copy()
            for name, mask in parts.items():
                image[mask] = self._colours(person, name, mask)[0]
            image = image * camera.brightness * camera.cast
        else:
            image = camera.ir_background.copy()
            for name, mask in parts.items():
                image[mask] = self._infrared_level(person, name, mask)
            image = image[..., None]  # [H, W, 1]: one channel until the end
        image = self._occlude(image, rng, modality)
        image = image + rng.normal(0, 0.03, image.shape)
        image = np.broadcast_to(image, (*self.size, 3))
        return (np.clip(image, 0, 1) * 255).astype(np.uint8)

    def _body_parts(self, person: Identity, camera: Camera, phase: float,
                    drift: float) -> dict[str, np.ndarray]:
        height, width = self.size
        ys, xs = self._ys / height, self._xs / width  # (H, W) in 0..1
        body = person.height * camera.scale
        feet = camera.baseline
        top = feet - body
        centre = 0.5 + drift
        facing = 1 if camera.faces_right else -1
        legs_top = feet - body * person.leg_fraction
        neck = top + 2 * person.head * body
        swing = 0.06 * np.sin(phase)

        head = ((xs - centre - 0.02 * facing) / (person.head * body * height / width)) ** 2 + (
            (ys - (top + person.head * body)) / (person.head * body)) ** 2 <= 1
        torso_half = person.shoulder + (person.hip - person.shoulder) * np.clip(
            (ys - neck) / max(legs_top - neck, 1e-3), 0, 1)
        torso = (ys >= neck) & (ys < legs_top) & (np.abs(xs - centre) <= torso_half)
        arm_x = centre + facing * (torso_half + 0.04) + 0.5 * swing
        arms = (ys >= neck + 0.02) & (ys < legs_top + 0.06) & (np.abs(xs - arm_x) <= 0.05)
        if person.skirt:
            legs_region = (ys >= legs_top) & (ys <= feet)
            skirt_half = person.hip + 0.6 * (ys - legs_top)
            legs = legs_region & (np.abs(xs - centre) <= np.where(
                ys < legs_top + 0.3 * body, skirt_half, 0.05 + 0.02 * np.abs(np.sin(phase))))
        else:
            left = np.abs(xs - (centre - 0.07 + swing * (ys - legs_top) / body * 3)) <= 0.06
            right = np.abs(xs - (centre + 0.07 - swing * (ys - legs_top) / body * 3)) <= 0.06
            legs = (ys >= legs_top) & (ys <= feet) & (left | right)
        parts = {"legs": legs, "torso": torso, "arms": arms & ~torso, "head": head}
        if person.bag_side:
            bag_x = centre + person.bag_side * facing * (person.hip + 0.08)
            parts["bag"] = (np.abs(xs - bag_x) <= 0.07) & (np.abs(ys - legs_top) <= 0.07)
        return parts

    def _torso_pattern(self, person: Identity, mask: np.ndarray) -> np.ndarray:
        """(N,) 0/1 over the torso pixels: where the accent colour (or texture) shows."""
        ys, xs = self._ys[mask] / self.size[0], self._xs[mask] / self.size[1]
        rows, columns = ys - ys.min(), xs - xs.min()
        height, width = max(float(rows.max()), 1e-3), max(float(columns.max()), 1e-3)
        if person.top_pattern == 1:
            accent = np.floor(rows / (person.stripe_period * 0.5 * height)) % 2
        elif person.top_pattern == 2:
            accent = xs > np.median(xs)
        elif person.top_pattern == 3:
            accent = np.floor(columns / (person.stripe_period * 0.6 * width)) % 2
        elif person.top_pattern == 4:
            accent = np.abs(rows / height - person.stripe_period - 0.1) < 0.15
        else:
            accent = np.zeros_like(ys)
        return np.asarray(accent, np.float32)

    def _colours(self, person: Identity, part: str, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Visible colours (3,) or (N, 3) and own dye reflectances () or (N,) of a part's pixels."""
        if part == "head":
            return person.skin_rgb, np.float32(0)
        if part == "torso":
            accent = self._torso_pattern(person, mask)
            colour = person.top_rgb * (1 - accent[:, None]) + person.accent_rgb * accent[:, None]
            return colour, person.dye[0] * (1 - accent) + person.dye[1] * accent
        if part == "arms":
            return person.top_rgb, person.dye[0]
        if part == "bag":
            return person.accent_rgb * 0.5, person.dye[3]
        return person.bottom_rgb, person.dye[2]

    def _infrared_level(self, person: Identity, part: str, mask: np.ndarray) -> np.ndarray | float:
        """Skin glows with the person's warmth; clothing reflects near-infrared mostly as its
        visible brightness would suggest, and partly by its own dye (which colour cannot tell)."""
        if part == "head":
            return person.warmth
        colour, dye = self._colours(person, part, mask)
        return (1 - DYE_WEIGHT) * _brightness(colour) + DYE_WEIGHT * dye

    def _occlude(self, image: np.ndarray, rng: np.random.Generator, modality: int) -> np.ndarray:
        if rng.random() >= 0.25:
            return image
        height, width = self.size
        top = int(rng.integers(height // 2, height))  # something in front of the legs or torso
        left = int(rng.integers(0, width // 2))
        occluded = image.copy()
        level = rng.uniform(0.1, 0.9) if modality == INFRARED else rng.uniform(0.1, 0.9, 3)
        occluded[top:top + height // 3, left:left + width // 2] = level
        return occluded


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cells: int) -> np.ndarray:
    """Low-frequency noise in 0..1: a coarse random grid, bilinearly upsampled to ``shape``."""
    height, width = shape[:2]
    coarse = rng.uniform(0, 1, (cells + 1, cells + 1, *shape[2:]))
    ys = np.linspace(0, cells, height)
    xs = np.linspace(0, cells, width)
    y0, x0 = np.minimum(ys.astype(int), cells - 1), np.minimum(xs.astype(int), cells - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    if len(shape) == 3:
        fy, fx = fy[..., None], fx[..., None]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _brightness(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) colours in 0..1 -> (...) brightness."""
    return np.asarray(rgb) @ LUMA


def _desaturate(rgb: np.ndarray, amount: float) -> np.ndarray:
    """Moves (..., 3) colours ``amount`` of the way towards their grey."""
    return rgb * (1 - amount) + rgb.mean(axis=-1, keepdims=True) * amount
