"""The one rule every command that writes follows, in one place.

1. Never write onto an input: not the same file (resolved paths, symlinks and hard links
   included), not into an input folder (the next run would read the outputs back as inputs), and
   a folder that is replaced whole must not contain an input either.
2. Never let two outputs collide: folder outputs mirror the input's relative structure, and two
   inputs that would still land on one name are refused, with both names.
3. Replace an existing output only after the new one is complete (see :mod:`.atomic`).
4. Write the format the file extension names, or refuse the extension.

Nothing here imports torch or Pillow: the CLI checks its outputs before it loads anything heavy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

PathLike = Union[str, os.PathLike]

#: Output extension -> Pillow format name. GIF is refused: it would quietly reduce to 256 colours.
IMAGE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
DEFAULT_IMAGE_EXT = ".png"


class OutputError(ValueError):
    """An output the rules refuse; the message starts with the offending path."""


def image_format(path: PathLike) -> str:
    """The Pillow format to write ``path`` in, from its extension; refuse what it cannot be."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_FORMATS:
        return IMAGE_FORMATS[suffix]
    known = ", ".join(sorted(IMAGE_FORMATS))
    if not suffix:
        raise OutputError(
            f"{path}: no image extension; name the format (e.g. {Path(path).name}.png) "
            f"or end the path with / to write a folder"
        )
    why = " (GIF keeps only 256 colours)" if suffix == ".gif" else ""
    raise OutputError(f"{path}: cannot write {suffix} images{why}; use one of {known}")


def normalise_ext(ext: Optional[str]) -> str:
    """``"jpg"``, ``".JPG"`` or None (PNG) -> a checked extension with its dot."""
    if not ext:
        return DEFAULT_IMAGE_EXT
    ext = ext.lower() if ext.startswith(".") else "." + ext.lower()
    image_format("x" + ext)
    return ext


def is_folder_target(spec: PathLike) -> bool:
    """An output names a folder when it ends with a path separator or is an existing folder."""
    s = os.fspath(spec)
    return s.endswith(os.sep) or s.endswith("/") or os.path.isdir(s)


def _real(path: PathLike) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def _same(a: PathLike, b: PathLike) -> bool:
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and parent in child.parents


def check_output_not_input(
    out: PathLike, inputs: Iterable[PathLike], replaces_folder: bool = False, reread: bool = True
) -> None:
    """Refuse ``out`` if writing it could destroy or re-read an input.

    Args:
        out: the file or folder about to be written.
        inputs: files and folders the command reads.
        replaces_folder: ``out`` is a folder that is replaced as a whole (``convert --overwrite``),
            so an input anywhere inside it would be deleted too.
        reread: the command reads its input folders recursively for files of the kind it writes
            (images), so an output inside one would be read back; False allows that (e.g. shards).

    Raises:
        OutputError: ``"<out>: is the input ..."`` and the like.
    """
    out_real = _real(out)
    for inp in inputs:
        in_real = _real(inp)
        if _same(out, inp):
            raise OutputError(f"{out}: is the input {inp}; choose another output")
        if reread and os.path.isdir(in_real) and _inside(out_real, in_real):
            raise OutputError(
                f"{out}: is inside the input folder {inp} (outputs would be read back as inputs); "
                "choose an output outside it"
            )
        if replaces_folder and _inside(in_real, out_real):
            raise OutputError(f"{out}: contains the input {inp} and would be replaced; choose another output")


def check_planned_outputs(
    outputs: Sequence[PathLike], sources: Sequence[str], inputs: Iterable[PathLike] = ()
) -> None:
    """Refuse a plan in which two sources share an output, or an output is an input file.

    ``outputs[i]`` is written from ``sources[i]`` (a name for messages).
    """
    seen: Dict[str, str] = {}
    clashes: List[str] = []
    for dest, source in zip(outputs, sources):
        key = os.path.normcase(os.fspath(_real(dest)))
        if key in seen:
            clashes.append(f"{dest} from both {seen[key]} and {source}")
        else:
            seen[key] = source
    if clashes:
        more = f" (and {len(clashes) - 3} more)" if len(clashes) > 3 else ""
        raise OutputError(
            f"{clashes[0].split(' from ')[0]}: two inputs would write the same file: "
            + "; ".join(clashes[:3])
            + more
            + "; rename one of them"
        )
    files = [Path(p) for p in inputs if os.path.isfile(p)]
    for dest in outputs:
        for inp in files:
            if _same(dest, inp):
                raise OutputError(f"{dest}: is the input {inp}; choose another output")


def mirror_outputs(inputs: Sequence[Path], root: Path, out: Path, ext: Optional[str] = None) -> List[Path]:
    """Folder output paths keeping each input's place below ``root``, with extension ``ext`` (PNG by default).

    The extension never follows the input's: a JPEG folder does not come back as lossy JPEG unless
    asked (``ext=".jpg"``). Collisions (``a.jpg`` and ``a.png`` -> ``a.png``) are refused.
    """
    ext = normalise_ext(ext)
    outputs = [(out / p.relative_to(root)).with_suffix(ext) for p in inputs]
    check_planned_outputs(outputs, [str(p) for p in inputs], inputs)
    return outputs


def names_from_sources(sources: Sequence[Optional[str]], ext: Optional[str] = None) -> List[Path]:
    """Relative output names for images recorded by their source paths (``mdiffae decode``).

    Sources in different folders keep those folders (relative to their common folder), so two
    ``x.png`` from ``a/`` and ``b/`` become ``a/x.png`` and ``b/x.png``; unknown sources get
    ``image_<i>``. Absolute or ``..`` components never escape the output folder.
    """
    ext = normalise_ext(ext)
    known = [os.path.normpath(s) for s in sources if s]
    parents = [os.path.dirname(s) for s in known]
    common = ""
    if parents:
        try:
            common = os.path.commonpath(parents)
        except ValueError:  # mixed absolute and relative
            common = ""
    names: List[Path] = []
    for i, s in enumerate(sources):
        if not s:
            names.append(Path(f"image_{i}{ext}"))
            continue
        rel = os.path.relpath(os.path.normpath(s), common) if common else os.path.normpath(s)
        parts = [p for p in Path(rel).parts if p not in ("", ".", "..", os.sep, "/") and not Path(p).anchor]
        names.append(Path(*parts).with_suffix(ext) if parts else Path(f"image_{i}{ext}"))
    return names
