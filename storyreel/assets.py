"""The files a storyboard names, checked when it is validated, so that a render never fails on them later.

Each kind of file is opened the way the render will open it, within fixed limits of time and memory:

* ``image`` (a shot's ``image:``, a character's ``reference:``): Pillow must recognise it, its header
  must give at most :data:`MAX_IMAGE_PIXELS` (a larger picture is refused from its header alone,
  never decoded, so a decompression bomb costs nothing), and it must decode whole and convert to RGB.
* ``music`` (``audio.music``): the ffmpeg binary imageio-ffmpeg ships must find an audio stream with a
  known duration and decode sound from its first :data:`MUSIC_PROBE_SECONDS` seconds.
* ``video`` (a shot's ``video:``, a clip it extends): the same ffmpeg must find a video stream and decode
  it whole within :data:`PROBE_TIMEOUT_SECONDS`; its size and frame count (:func:`clip_facts`) are then
  checked against the shot's plan (:mod:`storyreel.plan`).
* ``template`` (the enhancer's ``system_template`` and ``user_template``): UTF-8 text that compiles as
  Jinja2 in the enhancer's environment, within the bounds of a storyboard template
  (:func:`storyreel.template_sandbox.compile_template`: at most 131,072 characters and 5,000 tags).

Results are remembered per file identity (device, inode, size, modification time), so validating and
then planning the same storyboard probes each file once.

>>> check_asset("template", Path("missing.j2"), "missing.j2")
AssetTrouble(message="file 'missing.j2' not found (looked for missing.j2)", fix="check the path; it is relative to the storyboard's folder")
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

AssetKind = Literal["image", "music", "video", "template"]

MAX_IMAGE_PIXELS = 8192 * 8192  # 67 megapixels: far above any film size, far below what exhausts memory
MAX_TEMPLATE_BYTES = 512 << 10  # read at most this much; compile_template bounds the text further
MUSIC_PROBE_SECONDS = 10
PROBE_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class AssetTrouble:
    """What is wrong with a file a storyboard names, and what to do about it."""

    message: str
    fix: str


def unreachable(value: str, base_dir: Path) -> AssetTrouble | None:
    """Why ``value``, a path as a storyboard writes it, cannot name anything on this machine: ``~user`` for a
    user that is not here, or a name the file system refuses (longer than it takes). None when it can, whether
    or not something is there.

    >>> unreachable("~nosuchuser/a.png", Path(".")).message
    "'~nosuchuser/a.png' starts with ~nosuchuser, but there is no user 'nosuchuser' on this machine"
    """
    if value.startswith("~") and os.path.expanduser(value) == value:
        user = re.split(r"[/\\]", value[1:], maxsplit=1)[0]
        who = f"user '{user}'" if user else "home folder for this user"
        return AssetTrouble(
            f"'{_short(value)}' starts with ~{user}, but there is no {who} on this machine",
            "write the path in full, or relative to the storyboard's folder",
        )
    path = Path(os.path.expanduser(value))
    try:
        (path if path.is_absolute() else base_dir / path).stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            return AssetTrouble(
                f"'{_short(value)}' is a path this machine cannot use: {error.strerror}",
                "give a shorter path",
            )
    return None


def _short(value: str) -> str:
    return value if len(value) <= 80 else f"{value[:60]}... ({len(value):,} characters)"


def check_asset(kind: AssetKind, path: Path, shown: str) -> AssetTrouble | None:
    """None when ``path`` is a usable file of ``kind``, else what is wrong. ``shown`` is the path as written."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return AssetTrouble(
            f"file '{shown}' not found (looked for {path})",
            "check the path; it is relative to the storyboard's folder",
        )
    except OSError as error:
        return AssetTrouble(
            f"cannot read '{shown}': {error.strerror or error}", "check the path and its permissions"
        )
    if not path.is_file():
        return AssetTrouble(f"'{shown}' is a folder, not a file ({path})", "name a file")
    identity = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
    return _check(kind, str(path), shown, identity)


@lru_cache(maxsize=256)
def _check(kind: AssetKind, path: str, shown: str, identity: tuple[int, ...]) -> AssetTrouble | None:
    """The check proper, remembered for as long as the file's ``identity`` stays the same."""
    try:
        if kind == "image":
            return _image_trouble(Path(path), shown)
        if kind == "music":
            return _music_trouble(Path(path), shown)
        if kind == "video":
            facts = _clip_facts(path, identity)
            if isinstance(facts, AssetTrouble):  # named as the storyboard writes it
                return AssetTrouble(facts.message.replace(path, shown), facts.fix)
            return None
        return _template_trouble(Path(path), shown)
    except PermissionError as error:
        return AssetTrouble(f"cannot read '{shown}': {error.strerror}", "make it readable for this user")


# --- images -----------------------------------------------------------------------------------------------------


def _image_trouble(path: Path, shown: str) -> AssetTrouble | None:
    import warnings

    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        # Pillow warns about (and above twice its own limit, refuses) large pictures; the limit here is lower.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)  # reads the header only
        except PermissionError:
            raise
        except Image.DecompressionBombError:
            return _too_large(shown, None)
        except Exception as error:  # Pillow's format plugins raise many kinds on a hostile header
            detail = "" if isinstance(error, UnidentifiedImageError) else f" ({error})"
            return AssetTrouble(
                f"'{shown}' is not a picture Pillow can read{detail}", "use a PNG, JPEG or WebP picture"
            )
        with image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                return _too_large(shown, (width, height))
            try:
                image.load()
                image.convert("RGB")
            except Exception as error:  # bounded by the size check above; any failure is the file's
                return AssetTrouble(
                    f"'{shown}' is a {width}x{height} {image.format} picture that does not decode: {error}",
                    "the file is damaged or truncated; export or copy it again",
                )
    return None


def _too_large(shown: str, size: tuple[int, int] | None) -> AssetTrouble:
    limit = f"the {MAX_IMAGE_PIXELS / 1e6:.0f} megapixel limit"
    what = f"{size[0]}x{size[1]} pixels, more than {limit}" if size else f"larger than {limit}"
    return AssetTrouble(
        f"'{shown}' is {what}; it was not decoded (a picture that large can exhaust memory)",
        "scale it down, e.g. to the film's size (960x544 at 540P)",
    )


# --- music ------------------------------------------------------------------------------------------------------


def _music_trouble(path: Path, shown: str) -> AssetTrouble | None:
    from imageio_ffmpeg import get_ffmpeg_exe  # the binary alone: moviepy stays unimported

    command = [get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    command += ["-map", "0:a:0", "-t", str(MUSIC_PROBE_SECONDS), "-f", "null", "-"]
    fix = "point audio.music at an audio file (mp3, wav, m4a, flac, ogg)"
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, errors="replace", timeout=PROBE_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        return AssetTrouble(f"'{shown}' could not be read within {PROBE_TIMEOUT_SECONDS} s", fix)
    log = result.stderr
    has_audio = re.search(r"Stream #\d+:\d+.*: Audio:", log) is not None
    if not has_audio and re.search(r"Stream #\d+:\d+", log):
        return AssetTrouble(f"'{shown}' has no audio stream", fix)
    if result.returncode != 0:
        return AssetTrouble(f"'{shown}' is not audio ffmpeg can read ({_reason(log)})", fix)
    if re.search(r"Duration: N/A", log):
        return AssetTrouble(f"'{shown}' does not say how long it is", "convert it to mp3, m4a or wav first")
    times = re.findall(r"time=\s*(\d+):(\d+):([\d.]+)", log)
    decoded = int(times[-1][0]) * 3600 + int(times[-1][1]) * 60 + float(times[-1][2]) if times else 0.0
    if decoded <= 0:
        return AssetTrouble(f"no sound decodes from '{shown}' ({_reason(log)})", fix)
    return None


def _reason(log: str) -> str:
    """ffmpeg's last line that says what went wrong, without its ``[component @ 0x...]`` prefix."""
    lines = [re.sub(r"^\[[^\]]*\]\s*", "", line).strip() for line in log.splitlines()]
    wrong = [line for line in lines if re.search(r"error|invalid|failed|cannot|could not", line, re.I)]
    return (wrong or [line for line in lines if line] or ["no output"])[-1].rstrip(".")


# --- clips ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipFacts:
    """What a shot that extends a clip needs to know of it: its picture size and how many frames decode."""

    width: int
    height: int
    frames: int


def clip_facts(path: Path, shown: str) -> ClipFacts | AssetTrouble:
    """The size and decoded frame count of the clip at ``path``, or what is wrong with it (remembered per file
    identity, like :func:`check_asset`)."""
    try:
        status = path.stat()
    except OSError as error:
        return AssetTrouble(f"cannot read '{shown}': {error.strerror or error}", "check the path")
    identity = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
    facts = _clip_facts(str(path), identity)
    if isinstance(facts, AssetTrouble):  # the message names the path as the first caller wrote it
        return AssetTrouble(facts.message.replace(str(path), shown), facts.fix)
    return facts


@lru_cache(maxsize=64)
def _clip_facts(path: str, identity: tuple[int, ...]) -> ClipFacts | AssetTrouble:
    from imageio_ffmpeg import get_ffmpeg_exe  # the binary alone: moviepy stays unimported

    command = [get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path, "-map", "0:v:0", "-f", "null", "-"]
    fix = "point video: at a clip ffmpeg can read (mp4, mov, mkv, webm)"
    shown = path
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, errors="replace", timeout=PROBE_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        return AssetTrouble(
            f"'{shown}' could not be decoded within {PROBE_TIMEOUT_SECONDS} s",
            "extend a shorter clip: cut its last seconds out with ffmpeg (-sseof -3)",
        )
    log = result.stderr
    if not re.search(r"Stream #\d+:\d+.*: Video:", log) and re.search(r"Stream #\d+:\d+", log):
        return AssetTrouble(f"'{shown}' has no video stream", fix)
    stream = re.search(r"Stream #\d+:\d+.*: Video: .*?(\d{2,5})x(\d{2,5})", log)
    if stream is None or result.returncode != 0:
        return AssetTrouble(f"'{shown}' is not a video ffmpeg can read ({_reason(log)})", fix)
    counted = re.findall(r"frame=\s*(\d+)", log)
    frames = int(counted[-1]) if counted else 0
    if frames == 0:
        return AssetTrouble(f"no frame decodes from '{shown}' ({_reason(log)})", fix)
    return ClipFacts(width=int(stream.group(1)), height=int(stream.group(2)), frames=frames)


# --- enhancer templates -----------------------------------------------------------------------------------------


def _template_trouble(path: Path, shown: str) -> AssetTrouble | None:
    import jinja2

    from .enhancer.text import prompt_environment
    from .template_sandbox import TemplateUnreadable, compile_template

    with open(path, "rb") as stream:
        data = stream.read(MAX_TEMPLATE_BYTES + 1)
    if len(data) > MAX_TEMPLATE_BYTES:
        return AssetTrouble(
            f"'{shown}' is larger than {MAX_TEMPLATE_BYTES >> 10} KiB, which no prompt template needs",
            "point it at the Jinja2 template itself",
        )
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return AssetTrouble(
            f"'{shown}' is not UTF-8 text ({error.reason} at byte {error.start})", "save it as UTF-8"
        )
    # Compiled as the enhancer compiles it (whitespace control changes what parses), within the bounds a
    # storyboard template has: compiling is where a template nested too deeply, or too large, fails.
    try:
        compile_template(prompt_environment(), source, shown)
    except jinja2.TemplateSyntaxError as error:
        return AssetTrouble(
            f"'{shown}' line {error.lineno}: {error.message}", "fix the template's Jinja2 syntax"
        )
    except TemplateUnreadable as error:
        line = f" line {error.lineno}" if error.lineno is not None else ""
        return AssetTrouble(f"'{shown}'{line}: {error.message}", error.fix)
    return None
