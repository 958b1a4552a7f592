"""Scenes: loading Sionna XML / built-in scenes, the benchmark room, exporting calibrated twins."""
from rftwin.scene.load import SceneObjectInfo, TwinScene, builtin_scene_names, load, room
from rftwin.scene.room import room_xml

__all__ = ["SceneObjectInfo", "TwinScene", "builtin_scene_names", "load", "room", "room_xml"]
