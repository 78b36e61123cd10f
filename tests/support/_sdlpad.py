"""A virtual SDL game controller, through ctypes on the SDL2 library that pygame loaded.

SDL_JoystickAttachVirtual creates a joystick inside this process that SDL's GameController
layer maps like a real pad (buttons in SDL_GameControllerButton order, axes in
SDL_GameControllerAxis order), so tests move real axes and press real buttons through the same
SDL code path that a USB pad goes through.
"""

from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
os.environ.setdefault("SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS", "1")

import pygame

SDL_JOYSTICK_TYPE_GAMECONTROLLER = 1
BUTTONS = ("a", "b", "x", "y", "back", "guide", "start", "leftstick", "rightstick",
           "leftshoulder", "rightshoulder", "dpup", "dpdown", "dpleft", "dpright")
AXES = ("leftx", "lefty", "rightx", "righty", "lefttrigger", "righttrigger")


def _sdl_library() -> ctypes.CDLL:
    """The SDL2 that pygame's extension modules are linked against (wheel: pygame.libs/)."""
    here = Path(pygame.__file__).parent
    candidates = sorted(glob.glob(str(here.parent / "pygame.libs" / "libSDL2-2*.so*")))
    if not candidates:
        candidates = ["libSDL2-2.0.so.0"]  # a system pygame uses the system SDL2
    lib = ctypes.CDLL(candidates[0])
    lib.SDL_GetError.restype = ctypes.c_char_p
    lib.SDL_JoystickAttachVirtual.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.SDL_JoystickAttachVirtual.restype = ctypes.c_int
    lib.SDL_JoystickDetachVirtual.argtypes = [ctypes.c_int]
    lib.SDL_JoystickOpen.argtypes = [ctypes.c_int]
    lib.SDL_JoystickOpen.restype = ctypes.c_void_p
    lib.SDL_JoystickClose.argtypes = [ctypes.c_void_p]
    lib.SDL_JoystickInstanceID.argtypes = [ctypes.c_void_p]
    lib.SDL_JoystickSetVirtualAxis.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int16]
    lib.SDL_JoystickSetVirtualButton.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint8]
    lib.SDL_NumJoysticks.restype = ctypes.c_int
    lib.SDL_InitSubSystem.argtypes = [ctypes.c_uint32]
    return lib


SDL_INIT_GAMECONTROLLER = 0x00002000


class VirtualPad:
    """A plugged-in virtual game controller. `unplug()` detaches it (hot-unplug)."""

    def __init__(self) -> None:
        self.sdl = _sdl_library()
        if self.sdl.SDL_InitSubSystem(SDL_INIT_GAMECONTROLLER) != 0:
            raise RuntimeError(f"SDL init failed: {self.sdl.SDL_GetError().decode()}")
        self.index = self.sdl.SDL_JoystickAttachVirtual(
            SDL_JOYSTICK_TYPE_GAMECONTROLLER, len(AXES), len(BUTTONS), 0)
        if self.index < 0:
            raise RuntimeError(f"SDL_JoystickAttachVirtual: {self.sdl.SDL_GetError().decode()}")
        self.joystick = self.sdl.SDL_JoystickOpen(self.index)
        if not self.joystick:
            raise RuntimeError(f"SDL_JoystickOpen: {self.sdl.SDL_GetError().decode()}")

    def button(self, name: str, down: bool) -> None:
        self.sdl.SDL_JoystickSetVirtualButton(self.joystick, BUTTONS.index(name), int(down))

    def axis(self, name: str, value: float) -> None:
        """value in [-1, 1] (SDL convention: stick up and stick left are negative)."""
        raw = max(-32768, min(32767, round(value * 32767)))
        self.sdl.SDL_JoystickSetVirtualAxis(self.joystick, AXES.index(name), raw)

    def unplug(self) -> None:
        if self.joystick:
            instance = self.sdl.SDL_JoystickInstanceID(self.joystick)
            self.sdl.SDL_JoystickClose(self.joystick)
            self.joystick = None
            # Detach takes the device index; find it again (it may have moved).
            for i in range(self.sdl.SDL_NumJoysticks()):
                if self.sdl.SDL_JoystickGetDeviceInstanceID(i) == instance:
                    self.sdl.SDL_JoystickDetachVirtual(i)
                    return
            self.sdl.SDL_JoystickDetachVirtual(self.index)
