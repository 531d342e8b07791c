"""Draw and compose the assets the example storyboards use; the outputs are committed beside this script.

    python examples/assets/make_assets.py

* ``heron_dawn.png``: a grey heron in the reeds of a mountain lake at dawn (960x544, the 540P frame),
  the start image of ``swan_lake.yaml``'s image-to-video shot and of ``across_the_lake.yaml``'s crossing;
* ``swan_reference.png``: a white swan on dark water, the swan's character reference, and the end image
  of ``across_the_lake.yaml``'s crossing and return;
* ``keeper_front.png``, ``keeper_side.png``: the lighthouse keeper from the front and in profile (white
  beard, yellow oilskin coat, dark cap), the keeper's character references in ``lighthouse.yaml``;
* ``terrier_reference.png``: a small black-and-white terrier, the dog's character reference;
* ``score.mp3`` (``score.m4a`` if the bundled ffmpeg has no MP3 encoder): a 24-second music bed,
  a slow D major chord progression with pad, plucked arpeggio and bass.

Everything is drawn from numbers and a fixed seed, so running it again gives the same pictures.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SUPERSAMPLE = 2  # draw at twice the size and shrink, for smooth edges
RGB = tuple[int, int, int]


# --- pictures --------------------------------------------------------------------------------------------------


def vertical_gradient(width: int, height: int, stops: list[tuple[float, RGB]]) -> np.ndarray:
    """(height, width, 3) float32 image blending colour stops given as (fraction of the height, colour)."""
    positions = np.array([p for p, _ in stops])
    colours = np.array([c for _, c in stops], dtype=np.float32)
    rows = np.linspace(0, 1, height)
    column = np.stack([np.interp(rows, positions, colours[:, i]) for i in range(3)], axis=-1)  # (height, 3)
    return np.repeat(column[:, None, :], width, axis=1)


def ridge(width: int, base: float, amplitude: float, seed: int) -> np.ndarray:
    """Heights (one per column) of a mountain ridge: a few sines of falling size at random phases."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, width)
    heights = np.full(width, base)
    for octave in range(5):
        frequency = (octave + 1) * 1.7 + rng.uniform(0, 1)
        heights -= (
            amplitude / (octave + 1) ** 1.3 * np.abs(np.sin(2 * math.pi * frequency * x + rng.uniform(0, 6)))
        )
    return heights


def curve(points: list[tuple[float, float]], steps: int = 24) -> list[tuple[float, float]]:
    """A quadratic Bezier through three control points, as a polyline."""
    (x0, y0), (x1, y1), (x2, y2) = points
    out = []
    for i in range(steps + 1):
        t = i / steps
        out.append(
            (
                (1 - t) ** 2 * x0 + 2 * (1 - t) * t * x1 + t**2 * x2,
                (1 - t) ** 2 * y0 + 2 * (1 - t) * t * y1 + t**2 * y2,
            )
        )
    return out


def heron_at_dawn(width: int = 960, height: int = 544) -> Image.Image:
    s = SUPERSAMPLE
    w, h = width * s, height * s
    horizon = int(h * 0.6)
    rng = np.random.default_rng(7)

    # Sky: indigo above, rose and peach at the horizon, a warm glow around the rising sun.
    sky = vertical_gradient(
        w,
        horizon,
        [(0, (46, 52, 104)), (0.45, (152, 112, 150)), (0.8, (242, 170, 140)), (1, (252, 214, 170))],
    )
    sun_x, sun_y = int(w * 0.68), int(horizon * 0.56)
    yy, xx = np.mgrid[0:horizon, 0:w]
    distance = np.hypot(xx - sun_x, (yy - sun_y) * 1.4) / w
    glow = np.exp(-((distance / 0.16) ** 2))[..., None]
    sky = sky * (1 - 0.6 * glow) + np.array([255, 226, 170]) * 0.6 * glow

    # Lake: the sky mirrored, darker and bluer, fading towards the shore.
    lake = sky[::-1][: h - horizon] if h - horizon <= horizon else np.resize(sky[::-1], (h - horizon, w, 3))
    depth = np.linspace(0, 1, h - horizon)[:, None, None]
    lake = lake * (0.78 - 0.38 * depth) + np.array([30, 44, 70]) * (0.22 + 0.38 * depth)
    picture = np.concatenate([sky, lake], axis=0).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image, "RGBA")

    # The sun, then three mountain ridges, paler with distance, each mirrored faintly in the water.
    draw.ellipse([sun_x - 30 * s, sun_y - 30 * s, sun_x + 30 * s, sun_y + 30 * s], fill=(255, 240, 200, 255))
    layers = [
        (0.86, 0.17, (150, 120, 160), 1),
        (0.93, 0.13, (112, 92, 138), 2),
        (0.995, 0.07, (78, 70, 106), 3),
    ]
    for base, amplitude, colour, seed in layers:
        tops = ridge(w, horizon * base, horizon * amplitude, seed)
        outline = [(x, float(tops[x])) for x in range(0, w, 4)] + [(w, horizon), (0, horizon)]
        draw.polygon(outline, fill=colour + (255,))
        mirrored = [(x, 2 * horizon - float(tops[x])) for x in range(0, w, 4)] + [(w, horizon), (0, horizon)]
        draw.polygon(mirrored, fill=colour + (70,))

    # Ripples: thin light streaks, denser and brighter in the sun's path.
    for _ in range(900):
        y = horizon + (h - horizon) * rng.random() ** 1.6
        near_sun = abs(rng.normal(0, 0.06))
        x = sun_x + (rng.choice([-1, 1]) * near_sun * w if rng.random() < 0.55 else rng.uniform(-w, w))
        length = rng.uniform(8, 40) * s * (0.4 + (y - horizon) / (h - horizon))
        alpha = int(180 * math.exp(-abs(x - sun_x) / (0.1 * w)) + 25)
        draw.line([(x - length / 2, y), (x + length / 2, y)], fill=(255, 232, 196, alpha), width=s)

    # Mist lying on the water, blurred soft.
    mist = Image.new("L", (w, h), 0)
    mist_draw = ImageDraw.Draw(mist)
    for i in range(7):
        y = horizon - 6 * s + i * 9 * s
        x0 = rng.uniform(-0.2, 0.5) * w
        mist_draw.ellipse(
            [x0, y - 10 * s, x0 + rng.uniform(0.4, 0.8) * w, y + 14 * s], fill=int(rng.uniform(60, 110))
        )
    mist = mist.filter(ImageFilter.GaussianBlur(18 * s))
    image = Image.composite(Image.new("RGB", (w, h), (246, 228, 222)), image, mist)
    draw = ImageDraw.Draw(image, "RGBA")

    # The heron, standing in the shallows: legs, a body tilted tail-down, a folded wing, S-curved neck,
    # head with its black plume and dagger beak; a faint reflection below.
    hx, water = int(w * 0.36), int(h * 0.86)
    grey, wing, dark, pale = (128, 134, 148, 255), (92, 98, 116, 255), (52, 54, 66, 255), (208, 210, 216, 255)
    for dx, lean in ((-6, -4), (10, 6)):
        draw.line([(hx + dx * s, water - 104 * s), (hx + (dx + lean) * s, water)], fill=dark, width=3 * s)
        draw.line(
            [(hx + dx * s, water + 2 * s), (hx + (dx + lean) * s, water + 60 * s)],
            fill=(52, 54, 66, 60),
            width=3 * s,
        )
    body = [
        (hx + 44 * s, water - 150 * s),
        (hx + 30 * s, water - 112 * s),
        (hx - 10 * s, water - 98 * s),
        (hx - 70 * s, water - 104 * s),
        (hx - 96 * s, water - 100 * s),
        (hx - 60 * s, water - 132 * s),
        (hx + 4 * s, water - 158 * s),
    ]
    draw.polygon(body, fill=grey)
    draw.polygon(
        [
            (hx + 20 * s, water - 150 * s),
            (hx - 20 * s, water - 110 * s),
            (hx - 92 * s, water - 102 * s),
            (hx - 40 * s, water - 140 * s),
        ],
        fill=wing,
    )
    neck = curve(
        [(hx + 34 * s, water - 146 * s), (hx + 74 * s, water - 190 * s), (hx + 30 * s, water - 226 * s)]
    )
    neck += curve(
        [(hx + 30 * s, water - 226 * s), (hx + 10 * s, water - 244 * s), (hx + 34 * s, water - 252 * s)], 8
    )[1:]
    draw.line(neck, fill=pale, width=12 * s, joint="curve")
    head_x, head_y = hx + 40 * s, water - 254 * s
    draw.ellipse([head_x - 13 * s, head_y - 10 * s, head_x + 13 * s, head_y + 10 * s], fill=pale)
    draw.line([(head_x - 6 * s, head_y - 7 * s), (head_x - 38 * s, head_y - 1 * s)], fill=dark, width=3 * s)
    draw.polygon(
        [
            (head_x + 10 * s, head_y - 4 * s),
            (head_x + 62 * s, head_y + 4 * s),
            (head_x + 10 * s, head_y + 5 * s),
        ],
        fill=(226, 184, 70, 255),
    )
    draw.ellipse([head_x + 2 * s, head_y - 4 * s, head_x + 6 * s, head_y], fill=(20, 20, 20, 255))
    draw.ellipse(
        [hx - 40 * s, water - 4 * s, hx + 40 * s, water + 6 * s], outline=(255, 236, 200, 90), width=s
    )

    # Reeds on both sides, swaying, some topped with seed heads.
    for _ in range(140):
        side = rng.choice([-1, 1])
        x = w * (0.12 + 0.16 * rng.random() ** 1.5) if side < 0 else w * (0.84 + 0.18 * rng.random())
        x = x if side > 0 else w * 0.3 - x
        top = h * rng.uniform(0.42, 0.78)
        bend = rng.normal(0, 28) * s
        colour = (int(rng.uniform(40, 70)), int(rng.uniform(52, 78)), int(rng.uniform(38, 54)), 255)
        stem = curve([(x, h), (x + bend * 0.3, (h + top) / 2), (x + bend, top)])
        draw.line(stem, fill=colour, width=int(rng.uniform(2, 4) * s), joint="curve")
        if rng.random() < 0.35:
            tx, ty = stem[-1]
            draw.ellipse([tx - 4 * s, ty - 2 * s, tx + 4 * s, ty + 30 * s], fill=(92, 62, 40, 255))

    # A gentle vignette, then shrink to the final size.
    picture = np.asarray(image, dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    vignette = 1 - 0.28 * (((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2) / 2
    image = Image.fromarray((picture * vignette[..., None]).clip(0, 255).astype(np.uint8))
    return image.resize((width, height), Image.LANCZOS)


def swan_reference(size: int = 512) -> Image.Image:
    s = SUPERSAMPLE
    n = size * s
    water = vertical_gradient(n, n, [(0, (20, 58, 70)), (0.55, (28, 78, 92)), (1, (12, 34, 46))])
    image = Image.fromarray(water.astype(np.uint8))
    draw = ImageDraw.Draw(image, "RGBA")
    rng = np.random.default_rng(11)
    for _ in range(160):
        y = n * rng.uniform(0.05, 1)
        x = n * rng.uniform(0, 1)
        draw.line(
            [(x, y), (x + rng.uniform(20, 70) * s, y)],
            fill=(160, 210, 214, int(rng.uniform(20, 60))),
            width=s,
        )

    cx, cy = n * 0.46, n * 0.66  # the swan's body centre
    white, shade, beak = (246, 246, 240, 255), (214, 218, 220, 255), (232, 128, 44, 255)

    def point(dx: float, dy: float) -> tuple[float, float]:
        return cx + dx * s, cy + dy * s

    # Reflection first, so the body sits on it.
    draw.ellipse([*point(-160, 30), *point(160, 66)], fill=(220, 230, 228, 50))
    # The body: raised tail at the back, a long low back, a full rounded breast, a flat waterline.
    outline = curve([point(-170, -78), point(-90, -30), point(40, -36)])
    outline += curve([point(40, -36), point(160, -40), point(140, 24)])[1:]
    outline += curve([point(140, 24), point(60, 56), point(-100, 40)])[1:]
    outline += curve([point(-100, 40), point(-150, 20), point(-170, -78)])[1:]
    draw.polygon(outline, fill=white)
    # The folded wing, slightly grey, with scalloped feather tips along its lower edge.
    wing = curve([point(-140, -56), point(-40, -50), point(70, -18)])
    wing += curve([point(70, -18), point(-20, 30), point(-130, 0)])[1:]
    draw.polygon(wing, fill=shade)
    for i in range(6):
        x, y = point(-118 + i * 30, 2 + i * 3 - (i * i) * 0.9)
        draw.ellipse([x - 16 * s, y - 10 * s, x + 16 * s, y + 10 * s], fill=shade)
    # The neck, as overlapping discs along an S-curve (no seams where line segments would meet).
    neck = curve([point(96, -20), point(190, -160), point(84, -236)], 160)
    for i, (x, y) in enumerate(neck):
        radius = (17 - 4 * i / len(neck)) * s
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=white)
    hx, hy = neck[-1]
    draw.ellipse([hx - 26 * s, hy - 20 * s, hx + 24 * s, hy + 20 * s], fill=white)
    draw.polygon(
        [(hx - 16 * s, hy - 2 * s), (hx - 68 * s, hy + 16 * s), (hx - 14 * s, hy + 14 * s)], fill=beak
    )
    draw.ellipse([hx - 24 * s, hy - 6 * s, hx - 12 * s, hy + 8 * s], fill=(24, 24, 24, 255))  # the black knob
    draw.ellipse([hx - 4 * s, hy - 7 * s, hx + 2 * s, hy - 1 * s], fill=(10, 10, 10, 255))  # the eye
    image = image.filter(ImageFilter.GaussianBlur(0.6 * s))
    return image.resize((size, size), Image.LANCZOS)


# --- music -----------------------------------------------------------------------------------------------------

SAMPLE_RATE = 44_100
BEAT = 0.75  # seconds: 80 beats per minute
BAR = 4 * BEAT
# D major, two bars per chord: Dmaj7, Bm7, Gmaj7, Asus4 -> A. MIDI note numbers, lowest first.
CHORDS: list[list[int]] = [[50, 57, 61, 66], [47, 54, 57, 62], [43, 54, 59, 62], [45, 57, 62, 64]]
BARS_PER_CHORD = 2


def frequency(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def envelope(length: int, attack: float, release: float) -> np.ndarray:
    t = np.arange(length) / SAMPLE_RATE
    seconds = length / SAMPLE_RATE
    return np.clip(t / attack, 0, 1) * np.clip((seconds - t) / release, 0, 1)


def pad(notes: list[int], seconds: float) -> np.ndarray:
    """Warm sustained chord: each note a slightly detuned pair of sines with a soft second harmonic."""
    length = int(seconds * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    out = np.zeros(length)
    for note in notes:
        f = frequency(note)
        for detune in (-0.12, 0.12):
            phase = 2 * math.pi * f * (1 + detune / 100) * t
            out += np.sin(phase) + 0.18 * np.sin(2 * phase)
    return out / (2 * len(notes)) * envelope(length, 1.2, 1.4)


def pluck(note: int, seconds: float, velocity: float) -> np.ndarray:
    """A soft plucked string: harmonics that fade, the high ones faster."""
    length = int(seconds * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    f = frequency(note)
    tone = sum(np.sin(2 * math.pi * f * k * t) * np.exp(-t * (2.5 + 2.2 * k)) / k**1.5 for k in range(1, 6))
    return velocity * tone * envelope(length, 0.004, 0.05)


def reverb(signal: np.ndarray, seconds: float = 1.8, mix: float = 0.28) -> np.ndarray:
    """Convolution with decaying noise: a small hall."""
    rng = np.random.default_rng(3)
    length = int(seconds * SAMPLE_RATE)
    impulse = rng.normal(0, 1, length) * np.exp(-np.arange(length) / SAMPLE_RATE * 4.0)
    impulse /= np.sqrt(np.sum(impulse**2))
    size = len(signal) + length
    wet = np.fft.irfft(np.fft.rfft(signal, size) * np.fft.rfft(impulse, size), size)[: len(signal)]
    return (1 - mix) * signal + mix * wet


def score() -> np.ndarray:
    """The music bed, mono float in -1..1."""
    progression = CHORDS
    chord_seconds = BARS_PER_CHORD * BAR
    total = len(progression) * chord_seconds + 2.0  # room for the last chord's release and reverb
    out = np.zeros(int(total * SAMPLE_RATE))
    rng = np.random.default_rng(5)

    def add(sound: np.ndarray, start: float) -> None:
        begin = int(start * SAMPLE_RATE)
        end = min(len(out), begin + len(sound))
        out[begin:end] += sound[: end - begin]

    for index, chord in enumerate(progression):
        start = index * chord_seconds
        add(0.55 * pad(chord, chord_seconds + 1.2), start)
        add(0.5 * pad([chord[0] - 12], chord_seconds + 0.6), start)  # the bass, an octave under the root
        # Arpeggio in eighth notes over the chord an octave up: up, then back down.
        tones = [note + 12 for note in chord[1:]] + [chord[1] + 24]
        pattern = tones + tones[-2:0:-1]
        last_chord = index == len(progression) - 1
        for step in range(int(chord_seconds / (BEAT / 2))):
            if last_chord and step >= 8:
                break  # let the final chord ring
            velocity = (0.32 if step % 4 == 0 else 0.22) * rng.uniform(0.85, 1.0)
            add(pluck(pattern[step % len(pattern)], 1.6, velocity), start + step * BEAT / 2)
        if index % len(CHORDS) == len(CHORDS) - 1:  # Asus4 resolves to A halfway through its bars
            add(0.25 * pad([chord[2] - 1], chord_seconds / 2 + 1.0), start + chord_seconds / 2)

    out = reverb(out)
    fade_in, fade_out = int(1.0 * SAMPLE_RATE), int(3.0 * SAMPLE_RATE)
    out[:fade_in] *= np.linspace(0, 1, fade_in)
    out[-fade_out:] *= np.linspace(1, 0, fade_out)
    return out / np.max(np.abs(out)) * 0.7


def write_music(samples: np.ndarray, folder: Path) -> Path:
    """Encode as MP3 with the ffmpeg bundled in imageio-ffmpeg, or AAC (.m4a) if it lacks an MP3 encoder."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    encoders = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    codec, target = (
        ("libmp3lame", folder / "score.mp3") if "libmp3lame" in encoders else ("aac", folder / "score.m4a")
    )
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "score.wav"
        with wave.open(str(wav), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes((samples * 32767).astype("<i2").tobytes())
        subprocess.run(
            [ffmpeg, "-y", "-v", "error", "-i", str(wav), "-c:a", codec, "-b:a", "96k", "-map_metadata", "-1"]
            + ["-fflags", "+bitexact", "-flags:a", "+bitexact", str(target)],
            check=True,
        )
    return target


def _studio(n: int, top: RGB, bottom: RGB) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A plain backdrop of ``n`` x ``n`` pixels, as a character sheet is drawn on."""
    backdrop = vertical_gradient(n, n, [(0, top), (1, bottom)])
    image = Image.fromarray(backdrop.astype(np.uint8))
    return image, ImageDraw.Draw(image, "RGBA")


def keeper(profile: bool, size: int = 384) -> Image.Image:
    """The keeper: yellow oilskin coat, white beard, navy cap; from the front, or facing left in profile."""
    s = SUPERSAMPLE
    n = size * s
    image, draw = _studio(n, (196, 204, 212), (120, 130, 142))
    coat, coat_shade = (238, 196, 40, 255), (196, 150, 24, 255)
    skin, beard, cap = (226, 178, 150, 255), (244, 244, 240, 255), (32, 40, 72, 255)
    cx = n * (0.52 if profile else 0.5)

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [cx + x0 * s, n * y0, cx + x1 * s, n * y1]

    half = 58 if profile else 96  # a profile shows a narrower body
    draw.rounded_rectangle(box(-half, 0.42, half, 1.05), radius=34 * s, fill=coat)  # the coat
    if profile:
        draw.polygon(
            [(cx - half * s, n * 0.5), (cx - (half + 26) * s, n * 0.78), (cx - half * s, n * 0.8)],
            fill=coat_shade,
        )
    else:
        draw.line([(cx, n * 0.5), (cx, n)], fill=coat_shade, width=5 * s)  # the coat's front seam
        for y in (0.6, 0.72, 0.84):
            draw.ellipse([cx + 10 * s, n * y, cx + 22 * s, n * y + 12 * s], fill=(60, 60, 60, 255))  # buttons
    head = 44 if profile else 50
    draw.ellipse(box(-head, 0.16, head, 0.42), fill=skin)  # the head
    if profile:
        draw.polygon(
            [(cx - head * s, n * 0.28), (cx - (head + 14) * s, n * 0.31), (cx - head * s, n * 0.33)],
            fill=skin,
        )
        draw.pieslice(box(-head - 8, 0.24, head - 20, 0.5), 20, 200, fill=beard)  # the beard, from the side
        draw.ellipse([cx - 22 * s, n * 0.245, cx - 12 * s, n * 0.265], fill=(20, 20, 20, 255))  # the eye
    else:
        draw.pieslice(box(-head - 6, 0.22, head + 6, 0.52), 0, 180, fill=beard)  # the beard
        for side in (-1, 1):
            x = cx + side * 18 * s
            draw.ellipse([x - 5 * s, n * 0.255, x + 5 * s, n * 0.275], fill=(20, 20, 20, 255))  # the eyes
    draw.rectangle(box(-head - 4, 0.13, head + 4, 0.2), fill=cap)  # the cap
    draw.rectangle(box(-head - (22 if profile else 8), 0.185, head + 8, 0.205), fill=cap)  # its peak
    image = image.filter(ImageFilter.GaussianBlur(0.5 * s))
    return image.resize((size, size), Image.LANCZOS)


def terrier(size: int = 384) -> Image.Image:
    """A small black-and-white terrier standing side-on, on a sandy backdrop."""
    s = SUPERSAMPLE
    n = size * s
    image, draw = _studio(n, (226, 214, 186), (176, 160, 126))
    white, black = (246, 244, 238, 255), (28, 28, 30, 255)
    cx, cy = n * 0.5, n * 0.58

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [cx + x0 * s, cy + y0 * s, cx + x1 * s, cy + y1 * s]

    for x in (-80, -50, 50, 80):
        draw.rectangle(box(x - 10, 10, x + 10, 110), fill=white)  # the legs
    draw.ellipse(box(-120, -50, 110, 50), fill=white)  # the body
    draw.ellipse(box(-40, -48, 40, 20), fill=black)  # a black saddle patch
    draw.ellipse(box(80, -120, 170, -30), fill=white)  # the head
    draw.ellipse(box(120, -120, 172, -60), fill=black)  # a black patch over the eye
    draw.polygon(
        [(cx + 92 * s, cy - 112 * s), (cx + 104 * s, cy - 160 * s), (cx + 122 * s, cy - 114 * s)], fill=black
    )
    draw.ellipse(box(160, -80, 178, -64), fill=black)  # the nose
    draw.line(
        [(cx - 118 * s, cy - 20 * s), (cx - 150 * s, cy - 80 * s)], fill=white, width=14 * s
    )  # the tail
    image = image.filter(ImageFilter.GaussianBlur(0.5 * s))
    return image.resize((size, size), Image.LANCZOS)


def character_sheets() -> list[Path]:
    """The character references of ``lighthouse.yaml``, written beside this script."""
    written = []
    for name, picture in (
        ("keeper_front.png", keeper(profile=False)),
        ("keeper_side.png", keeper(profile=True)),
        ("terrier_reference.png", terrier()),
    ):
        picture.save(HERE / name, optimize=True)
        written.append(HERE / name)
    return written


def main() -> None:
    heron_at_dawn().save(HERE / "heron_dawn.png", optimize=True)
    swan_reference().save(HERE / "swan_reference.png", optimize=True)
    music = write_music(score(), HERE)
    for path in (HERE / "heron_dawn.png", HERE / "swan_reference.png", *character_sheets(), music):
        print(f"{path.name}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
