"""Every public class documents every parameter, so the generated reference is complete."""

from __future__ import annotations

import html
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_grok_video.emulator import Fault, GrokVideoEmulator, Rule
from airflow_grok_video.hooks.grok_video import GrokVideoHook, RetryPolicy, VideoTask
from airflow_grok_video.hooks.retry import Pacer
from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.operators.grok_video_batch import GrokCreateVideoBatchOperator
from airflow_grok_video.polling import PollSchedule
from airflow_grok_video.sensors.grok_video import GrokVideoSensor
from airflow_grok_video.transfers.grok_video_to_storage import GrokVideoToStorageOperator
from airflow_grok_video.triggers.grok_video import GrokVideoTrigger
from airflow_grok_video.triggers.grok_video_batch import GrokVideoBatchTrigger

REPO = Path(__file__).resolve().parent.parent

PUBLIC = [
    GrokCreateVideoOperator,
    GrokCreateVideoBatchOperator,
    GrokVideoBatchTrigger,
    Pacer,
    GrokVideoSensor,
    GrokVideoToStorageOperator,
    GrokVideoTrigger,
    GrokVideoHook,
    RetryPolicy,
    VideoTask,
    PollSchedule,
    GrokVideoEmulator,
    Rule,
    Fault,
]


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_every_parameter_is_documented(cls: type) -> None:
    doc = inspect.getdoc(cls) or ""
    params = [
        name
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    missing = [name for name in params if f":param {name}:" not in doc]
    assert not missing, f"{cls.__name__} does not document {missing}"


@pytest.mark.parametrize(
    "method",
    [GrokVideoHook.create_video, GrokVideoHook.get_video_task, GrokVideoHook.aget_video_task],
    ids=lambda m: m.__name__,
)
def test_hook_methods_document_their_parameters(method: object) -> None:
    doc = inspect.getdoc(method) or ""
    params = [n for n in inspect.signature(method).parameters if n != "self"]  # type: ignore[arg-type]
    assert all(f":param {n}:" in doc for n in params), doc


def test_provider_info_imports_no_airflow() -> None:
    # Airflow calls get_provider_info() while it initializes: importing Airflow there would be circular.
    import subprocess
    import sys

    code = (
        "import sys; from airflow_grok_video.get_provider_info import get_provider_info; "
        "get_provider_info(); print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_site_builds_strictly_with_every_example_included(tmp_path: Path) -> None:
    import subprocess
    import sys

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    pages = {
        page.relative_to(site).as_posix(): html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
        for page in site.rglob("*.html")
    }
    left = [name for name, text in pages.items() if re.search(r"--8\s*<\s*--", text)]
    assert left == [], f"snippet includes left unexpanded in {left}"
    included = {
        "examples/index.html": [
            "grok_video_example",
            "grok_video_fan_out",
            "grok_video_create_and_wait",
            "grok_video_review",
        ],
        "quickstart/index.html": ["grok_video_example"],
        "keeping-videos/index.html": ["grok_video_keep", "grok_video_on_kept"],
        "review/index.html": ["grok_video_review"],
    }
    assert "def grok_video_batch(" in pages["batches/index.html"], "the batches page lacks its example"
    schema = (REPO / "airflow_grok_video" / "schemas" / "GrokVideoGenerationRunFacet.json").read_text()
    assert '"$id": "urn:airflow-provider-grok-video:' in pages["lineage/index.html"]
    assert json.loads(schema)["$id"] in pages["lineage/index.html"], "the lineage page shows the schema"
    for page, dag_ids in included.items():
        text = pages[page]
        for dag_id in dag_ids:
            assert f"def {dag_id}(" in text, f"{page} lacks {dag_id}'s code"
        assert "GrokCreateVideoOperator(" in text, f"{page} shows no operator code"


# -- documented signatures and defaults, against the code -------------------------------------------
#
# Every ``Name(...)`` in inline code or in a Python block of the README and the docs names real
# arguments; in docs/reference.md each one is a signature, and its defaults (and which arguments
# are keyword-only or required) are the code's; every "parameter | default" table gives the code's
# defaults. Copying a documented default must never change what the code would do by itself.

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
REFERENCE = REPO / "docs" / "reference.md"


def _documented() -> dict[str, list[Any]]:
    """What the docs name, by the name they use: a class or function, or a method (on every class)."""
    from airflow_grok_video.emulator import EmulatedVideo, RecordedRequest
    from airflow_grok_video.lineage import GrokVideoGenerationRunFacet
    from airflow_grok_video.pytest_plugin import connection_json, isolate_airflow
    from airflow_grok_video.triggers.grok_video import video_url_from_event

    named: list[Any] = [
        *PUBLIC,
        EmulatedVideo,
        RecordedRequest,
        GrokVideoGenerationRunFacet,
        connection_json,
        isolate_airflow,
        video_url_from_event,
    ]
    found: dict[str, list[Any]] = {obj.__name__: [obj] for obj in named}
    found["VideoTask.from_data"] = [VideoTask.from_data]
    for cls in (
        GrokVideoHook,
        GrokCreateVideoOperator,
        GrokCreateVideoBatchOperator,
        GrokVideoToStorageOperator,
        GrokVideoSensor,
    ):
        for name, member in vars(cls).items():
            if inspect.isfunction(member) and not name.startswith("_"):
                found.setdefault(name, []).append(member)
    return found


def _parameters(obj: Any) -> dict[str, inspect.Parameter]:
    """``obj``'s parameters (``self`` left out); an operator's include its base classes' own."""
    params: dict[str, inspect.Parameter] = {}
    owners = [c for c in obj.__mro__ if c is not object] if inspect.isclass(obj) else [obj]
    for owner in owners:
        function = owner.__init__ if inspect.isclass(owner) else owner
        if inspect.isclass(owner) and "__init__" not in vars(owner) and owner is not obj:
            continue
        try:
            signature = inspect.signature(owner if owner is obj else function)
        except (TypeError, ValueError):
            continue
        for name, param in signature.parameters.items():
            if name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                params.setdefault(name, param)
        if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
            break  # the rest of the hierarchy is not reachable through this signature
    return params


def _own_parameters(obj: Any) -> dict[str, inspect.Parameter]:
    """The parameters of ``obj``'s own signature, without ``self``, ``*args`` and ``**kwargs``."""
    return {
        name: param
        for name, param in inspect.signature(obj).parameters.items()
        if name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL)
    }


_SPAN = re.compile(r"`([^`]+)`")
_CALL = re.compile(
    r"^(?:await\s+)?(?:(?P<module>[a-z_][\w.]*)\.)?"  # await, a module path
    r"(?P<name>[A-Za-z_]\w*(?:\.from_data)?)\((?P<args>.*)\)$",
    re.S,
)


def _spans(path: Path) -> list[tuple[int, str, str | None, str]]:
    """``(line, name, module or None, arguments)`` of each inline ``Name(...)`` the page shows."""
    text = path.read_text()
    fences = re.compile(r"^\s*```.*?^\s*```", re.S | re.M)
    prose = fences.sub(lambda block: "\n" * block[0].count("\n"), text)  # line numbers kept
    found = []
    for span in _SPAN.finditer(prose):
        match = _CALL.match(" ".join(span[1].split()))  # a span may wrap onto the next line
        if match:
            line = prose.count("\n", 0, span.start()) + 1
            found.append((line, match["name"], match["module"], match["args"]))
    return found


def _signature_problems(obj: Any, args: str) -> list[str]:
    """What a documented signature ``Name(args)`` gets wrong about ``obj``; ``[]`` when right."""
    import ast

    tree = ast.parse(f"def documented({args}): pass").body[0]
    assert isinstance(tree, ast.FunctionDef)
    spec = tree.args
    shown: dict[str, tuple[bool, ast.expr | None]] = {}
    plain = [*spec.posonlyargs, *spec.args]
    plain_defaults: list[ast.expr | None] = [None] * (len(plain) - len(spec.defaults)) + list(spec.defaults)
    for arg, default in zip(plain, plain_defaults, strict=True):
        shown[arg.arg] = (False, default)
    for arg, kw_default in zip(spec.kwonlyargs, spec.kw_defaults, strict=True):
        shown[arg.arg] = (True, kw_default)
    code = _own_parameters(obj)
    problems = [f"{name} is not an argument" for name in shown if name not in code]
    problems += [f"{name} is not shown" for name in code if name not in shown]
    for name, (keyword_only, default) in shown.items():
        param = code.get(name)
        if param is None:
            continue
        if keyword_only != (param.kind == param.KEYWORD_ONLY):
            problems.append(f"{name} is {'' if param.kind == param.KEYWORD_ONLY else 'not '}keyword-only")
        if default is None:
            if param.default is not param.empty:
                problems.append(f"{name} is shown as required, its default is {param.default!r}")
        elif not (isinstance(default, ast.Constant) and default.value is Ellipsis):
            value = ast.literal_eval(default)
            if param.default is param.empty or param.default != value:
                problems.append(f"{name}={value!r} is shown, the default is {_default(param)}")
    return problems


def _default(param: inspect.Parameter) -> str:
    return "none (required)" if param.default is param.empty else repr(param.default)


def _call_problems(obj: Any, call: Any) -> list[str]:
    """The keyword arguments of a documented call that ``obj`` does not take."""
    params = _parameters(obj)
    return [f"{kw.arg} is not an argument" for kw in call.keywords if kw.arg and kw.arg not in params]


def _python_calls(path: Path) -> list[tuple[int, str, Any]]:
    """``(line, name, ast.Call)`` of each call of a documented name in the page's Python blocks."""
    import ast

    text = path.read_text()
    found = []
    for block in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
        first_line = text.count("\n", 0, block.start(1)) + 1
        try:
            tree = ast.parse(block[1])
        except SyntaxError:
            continue  # a snippet include, or an excerpt
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "partial":
                func = func.value  # Operator.partial(...) takes the operator's arguments
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            found.append((first_line + node.lineno - 1, name, node))
    return found


def test_documented_signatures_and_calls_match_the_code() -> None:
    import ast
    import importlib

    documented = _documented()
    problems = []
    for page in PAGES:
        where = page.relative_to(REPO)
        for line, name, module, args in _spans(page):
            candidates = documented.get(name)
            if not candidates:
                continue
            if module and module.startswith("airflow_grok_video"):
                target = importlib.import_module(module)
                if getattr(target, name.split(".")[0], None) is None:
                    problems.append(f"{where}:{line}: {module} has no {name}")
            if page == REFERENCE:  # every Name(...) there is a signature
                try:
                    found = [_signature_problems(obj, args) for obj in candidates]
                except SyntaxError:
                    problems.append(f"{where}:{line}: {name}({args}) is not a signature")
                    continue
            else:
                try:
                    call = ast.parse(f"f({args})", mode="eval").body
                except SyntaxError:
                    continue  # prose, not code
                found = [_call_problems(obj, call) for obj in candidates]
            if all(found):
                problems.append(f"{where}:{line}: {name}({args}): {'; '.join(found[0])}")
        for line, name, call in _python_calls(page):
            candidates = documented.get(name)
            if candidates and all(found := [_call_problems(obj, call) for obj in candidates]):
                problems.append(f"{where}:{line}: {name}(...): {'; '.join(found[0])}")
    assert not problems, "\n".join(problems)


def _tables(path: Path) -> list[tuple[int, Any, list[str]]]:
    """``(line, class, row cells)`` of every "parameter | default" table row, with the class it is under."""
    documented = _documented()
    rows = []
    current: Any = None
    in_table = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if cells[:2] == ["parameter", "default"]:
            in_table = True
            continue
        if not cells:
            in_table = False
            for span in _SPAN.findall(line):
                candidates = documented.get(span.split("(")[0].split(".")[-1].strip())
                if candidates and inspect.isclass(candidates[0]):
                    current = candidates[0]  # the last class the page named above the table
            continue
        if in_table and not set(cells[0]) <= set("-: "):
            rows.append((number, current, cells))
    return rows


def test_documented_parameter_tables_give_the_codes_defaults() -> None:
    import ast

    problems = []
    checked = 0
    for page in PAGES:
        for line, cls, cells in _tables(page):
            where = f"{page.relative_to(REPO)}:{line}"
            names = _SPAN.findall(cells[0])
            params = _parameters(cls)
            problems += [f"{where}: {cls.__name__} takes no {n}" for n in names if n not in params]
            if len(names) != 1 or names[0] not in params or "..." in cells[0]:
                continue
            param = params[names[0]]
            shown = _SPAN.findall(cells[1])
            if cells[1].startswith("required"):
                if param.default is not param.empty:
                    problems.append(f"{where}: {names[0]} is shown as required, not {_default(param)}")
            elif shown and not shown[0].startswith("["):  # "[section] option": Airflow's configuration
                try:
                    value = ast.literal_eval(shown[0])
                except (SyntaxError, ValueError):
                    value = shown[0]  # a bare string, e.g. grok_video_default
                if param.default is param.empty or param.default != value:
                    problems.append(f"{where}: {names[0]} {value!r} is shown, not {_default(param)}")
            checked += 1
    assert checked >= 20, f"only {checked} documented defaults found: is the table format still read?"
    assert not problems, "\n".join(problems)
