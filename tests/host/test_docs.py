# SPDX-License-Identifier: Apache-2.0
"""The API reference (docs/api, `make docs`): it builds with warnings as
errors, it documents every public name, and its host examples run.

The public names are found by introspection, not listed: what ``pyvfio``
and ``pyvfio.vm`` export (``__all__``), the cookie module's calls, and, from
there, every class the public calls return or the public attributes hold
(``Device.enable_irq()`` gives an ``Interrupts``, ``Region.info`` a
``RegionInfo`` ...), each with its public methods, properties and
attributes (class annotations, dataclass fields, enum members, and what
``__init__`` assigns to ``self``).  The built reference's inventory
(objects.inv) must hold each.  The guest examples run in the test VM
(tests/guest/test_docs_examples.py).
"""

from __future__ import annotations

import ast
import enum
import inspect
import os
import re
import subprocess
import sys
import textwrap
import typing
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from guest.docs_examples import DOCS, Example, examples

import pyvfio
import pyvfio.vm
from pyvfio import cookie, irq

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
# Calls of the cookie module that check the arguments of the others.
COOKIE_HELPERS = ("check_attr", "check_device")
# As `make docs` and tools/test.sh run it.
SPHINX_BUILD = [sys.executable, "-m", "sphinx", "-q", "-E", "-W", "--keep-going", "-b", "html"]


# -- the build ----------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference, built as `make docs` builds it (warnings are errors)."""
    out = tmp_path_factory.mktemp("docs")
    proc = subprocess.run(
        [*SPHINX_BUILD, str(DOCS), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}{proc.stderr}"
    return out


def inventory(path: Path) -> set[str]:
    """The Python objects an objects.inv (version 2) names."""
    data = path.read_bytes()
    lines = data.split(b"\n", 4)
    assert lines[0] == b"# Sphinx inventory version 2", lines[0]
    assert b"zlib" in lines[3], lines[3]
    names = set()
    for line in zlib.decompress(lines[4]).decode().splitlines():
        # name domain:role priority uri dispname (the name has no blanks here)
        name, role = line.split(" ", 2)[:2]
        if role.startswith("py:"):
            names.add(name)
    return names


# -- the public names ---------------------------------------------------------


def _namespace() -> dict[str, Any]:
    """Every name of every pyvfio module but the VM's, to resolve what a module
    imports only for type checking (``MemoryType`` in mmio); the VM's would
    shadow others (its ``Mapping`` is collections.abc's)."""
    names: dict[str, Any] = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("pyvfio.") and not name.startswith("pyvfio.vm"):
            names.update(vars(module))
    return names


def _annotations(owner: Any, module: str) -> dict[str, Any]:
    """``owner``'s own annotations, evaluated; one that cannot be (a name only a
    type checker sees, such as typing_extensions' Buffer) is left out."""
    raw = getattr(owner, "__annotations__", None)
    if not isinstance(raw, dict):
        return {}
    scope = {**_namespace(), **vars(sys.modules[module])}
    hints = {}
    for name, written in raw.items():
        try:
            hints[name] = eval(written, scope) if isinstance(written, str) else written
        except Exception:
            continue  # not resolvable at run time
    return hints


def _classes_in(annotation: object) -> Iterator[type]:
    """The classes an annotation names (``tuple[RegionCap, ...]``, ``X | None``)."""
    if isinstance(annotation, list | tuple):
        for item in annotation:
            yield from _classes_in(item)
    elif typing.get_origin(annotation) is not None:
        yield from _classes_in(typing.get_args(annotation))
    elif isinstance(annotation, type):
        yield annotation


def _ours(cls: type) -> bool:
    return cls.__module__ == "pyvfio" or cls.__module__.startswith("pyvfio.")


def _init_attributes(cls: type) -> Iterator[str]:
    """Public attributes ``cls.__init__`` assigns to ``self`` (its own code only)."""
    init = vars(cls).get("__init__")
    if not inspect.isfunction(init) or init.__code__.co_filename.startswith("<"):
        return  # none, or a dataclass's (its fields are annotations)
    tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            for item in target.elts if isinstance(target, ast.Tuple) else [target]:
                if (
                    isinstance(item, ast.Attribute)
                    and isinstance(item.value, ast.Name)
                    and item.value.id == "self"
                    and not item.attr.startswith("_")
                ):
                    yield item.attr


def _members(cls: type) -> Iterator[tuple[str, type]]:
    """(name, the class that defines it) of each public member of ``cls``,
    from pyvfio's classes only (not ``BaseException.args``, ``str.join``)."""
    mro = [k for k in cls.__mro__ if _ours(k)]
    # dir() of an enum shows its members, not its methods and properties
    for name in sorted(set(dir(cls)).union(*(vars(k) for k in mro))):
        if name.startswith("_"):
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is not None and _ours(owner):
            yield name, owner
    if issubclass(cls, enum.Enum):
        for name in cls.__members__:
            yield name, cls
    for k in mro:
        for name in vars(k).get("__annotations__", {}):
            if not name.startswith("_"):
                yield name, k
        for name in _init_attributes(k):
            yield name, k


def _returns(cls: type, name: str) -> Iterator[type]:
    """The classes member ``name`` of ``cls`` gives: a call's or a property's
    return, an attribute's annotation."""
    raw = next((vars(k)[name] for k in cls.__mro__ if name in vars(k)), None)
    if isinstance(raw, property):
        raw = raw.fget
    if isinstance(raw, staticmethod | classmethod):
        raw = raw.__func__
    if inspect.isfunction(raw):
        yield from _classes_in(_annotations(raw, raw.__module__).get("return"))
    for k in cls.__mro__:
        if _ours(k) and name in vars(k).get("__annotations__", {}):
            yield from _classes_in(_annotations(k, k.__module__).get(name))


def public_api() -> dict[str, object]:
    """Every public name, as the reference documents it (``pyvfio.Device.open``,
    ``pyvfio.irq.Interrupts.wait``), and what it names."""
    # What the reference calls each documented class or function.
    doc_names: dict[object, str] = {}
    data: dict[str, object] = {}
    for name in pyvfio.__all__:
        doc_names.setdefault(getattr(pyvfio, name), f"pyvfio.{name}")
    for name in pyvfio.vm.__all__:
        value = getattr(pyvfio.vm, name)
        if isinstance(value, type) or inspect.isfunction(value):
            doc_names.setdefault(value, f"pyvfio.vm.{name}")
        else:
            data[f"pyvfio.vm.{name}"] = value
    seeds = [*doc_names, irq.IrqIndex]  # IrqIndex: what Device.enable_irq()'s index takes
    for name, value in vars(cookie).items():
        if name.startswith("_") or name in COOKIE_HELPERS:
            continue
        if (isinstance(value, type) or inspect.isfunction(value)) and (
            value.__module__ == cookie.__name__
        ):
            seeds.append(value)

    # The classes they reach, through what calls return and attributes hold.
    reached: list[object] = []
    todo = list(seeds)
    while todo:
        item = todo.pop(0)
        if item in reached:
            continue
        reached.append(item)
        found: list[type] = []
        if inspect.isfunction(item):
            found += _classes_in(_annotations(item, item.__module__).get("return"))
        elif isinstance(item, type):
            for name, _ in _members(item):
                found += _returns(item, name)
        todo += [cls for cls in found if _ours(cls) and cls not in reached]
    for item in reached:
        module = getattr(item, "__module__", "")
        doc_names.setdefault(item, f"{module}.{getattr(item, '__qualname__', '')}")

    api: dict[str, object] = dict(data)
    for item in reached:
        api[doc_names[item]] = item
        if not isinstance(item, type):
            continue
        for name, owner in _members(item):
            # Inherited from another documented class: documented there.
            if owner is not item and owner in doc_names:
                continue
            api[f"{doc_names[item]}.{name}"] = inspect.getattr_static(item, name, None)
    return api


def test_the_walk_finds_the_public_api() -> None:
    # A check of the walk itself: through __all__, returns, attributes,
    # inheritance from classes the reference does not show, and the C helper.
    api = public_api()
    for name in [
        "pyvfio.Device.open",  # a classmethod
        "pyvfio.Device.bdf",  # assigned in DeviceFd.__init__
        "pyvfio.Device.feature",  # a method of DeviceFd
        "pyvfio.Device.config",  # a property
        "pyvfio.config.ConfigSpace.capabilities",  # ... and what it returns
        "pyvfio.config.Capability.name",
        "pyvfio.irq.Interrupts.wait",  # Device.enable_irq()'s
        "pyvfio.irq.IrqIndex.MSIX",  # an enum member
        "pyvfio.Mapping.read32",  # the C helper's (or its fallback's) accessors
        "pyvfio.Mapping.memory_type",  # annotated with a name imported for mypy only
        "pyvfio.cookie.MemoryType.pat_name",
        "pyvfio.caps.SparseMmapCap.areas",  # RegionInfo.caps: a union alias
        "pyvfio.dma.IommuBackend.map_dma",  # a protocol
        "pyvfio.cookie.Cookie.index",  # a tuple assignment in __init__
        "pyvfio.VfioError.errno",
        "pyvfio.VmArgumentError.parameter",
        "pyvfio.Backend.IOMMUFD",
        "pyvfio.vm.EDU_ID",
        "pyvfio.vm.GuestResult.ok",
        "pyvfio.normalize_bdf",
    ]:
        assert name in api, name
    # documented once, under the class that defines it
    assert "pyvfio.BusyError.errno" not in api
    assert not [name for name in api if re.search(r"\.(args|add_note|join|_\w+)$", name)]


def test_every_public_name_is_in_the_reference(built: Path) -> None:
    documented = inventory(built / "objects.inv")
    missing = sorted(set(public_api()) - documented)
    assert not missing, "public but not in the API reference:\n" + "\n".join(missing)


# -- the pages and their examples ---------------------------------------------


def test_every_page_begins_with_an_example() -> None:
    pages = sorted(DOCS.glob("*.rst"))
    assert len(pages) >= 9
    for page in pages:
        lines = [line for line in page.read_text().splitlines() if line.strip()]
        # a comment (the licence), the title and its underline, then the example
        body = [line for line in lines if not line.startswith(".. SPDX")]
        assert re.fullmatch(r"=+", body[1]), f"{page.name}: no title"
        assert body[2].startswith(".. example:: "), f"{page.name} begins with {body[2]!r}"


def test_every_example_is_read_from_the_pages(built: Path) -> None:
    # the reader the tests use against what Sphinx made of the directives
    shown = sum(
        len(re.findall(r'class="[^"]*\bpyvfio-example\b', page.read_text()))
        for page in built.glob("*.html")
    )
    found = examples()
    assert shown == len(found)
    assert {e.where for e in found} == {"host", "guest"}
    assert all(e.requires in (None, "vfio_pci_cookie") for e in found)


def _run(example: Example, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = cwd / f"{example.page}_{example.line}.py"
    path.write_text(example.code)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    )
    return subprocess.run(
        [sys.executable, str(path)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("example", examples("host"), ids=lambda e: e.name)
def test_host_example_runs(example: Example, tmp_path: Path) -> None:
    proc = _run(example, tmp_path)
    assert proc.returncode == 0, f"{example.name}:\n{proc.stdout}{proc.stderr}"


def test_the_examples_type_check(tmp_path: Path) -> None:
    # The guest ones run only in the VM: a renamed call is caught here first.
    for example in examples():
        (tmp_path / f"{example.page}_{example.line}.py").write_text(example.code)
    mypy = [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.11"]
    proc = subprocess.run(
        [*mypy, "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", "."],
        cwd=tmp_path,
        env=dict(os.environ, MYPYPATH=str(SRC)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_failing_example_fails(tmp_path: Path) -> None:
    # the runner would see an example's assert fail
    broken = Example("test", 1, "host", None, "assert 1 == 2, 'as it should'\n", 3)
    proc = _run(broken, tmp_path)
    assert proc.returncode == 1 and "as it should" in proc.stderr
