"""Files named by a scene XML resolve against the XML's folder, never the working folder.

Sionna's ``load_scene`` appends the scene's folder to Mitsuba's file resolver, whose first entry is the current
directory: a ``meshes/floor.ply`` in the folder you run from silently replaces the scene's own (SIONNA_NOTES). So
rftwin reads the XML itself, resolves every ``<string name="filename" .../>`` against the XML's folder, refuses
files outside that folder (``..``, absolute paths, symlinks leading out) unless the caller opts in
(``allow_external=True`` or ``RFTWIN_ALLOW_EXTERNAL_FILES=1``), checks that each file exists, and hands Mitsuba
the XML with absolute paths. Error messages name the scene file, the shape and the path, and never print the
content of a referenced file.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

ALLOW_EXTERNAL_ENV = "RFTWIN_ALLOW_EXTERNAL_FILES"
MESH_MAGIC = {".ply": (b"ply",), ".obj": None, ".serialized": None}


class SceneFileError(ValueError):
    """A scene XML that names a file rftwin will not or cannot read."""


def allow_external_default() -> bool:
    return os.environ.get(ALLOW_EXTERNAL_ENV, "0") not in ("", "0", "false", "no")


def _owner(elem: ET.Element, parents: dict[ET.Element, ET.Element]) -> str:
    """'shape 'floor'' for the element that holds a filename (for messages)."""
    p = parents.get(elem)
    if p is None:
        return "the scene"
    ident = p.get("id") or p.get("name")
    return f"<{p.tag} type='{p.get('type', '')}'" + (f" id='{ident}'>" if ident else ">")


def _check_mesh(path: Path, where: str) -> None:
    """Cheap sanity check of a mesh file before Mitsuba parses it (no content is ever echoed)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise SceneFileError(f"{where}: cannot be read ({exc.strerror})") from None
    if size == 0:
        raise SceneFileError(f"{where}: empty file; expected a mesh")
    magic = MESH_MAGIC.get(path.suffix.lower())
    if magic and not head.startswith(magic):
        raise SceneFileError(f"{where}: not a {path.suffix.lower()[1:].upper()} file (wrong header)")


def resolved_scene_xml(xml_path: str | os.PathLike, allow_external: bool | None = None) -> str:
    """The scene XML text with every ``filename`` made absolute (resolved against the XML's folder).

    Raises :class:`SceneFileError` naming the XML, the element and the path for: malformed XML, ``<include>``
    elements, files outside the XML's folder (unless ``allow_external``), missing files, empty or mislabelled
    meshes.
    """
    xml_path = Path(xml_path)
    allow = allow_external_default() if allow_external is None else allow_external
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as exc:
        line, col = exc.position
        raise SceneFileError(f"{xml_path}, line {line}, column {col}: not well-formed XML") from None
    except OSError as exc:
        raise SceneFileError(f"{xml_path}: cannot be read ({exc.strerror})") from None
    root = tree.getroot()
    if root.tag != "scene":
        raise SceneFileError(f"{xml_path}: root element is <{root.tag}>; expected a Mitsuba/Sionna <scene>")
    base = xml_path.resolve().parent
    parents = {c: p for p in root.iter() for c in p}
    for elem in root.iter():
        if elem.tag == "include":
            raise SceneFileError(f"{xml_path}: <include> elements are not supported; put the shapes in the scene "
                                 "file")
        if not (elem.tag == "string" and elem.get("name") == "filename"):
            continue
        value = elem.get("value", "")
        where = f"{xml_path}, {_owner(elem, parents)}, filename '{value}'"
        if not value.strip() or "$" in value:
            raise SceneFileError(f"{where}: expected a file path relative to the scene file (no variables)")
        p = Path(value)
        target = (p if p.is_absolute() else base / p).resolve()
        inside = target == base or base in target.parents
        if not inside and not allow:
            raise SceneFileError(f"{where}: points outside the scene's folder {base}; rftwin only reads files "
                                 f"beside the scene (set {ALLOW_EXTERNAL_ENV}=1 to allow it)")
        if not target.is_file():
            raise SceneFileError(f"{where}: no such file ({target})")
        _check_mesh(target, where)
        elem.set("value", str(target))
    return ET.tostring(root, encoding="unicode")


__all__ = ["ALLOW_EXTERNAL_ENV", "SceneFileError", "allow_external_default", "resolved_scene_xml"]
