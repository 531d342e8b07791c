"""The camera vocabulary of a storyboard: shot types, angles and moves, each in one table.

SkyReels-V2 was trained on captions whose shot metadata (type, angle, camera motion) came from
SkyCaptioner-V1, so storyboards use the same film grammar. Moves are free text built from known
words ("slow push-in", "pan left while tilting up") so that the enhancer can quote them and the
animatic can simulate them.

Each word of the vocabulary has one entry: the other ways people write it, how a caption says it,
and what the animatic needs to frame the shot or move the camera that way. :func:`shot_camera`
decides the camera a shot is actually asked for: its own camera, the default shot type where it
names none, and a gentle move where nothing in a shot without a move moves. The template enhancer
writes that camera into the caption and the animatic draws it, so the previs shows the shot the
model is asked to make.

>>> parse_move("slow push-in").kinds
('push-in',)
>>> parse_move("fast pan left, tilt up").speed
1.6
>>> asked = shot_camera(None, "an old lighthouse on a cliff")
>>> asked.shot_type, asked.shot_type_phrase, asked.move.kinds, asked.motion
('medium', 'Medium shot', ('push-in',), 'slowly pushes in')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast, get_args

if TYPE_CHECKING:
    from .storyboard import Camera

ShotType = Literal[
    "extreme close-up",
    "close-up",
    "medium close-up",
    "medium",
    "medium wide",
    "full",
    "wide",
    "extreme wide",
]
Angle = Literal["eye-level", "high", "low", "overhead", "worm's-eye", "dutch", "over-the-shoulder", "pov"]
# Where the animatic puts the camera for an angle (see storyreel.generators.animatic.framing).
Placement = Literal["level", "raised", "lowered", "ground", "overhead"]


# --- shot types ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Framing:
    """A shot type: how a caption names it, how much of the subject the frame holds, and its still move."""

    phrase: str  # how a caption opens with it: "Wide shot"
    view_height: float  # metres of the subject's plane the frame spans vertically
    still_move: str  # the gentle move a still shot of this type is given: a key of STILL_MOVES
    aliases: tuple[str, ...] = ()  # other ways to write it, after normalising ("close up shot" -> "close-up")


FRAMINGS: dict[ShotType, Framing] = {
    "extreme close-up": Framing("Extreme close-up", 0.22, "push-in", ("ecu",)),  # eyes and mouth
    "close-up": Framing("Close-up", 0.45, "push-in", ("cu",)),  # head and shoulders
    "medium close-up": Framing("Medium close-up", 0.7, "push-in", ("mcu",)),  # chest up
    "medium": Framing("Medium shot", 1.0, "push-in", ("ms", "mid")),  # waist up
    "medium wide": Framing("Medium wide shot", 1.5, "pan", ("mws",)),  # knees up
    "full": Framing("Full shot", 2.2, "pan", ("fs",)),  # head to toe, with room
    "wide": Framing("Wide shot", 5.0, "pan", ("ws", "long")),  # the figure in its surroundings
    "extreme wide": Framing(  # the place, a figure in it
        "Extreme wide shot", 20.0, "pan", ("ews", "extreme long", "establishing")
    ),
}
# The shot type of a shot whose camera names none: what its caption says and the animatic frames.
DEFAULT_SHOT_TYPE: ShotType = "medium"


# --- angles ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewpoint:
    """A camera angle: how a caption says it and where the animatic puts the camera."""

    phrase: str  # what a caption adds after the shot type: "from a high angle"
    placement: Placement = "level"
    arc_degrees: float = 0.0  # raised or lowered: how far the camera swings up or down around the subject
    roll_degrees: float = 0.0  # how far the horizon is tilted (a dutch angle)
    mark: Literal["shoulder", "viewfinder"] | None = None  # drawn fixed to the picture, over the set
    aliases: tuple[str, ...] = ()


VIEWPOINTS: dict[Angle, Viewpoint] = {
    "eye-level": Viewpoint("at eye level", aliases=("eye", "eye-line")),
    "high": Viewpoint("from a high angle", "raised", arc_degrees=12.0),
    "low": Viewpoint("from a low angle", "lowered", arc_degrees=12.0),
    "overhead": Viewpoint(
        "from directly overhead", "overhead", aliases=("bird's-eye", "birds-eye", "top-down", "aerial")
    ),
    "worm's-eye": Viewpoint("from a worm's-eye view", "ground", aliases=("worms-eye",)),
    "dutch": Viewpoint("at a Dutch angle", roll_degrees=14.0, aliases=("dutch tilt", "canted")),
    "over-the-shoulder": Viewpoint("over the shoulder", mark="shoulder", aliases=("ots",)),
    "pov": Viewpoint(
        "from a first-person point of view", mark="viewfinder", aliases=("point of view", "point-of-view")
    ),
}

SHOT_TYPES: tuple[str, ...] = get_args(ShotType)
ANGLES: tuple[str, ...] = get_args(Angle)
_SHOT_ALIASES = {alias: word for word, framing in FRAMINGS.items() for alias in framing.aliases}
_ANGLE_ALIASES = {alias: word for word, viewpoint in VIEWPOINTS.items() for alias in viewpoint.aliases}


_CLOSE_UP = re.compile(r"\bclose ?up\b")


def _normalise(text: str, suffix: str) -> str:
    word = " ".join(text.strip().lower().replace("_", " ").split())
    if word.endswith(" " + suffix):
        word = word[: -len(suffix) - 1]
    word = _CLOSE_UP.sub("close-up", word)
    word = word.replace("eye level", "eye-level").replace("over the shoulder", "over-the-shoulder")
    word = word.replace("bird's eye", "bird's-eye").replace("worm's eye", "worm's-eye")
    return word


def normalise_shot_type(text: str) -> str:
    """Map the ways people write a shot type onto the vocabulary ("Close up shot" -> "close-up")."""
    word = _normalise(text, "shot")
    return _SHOT_ALIASES.get(word, word)


def normalise_angle(text: str) -> str:
    """Map the ways people write a camera angle onto the vocabulary ("high angle" -> "high")."""
    word = _normalise(text, "angle")
    return _ANGLE_ALIASES.get(word, word)


# --- moves -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveKind:
    """A kind of camera move: the phrases that name it, what a caption says it does, how fast it travels."""

    phrases: tuple[str, ...]  # how a storyboard may write it; longer phrases are matched first
    verb: str | None  # what "the camera" does in a caption; static and handheld are phrased on their own
    # Per second of shot at speed 1.0: (x in view widths, y in view heights, log of the view's scale).
    rate: tuple[float, float, float] = (0.0, 0.0, 0.0)


MOVE_KINDS: dict[str, MoveKind] = {
    "static": MoveKind(("static", "locked-off", "locked off", "fixed", "still camera"), None),
    "push-in": MoveKind(
        ("push-in", "push in", "dolly in", "dolly-in", "zoom in", "zoom-in", "move in", "creep in"),
        "pushes in",
        (0.0, 0.0, -0.10),
    ),
    "pull-out": MoveKind(
        (
            "pull-out",
            "pull out",
            "pull back",
            "pull-back",
            "dolly out",
            "dolly-out",
            "zoom out",
            "zoom-out",
            "move out",
        ),
        "pulls back",
        (0.0, 0.0, 0.10),
    ),
    "pan left": MoveKind(("pan left", "pans left"), "pans left", (-0.10, 0.0, 0.0)),
    "pan right": MoveKind(("pan right", "pans right"), "pans right", (0.10, 0.0, 0.0)),
    "tilt up": MoveKind(("tilt up", "tilts up"), "tilts up", (0.0, -0.10, 0.0)),
    "tilt down": MoveKind(("tilt down", "tilts down"), "tilts down", (0.0, 0.10, 0.0)),
    "truck left": MoveKind(("truck left", "track left", "slide left"), "trucks left", (-0.08, 0.0, 0.0)),
    "truck right": MoveKind(("truck right", "track right", "slide right"), "trucks right", (0.08, 0.0, 0.0)),
    "crane up": MoveKind(
        ("crane up", "boom up", "pedestal up", "rise", "rising"), "cranes up", (0.0, -0.07, 0.03)
    ),
    "crane down": MoveKind(
        ("crane down", "boom down", "pedestal down", "descend", "descending"),
        "cranes down",
        (0.0, 0.07, -0.03),
    ),
    "orbit": MoveKind(
        ("orbit", "arc", "circle around", "circles around"), "orbits around the subject", (0.10, 0.0, 0.0)
    ),
    "tracking": MoveKind(
        ("tracking", "follow", "follows", "following"), "follows the subject", (0.12, 0.0, 0.0)
    ),
    "handheld": MoveKind(("handheld", "hand-held", "shaky"), None),
}
MOVES: tuple[str, ...] = tuple(MOVE_KINDS)
# Compiled once, longest phrase first (a storyboard of thousands of shots parses thousands of moves).
_MOVE_PATTERNS = [
    (re.compile(r"\b" + re.escape(phrase) + r"\b"), kind)
    for phrase, kind in sorted(
        ((phrase, kind) for kind, move in MOVE_KINDS.items() for phrase in move.phrases),
        key=lambda p: -len(p[0]),
    )
]
SPEEDS = {
    "slow": 0.6,
    "slowly": 0.6,
    "gentle": 0.6,
    "gently": 0.6,
    "subtle": 0.4,
    "fast": 1.6,
    "quick": 1.6,
    "rapid": 1.6,
}
HOLDS_STILL = "holds still"  # what a caption says of a static camera
SHAKES = "moves with a slight, natural shake"  # of a handheld camera that does nothing else


@dataclass(frozen=True)
class CameraMove:
    """A parsed camera move: which motions, and how fast relative to a normal move (1.0)."""

    kinds: tuple[str, ...]
    speed: float = 1.0
    text: str = ""

    @property
    def is_static(self) -> bool:
        return not self.kinds or self.kinds == ("static",)


def parse_move(text: str | None) -> CameraMove:
    """Read a move like "slow push-in" into its motions; raise ValueError naming the vocabulary if none is known."""
    if text is None or not text.strip():
        return CameraMove(kinds=("static",), text="")
    lowered = " ".join(text.lower().replace("_", " ").split())
    found: list[tuple[int, str]] = []
    taken = [False] * len(lowered)
    for pattern, kind in _MOVE_PATTERNS:
        for match in pattern.finditer(lowered):
            if any(taken[match.start() : match.end()]):
                continue
            taken[match.start() : match.end()] = [True] * (match.end() - match.start())
            found.append((match.start(), kind))
    if not found:
        raise ValueError(text)
    kinds = tuple(dict.fromkeys(kind for _, kind in sorted(found)))
    speed = 1.0
    for word in re.findall(r"[a-z]+", lowered):
        speed = SPEEDS.get(word, speed)
    return CameraMove(kinds=kinds, speed=speed, text=text.strip())


def move_motion(move: CameraMove) -> tuple[str, str]:
    """("camera" or "handheld camera", what it does) for a caption: "The camera slowly pushes in."

    >>> move_motion(parse_move("slow push-in")), move_motion(parse_move("handheld pan left, tilt up"))
    (('camera', 'slowly pushes in'), ('handheld camera', 'pans left and tilts up'))
    """
    if move.is_static:
        return "camera", HOLDS_STILL
    operator = "handheld camera" if "handheld" in move.kinds else "camera"
    verbs = [verb for verb in (MOVE_KINDS[kind].verb for kind in move.kinds) if verb is not None]
    if not verbs:
        verbs = [SHAKES]
    motion = verbs[0] if len(verbs) == 1 else ", ".join(verbs[:-1]) + " and " + verbs[-1]
    adverb = (
        "subtly" if move.speed < 0.5 else "slowly" if move.speed < 1 else "quickly" if move.speed > 1 else ""
    )
    return operator, f"{adverb} {motion}".strip()


# --- still shots: a gentle move so that the video does not come out static ---------------------------------------


@dataclass(frozen=True)
class StillMove:
    """The gentle move a still shot is given: what its caption says, and the move the animatic plays."""

    motion: str
    move: CameraMove


STILL_MOVES: dict[str, StillMove] = {
    # A wide shot looks across its place; the caption names no direction, the animatic pans right.
    "pan": StillMove(
        "slowly pans across the scene", CameraMove(("pan right",), SPEEDS["slow"], "slow pan across")
    ),
    "push-in": StillMove("slowly pushes in", CameraMove(("push-in",), SPEEDS["slow"], "slow push-in")),
}

# Verbs whose presence means something in the shot moves, so no camera motion needs adding.
# Looking, standing and sitting are deliberately absent: a heron that watches is a still subject. So
# are verbs that are more often nouns in a prompt (track, cross, pan, sink, rush, rose, fell).
_MOTION_VERBS = """
    swim glide walk run fly soar dance move turn spin twirl rotate jump leap hop skip bounce fall drop
    tumble rise lift dip dive splash flow pour drip stream spill drift float sway wave roll ripple
    flutter flap crash race dart sprint chase climb crawl scuttle swirl burst blow shake spread reach
    step stride march wander stroll gallop ride drive sail paddle nod blink laugh sing play strum clap
    throw catch grab pull push slide sweep emerge approach enter leave orbit tilt zoom follow travel
    flicker unfold wade stalk strike peck creep hover stir tremble shiver
"""
_IRREGULAR_MOTION = """
    ran swam flew flown fallen risen rode ridden drove driven leapt sank sunk threw thrown caught blew
    blown shook shaken swept
"""


def _verb_forms(verb: str) -> set[str]:
    """A verb and its -s, -ing and -ed forms; a rule that makes a non-word (wanderring) is harmless."""
    forms = {verb, verb + "s", verb + "es", verb + "ing", verb + "ed"}
    if verb.endswith("e"):
        forms |= {verb + "d", verb[:-1] + "ing"}
    if verb.endswith("y") and verb[-2] not in "aeiou":
        forms |= {verb[:-1] + "ies", verb[:-1] + "ied"}
    if len(verb) >= 3 and verb[-1] not in "aeiouwxy" and verb[-2] in "aeiou" and verb[-3] not in "aeiou":
        forms |= {verb + verb[-1] + "ing", verb + verb[-1] + "ed"}  # swim -> swimming, dip -> dipped
    return forms


MOTION_WORDS = frozenset(
    {form for verb in _MOTION_VERBS.split() for form in _verb_forms(verb)} | set(_IRREGULAR_MOTION.split())
)


def prompt_moves(prompt: str) -> bool:
    """Whether something in the prompt moves: any form of a motion verb.

    >>> prompt_moves("a swan glides across the lake"), prompt_moves("a heron watches the water")
    (True, False)
    """
    return any(word in MOTION_WORDS for word in re.findall(r"[a-z]+(?:'[a-z]+)?", prompt.lower()))


# --- the camera a shot is asked for -----------------------------------------------------------------------------

# A prompt that opens with its own shot type ("Close-up of ...", "An aerial shot of ...") keeps it:
# its caption adds none.
_OWN_SHOT_TYPE = re.compile(
    r"^\s*(?:an?\s+)?((?:(?:extreme\s+|medium\s+)?close[- ]?up|(?:extreme\s+|medium\s+)?(?:wide|long|full|"
    r"medium|establishing|aerial|overhead|tracking)\s+shot))\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ShotCamera:
    """The camera a shot is asked for, and how its caption says it.

    ``shot_type`` and ``angle`` are what the shot is framed by (``angle`` None: at eye level,
    unsaid); ``move`` is what the camera does, a static move when nothing is said of it.
    """

    shot_type: ShotType
    angle: Angle | None
    move: CameraMove
    shot_type_phrase: str | None  # what the caption opens with; None when the prompt opens with its own
    angle_phrase: str | None  # what the caption adds after it; None when no angle or the prompt's own
    operator: str  # "camera" or "handheld camera"
    motion: str | None  # what the caption says the operator does; None: nothing is said of the camera
    default_shot_type: bool  # the shot type is DEFAULT_SHOT_TYPE because neither camera nor prompt names one
    move_added: bool  # the move is a still shot's gentle move, not the storyboard's


def shot_camera(camera: Camera | None, prompt: str) -> ShotCamera:
    """The camera a shot with ``camera`` and ``prompt`` (characters filled in) is asked for.

    The shot's own camera comes first. A shot type it does not name is the one the prompt opens
    with, else DEFAULT_SHOT_TYPE; an angle it does not name is the one the prompt opens with, if
    any. A shot without a move in which nothing moves is given a gentle one, picked by the
    camera's own shot type (or the default), so that its video does not come out static; an
    explicit ``move: static`` is respected.

    >>> from storyreel.storyboard import Camera
    >>> asked = shot_camera(Camera(shot="full"), "a heron stands in the reeds")
    >>> asked.shot_type_phrase, asked.move.kinds, asked.motion, asked.move_added
    ('Full shot', ('pan right',), 'slowly pans across the scene', True)
    >>> asked = shot_camera(None, "Close-up of a swan as it glides")
    >>> asked.shot_type, asked.shot_type_phrase, asked.move.is_static, asked.motion
    ('close-up', None, True, None)
    """
    opening = _OWN_SHOT_TYPE.match(" ".join(prompt.split()))
    said = _normalise(opening.group(1), "shot") if opening else None  # "aerial shot" -> "aerial"
    said_type = _SHOT_ALIASES.get(said, said) if said else None
    said_angle = _ANGLE_ALIASES.get(said, said) if said else None
    own_type = camera.shot if camera is not None else None
    own_angle = camera.angle if camera is not None else None
    shot_type: ShotType
    shot_type_phrase: str | None
    if own_type:
        shot_type, shot_type_phrase = own_type, FRAMINGS[own_type].phrase
    elif said_type in FRAMINGS:
        shot_type, shot_type_phrase = cast(ShotType, said_type), None
    else:
        shot_type, shot_type_phrase = (
            DEFAULT_SHOT_TYPE,
            None if opening else FRAMINGS[DEFAULT_SHOT_TYPE].phrase,
        )
    angle = own_angle or (cast(Angle, said_angle) if said_angle in VIEWPOINTS else None)
    operator, motion, move, added = _asked_move(camera, prompt)
    return ShotCamera(
        shot_type=shot_type,
        angle=angle,
        move=move,
        shot_type_phrase=shot_type_phrase,
        angle_phrase=VIEWPOINTS[own_angle].phrase if own_angle else None,
        operator=operator,
        motion=motion,
        default_shot_type=not own_type and said_type not in FRAMINGS,
        move_added=added,
    )


def _asked_move(camera: Camera | None, prompt: str) -> tuple[str, str | None, CameraMove, bool]:
    """(operator, what the caption says it does, the move, whether it was added to a still shot)."""
    if camera is not None and camera.move:
        move = parse_move(camera.move)
        return (*move_motion(move), move, False)
    if prompt_moves(prompt):
        return "camera", None, parse_move(None), False
    # Picked by the camera's own shot type, never the prompt's, as captions always have been.
    still = STILL_MOVES[
        FRAMINGS[(camera.shot if camera is not None else None) or DEFAULT_SHOT_TYPE].still_move
    ]
    return "camera", still.motion, still.move, True
