"""The checks a storyboard needs the whole film for: each field is checked as it is read, these after.

Ids must be unique and references (``after:``, ``continues:``, ``characters:``, ``{{ name }}``) must name
something that exists; settings that apply to the whole film may not be set per scene or shot; prompts
filled in stay within bounds; assets must exist, open as what they claim to be and stay inside the
storyboard's folder. Every problem is pinned to where its field was written, with a fix, and an unknown
name comes with a "did you mean ...?".

:meth:`storyreel.Storyboard.problems` runs them:

>>> from storyreel.format import Storyboard
>>> board = Storyboard.model_validate({
...     "storyreel": 1,
...     "scenes": [{"id": "lake", "shots": [{"id": "glide", "prompt": "a swan", "duration": 4, "continues": "glid"}]}],
... })
>>> [(p.field, p.message, p.fix) for p in storyboard_problems(board)]
[('scenes[0].shots[0].continues', "unknown shot 'glid'", "did you mean 'glide'?")]
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from .errors import Problem
from .fields import FILM_ONLY_SETTINGS, MAX_FILM_PROMPT_CHARS, MAX_PROMPT_CHARS
from .prompts import PromptSyntaxError, expanded_size, prompt_references, too_long
from .yaml_source import Path_

if TYPE_CHECKING:
    from .format import Generation, Shot, Storyboard


def storyboard_problems(board: Storyboard, *, allow_outside: bool = False) -> list[Problem]:
    """Every problem of the film that no single field shows: duplicate ids, unknown references, prompts, assets."""
    problems: list[Problem] = []
    problems += _identity_problems(board)
    problems += _reference_problems(board)
    problems += _prompt_problems(board)
    problems += _asset_problems(board, allow_outside)
    problems += _model_problems(board)
    if board.keyframes is not None:
        from .keyframes import keyframe_problems

        problems += keyframe_problems(board)
    if board.vars is not None and not board._rendered:
        problems.append(
            board.problem(
                ("vars",),
                "`vars:` is only read in a templated storyboard",
                "rename the file to end in .yaml.j2, or remove `vars:`",
                key=True,
            )
        )
    return problems


def _identity_problems(board: Storyboard) -> list[Problem]:
    problems: list[Problem] = []
    seen_scenes: dict[str, int] = {}
    for si, scene in enumerate(board.scenes):
        if scene.id in seen_scenes:
            problems.append(
                board.problem(
                    ("scenes", si, "id"),
                    f"scene id '{scene.id}' is already used by scenes[{seen_scenes[scene.id]}]",
                    "give every scene a unique id",
                )
            )
        seen_scenes.setdefault(scene.id, si)
    seen_shots: dict[str, str] = {}
    for si, hi, _, shot in board.iter_shots():
        where = f"scenes[{si}].shots[{hi}]"
        if shot.id in seen_shots:
            problems.append(
                board.problem(
                    ("scenes", si, "shots", hi, "id"),
                    f"shot id '{shot.id}' is already used by {seen_shots[shot.id]}",
                    "give every shot in the film a unique id",
                )
            )
        seen_shots.setdefault(shot.id, where)
        base: Path_ = ("scenes", si, "shots", hi)
        if shot.duration is not None and shot.frames is not None:
            problems.append(
                board.problem(
                    base + ("frames",),
                    "both `duration` and `frames` are set",
                    "keep one of them",
                    key=True,
                )
            )
        if shot.duration is None and shot.frames is None:
            problems.append(
                board.problem(base, f"shot '{shot.id}' has no length", "add `duration: 4s` (or `frames: 97`)")
            )
        problems += _film_only_problems(board, shot.generation, base + ("generation",))
    for si, scene in enumerate(board.scenes):
        problems += _film_only_problems(board, scene.generation, ("scenes", si, "generation"))
    return unique_problems(problems)


def _film_only_problems(board: Storyboard, layer: Generation | None, base: Path_) -> list[Problem]:
    return [
        board.problem(
            base + (key,),
            f"`{key}` applies to the whole film and cannot change per scene or shot",
            "set it once under the top-level `generation:` and remove it here",
            key=True,
        )
        for key in FILM_ONLY_SETTINGS
        if layer is not None and getattr(layer, key) is not None
    ]


def _reference_problems(board: Storyboard) -> list[Problem]:
    problems: list[Problem] = []
    scene_ids = [scene.id for scene in board.scenes]
    shot_ids = [shot.id for _, _, _, shot in board.iter_shots()]
    known_scenes = set(scene_ids) | board._refused_names  # sets: one lookup per reference, not a scan
    known_shots = set(shot_ids) | board._refused_names
    suggest_scene = _Suggest(scene_ids, "scene ids")
    suggest_shot = _Suggest(shot_ids, "shot ids")
    suggest_character = _Suggest(list(board.characters), "characters")
    for si, scene in enumerate(board.scenes):
        for ai, other in enumerate(scene.after):
            path: Path_ = ("scenes", si, "after", ai)
            if other == scene.id:
                problems.append(
                    board.problem(path, f"scene '{scene.id}' cannot come after itself", "remove it")
                )
            elif other not in known_scenes:
                problems.append(board.problem(path, f"unknown scene '{other}'", suggest_scene(other)))
    for si, hi, _, shot in board.iter_shots():
        base: Path_ = ("scenes", si, "shots", hi)
        if shot.continues is not None:
            if shot.continues == shot.id:
                problems.append(
                    board.problem(
                        base + ("continues",), f"shot '{shot.id}' cannot continue itself", "remove it"
                    )
                )
            elif shot.continues not in known_shots:
                problems.append(
                    board.problem(
                        base + ("continues",),
                        f"unknown shot '{shot.continues}'",
                        suggest_shot(shot.continues),
                    )
                )
        for ci, name in enumerate(shot.characters):
            if name not in board.characters and name not in board._refused_names:
                problems.append(
                    board.problem(
                        base + ("characters", ci),
                        f"unknown character '{name}'",
                        suggest_character(name) + " (define characters under the top-level `characters:`)",
                    )
                )
        if shot.image is not None and board.is_continuing(si, hi):
            problems.append(
                board.problem(
                    base + ("image",),
                    f"shot '{shot.id}' continues the previous footage, so it cannot also start from an image",
                    "remove `image:`, or set `transition: cut` (or dissolve/fade) to start the shot fresh",
                    key=True,
                )
            )
        problems += _frame_control_problems(board, si, hi, shot)
    return problems


def _frame_control_problems(board: Storyboard, si: int, hi: int, shot: Shot) -> list[Problem]:
    """``video:`` on shots that can take it (see docs/storyboard.md).

    A clip is extended as a continuation is: the shot is conditioned on the clip's last frames, so it cannot
    also continue other footage or start from an image. ``end_image:`` fits every shot (its latent frame is
    held in the shot's last window, whatever starts the shot), so only its file is checked (with the assets).
    """
    base: Path_ = ("scenes", si, "shots", hi)
    problems: list[Problem] = []
    if shot.video is not None:
        if board.is_continuing(si, hi):
            problems.append(
                board.problem(
                    base + ("video",),
                    f"shot '{shot.id}' continues the previous footage, so it cannot also extend the clip "
                    f"'{shot.video}'",
                    "remove `video:`, or set `transition: cut` (or dissolve/fade) so the shot extends the clip",
                    key=True,
                )
            )
        elif shot.image is not None:
            problems.append(
                board.problem(
                    base + ("image",),
                    f"shot '{shot.id}' extends the clip '{shot.video}', so it cannot also start from an image",
                    "remove `image:` or `video:`",
                    key=True,
                )
            )
    return problems


def _prompt_problems(board: Storyboard) -> list[Problem]:
    problems: list[Problem] = []
    suggest = _Suggest(list(board.characters), "characters")
    total, over = 0, False
    descriptions = {name: character.description for name, character in board.characters.items()}
    texts: list[tuple[Path_, str]] = [
        (("scenes", si, "shots", hi, "prompt"), shot.prompt) for si, hi, _, shot in board.iter_shots()
    ]
    texts += [(("scenes", si, "setting"), s.setting) for si, s in enumerate(board.scenes) if s.setting]
    for path, text in texts:
        try:
            references = prompt_references(text)
        except PromptSyntaxError as exc:
            problems.append(board.problem(path, *exc.problem()))
            continue
        unknown = sorted(
            {
                name
                for _, _, name in references
                if name not in board.characters and name not in board._refused_names
            }
        )
        for name in unknown:
            problems.append(
                board.problem(
                    path,
                    f"unknown character '{name}' in {{{{ {name} }}}}",
                    suggest(name) + " (define it under the top-level `characters:`)",
                )
            )
        if not unknown:
            size = expanded_size(text, references, descriptions)
            total += size
            if size > MAX_PROMPT_CHARS:
                problems.append(board.problem(path, *too_long(size)))
            elif total > MAX_FILM_PROMPT_CHARS and not over:
                over = True  # said once, where the film's prompts grow past the bound
                problems.append(
                    board.problem(
                        path,
                        f"with this one, the film's prompts and settings, filled in, add up to more than "
                        f"{MAX_FILM_PROMPT_CHARS:,} characters",
                        "reference long character descriptions less often, or split the film",
                    )
                )
    return problems


def _asset_problems(board: Storyboard, allow_outside: bool) -> list[Problem]:
    from .assets import AssetKind, check_asset, unreachable

    problems: list[Problem] = []
    assets: list[tuple[Path_, str, AssetKind]] = []
    for si, hi, _, shot in board.iter_shots():
        if shot.image:
            assets.append((("scenes", si, "shots", hi, "image"), shot.image, "image"))
        if shot.end_image:
            assets.append((("scenes", si, "shots", hi, "end_image"), shot.end_image, "image"))
        if shot.video:
            assets.append((("scenes", si, "shots", hi, "video"), shot.video, "video"))
    for name, character in board.characters.items():
        if isinstance(character.reference, str):
            assets.append((("characters", name, "reference"), character.reference, "image"))
        elif character.reference:
            for index, reference in enumerate(character.reference):
                assets.append((("characters", name, "reference", index), reference, "image"))
    if board.audio is not None:
        assets.append((("audio", "music"), board.audio.music, "music"))
    for template in ("system_template", "user_template"):
        if getattr(board.enhancer, template):
            assets.append((("enhancer", template), getattr(board.enhancer, template), "template"))
    base = board.base_dir.resolve()
    for path, value, kind in assets:
        if trouble := unreachable(value, base):
            problems.append(board.problem(path, trouble.message, trouble.fix))
            continue
        resolved = board.resolve_asset(value)
        if not allow_outside and not resolved.is_relative_to(base):
            problems.append(
                board.problem(
                    path,
                    f"'{value}' is outside the storyboard's folder {base}",
                    "move the file into that folder, or pass --allow-outside",
                )
            )
        elif trouble := check_asset(kind, resolved, value):  # opened as the render will, in bounded time
            problems.append(board.problem(path, trouble.message, trouble.fix))
    return problems


def _model_problems(board: Storyboard) -> list[Problem]:
    """A ``generation.model`` that cannot name a folder on this machine at all (one that is merely not here yet
    is the plan's note, not a problem: validating does not need the model)."""
    from .assets import unreachable

    layers: list[tuple[Generation | None, Path_]] = [(board.generation, ("generation",))]
    layers += [(scene.generation, ("scenes", si, "generation")) for si, scene in enumerate(board.scenes)]
    layers += [
        (shot.generation, ("scenes", si, "shots", hi, "generation")) for si, hi, _, shot in board.iter_shots()
    ]
    problems: list[Problem] = []
    base = board.base_dir
    for layer, path in layers:
        if layer is not None and layer.model and (trouble := unreachable(layer.model, base)):
            problems.append(board.problem((*path, "model"), trouble.message, trouble.fix))
    return problems


def unique_problems(problems: list[Problem]) -> list[Problem]:
    """The problems in their order, each once (two checks may find the same one)."""
    return list(dict.fromkeys(problems))


class _Suggest:
    """ "did you mean ...?" for names that are not known, built once for a whole check.

    Fuzzy matching every unknown reference of a long film against every id would be quadratic: past 1,000
    known names, only those that start alike and are about as long are compared.
    """

    def __init__(self, known: list[str], what: str):
        self.known = list(dict.fromkeys(known))
        self.what = what
        self.by_start: dict[str, list[str]] = {}
        if len(self.known) > 1000:
            for name in self.known:
                self.by_start.setdefault(name[:2], []).append(name)

    def __call__(self, name: str) -> str:
        candidates = self.known
        if self.by_start:
            candidates = [k for k in self.by_start.get(name[:2], []) if abs(len(k) - len(name)) <= 2][:1000]
        close = difflib.get_close_matches(name, candidates, n=1)
        if close:
            return f"did you mean '{close[0]}'?"
        if len(self.known) > 10:  # a film of thousands of shots is not listed in full
            return f"known {self.what}: " + ", ".join(self.known[:10]) + f" and {len(self.known) - 10} more"
        if self.known:
            return f"known {self.what}: " + ", ".join(self.known)
        return f"there are no {self.what} defined"
