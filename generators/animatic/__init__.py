"""The animatic generator: a previs of every shot, drawn without a model.

It fills each planned shot with exactly the frames a SkyReels-V2 render of the same plan would
have, so that timing, framing, camera moves, continuations and transitions can be judged in the
assembled film before any GPU minute is spent. A frame is made of:

* a **plate**, rendered once per shot and larger than the frame: a simple 3D set (sky, a ground
  grid, dressing picked from the setting's words, a stand-in figure for each character) seen
  through the camera that the shot type and angle describe; or the start image of an
  image-to-video shot; or, for a continuing shot, its parent's last picture, which dissolves into
  the shot's own set over the first third of the shot;
* the **camera move**, played out as a pose per frame (an offset and a scale of the view on the
  plate): each frame is a crop of the plate resized to the picture area;
* **bars** above and below the picture (a letterbox) with the slate: shot, scene, framing, the
  prompt and the film's timecode. They do not move with the camera.

The package's modules follow those jobs:

* ``palette``: the set's colours and dressing, from the setting's words;
* ``framing``: where the camera stands for a shot type and angle, how a move plays out over the
  shot, and the marks an angle fixes to the picture;
* ``props``: the set's dressing, the characters' stand-ins and where they stand;
* ``raster``: the set drawn into a plate through the camera, and plates from pictures;
* ``slate``: the bars, their text and the timecode burnt into each frame;
* ``generator``: :class:`AnimaticGenerator`, which puts a shot's frames together.

>>> from storyreel.generate import GeneratorOptions, ShotRequest
>>> from storyreel.storyboard import Storyboard
>>> from storyreel.plan import plan_film
>>> board = Storyboard.model_validate({
...     "storyreel": 1, "generation": {"resolution": "160x96", "fps": 8},
...     "scenes": [{"id": "lake", "setting": "a lake at dawn", "shots": [{"id": "glide",
...         "prompt": "a swan glides", "duration": "1s", "camera": {"shot": "wide", "move": "pan left"}}]}],
... })
>>> shot = plan_film(board).shot("glide")
>>> with AnimaticGenerator(GeneratorOptions()) as animatic:
...     clip = animatic.generate(ShotRequest(shot=shot, prompt=shot.prompt, negative_prompt=""))
>>> clip.frames.shape, clip.frames.dtype.name, clip.dit_passes
((9, 96, 160, 3), 'uint8', 0)
"""

from .framing import CameraPath, SetCamera, camera_path, frame_camera
from .generator import AnimaticGenerator
from .palette import Palette, scene_palette
from .props import character_colour
from .raster import Plate, draw_set
from .slate import Letterbox, timecode

__all__ = [
    "AnimaticGenerator",
    "CameraPath",
    "Letterbox",
    "Palette",
    "Plate",
    "SetCamera",
    "camera_path",
    "character_colour",
    "draw_set",
    "frame_camera",
    "scene_palette",
    "timecode",
]
