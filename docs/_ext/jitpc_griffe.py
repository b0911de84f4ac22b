"""A griffe extension for jitpc's API reference (mkdocs.yml loads it by path).

jitpc's docstrings are Google style with reST roles in their prose (``:class:`Client```,
``:meth:`~jitpc.Client.call```). Markdown has no roles, so before mkdocstrings renders a
docstring this turns each role into a cross-reference to the page and anchor where the object is
documented, under its public name (``jitpc.Client``, not ``jitpc._client.Client``). A role whose
object is not on the site (a private helper, the standard library) becomes plain code. Names are
resolved as Python would, in the scope of the documented object, through griffe.

It also drops the second colon of reST's ``::`` before a literal block, reads the Sphinx-style
``#:`` comments above an attribute as its docstring (griffe reads only a string after it), and
lets an ``Args:`` entry document several parameters at once (``version, methods, on_mismatch:
...``), which griffe's Google parser would otherwise report as unknown parameters.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import griffe

#: The roots rendered by docs/reference/*.md (with their public members).
ROOTS = ("jitpc.sync", "jitpc.testing")
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|exc|mod|obj):`(~?)\.?([\w.]+)(\(\))?`")
COMBINED_PARAM = re.compile(r"^\s+\w+(?:, \w+)+:", re.MULTILINE)
#: reST's "a paragraph ending in ``::`` introduces a literal block": Markdown's is just indented.
LITERAL = re.compile(r"(?<=\S)::$", re.MULTILINE)


class JitpcReference(griffe.Extension):
    """Rewrite reST roles into cross-references, once the whole package is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "jitpc":
            return
        for obj in _walk(pkg):
            if obj.is_attribute and obj.docstring is None:
                _comment_docstring(obj, loader)
        public = _public_paths(pkg)
        for obj in _walk(pkg):
            docstring = obj.docstring
            if docstring is None:
                continue
            docstring.value = LITERAL.sub(":", docstring.value)
            if ":`" in docstring.value:
                link = functools.partial(_link, obj=obj, pkg=pkg, public=public)
                docstring.value = ROLE.sub(link, docstring.value)
            if COMBINED_PARAM.search(docstring.value):
                options: dict[str, Any] = dict(docstring.parser_options)
                options.update(warn_unknown_params=False, warn_missing_types=False)
                docstring.parser_options = options  # type: ignore[assignment]


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    """``obj`` and every object defined in it (no aliases: each is reached where it lives)."""
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            assert isinstance(member, griffe.Object)
            found.extend(_walk(member))
    return found


def _comment_docstring(attr: griffe.Object, loader: griffe.GriffeLoader) -> None:
    """Give ``attr`` the ``#:`` comment lines right above its assignment as its docstring."""
    if attr.lineno is None or isinstance(attr.filepath, list):
        return
    try:
        lines = attr.lines_collection[attr.filepath]
    except KeyError:
        return
    comment: list[str] = []
    number = attr.lineno - 1  # the line above, 1-based: lines[number - 1]
    while number >= 1 and lines[number - 1].strip().startswith("#:"):
        comment.insert(0, lines[number - 1].strip().removeprefix("#:").removeprefix(" "))
        number -= 1
    if comment:
        attr.docstring = griffe.Docstring(
            "\n".join(comment),
            lineno=number + 1,
            endlineno=attr.lineno - 1,
            parent=attr,
            parser=loader.docstring_parser,
            parser_options=loader.docstring_options,
        )


def _public_paths(pkg: griffe.Module) -> dict[str, str]:
    """Canonical path -> the public path it is documented under, for everything on the site."""
    paths: dict[str, str] = {}

    def add(obj: griffe.Object | griffe.Alias, path: str) -> None:
        target = obj.final_target if isinstance(obj, griffe.Alias) else obj
        if not target.has_docstrings:
            return  # not rendered (show_if_no_docstring is off): nothing to link to
        paths.setdefault(target.canonical_path, path)
        if target.is_module:
            return
        for name, member in target.members.items():
            if not name.startswith("_") and not (member.is_alias and target.is_class):
                add(member, f"{path}.{name}")

    exported = pkg.exports or ()
    for name in exported:
        if isinstance(name, str) and name in pkg.members:
            add(pkg.members[name], f"jitpc.{name}")
    for root in ROOTS:
        module = pkg.members.get(root.split(".", 1)[1])
        if module is None:
            continue
        paths.setdefault(module.canonical_path, root)
        for name in module.exports or ():
            if isinstance(name, str) and name in module.members:
                add(module.members[name], f"{root}.{name}")
    return paths


def _link(
    match: re.Match[str], *, obj: griffe.Object, pkg: griffe.Module, public: dict[str, str]
) -> str:
    short, target, parens = match.group(1), match.group(2), match.group(3) or ""
    shown = (target.rsplit(".", 1)[-1] if short else target) + parens
    path = _resolve(target, obj, pkg)
    if path is None or path not in public:
        return f"`{shown}`"
    return f"[`{shown}`][{public[path]}]"


def _resolve(target: str, obj: griffe.Object, pkg: griffe.Module) -> str | None:
    """The canonical path of ``target`` as named in ``obj``'s docstring, or ``None``."""
    first, _, rest = target.partition(".")
    if first == "jitpc":
        start: griffe.Object | griffe.Alias = pkg
    else:
        try:
            path = obj.resolve(first)
        except griffe.NameResolutionError:
            return None
        try:
            start = pkg.modules_collection.get_member(path)
        except (KeyError, ValueError):
            return None
    try:
        found = start.get_member(rest) if rest else start
        if isinstance(found, griffe.Alias):
            return found.final_target.canonical_path
        return found.canonical_path
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
